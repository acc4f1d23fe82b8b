"""WikiText data: vocabulary, memory-mapped token streams, training blocks, evaluation windows.

A data folder holds `wiki.{train,valid,test}.tokens` (WikiText-103 or WikiText-2: one paragraph
per line, tokens separated by spaces; `.raw` with suffix='raw'). `prepare(data_dir)` tokenises it
once into a cache folder and returns a `Corpus`:

  tokenizer 'word'  the vocabulary of the training split by frequency: id 0 is `<pad>` (never in
                    the text), then every whitespace-separated token and the end-of-line token
                    `<eos>` (one per line, blank lines included), most frequent first (ties by
                    the token's text). WikiText-103: 267,735 types + `<pad>`. valid / test are
                    encoded with the frozen vocabulary: an unknown token is an error naming file
                    and line, or with unknown='unk' becomes `<unk>`.
  tokenizer 'byte'  UTF-8 bytes of the file, id = byte + 1 (0 is padding; '\\n' ends a line).

The cache folder `<cache_root>/lm/<folder>-<tokenizer>-<key>/` holds `vocab.txt` (id order,
"token count" per line), `{train,valid,test}.int32` (the token streams, raw little-endian int32,
opened memory-mapped: WikiText-103 train is 103M tokens) and `info.json`. The key hashes the
tokenizer options and each file's path, size, modification time and first and last MiB, so a
changed corpus never reuses a stale vocabulary. A folder is built under a temporary name and
renamed when complete.

Training: `TrainBlocks`, an endless iterator of batches of `seq_len`-token blocks cut from the
contiguous stream (inputs = block, targets = the block shifted by one token), shuffled per epoch
from the seed; its state is one integer, so a run resumes with exactly the next batch.
Evaluation: `eval_batches`, fairseq's context window: the split is scored `seq_len - context`
tokens at a time, each window preceded by up to `context` earlier tokens that are not scored,
so every token is predicted from at least min(context, its position) tokens. The first token is
predicted from `<eos>` (as after an end of line).
"""
import array
import collections
import hashlib
import json
import os
import time

import numpy as np

from spade_jax.runtime.errors import DataError
from spade_jax.runtime.paths import atomic_folder, cache_root, text_lines

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
PAD_ID = 0
SPLITS = ("train", "valid", "test")
TOKENIZERS = ("word", "byte")
CACHE_VERSION = 1
_FLUSH = 1 << 22  # tokens per write while encoding


