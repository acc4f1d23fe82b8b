"""Pathfinder and Path-X: `pathfinderNN/<difficulty>/{imgs/<k>/sample_<j>.png, metadata/<k>.npy}`.

Metadata files are read as text (the release: one line per image, space separated) or as
binary numpy (what the generator writes; starts with the magic `\\x93NUMPY`): field 0 is the
subfolder (`imgs/<k>`), field 1 the file name, field 3 the label (1: the markers are joined).
An image path must stay inside the difficulty folder once resolved (no `..`, absolute paths or
symbolic links leading out of it): a metadata file is never a way to read other files.
All rows, metadata files in numeric order, are split 80/10/10 into train/validation/test.
Tokens are the pixel values 0..255, row major (N*N per image). Empty image files (the release
has one) are skipped with a warning; an image of the wrong size or that cannot be decoded is an
error naming the file.
"""
import concurrent.futures
import logging
import os
import re

import numpy as np
from PIL import Image

from lra.data import cache, files
from spade_jax.runtime.paths import text_lines

DIFFICULTY = "curv_contour_length_14"
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

log = logging.getLogger(__name__)


def _metadata_rows(path):
    """Returns [(line_number, fields)] of one metadata file (text or binary numpy)."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
        if head == b"\x93NUMPY":
            array = np.load(path, allow_pickle=False)
            if array.ndim != 2:
                raise ValueError(f"expected a 2-D array of rows, found shape {array.shape}")
            return [(i + 1, [str(v) for v in row]) for i, row in enumerate(array)]
    except (OSError, ValueError) as e:
        raise files.DataError(f"{path}: unreadable metadata file ({e})") from None
    return [(number, line.split()) for number, line in text_lines(path) if line.strip()]


def _inside(root, real_root, relative, where):
    """The path of `relative` (metadata fields) under `root` (whose resolved path is
    `real_root`); a DataError naming `where` (file and line) if, resolved, it leads outside."""
    path = os.path.realpath(os.path.join(real_root, *relative))
    if os.path.commonpath([real_root, path]) != real_root:
        raise files.DataError(f"{where}: image path {os.path.join(*relative)!r} leads outside "
                              f"{root} (to {path}); image paths must be relative to the "
                              f"difficulty folder, as imgs/<k> and sample_<j>.png are")
    return os.path.join(root, *relative)


def list_examples(root):
    """Returns [(image_path, label)] in metadata order, from the difficulty folder `root`.

    Raises DataError for a missing metadata folder, a short row, a label not 0/1, an image path
    leading outside `root` or a missing image, naming the metadata file and line.
    """
    meta = os.path.join(root, "metadata")
    if not os.path.isdir(meta):
        raise files.DataError(f"{root}: no metadata folder (expected {root}/metadata/<k>.npy "
                              f"and {root}/imgs/<k>/sample_<j>.png)")
    names = [n for n in os.listdir(meta) if re.fullmatch(r"\d+\.npy", n)]
    if not names:
        raise files.DataError(f"{meta}: no metadata files <k>.npy")
    examples, real_root = [], os.path.realpath(root)
    for name in sorted(names, key=lambda n: int(n[:-4])):
        path = os.path.join(meta, name)
        for line, fields in _metadata_rows(path):
            if len(fields) < 4:
                raise files.DataError(f"{path}, line {line}: expected at least 4 fields "
                                      f"(subfolder, file, index, label), found {len(fields)}")
            if fields[3] not in ("0", "1"):
                raise files.DataError(f"{path}, line {line}: field 3 (label) is {fields[3]!r}, "
                                      f"expected 0 or 1")
            image = _inside(root, real_root, fields[:2], f"{path}, line {line}")
            if not os.path.isfile(image):
                raise files.DataError(f"{path}, line {line}: image {image} does not exist")
            examples.append((image, int(fields[3])))
    return examples


def split_examples(examples, split):
    """The train/validation/test part (80/10/10, in order) of the example list."""
    n = len(examples)
    n_train, n_val = int(n * SPLIT_FRACTIONS[0]), int(n * SPLIT_FRACTIONS[1])
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val),
              "test": (n_train + n_val, n)}[split]
    return examples[bounds[0]:bounds[1]]


def decode(path, image_size):
    """Returns the uint8 pixels (image_size**2,) of one PNG, row major; DataError if bad."""
    try:
        with Image.open(path) as image:
            if image.mode != "L":
                image = image.convert("L")
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise files.DataError(f"{path}: cannot decode image ({e})") from None
    if pixels.shape != (image_size, image_size):
        raise files.DataError(f"{path}: image is {pixels.shape[1]}x{pixels.shape[0]} px, "
                              f"expected {image_size}x{image_size}")
    return pixels.reshape(-1)


def load(data_dir, split, *, spec, cache_dir, image_size=None, difficulty=DIFFICULTY,
         rebuild=False, num_threads=None):
    """Returns the split as a CachedSplit of {'inputs': int32[N*N] pixels, 'targets': 0/1}.

    spec: the task, pathfinder or pathx. image_size: 32, 64, 128 or 256 (default spec.image_size:
    32 for pathfinder, 128 for pathx), the folder `pathfinder<image_size>`. difficulty:
    `curv_baseline`, `curv_contour_length_9` or `curv_contour_length_14` (LRA's).
    """
    task = spec.name
    image_size = image_size or spec.image_size
    relative = os.path.join(f"pathfinder{image_size}", difficulty)
    root = files.find_dir(data_dir, relative, task=task, how_to_get=files.generate_hint(task))
    examples = split_examples(list_examples(root), split)
    kept = [(p, y) for p, y in examples if os.path.getsize(p) > 0]
    skipped = len(examples) - len(kept)
    if skipped:
        first = next(p for p, _ in examples if os.path.getsize(p) == 0)
        log.warning("%s/%s: skipped %d empty image file(s) (first: %s)", task, split, skipped,
                    first)
    if not kept:
        raise files.DataError(f"{root}: no images in the {split} split")
    threads = num_threads or min(8, os.cpu_count() or 1)

    def rows():
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for start in range(0, len(kept), 1024):
                block = kept[start:start + 1024]
                images = pool.map(decode, [p for p, _ in block], [image_size] * len(block))
                for pixels, (_, label) in zip(images, block):
                    yield {"inputs": pixels}, label

    return cache.build_or_load(
        spec=spec, split=split, options={"image_size": image_size, "difficulty": difficulty},
        source_paths=[p for p, _ in kept], cache_dir=cache_dir,
        fields={"inputs": (image_size * image_size, np.uint8)}, num_examples=len(kept),
        rows=rows, rebuild=rebuild)
