"""Retrieval (ACL Anthology Network document pairs, byte level):
`tsv_data/new_aan_pairs.{train,eval,test}.tsv`.

No header; tab separated; quotes are literal characters; 5 columns: label, id1, id2, text1,
text2; the label may be written as a float ("1.0"). Each text is cut to its first 10,000 bytes,
byte-encoded (+1; 0 is padding), then cut to max_length (default 4000). Examples hold `inputs1`
and `inputs2`.
"""
import numpy as np

from lra.data import cache, files
from lra.data.text import encode

FOLDER = "tsv_data"
FILES = {"train": "new_aan_pairs.train.tsv", "validation": "new_aan_pairs.eval.tsv",
         "test": "new_aan_pairs.test.tsv"}


def split_path(data_dir, split):
    """Returns the TSV path of split; DataError naming the folder and layout if missing."""
    return files.find_files(data_dir, FOLDER, [FILES[split]], task="retrieval",
                            how_to_get=files.generate_hint("retrieval"))[0]


def read_rows(path):
    """Yields (line_number, label, text1 bytes, text2 bytes) of a retrieval TSV.

    Raises DataError naming file and line for a row without 5 fields or a label not 0/1.
    """
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip(b"\n").rstrip(b"\r")
            if not line.strip():
                continue
            fields = line.split(b"\t")
            if len(fields) != 5:
                raise files.DataError(f"{path}, line {number}: expected 5 tab-separated fields "
                                      f"(label, id1, id2, text1, text2), found {len(fields)}")
            raw = fields[0].decode("utf-8", "replace").strip()
            try:
                value = float(raw)
            except ValueError:
                value = None
            if value not in (0.0, 1.0):
                raise files.DataError(f"{path}, line {number}: field label is {raw!r}, expected "
                                      f"0 or 1")
            yield number, int(value), fields[3], fields[4]


def load(data_dir, split, *, spec, cache_dir, max_length=4000, rebuild=False):
    """Returns the split as a CachedSplit of {'inputs1', 'inputs2': int32[max_length],
    'targets': 0/1}."""
    path = split_path(data_dir, split)

    def rows():
        for _, label, text1, text2 in read_rows(path):
            yield {"inputs1": encode(text1), "inputs2": encode(text2)}, label

    return cache.build_or_load(
        spec=spec, split=split, options={"max_length": max_length}, source_paths=[path],
        cache_dir=cache_dir, fields={"inputs1": (max_length, np.uint16),
                                     "inputs2": (max_length, np.uint16)},
        num_examples=lambda: files.count_rows(path, read_rows), rows=rows, rebuild=rebuild,
        notes=lambda: files.cut_short([path]))
