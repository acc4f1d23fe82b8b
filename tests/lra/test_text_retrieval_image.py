"""Text, Retrieval and Image readers and their offline stand-ins."""
import os

import numpy as np
import pytest

from lra.data import DataError, TASKS, load_split
from lra.data import image, retrieval, text
from lra.generate import standins


# ---- byte tokenisation ----------------------------------------------------------------------

def test_byte_ids_are_bytes_plus_one_with_10000_byte_cut():
    ids = text.encode("aé\x00".encode(), 10)
    np.testing.assert_array_equal(ids, [ord("a") + 1, 0xC3 + 1, 0xA9 + 1, 1])
    long = bytes(range(256)) * 50  # 12,800 bytes
    assert len(text.encode(long, 20_000)) == 10_000
    assert len(text.encode(long, 4000)) == 4000
    assert text.decode(np.concatenate([text.encode(b"hello", 8), [0, 0]])) == b"hello"
    assert TASKS["text"].vocab_size == 257 and TASKS["retrieval"].dual


# ---- text --------------------------------------------------------------------------------------

def _imdb(tmp_path, reviews):
    for split in ("train", "test"):
        for name, body in reviews.items():
            folder = tmp_path / "aclImdb" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "0_1.txt").write_bytes(body)
    return str(tmp_path)


def test_text_reader_labels_and_strip(tmp_path):
    data_dir = _imdb(tmp_path, {"neg": b"  bad film\n", "pos": b"good film "})
    train = load_split("text", "train", data_dir, max_length=16)
    assert len(train) == 2
    assert text.decode(train[0]["inputs"]) == b"bad film" and train[0]["targets"] == 0
    assert text.decode(train[1]["inputs"]) == b"good film" and train[1]["targets"] == 1
    val = load_split("text", "validation", data_dir, max_length=16)
    assert val.path != train.path and len(val) == 2  # test doubles as validation, as in LRA
    assert load_split("text", "train", data_dir).arrays["inputs"].shape == (2, 4096)


def test_text_standin_is_learnable_from_content(tmp_path):
    standins.write_text(str(tmp_path), num=20, seed=0)
    train = load_split("text", "train", str(tmp_path), max_length=16384)
    assert len(train) == 20 and sum(train[i]["targets"] for i in range(20)) == 10
    for i in range(20):
        review = text.decode(train[i]["inputs"]).decode()
        praise = any(w in review for w in standins._PRAISE)
        complaint = any(w in review for w in standins._COMPLAINTS)
        assert (praise, complaint) == ((True, False) if train[i]["targets"] else (False, True))


def test_text_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"aclImdb.*--task=text"):
        load_split("text", "train", str(tmp_path))
    (tmp_path / "aclImdb" / "train" / "pos").mkdir(parents=True)
    with pytest.raises(DataError, match=r"train/neg is missing"):
        load_split("text", "train", str(tmp_path))


# ---- retrieval ---------------------------------------------------------------------------------

def _aan(tmp_path, body):
    folder = tmp_path / "tsv_data"
    folder.mkdir(exist_ok=True)
    for split in ("train", "eval", "test"):
        (folder / f"new_aan_pairs.{split}.tsv").write_bytes(body)
    return str(tmp_path)


def test_retrieval_reader_float_labels_and_literal_quotes(tmp_path):
    data_dir = _aan(tmp_path, b'1.0\ta\tb\t"quoted" text\tsecond\n0\tc\td\tx\ty"\n')
    split = load_split("retrieval", "validation", data_dir, max_length=32)
    assert len(split) == 2
    assert text.decode(split[0]["inputs1"]) == b'"quoted" text'
    assert text.decode(split[0]["inputs2"]) == b"second" and split[0]["targets"] == 1
    assert text.decode(split[1]["inputs2"]) == b'y"' and split[1]["targets"] == 0


