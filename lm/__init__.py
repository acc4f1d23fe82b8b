"""WikiText-103 language modelling: data (vocabulary, memory-mapped streams, blocks, context
windows), the embedded stand-in corpus, the engine's task, and the mains `lm.main`,
`lm.evaluate`, `lm.generate`. Never imports `lra`."""