def split_files(data_dir: str, suffix: str = "tokens") -> dict:
    """{split: path} of the three files; a DataError naming what is missing otherwise."""
    expected = {s: os.path.join(data_dir, f"wiki.{s}.{suffix}") for s in SPLITS}
    layout = (f"expected {', '.join(f'wiki.{s}.{suffix}' for s in SPLITS)} (WikiText-103 or "
              f"WikiText-2, e.g. the unpacked wikitext-103-v1.zip)")
    if not os.path.isdir(data_dir):
        raise DataError(f"data directory {data_dir!r} does not exist; {layout}")
    missing = [os.path.basename(p) for p in expected.values() if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{data_dir} lacks {', '.join(missing)}; {layout}")
    for split, path in expected.items():
        if os.path.getsize(path) == 0:
            raise DataError(f"{path} is empty: the {split} split has no text")
    return expected


class Vocabulary:
    """Token strings <-> ids. `counts[i]`: occurrences of id i in the training split."""

    def __init__(self, tokenizer: str, tokens, counts):
        if tokenizer not in TOKENIZERS:
            raise DataError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
        self.tokenizer, self.tokens = tokenizer, list(tokens)
        self.counts = np.asarray(counts, np.int64)
        self.index = {t: i for i, t in enumerate(self.tokens)} if tokenizer == "word" else None
        self.eos_id = self.index[EOS] if tokenizer == "word" else ord("\n") + 1

    def __len__(self):
        return len(self.tokens)

    @classmethod
    def from_counts(cls, counter) -> "Vocabulary":
        """Word vocabulary: <pad>, then tokens by decreasing count (ties by text)."""
        ordered = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls("word", [PAD] + [t for t, _ in ordered], [0] + [c for _, c in ordered])

    @classmethod
    def bytes(cls, counts=None) -> "Vocabulary":
        counts = np.zeros(257, np.int64) if counts is None else counts
        return cls("byte", [PAD] + [f"<0x{b:02X}>" for b in range(256)], counts)

    def encode_line(self, line: str, unk_id=None):
        """Ids of one line plus its end of line; KeyError(token) for an unknown word (unless
        unk_id is given)."""
        if self.tokenizer == "byte":
            return list(np.frombuffer((line.rstrip("\n") + "\n").encode("utf-8"), np.uint8) + 1)
        if unk_id is None:
            return [self.index[t] for t in line.split()] + [self.eos_id]
        return [self.index.get(t, unk_id) for t in line.split()] + [self.eos_id]

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """Ids of a text (a prompt): each line but the last ends with the end of line."""
        unk_id = self.unk_id(unknown)
        ids = []
        lines = text.split("\n")
        for i, line in enumerate(lines):
            try:
                part = self.encode_line(line, unk_id)
            except KeyError as e:
                raise DataError(f"token {e.args[0]!r} is not in the vocabulary ({len(self)} "
                                f"types); use unknown='unk' to map it to {UNK}") from None
            ids += part if i < len(lines) - 1 else part[:-1]
        return np.asarray(ids, np.int32)

    def decode(self, ids) -> str:
        """Text of ids: words joined by spaces, <eos> as a line break; bytes as UTF-8."""
        ids = [int(i) for i in ids if int(i) != PAD_ID]
        if self.tokenizer == "byte":
            return bytes(i - 1 for i in ids).decode("utf-8", errors="replace")
        out, line = [], []
        for i in ids:
            if i == self.eos_id:
                out.append(" ".join(line) + "\n")
                line = []
            else:
                line.append(self.tokens[i])
        return "".join(out) + " ".join(line)

    def unk_id(self, unknown):
        if unknown == "error" or self.tokenizer == "byte":
            return None
        if unknown != "unk":
            raise DataError(f"unknown must be 'error' or 'unk', got {unknown!r}")
        if UNK not in self.index:
            raise DataError(f"unknown='unk' needs {UNK} in the vocabulary; the training split "
                            f"has none")
        return self.index[UNK]

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            for token, count in zip(self.tokens, self.counts):
                f.write(f"{token} {count}\n")

    @classmethod
    def load(cls, path, tokenizer="word") -> "Vocabulary":
        tokens, counts = [], []
        with open(path, encoding="utf-8") as f:
            for line in f:
                token, count = line.rstrip("\n").rsplit(" ", 1)
                tokens.append(token)
                counts.append(int(count))
        return cls(tokenizer, tokens, counts)


def _fingerprint(path) -> dict:
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256_ends": h.hexdigest()}


class Corpus:
    """A prepared corpus: `vocab`, `stream(split)` (memory-mapped int32), `info`, `path`."""

    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "info.json")) as f:
            self.info = json.load(f)
        self.tokenizer = self.info["tokenizer"]
        self.vocab = Vocabulary.load(os.path.join(path, "vocab.txt"), self.tokenizer)
        self._streams = {}

    def stream(self, split) -> np.ndarray:
        """(tokens,) int32, memory-mapped."""
        split = {"validation": "valid"}.get(split, split)
        if split not in self._streams:
            self._streams[split] = np.memmap(os.path.join(self.path, f"{split}.int32"),
                                             dtype="<i4", mode="r",
                                             shape=(self.info["splits"][split]["tokens"],))
        return self._streams[split]

    def words(self, split) -> int:
        """Word tokens of a split (whitespace-separated tokens + one end of line per line): the
        denominator of perplexity per word."""
        return self.info["splits"][{"validation": "valid"}.get(split, split)]["words"]


def _encode_bytes(path, out_path):
    """Byte stream of a file (a final end of line added if missing): (tokens, lines, words)."""
    tokens = lines = words = 0
    last = b"\n"
    with open(path, "rb") as src, open(out_path, "wb") as dst:
        while chunk := src.read(1 << 24):
            dst.write((np.frombuffer(chunk, np.uint8).astype("<i4") + 1).tobytes())
            tokens, lines = tokens + len(chunk), lines + chunk.count(b"\n")
            words += len(chunk.split()) - (not last.isspace() and not chunk[:1].isspace())
            last = chunk[-1:]
        if last != b"\n":
            dst.write(np.array([ord("\n") + 1], "<i4").tobytes())
            tokens, lines = tokens + 1, lines + 1
    return tokens, lines, words + lines


