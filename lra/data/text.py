"""Text (IMDB reviews, byte level): the `aclImdb/{train,test}/{pos,neg}/*.txt` folder, or TFDS
`imdb_reviews` when prepared (tensorflow_datasets is then imported lazily; TensorFlow is never
needed otherwise).

Tokens as LRA: the text's bytes (stripped of surrounding whitespace, cut to its first 10,000
bytes) + 1, so ids are 1..256 and 0 is padding; then cut to max_length (default 4096; the
official LRA config used 1000). neg = 0, pos = 1. IMDB has no validation split: as in LRA, the
test split also serves as validation.
"""
import os

import numpy as np

from lra.data import cache, files

BYTE_CUT = 10_000
FOLDER = "aclImdb"
LABELS = {"neg": 0, "pos": 1}
SPLIT_FOLDER = {"train": "train", "validation": "test", "test": "test"}


def encode(data, max_length=None):
    """Returns the ids (n,) uint16 of bytes: the first BYTE_CUT bytes + 1, cut to max_length
    (None: not cut further; the readers leave that cut, and its count, to the token cache)."""
    data = data[:BYTE_CUT][:max_length]
    return np.frombuffer(data, dtype=np.uint8).astype(np.uint16) + 1


def decode(ids):
    """Returns the bytes of ids (padding dropped)."""
    ids = np.asarray(ids)
    return bytes((ids[ids > 0] - 1).astype(np.uint8))


def _folder_examples(data_dir, split):
    """[(path, label)] of `aclImdb/<train|test>/{neg,pos}/*.txt`, sorted by name."""
    folder = files.find_dir(
        data_dir, os.path.join(FOLDER, SPLIT_FOLDER[split]), task="text",
        how_to_get="Unpack aclImdb_v1.tar.gz (IMDB reviews) so that data_dir/aclImdb/train/pos "
                   "exists, prepare TFDS imdb_reviews under data_dir, or write the offline "
                   "stand-in with `python -m lra.generate --task=text --out=DIR`.")
    examples = []
    for name, label in LABELS.items():
        sub = os.path.join(folder, name)
        if not os.path.isdir(sub):
            raise files.DataError(f"text: folder {sub} is missing (expected {folder}/neg and "
                                  f"{folder}/pos holding one review per .txt file)")
        examples += [(os.path.join(sub, f), label) for f in sorted(os.listdir(sub))
                     if f.endswith(".txt")]
    if not examples:
        raise files.DataError(f"text: no .txt reviews under {folder}/neg or {folder}/pos")
    return examples


def _tfds_examples(data_dir, split):
    """[(text bytes, label)] from a prepared TFDS imdb_reviews (imported lazily)."""
    import tensorflow_datasets as tfds  # optional; only for a prepared TFDS folder

    source = tfds.data_source("imdb_reviews", split=SPLIT_FOLDER[split], data_dir=data_dir)
    return [(bytes(source[i]["text"]), int(source[i]["label"])) for i in range(len(source))]


def load(data_dir, split, *, spec, cache_dir, max_length=4096, rebuild=False):
    """Returns the split as a CachedSplit of {'inputs': int32[max_length], 'targets': 0/1}."""
    options = {"max_length": max_length}
    tfds_dir = os.path.join(data_dir, "imdb_reviews")
    if not files.has_dir(data_dir, FOLDER) and os.path.isdir(tfds_dir):
        examples = _tfds_examples(data_dir, split)
        tfds_files = [os.path.join(r, f) for r, _, fs in
                      os.walk(tfds_dir) for f in fs]

        def rows():
            for text, label in examples:
                yield {"inputs": encode(text.strip())}, label

        return cache.build_or_load(
            spec=spec, split=split, options=dict(options, source="tfds"),
            source_paths=tfds_files, cache_dir=cache_dir,
            fields={"inputs": (max_length, np.uint16)}, num_examples=len(examples), rows=rows,
            rebuild=rebuild)

    examples = _folder_examples(data_dir, split)

    def rows():
        for path, label in examples:
            with open(path, "rb") as f:
                yield {"inputs": encode(f.read().strip())}, label

    return cache.build_or_load(
        spec=spec, split=split, options=options, source_paths=[p for p, _ in examples],
        cache_dir=cache_dir, fields={"inputs": (max_length, np.uint16)},
        num_examples=len(examples), rows=rows, rebuild=rebuild)
