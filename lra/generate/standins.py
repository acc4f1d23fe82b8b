"""Offline stand-ins for Text, Retrieval and Image, in the real formats, from real content that
ships with Python. They exercise the pipeline end to end; they are NOT the benchmark.

- text: `aclImdb/{train,test}/{pos,neg}/<i>_<rating>.txt`: "reviews" made of sentences from the
  standard library's docstrings, with sentiment words mixed in (pos: praise, neg: complaints),
  so the label is learnable from content far apart in a long byte sequence.
- retrieval: `tsv_data/new_aan_pairs.{train,eval,test}.tsv`: pairs of excerpts of the standard
  library's module documentation; label 1 when both come from the same module's documentation.
- image: `cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`: 32x32 RGB records of ten kinds
  of generated shapes (label = kind) on random backgrounds.
"""
import importlib
import inspect
import os
import re

import numpy as np

_MODULES = (
    "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "collections",
    "concurrent.futures",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib",
    "email", "enum", "fractions", "functools", "glob", "gzip", "hashlib", "heapq", "html",
    "http.client", "imaplib", "inspect", "io", "ipaddress", "itertools", "json", "logging",
    "mailbox", "math", "multiprocessing", "numbers", "operator", "optparse", "os", "pathlib",
    "pickle", "pprint", "queue", "random", "re", "sched", "secrets", "shlex", "shutil", "smtplib",
    "socket", "sqlite3", "ssl", "statistics", "string", "struct", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback", "typing",
    "unittest", "urllib.parse", "uuid", "warnings", "wave", "weakref", "xml.dom.minidom",
    "zipfile", "zoneinfo",
)
_PRAISE = ("excellent", "wonderful", "brilliant", "a delight", "superb", "moving", "loved it",
           "masterful", "beautifully done", "highly recommended")
_COMPLAINTS = ("terrible", "boring", "awful", "a waste of time", "dreadful", "tedious",
               "hated it", "clumsy", "badly done", "not recommended")


def documents(min_chars=2000):
    """{module name: its documentation text (module and public members' docstrings, joined)}
    for the standard library modules in _MODULES that import, with at least min_chars."""
    docs = {}
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except Exception:  # a module missing from this Python build is simply left out
            continue
        parts = [inspect.getdoc(module) or ""]
        for attr in sorted(getattr(module, "__all__", None) or dir(module)):
            if attr.startswith("_"):
                continue
            doc = inspect.getdoc(getattr(module, attr, None))
            if doc and doc not in parts and not doc.startswith(("str(object", "int([x]")):
                parts.append(doc)
        text = re.sub(r"\s+", " ", " ".join(parts)).strip()
        if len(text) >= min_chars:
            docs[name] = text
    return docs


def _sentences(docs):
    text = " ".join(docs[k] for k in sorted(docs))
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 20 <= len(s.strip()) <= 300]


def write_text(out, num=1000, seed=0, *, min_sentences=4, max_sentences=40):
    """Writes an aclImdb-style tree with num reviews per split (train, test), half pos."""
    rng = np.random.default_rng(seed)
    sentences = _sentences(documents())
    root = os.path.join(out, "aclImdb")
    for split in ("train", "test"):
        for label, (name, words) in enumerate((("neg", _COMPLAINTS), ("pos", _PRAISE))):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            count = num // 2 if label == 0 else num - num // 2
            for i in range(count):
                picked = [sentences[j] for j in rng.integers(
                    0, len(sentences), rng.integers(min_sentences, max_sentences + 1))]
                for _ in range(rng.integers(2, 5)):
                    at = int(rng.integers(0, len(picked) + 1))
                    picked.insert(at, f"It was {words[rng.integers(len(words))]}.")
                rating = int(rng.integers(7, 11)) if label else int(rng.integers(1, 5))
                with open(os.path.join(folder, f"{i}_{rating}.txt"), "w", encoding="utf-8") as f:
                    f.write(" ".join(picked) + "\n")
    return root


def _excerpt(text, rng, length):
    start = int(rng.integers(0, max(1, len(text) - length)))
    return text[start:start + length]


def write_retrieval(out, num=1000, seed=0, *, min_chars=1000, max_chars=6000):
    """Writes `tsv_data/new_aan_pairs.{train,eval,test}.tsv` (80/10/10 of num pairs, half
    positive): label, id1, id2, text1, text2; positives are excerpts of one module's docs."""
    rng = np.random.default_rng(seed)
    docs = documents(min_chars=min_chars)
    names = sorted(docs)
    folder = os.path.join(out, "tsv_data")
    os.makedirs(folder, exist_ok=True)
    n_train, n_val = int(num * 0.8), int(num * 0.1)
    sizes = {"train": n_train, "eval": n_val, "test": num - n_train - n_val}
    paths = []
    for split, count in sizes.items():
        path = os.path.join(folder, f"new_aan_pairs.{split}.tsv")
        with open(path, "w", encoding="utf-8") as f:
            for i in range(count):
                label = i % 2
                a = names[rng.integers(len(names))]
                b = a if label else names[(names.index(a) + rng.integers(1, len(names)))
                                          % len(names)]
                t1 = _excerpt(docs[a], rng, int(rng.integers(min_chars, max_chars)))
                t2 = _excerpt(docs[b], rng, int(rng.integers(min_chars, max_chars)))
                f.write(f"{float(label)}\t{a}-{i}a\t{b}-{i}b\t{t1}\t{t2}\n")
        paths.append(path)
    return folder


def shape_image(kind, rng, size=32):
    """A uint8 (size, size, 3) RGB image of one of ten shape kinds on a random background."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    cx, cy = rng.uniform(10, size - 10, 2)
    r = rng.uniform(5, 10)
    dx, dy = xx - cx, yy - cy
    angle = np.arctan2(dy, dx)
    dist = np.hypot(dx, dy)
    masks = [
        dist <= r,  # 0 disk
        (np.abs(dx) <= r * 0.8) & (np.abs(dy) <= r * 0.8),  # 1 square
        (dy <= r * 0.7) & (dy >= -r + 1.7 * np.abs(dx)),  # 2 triangle
        (dist <= r) & (dist >= r * 0.55),  # 3 ring
        (np.abs(dx) <= r * 0.3) | (np.abs(dy) <= r * 0.3),  # 4 cross (whole image)
        np.abs(dx) + np.abs(dy) <= r,  # 5 diamond
        (np.abs(dx) <= r) & (np.abs(dy) <= r * 0.35),  # 6 horizontal bar
        (np.abs(dy) <= r) & (np.abs(dx) <= r * 0.35),  # 7 vertical bar
        dist <= r * (0.6 + 0.4 * np.cos(5 * angle)),  # 8 star
        ((xx // 4 + yy // 4) % 2 == 0) & (dist <= r * 1.2),  # 9 checkered disk
    ]
    background = rng.integers(0, 256, 3)
    colour = (background + rng.integers(80, 176, 3)) % 256
    image = np.empty((size, size, 3), np.float64)
    image[:] = background
    image[masks[kind]] = colour
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_image(out, num=1000, seed=0):
    """Writes `cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin` as CIFAR-10 splits its
    60,000: six batches of num // 6 records (1 label byte + R, G, B planes of 1024 bytes)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(out, "cifar-10-batches-bin")
    os.makedirs(folder, exist_ok=True)
    per = max(1, num // 6)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = []
        for i in range(per):
            label = int(rng.integers(10))
            rgb = shape_image(label, rng)
            records.append(np.concatenate([[label], rgb.transpose(2, 0, 1).reshape(-1)]))
        np.array(records, np.uint8).tofile(os.path.join(folder, name))
    return folder