def _encode_words(path, out_path, vocab, unk_id, train_name):
    """Word stream of a file: (tokens, lines, words); DataError at the first unknown token."""
    buf, tokens, lines = array.array("i"), 0, 0
    with open(out_path, "wb") as dst:
        for lines, line in text_lines(path):
            try:
                buf.extend(vocab.encode_line(line, unk_id))
            except KeyError as e:
                raise DataError(
                    f"{path} line {lines}: token {e.args[0]!r} is not in the vocabulary built "
                    f"from {train_name} ({len(vocab):,} types). WikiText replaces rare words by "
                    f"{UNK}; set config.data.unknown='unk' to map unknown tokens to {UNK}"
                ) from None
            if len(buf) >= _FLUSH:
                dst.write(buf.tobytes())
                tokens, buf = tokens + len(buf), array.array("i")
        dst.write(buf.tobytes())
    tokens += len(buf)
    return tokens, lines, tokens


def _build(files, tokenizer, unknown, out):
    """Writes vocab.txt, {split}.int32 and info.json into `out`."""
    start = time.perf_counter()
    if tokenizer == "word":
        counter = collections.Counter()
        for _, line in text_lines(files["train"]):
            counter.update(line.split())
            counter[EOS] += 1
        vocab = Vocabulary.from_counts(counter)
    unk_id = vocab.unk_id(unknown) if tokenizer == "word" else None
    splits = {}
    for split, path in files.items():
        out_path = os.path.join(out, f"{split}.int32")
        if tokenizer == "byte":
            tokens, lines, words = _encode_bytes(path, out_path)
        else:
            tokens, lines, words = _encode_words(path, out_path, vocab,
                                                 None if split == "train" else unk_id,
                                                 os.path.basename(files["train"]))
        if tokenizer == "byte" and split == "train":
            vocab = Vocabulary.bytes(np.bincount(np.memmap(out_path, dtype="<i4", mode="r"),
                                                 minlength=257))
        splits[split] = {"tokens": tokens, "lines": lines, "words": words}
        print(f"lm: {path}: {tokens:,} tokens, {lines:,} lines ({time.perf_counter() - start:.0f}"
              f" s)", flush=True)
    vocab.save(os.path.join(out, "vocab.txt"))
    return vocab, splits


