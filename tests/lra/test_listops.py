"""ListOps: generator -> TSV -> reader round trip, tokenisation, labels, bad input."""
import random
import re

import numpy as np
import pytest

from lra.data import DataError, TASKS, listops, load_split
from lra.generate import listops as gen


def _value(tokens):
    """Recomputes an expression's value from its tokens (independent stack evaluator)."""
    stack = []
    for tok in tokens:
        if tok.startswith("["):
            stack.append([tok])
        elif tok == "X":
            op, *values = stack.pop()
            if op == "[MIN":
                v = min(values)
            elif op == "[MAX":
                v = max(values)
            elif op == "[MED":
                v = sorted(values)[(len(values) - 1) // 2] if len(values) % 2 else \
                    (sorted(values)[len(values) // 2 - 1] + sorted(values)[len(values) // 2]) // 2
            else:
                v = sum(values) % 10
            if stack:
                stack[-1].append(v)
            else:
                return v
        else:
            stack[-1].append(int(tok))
    raise AssertionError("unbalanced expression")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("listops")
    gen.write(str(out), num=50, seed=3, min_length=20, max_length=80)
    return str(out)


def test_vocabulary_is_fixed_and_sorted():
    assert listops.SYMBOLS == tuple("0123456789") + ("X", "[MAX", "[MED", "[MIN", "[SM")
    assert listops.VOCAB["0"] == 1 and listops.VOCAB["[SM"] == 15 and listops.OOV_ID == 16
    assert TASKS["listops"].vocab_size == 17


def _symbols(ids):
    """The symbols of ids (padding dropped, out-of-vocabulary as `<unk>`)."""
    return [listops.SYMBOLS[i - 1] if 0 < i <= len(listops.SYMBOLS) else "<unk>"
            for i in ids if i != listops.PAD_ID]


def test_generator_lengths_labels_and_rendering():
    data = gen.generate(40, seed=0, min_length=20, max_length=80)
    assert len({s for s, _ in data}) == 40
    for source, target in data:
        ids = listops.tokenize(source)
        words = _symbols(ids)
        assert 20 < len(ids) < 80
        assert _value(words) == target
        assert source.count("(") == source.count(")")
        assert re.match(r"^\( \( ", source) and source.endswith(" ] )")


def test_token_count_equals_tree_length():
    rng = random.Random(1)
    for _ in range(200):
        tree, length = gen.generate_tree(rng)
        assert len(listops.tokenize(gen.render(tree))) == length


def test_median_truncates_like_numpy():
    assert gen.evaluate(("[MED", [1, 2])) == 1
    assert gen.evaluate(("[MED", [3, 8, 1, 9])) == 5
    assert gen.evaluate(("[SM", [9, 9, 5])) == 3


def test_generator_is_seeded():
    assert gen.generate(5, seed=7, min_length=10, max_length=50) == \
        gen.generate(5, seed=7, min_length=10, max_length=50)


def test_round_trip_and_cache(data_dir):
    sizes = gen.split_sizes(50)
    rows = list(listops.read_rows(listops.split_path(data_dir, "train")))
    for split, n in zip(["train", "validation", "test"], sizes):
        source = load_split("listops", split, data_dir, max_length=96)
        assert len(source) == n
    source = load_split("listops", "train", data_dir, max_length=96)
    for i, (_, text, target) in enumerate(rows):
        ex = source[i]
        ids = listops.tokenize(text)
        assert ex["inputs"].dtype == np.int32 and ex["inputs"].shape == (96,)
        np.testing.assert_array_equal(ex["inputs"][:len(ids)], ids)
        assert not ex["inputs"][len(ids):].any()
        assert ex["targets"] == target
    again = load_split("listops", "train", data_dir, max_length=96)
    assert again.path == source.path
    other = load_split("listops", "train", data_dir, max_length=64)
    assert other.path != source.path


def test_unknown_symbol_is_oov():
    np.testing.assert_array_equal(listops.tokenize("( ( [FIRST 3 ) ] )"), [16, 4, 11])


def _write(tmp_path, text):
    folder = tmp_path / "listops-1000"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("basic_train.tsv", "basic_val.tsv", "basic_test.tsv"):
        (folder / name).write_text(text)
    return str(tmp_path)


def test_missing_directory_says_how_to_get_data(tmp_path):
    with pytest.raises(DataError, match=r"listops-1000.*python -m lra.generate --task=listops"):
        load_split("listops", "train", str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        load_split("listops", "train", str(tmp_path / "nope"))


@pytest.mark.parametrize("row, message", [
    ("( [MAX 1 2 ] )", "line 2: expected 2 tab-separated fields"),
    ("( [MAX 1 2 ] )\t11", "line 2: field Target is 11, outside 0..9"),
    ("( [MAX 1 2 ] )\tseven", "line 2: field Target is 'seven', not an integer"),
])
def test_malformed_rows_name_file_and_line(tmp_path, row, message):
    data_dir = _write(tmp_path, f"Source\tTarget\n{row}\n")
    with pytest.raises(DataError, match=re.escape("basic_train.tsv, " + message)):
        load_split("listops", "train", data_dir)


def test_nothing_written_in_data_dir_but_cache(tmp_path):
    data_dir = _write(tmp_path, "Source\tTarget\n( ( [MAX 1 ) 2 ] )\t2\n")
    load_split("listops", "train", data_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lra_cache", "listops-1000"]
    assert sorted(p.name for p in (tmp_path / "listops-1000").iterdir()) == [
        "basic_test.tsv", "basic_train.tsv", "basic_val.tsv"]


def test_cached_split_pickles_by_path(data_dir):
    import pickle

    source = load_split("listops", "test", data_dir, max_length=96)
    blob = pickle.dumps(source)
    assert len(blob) < 1000
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again[0]["inputs"], source[0]["inputs"])


def test_rebuild_and_cache_key_follow_the_source(data_dir, tmp_path):
    import os
    import shutil

    shutil.copytree(data_dir, tmp_path / "copy", ignore=shutil.ignore_patterns(".lra_cache"))
    copy = str(tmp_path / "copy")
    first = load_split("listops", "test", copy)
    assert load_split("listops", "test", copy, rebuild=True).path == first.path
    path = os.path.join(copy, "listops-1000", "basic_test.tsv")
    with open(path, "a") as f:
        f.write("( ( [MAX 1 ) 2 ] )\t2\n")
    changed = load_split("listops", "test", copy)
    assert changed.path != first.path and len(changed) == len(first) + 1
    np.testing.assert_array_equal(changed[-1]["inputs"][:4], listops.tokenize("( ( [MAX 1 ) 2 ] )"))


def test_unknown_options_are_refused(data_dir):
    with pytest.raises(ValueError, match=r"image: unknown reader option\(s\) \['max_length'\]"):
        load_split("image", "train", data_dir, max_length=1024)
    with pytest.raises(ValueError, match=r"accepts \['max_length'\]"):
        load_split("listops", "train", data_dir, difficulty="x")
    with pytest.raises(ValueError, match="unknown LRA task 'imdb'"):
        load_split("imdb", "train", data_dir)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_split("listops", "val", data_dir)


def test_unwritable_cache_dir_is_explained(data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"cannot write the token cache .* pass cache_dir="):
        load_split("listops", "train", data_dir, cache_dir=str(blocker / "cache"), rebuild=True)
