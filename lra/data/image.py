"""Image (CIFAR-10, grayscale, one token per pixel): `cifar-10-batches-bin/{data_batch_1..5,
test_batch}.bin`, or TFDS `cifar10` when prepared (tensorflow_datasets imported lazily).

A record is 1 label byte + 3072 bytes (R plane, G plane, B plane, 32x32 row major). Grayscale as
TensorFlow's rgb_to_grayscale on uint8 images: f = rgb / 255 (float32);
g = sum(f * [0.2989, 0.5870, 0.1140]); gray = uint8(g * 255.5) (truncation). Validation is the
last 10% of the training records; train the first 90%.
"""
import os

import numpy as np

from lra.data import cache, files

FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
RECORD = 1 + 3 * 32 * 32
WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float32)


def grayscale(rgb):
    """uint8 (..., 3) RGB -> uint8 (...) gray, as TensorFlow computes it (see module doc)."""
    f = rgb.astype(np.float32) / np.float32(255.0)
    g = (f * WEIGHTS).sum(axis=-1, dtype=np.float32)
    return (g * np.float32(255.5)).astype(np.uint8)


def read_records(path):
    """Returns (labels (n,) int, rgb (n, 32, 32, 3) uint8) of one CIFAR-10 binary batch file."""
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0 or data.size % RECORD:
        raise files.DataError(f"{path}: size {data.size} bytes is not a positive multiple of the "
                              f"{RECORD}-byte CIFAR-10 record")
    data = data.reshape(-1, RECORD)
    labels = data[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels > 9)
    if len(bad):
        raise files.DataError(f"{path}, record {bad[0]}: label {labels[bad[0]]} outside 0..9")
    return labels, data[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _tfds_arrays(data_dir, split):
    import tensorflow_datasets as tfds  # optional; only for a prepared TFDS folder

    source = tfds.data_source("cifar10", split="test" if split == "test" else "train",
                              data_dir=data_dir)
    rgb = np.stack([np.asarray(source[i]["image"]) for i in range(len(source))])
    labels = np.array([int(source[i]["label"]) for i in range(len(source))])
    return labels, rgb


def load(data_dir, split, *, spec, cache_dir, rebuild=False):
    """Returns the split as a CachedSplit of {'inputs': int32[1024] gray pixels, 'targets'}."""
    use_tfds = (not files.has_dir(data_dir, FOLDER)
                and os.path.isdir(os.path.join(data_dir, "cifar10")))
    if use_tfds:
        labels, rgb = _tfds_arrays(data_dir, split)
        sources = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(data_dir, "cifar10"))
                   for f in fs]
    else:
        sources = files.find_files(
            data_dir, FOLDER, TEST_FILES if split == "test" else TRAIN_FILES, task="image",
            how_to_get="Unpack cifar-10-binary.tar.gz so that data_dir/cifar-10-batches-bin "
                       "exists, prepare TFDS cifar10 under data_dir, or write the offline "
                       "stand-in with `python -m lra.generate --task=image --out=DIR`.")
        parts = [read_records(p) for p in sources]
        labels = np.concatenate([l for l, _ in parts])
        rgb = np.concatenate([x for _, x in parts])
    if split != "test":
        n_train = len(labels) - len(labels) // 10
        sl = slice(0, n_train) if split == "train" else slice(n_train, None)
        labels, rgb = labels[sl], rgb[sl]

    def rows():
        gray = grayscale(rgb).reshape(len(rgb), -1)
        for pixels, label in zip(gray, labels):
            yield {"inputs": pixels}, int(label)

    return cache.build_or_load(
        spec=spec, split=split, options={"source": "tfds" if use_tfds else "bin"},
        source_paths=sources, cache_dir=cache_dir, fields={"inputs": (1024, np.uint8)},
        num_examples=len(labels), rows=rows, rebuild=rebuild)
