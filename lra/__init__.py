"""Long Range Arena: data readers, generators and (later) task definitions and the training job.

`lra.data` reads the six tasks from the files users have (the LRA release, IMDB, CIFAR-10) and
feeds the engine through grain; `lra.generate` writes offline data in exactly those formats.
"""
