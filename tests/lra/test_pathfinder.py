"""Pathfinder / Path-X: generator -> release files -> reader, labels, markers, bad input."""
import logging
import os
import re

import numpy as np
import pytest
from PIL import Image

from lra.data import DataError, load_split, make_batches
from lra.data import pathfinder as reader
from lra.generate import pathfinder as gen


def _component(on, x, y):
    """The 4-connected component of boolean image `on` holding pixel (x, y)."""
    seed = np.zeros_like(on)
    seed[int(y), int(x)] = True
    seed &= on
    while True:
        grown = seed.copy()
        grown[1:] |= seed[:-1]
        grown[:-1] |= seed[1:]
        grown[:, 1:] |= seed[:, :-1]
        grown[:, :-1] |= seed[:, 1:]
        grown &= on
        if (grown == seed).all():
            return seed
        seed = grown


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pf"))
    gen.write(out, num=40, seed=0, image_size=32, per_folder=20, processes=1)
    return out


@pytest.mark.parametrize("size, trials, agree", [(32, 40, 0.9), (128, 10, 1.0)])
def test_markers_joined_iff_label_is_one(size, trials, agree):
    p = gen.params_for(size)
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(trials):
        label = i % 2
        img, (m1, m2) = gen.make_image(p, label, rng)
        assert img.shape == (size, size) and img.dtype == np.uint8 and img.max() == 255
        for x, y in (m1, m2):  # the markers are drawn at full brightness (byte-scaled)
            assert img[int(y), int(x)] >= 128
        joined = _component(img > 0, *m1)[int(m2[1]), int(m2[0])]
        hits += joined == (label == 1)
    assert hits >= agree * trials


@pytest.mark.parametrize("size", [16, 32])
def test_easy_difficulty_has_no_distractors_and_bright_markers(size):
    """`easy` (generator only): two target snakes, paths clearly dimmer than the markers."""
    p = gen.params_for(size, "easy")
    assert (p.num_distractors, p.contour_length) == (0, 6)
    assert p.contrast == gen.PRESETS[size].contrast / 2
    rng = np.random.default_rng(1)
    hits, trials = 0, 30
    ys, xs = np.mgrid[:size, :size] + 0.5
    for i in range(trials):
        label = i % 2
        img, markers = gen.make_image(p, label, rng)
        near = np.zeros(img.shape, bool)
        for x, y in markers:
            assert img[int(y), int(x)] >= 220
            near |= np.hypot(xs - x, ys - y) <= p.marker_radius + 1
        assert img[~near].max() <= 180  # path pixels away from the markers
        joined = _component(img > 0, *markers[0])[int(markers[1][1]), int(markers[1][0])]
        hits += joined == (label == 1)
    assert hits >= 0.9 * trials


def test_unknown_difficulty_lists_the_choices():
    with pytest.raises(ValueError, match="easy"):
        gen.params_for(32, "curv_contour_length_20")


def test_release_layout_and_balanced_labels(data_dir):
    root = os.path.join(data_dir, "pathfinder32", "curv_contour_length_14")
    assert sorted(os.listdir(os.path.join(root, "metadata"))) == ["0.npy", "1.npy"]
    with open(os.path.join(root, "metadata", "0.npy"), "rb") as f:
        assert f.read(6) == b"\x93NUMPY"
    rows = np.load(os.path.join(root, "metadata", "1.npy"))
    assert rows.shape == (20, 11) and rows[0, 0] == "imgs/1"
    assert (rows[:, 3] == "1").sum() == 10
    examples = reader.list_examples(root)
    assert len(examples) == 40 and sum(y for _, y in examples) == 20
    with Image.open(examples[0][0]) as image:
        assert image.mode == "L" and image.size == (32, 32)