@pytest.mark.parametrize("row, message", [
    (b"1\ta\tb\tonly four\n", "line 1: expected 5 tab-separated fields"),
    (b"2.0\ta\tb\tx\ty\n", "line 1: field label is '2.0', expected 0 or 1"),
    (b"yes\ta\tb\tx\ty\n", "line 1: field label is 'yes'"),
])
def test_retrieval_bad_rows(tmp_path, row, message):
    data_dir = _aan(tmp_path, row)
    with pytest.raises(DataError, match="new_aan_pairs.train.tsv, " + message):
        load_split("retrieval", "train", data_dir)


def test_retrieval_standin_positives_share_a_document(tmp_path):
    standins.write_retrieval(str(tmp_path), num=30, seed=0)
    docs = standins.documents(min_chars=1000)
    path = retrieval.split_path(str(tmp_path), "train")
    rows = list(retrieval.read_rows(path))
    assert len(rows) == 24 and sum(r[1] for r in rows) == 12
    for _, label, t1, t2 in rows:
        owners1 = {k for k, d in docs.items() if t1.decode() in d}
        owners2 = {k for k, d in docs.items() if t2.decode() in d}
        assert bool(owners1 & owners2) == bool(label)
    train = load_split("retrieval", "train", str(tmp_path))
    assert train[0]["inputs1"].shape == (4000,)


# ---- image -------------------------------------------------------------------------------------

def test_grayscale_formula_on_known_colours():
    rgb = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                    [128, 128, 128]], np.uint8)
    # uint8((0.2989 r + 0.5870 g + 0.1140 b) / 255 * 255.5), computed in float32 as TensorFlow.
    np.testing.assert_array_equal(image.grayscale(rgb), [255, 0, 76, 149, 29, 128])


def test_cifar_records_round_trip(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    labels, pixels = [], []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rgb = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        lab = rng.integers(0, 10, 4, dtype=np.uint8)
        records = np.concatenate([lab[:, None], rgb.transpose(0, 3, 1, 2).reshape(4, -1)], 1)
        records.tofile(folder / name)
        labels.append(lab)
        pixels.append(image.grayscale(rgb).reshape(4, -1))
    train = load_split("image", "train", str(tmp_path))
    val = load_split("image", "validation", str(tmp_path))
    test = load_split("image", "test", str(tmp_path))
    assert (len(train), len(val), len(test)) == (18, 2, 4)
    all_train = np.concatenate(pixels[:5])
    np.testing.assert_array_equal(val[1]["inputs"], all_train[19])
    assert val[1]["targets"] == np.concatenate(labels[:5])[19]
    np.testing.assert_array_equal(test[3]["inputs"], pixels[5][3])
    assert train[0]["inputs"].dtype == np.int32


def test_cifar_bad_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)]:
        (folder / name).write_bytes(bytes([3]) + bytes(3072))
    with pytest.raises(DataError, match=r"test_batch.bin is missing"):
        load_split("image", "test", str(tmp_path))
    (folder / "data_batch_2.bin").write_bytes(bytes(100))
    with pytest.raises(DataError, match=r"data_batch_2.bin: size 100 bytes"):
        load_split("image", "train", str(tmp_path))
    (folder / "data_batch_2.bin").write_bytes(bytes([12]) + bytes(3072))
    with pytest.raises(DataError, match=r"data_batch_2.bin, record 0: label 12 outside 0..9"):
        load_split("image", "train", str(tmp_path))


def test_image_standin_round_trip(tmp_path):
    standins.write_image(str(tmp_path), num=60, seed=0)
    assert sorted(os.listdir(tmp_path / "cifar-10-batches-bin"))[-1] == "test_batch.bin"
    test = load_split("image", "test", str(tmp_path))
    assert len(test) == 10 and all(0 <= test[i]["targets"] < 10 for i in range(10))
    assert test[0]["inputs"].shape == (1024,) and test[0]["inputs"].max() <= 255