def prepare(data_dir: str, tokenizer: str = "word", suffix: str = "tokens",
            unknown: str = "error", cache_dir: str = "") -> Corpus:
    """The Corpus of `data_dir` (see the module docstring), built once into the cache."""
    if tokenizer not in TOKENIZERS:
        raise DataError(f"config.data.tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
    if unknown not in ("error", "unk"):
        raise DataError(f"config.data.unknown must be 'error' or 'unk', got {unknown!r}")
    files = split_files(data_dir, suffix)
    options = {"version": CACHE_VERSION, "tokenizer": tokenizer, "suffix": suffix,
               "unknown": unknown if tokenizer == "word" else None,
               "files": {s: _fingerprint(p) for s, p in files.items()}}
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
    root = cache_dir or os.path.join(cache_root(), "lm")
    name = os.path.basename(os.path.normpath(os.path.abspath(data_dir))) or "corpus"
    folder = os.path.join(root, f"{name}-{tokenizer}-{key}")
    if os.path.isfile(os.path.join(folder, "info.json")):
        return Corpus(folder)
    print(f"lm: tokenising {data_dir} ({tokenizer}) into {folder}", flush=True)
    with atomic_folder(folder, prefix=f".{name}-", what="the token cache",
                       hint="set --config.data.cache_dir=DIR (or $SPADE_JAX_CACHE) to a writable "
                            "folder") as tmp:
        vocab, splits = _build(files, tokenizer, unknown, tmp)
        info = dict(options, vocab_size=len(vocab), splits=splits,
                    data_dir=os.path.abspath(data_dir))
        with open(os.path.join(tmp, "info.json"), "w") as f:
            json.dump(info, f, indent=2)
    return Corpus(folder)


class TrainBlocks:
    """Endless batches {'inputs', 'targets' (B, seq_len) int32, 'weights' (B, seq_len) float32}
    of blocks of the training stream: block b holds inputs stream[b*L : b*L + L] and targets one
    token later. Global batch k takes rows k*B*shard_count ... of the concatenated per-epoch
    permutations of the blocks (seeded); this host takes its shard_index-th slice of B rows.
    State: {'batches': k}."""

    def __init__(self, stream, seq_len, batch_size, seed, shard_index=0, shard_count=1):
        self.stream, self.seq_len, self.batch_size = stream, seq_len, batch_size
        self.seed, self.shard_index, self.shard_count = seed, shard_index, shard_count
        self.num_blocks = (len(stream) - 1) // seq_len
        if self.num_blocks < 1:
            raise DataError(f"the training split has {len(stream)} tokens: fewer than one block "
                            f"of config.seq_len + 1 = {seq_len + 1}")
        self.batches = 0
        self._order = {}

    def __iter__(self):
        return self

    def _block(self, row):
        epoch, position = divmod(row, self.num_blocks)
        if epoch not in self._order:
            self._order = {epoch: np.random.default_rng([self.seed, epoch]).permutation(
                self.num_blocks)}
        return int(self._order[epoch][position])

    def __next__(self):
        first = (self.batches * self.shard_count + self.shard_index) * self.batch_size
        inputs = np.empty((self.batch_size, self.seq_len + 1), np.int32)
        for r in range(self.batch_size):
            start = self._block(first + r) * self.seq_len
            inputs[r] = self.stream[start:start + self.seq_len + 1]
        self.batches += 1
        return {"inputs": inputs[:, :-1], "targets": inputs[:, 1:],
                "weights": np.ones((self.batch_size, self.seq_len), np.float32)}

    def get_state(self):
        return {"batches": self.batches}

    def set_state(self, state):
        self.batches = int(state["batches"])


def num_windows(length: int, seq_len: int, context: int) -> int:
    if not 0 <= context < seq_len:
        raise DataError(f"config.eval_context ({context}) must be in [0, config.seq_len = "
                        f"{seq_len})")
    return -(-length // (seq_len - context))


def eval_window(stream, index: int, seq_len: int, context: int, bos_id: int):
    """Window `index` of the context-window evaluation: (inputs, targets, weights), each
    (seq_len,), padded with PAD_ID / weight 0. It scores targets stream[s:e], s = index * stride,
    stride = seq_len - context, each predicted from up to `context` + its offset earlier tokens."""
    stride = seq_len - context
    s = index * stride
    e = min(len(stream), s + stride)
    a = max(0, s - context)
    targets = np.asarray(stream[a:e], np.int32)
    inputs = np.asarray(stream[max(a - 1, 0):e - 1], np.int32)
    if a == 0:
        inputs = np.concatenate([[bos_id], inputs]).astype(np.int32)
    n = e - a
    weights = (np.arange(n) >= s - a).astype(np.float32)
    pad = lambda x: np.pad(x, (0, seq_len - n))
    return pad(inputs), pad(targets), pad(weights)


def eval_batches(stream, *, seq_len, context, batch_size, bos_id, shard_index=0, shard_count=1):
    """The evaluation batches of a split (see eval_window): every host gets the same number of
    batches of exactly batch_size rows; rows past the last window weigh 0."""
    count = num_windows(len(stream), seq_len, context)
    rows = batch_size * shard_count
    for k in range(-(-count // rows)):
        batch = {name: np.zeros((batch_size, seq_len), dtype)
                 for name, dtype in (("inputs", np.int32), ("targets", np.int32),
                                     ("weights", np.float32))}
        for r in range(batch_size):
            index = k * rows + shard_index * batch_size + r
            if index < count:
                batch["inputs"][r], batch["targets"][r], batch["weights"][r] = eval_window(
                    stream, index, seq_len, context, bos_id)
        yield batch


def unigram_nll(corpus: Corpus, split: str) -> float:
    """Mean NLL per token of `split` under the training split's unigram distribution (add-one
    smoothed over the vocabulary without <pad>): the baseline a language model must beat."""
    counts = corpus.vocab.counts.astype(np.float64)
    probs = (counts + 1.0) / (counts.sum() + len(counts) - 1)
    stream = corpus.stream(split)
    seen = np.zeros(len(counts), np.int64)
    for start in range(0, len(stream), 1 << 24):
        seen += np.bincount(stream[start:start + (1 << 24)], minlength=len(counts))
    return float(-(seen[1:] * np.log(probs[1:])).sum() / max(len(stream), 1))