def test_round_trip_split_and_tokens(data_dir):
    root = os.path.join(data_dir, "pathfinder32", "curv_contour_length_14")
    examples = reader.list_examples(root)
    sizes = {s: len(load_split("pathfinder", s, data_dir)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 32, "validation": 4, "test": 4}
    test = load_split("pathfinder", "test", data_dir)
    for i, (path, label) in enumerate(examples[36:]):
        ex = test[i]
        assert ex["inputs"].shape == (1024,) and ex["inputs"].dtype == np.int32
        np.testing.assert_array_equal(ex["inputs"], np.asarray(Image.open(path)).reshape(-1))
        assert ex["targets"] == label
    batch = next(iter(make_batches(test, batch_size=4, seed=0)))
    assert batch["mask"].all() and batch["inputs"].shape == (4, 1024)


def test_text_metadata_and_empty_image(tmp_path, caplog):
    out = str(tmp_path)
    gen.write(out, num=10, seed=1, image_size=32, per_folder=10, processes=1)
    root = os.path.join(out, "pathfinder32", "curv_contour_length_14")
    rows = np.load(os.path.join(root, "metadata", "0.npy"))
    with open(os.path.join(root, "metadata", "0.npy"), "w") as f:  # the release's text form
        f.writelines(" ".join(row) + "\n" for row in rows)
    open(os.path.join(root, "imgs", "0", "sample_1.png"), "wb").close()
    with caplog.at_level(logging.WARNING):
        train = load_split("pathfinder", "train", out)
    assert len(train) == 7
    assert re.search(r"skipped 1 empty image file\(s\) \(first: .*sample_1.png\)", caplog.text)


def _one_image_dir(tmp_path, metadata_text, image=None):
    root = tmp_path / "pathfinder32" / "curv_contour_length_14"
    (root / "metadata").mkdir(parents=True)
    (root / "imgs" / "0").mkdir(parents=True)
    Image.fromarray(image if image is not None else np.zeros((32, 32), np.uint8)).save(
        root / "imgs" / "0" / "sample_0.png")
    (root / "metadata" / "0.npy").write_bytes(metadata_text)
    return str(tmp_path)


@pytest.mark.parametrize("metadata, image, message", [
    (b"imgs/0 sample_0.png 0 2\n", None, r"0.npy, line 1: field 3 \(label\) is '2'"),
    (b"imgs/0 sample_0.png\n", None, r"0.npy, line 1: expected at least 4 fields"),
    (b"imgs/0 sample_9.png 0 1\n", None, r"0.npy, line 1: image .*sample_9.png does not exist"),
    (b"\x93NUMPY garbage", None, r"0.npy: unreadable metadata file"),
    (b"imgs/0 sample_0.png 0 1\n" * 10, np.zeros((16, 32), np.uint8),
     r"sample_0.png: image is 32x16 px, expected 32x32"),
])
def test_bad_input_names_file_and_line(tmp_path, metadata, image, message):
    data_dir = _one_image_dir(tmp_path, metadata, image)
    with pytest.raises(DataError, match=message):
        load_split("pathfinder", "train", data_dir)


def test_missing_folder_says_how_to_generate(tmp_path):
    with pytest.raises(DataError, match=r"pathfinder128.*--task=pathx"):
        load_split("pathx", "train", str(tmp_path))


def test_grid_png(data_dir, tmp_path):
    root = os.path.join(data_dir, "pathfinder32", "curv_contour_length_14")
    path = gen.save_grid(root, str(tmp_path / "grid.png"), count=8, columns=4)
    with Image.open(path) as grid:
        assert grid.size[0] == 4 * (128 + 4)


def _reference_render(p, segments, markers):
    """Brute force over the whole canvas: per item, the fraction of sub-samples within its
    radius, times its contrast, clipped; maximum over items; byte-scaled."""
    n, a = p.image_size, p.antialias_scale
    sub = (np.arange(n * a) + 0.5) / a
    sx, sy = sub[None, :], sub[:, None]
    img = np.zeros((n, n))
    items = [(s[:4], p.paddle_thickness / 2, s[4]) for s in segments]
    items += [((x, y, x, y), p.marker_radius, 1.0) for x, y in markers]
    for (x0, y0, x1, y1), radius, value in items:
        d = gen._segment_distance(sx, sy, x0, y0, x1, y1)
        cover = (d <= radius).reshape(n, a, n, a).mean((1, 3))
        img = np.maximum(img, np.clip(cover * value, 0, 1))
    return (img.astype(np.float32) * np.float32(255.0 / img.max())).astype(np.uint8)


@pytest.mark.parametrize("size", [32, 128, 256])
def test_rendering_matches_brute_force(size):
    """The boxed, vectorised renderer draws exactly what a whole-canvas renderer draws."""
    p = gen.params_for(size)
    rng = np.random.default_rng(size)
    segments = []
    for _ in range(6):
        x0, y0 = rng.uniform(3, size - 3, 2)
        theta = rng.uniform(-np.pi, np.pi)
        segments.append((x0, y0, x0 + p.paddle_length * np.cos(theta),
                         y0 + p.paddle_length * np.sin(theta), rng.choice([0.9, 2.0])))
    markers = [tuple(rng.uniform(3, size - 3, 2)) for _ in range(2)]
    np.testing.assert_array_equal(gen._render(p, segments, markers),
                                  _reference_render(p, segments, markers))
