"""ListOps: `listops-1000/basic_{train,val,test}.tsv` (header `Source\\tTarget`).

Tokenisation as LRA: replace `]` by `X`, delete `(` and `)`, split on whitespace; the token
count then equals the tree's length. Fixed sorted vocabulary: pad = 0, the 15 symbols
`0-9 X [MAX [MED [MIN [SM` = 1..15, out-of-vocabulary = 16.
"""
import numpy as np

from lra.data import cache, files
from spade_jax.runtime.paths import text_lines

SYMBOLS = tuple(sorted([str(d) for d in range(10)] + ["X", "[MAX", "[MED", "[MIN", "[SM"]))
PAD_ID = 0
OOV_ID = len(SYMBOLS) + 1
VOCAB = {symbol: i + 1 for i, symbol in enumerate(SYMBOLS)}
FOLDER = "listops-1000"
FILES = {"train": "basic_train.tsv", "validation": "basic_val.tsv", "test": "basic_test.tsv"}
HEADER = "Source\tTarget"
NUM_CLASSES = 10


def tokenize(source):
    """Returns the int32 ids (n,) of one ListOps expression string, as LRA tokenises it."""
    words = source.replace("]", "X").replace("(", " ").replace(")", " ").split()
    return np.array([VOCAB.get(w, OOV_ID) for w in words], dtype=np.int32)


def split_path(data_dir, split):
    """Returns the path of the TSV for `split`, or raises DataError on a missing folder/file."""
    return files.find_files(data_dir, FOLDER, [FILES[split]], task="listops",
                            how_to_get=files.generate_hint("listops"))[0]


def read_rows(path):
    """Yields (line_number, source, target) for each data row of a ListOps TSV.

    Raises DataError naming the file and line for a row without two tab-separated fields or a
    target that is not an integer in 0..9, and for bytes that are not UTF-8 (naming the byte
    offset). The header line is skipped.
    """
    for number, line in text_lines(path):
        line = line.rstrip("\n").rstrip("\r")
        if number == 1 and line.strip() == HEADER:
            continue
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise files.DataError(f"{path}, line {number}: expected 2 tab-separated fields "
                                  f"(Source, Target), found {len(fields)}")
        source, target = fields
        try:
            value = int(float(target))
            if value != float(target):
                raise ValueError
        except (ValueError, OverflowError):
            raise files.DataError(f"{path}, line {number}: field Target is {target!r}, not "
                                  f"an integer") from None
        if not 0 <= value < NUM_CLASSES:
            raise files.DataError(f"{path}, line {number}: field Target is {value}, outside "
                                  f"0..{NUM_CLASSES - 1}")
        yield number, source, value


def load(data_dir, split, *, spec, cache_dir, max_length=2000, rebuild=False):
    """Returns the tokenised split as a CachedSplit of {'inputs': int32[max_length], 'targets'}.

    Expressions longer than max_length are cut, and counted in the split's summary (the LRA data
    never is: lengths are < 2000).
    """
    path = split_path(data_dir, split)

    def rows():
        for _, source, target in read_rows(path):
            yield {"inputs": tokenize(source)}, target  # cut (and counted) by the cache

    return cache.build_or_load(
        spec=spec, split=split, options={"max_length": max_length}, source_paths=[path],
        cache_dir=cache_dir, fields={"inputs": (max_length, np.uint8)},
        num_examples=lambda: files.count_rows(path, read_rows), rows=rows, rebuild=rebuild,
        notes=lambda: files.cut_short([path]))
