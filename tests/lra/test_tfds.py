"""The optional TFDS branches (imdb_reviews, cifar10) with a stand-in tensorflow_datasets module:
tensorflow_datasets is imported only when a prepared TFDS folder is used."""
import subprocess
import sys
import types

import numpy as np

from lra.data import image, load_split, text


def test_importing_lra_data_does_not_import_tfds_or_tensorflow():
    code = ("import sys, lra.data, lra.generate.__main__; "
            "print('tensorflow_datasets' in sys.modules or 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _fake_tfds(monkeypatch, sources):
    calls = []

    def data_source(name, split, data_dir):
        calls.append((name, split, data_dir))
        return sources[name, split]

    monkeypatch.setitem(sys.modules, "tensorflow_datasets",
                        types.SimpleNamespace(data_source=data_source))
    return calls


def test_text_from_prepared_tfds(tmp_path, monkeypatch):
    (tmp_path / "imdb_reviews" / "plain_text").mkdir(parents=True)
    reviews = [{"text": b" good ", "label": 1}, {"text": b"bad", "label": 0}]
    calls = _fake_tfds(monkeypatch, {("imdb_reviews", "test"): reviews})
    split = load_split("text", "validation", str(tmp_path), max_length=8)
    assert calls == [("imdb_reviews", "test", str(tmp_path))]
    assert [text.decode(split[i]["inputs"]) for i in range(2)] == [b"good", b"bad"]
    assert [split[i]["targets"] for i in range(2)] == [1, 0]


def test_image_from_prepared_tfds(tmp_path, monkeypatch):
    (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)
    rng = np.random.default_rng(0)
    records = [{"image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "label": i % 10}
               for i in range(20)]
    _fake_tfds(monkeypatch, {("cifar10", "train"): records})
    val = load_split("image", "validation", str(tmp_path))
    assert len(val) == 2 and val[1]["targets"] == 19 % 10
    np.testing.assert_array_equal(val[1]["inputs"], image.grayscale(records[19]["image"]).ravel())
