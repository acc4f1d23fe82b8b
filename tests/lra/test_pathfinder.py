"""Pathfinder / Path-X: generator -> release files -> reader, labels, markers, rendering,
statistics, bad input."""
import logging
import math
import os
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lra.data import DataError, load_split, make_batches
from lra.data import pathfinder as reader
from lra.generate import pathfinder as gen
from spade_jax.runtime.errors import PathError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pf"))
    gen.write(out, num=40, seed=0, image_size=32, per_folder=20, processes=1)
    return out


@pytest.mark.parametrize("size, trials", [(32, 20), (128, 6)])
def test_markers_on_the_ends_of_one_snake_iff_label_is_one(size, trials):
    """Label 1: the markers sit on the start (the seed paddle's tail) and the end (the last
    paddle's start) of one target snake; label 0: on the start of one and the end of the other.
    Targets have contour_length paddles, distractors distractor_length; a path is a line of
    dashes, consecutive paddles paddle_length + 2 margin apart (up to the rounding of both ends
    to whole pixels)."""
    p = gen.params_for(size)
    rng = np.random.default_rng(0)
    for i in range(trials):
        label = i % 2
        s = gen.sample(p, label, rng)
        img = s.image
        assert img.shape == (size, size) and img.dtype == np.uint8 and img.max() == 255
        a, b = s.marker_snakes
        assert {a, b} <= {0, 1} and (a == b) == (label == 1)
        first, last = s.snakes[a][0], s.snakes[b][-1]
        assert s.markers == ((first[1], first[0]), (last[1], last[0]))
        for x, y in s.markers:  # marker disks: contrast 1, the brightest strokes are <= ~1.15
            assert img[y, x] >= 200
        assert [len(snake) for snake in s.snakes[:2]] == [p.contour_length] * 2
        assert all(len(snake) == p.distractor_length for snake in s.snakes[2:])
        assert len(s.snakes) - 2 <= p.num_distractors and s.margin in p.paddle_margins
        step = p.paddle_length + 2 * s.margin
        for snake in s.snakes:
            assert all(img[y, x] > 0 for y, x, _ in snake)  # every paddle is drawn
            for (y0, x0, _), (y1, x1, _) in zip(snake[1:], snake[2:]):
                assert abs(math.hypot(y1 - y0, x1 - x0) - step) <= 2.5


def test_distractors_follow_the_difficulty():
    """As the LRA wrapper: distractors of contour_length // 3 paddles, `distractor_paddles //`
    that many of them (32 px: 20, so curv_baseline 10 x 2, curv_contour_length_14 5 x 4)."""
    shapes = {d: (gen.params_for(32, d).num_distractors, gen.params_for(32, d).distractor_length)
              for d in gen.RELEASE_DIFFICULTIES}
    assert shapes == {"curv_baseline": (10, 2), "curv_contour_length_9": (6, 3),
                      "curv_contour_length_14": (5, 4)}
    assert (gen.params_for(128).num_distractors, gen.params_for(128).distractor_length) == (8, 4)


@pytest.mark.parametrize("size", [16, 32])
def test_easy_difficulty_has_no_distractors_and_bright_markers(size):
    """`easy` (generator only): two target snakes, paths clearly dimmer than the markers."""
    p = gen.params_for(size, "easy")
    assert (p.num_distractors, p.contour_length) == (0, 6)
    assert p.snake_contrast == gen.PRESETS[size].snake_contrast / 2
    rng = np.random.default_rng(1)
    ys, xs = np.mgrid[:size, :size]
    for i in range(30):
        label = i % 2
        s = gen.sample(p, label, rng)
        assert len(s.snakes) == 2 and (s.marker_snakes[0] == s.marker_snakes[1]) == (label == 1)
        near = np.zeros(s.image.shape, bool)
        for x, y in s.markers:
            assert s.image[y, x] >= 220
            near |= np.hypot(xs - x, ys - y) <= p.marker_radius + 2
        assert s.image[~near].max() <= 180  # path pixels away from the markers


def test_16_px_fits_only_short_contours():
    with pytest.raises(ValueError, match="up to 6 paddles.*curv_baseline or easy"):
        gen.params_for(16)


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


def _reference_render(p, drawn):
    """The original's rendering of a drawn image, one full-size canvas per paddle and marker
    (no stamps reused, no windows): each paddle a PIL line of width thickness * a from the
    centre of a (2K * a + 1)-pixel canvas, Lanczos-resampled to 2K + 1 pixels, / 255 * its
    snake's contrast, pasted around its start pixel and clipped; each marker a disk on the
    (N * a)-pixel canvas, resampled to N; the maximum of all, byte-scaled by its maximum."""
    n, a, m = p.image_size, p.antialias_scale, drawn.margin
    k = p.paddle_length + math.ceil(p.paddle_thickness) + m
    image = np.zeros((n + 4 * k, n + 4 * k))
    for i, snake in enumerate(drawn.snakes):
        contrast = p.snake_contrast * (p.paddle_contrast if i < 2 else 1.0)
        for y, x, theta in snake:
            c = k * a
            end = (math.ceil(c + p.paddle_length * a * math.cos(theta)),
                   math.ceil(c + p.paddle_length * a * math.sin(theta)))
            canvas = Image.new("L", (2 * c + 1, 2 * c + 1), 0)
            ImageDraw.Draw(canvas).line([(c, c), end], fill=255,
                                        width=round(p.paddle_thickness * a))
            line = np.asarray(canvas.resize((2 * k + 1,) * 2, Image.Resampling.LANCZOS))
            value = line.astype(np.float32) / np.float32(255) * np.float32(contrast)
            window = image[y + k:y + 3 * k + 1, x + k:x + 3 * k + 1]
            np.maximum(window, value, out=window)
    image = image[2 * k:2 * k + n, 2 * k:2 * k + n]
    fine = np.arange(n * a)
    for x, y in drawn.markers:
        disk = (fine[:, None] - y * a) ** 2 + (fine[None, :] - x * a) ** 2 <= (
            p.marker_radius * a) ** 2
        disk = Image.fromarray((disk * 255).astype(np.uint8)).resize((n, n),
                                                                     Image.Resampling.LANCZOS)
        image = np.maximum(image, np.asarray(disk).astype(np.float32) / np.float32(255))
    return ((image - image.min()) * (255.0 / image.max()) + 0.5).astype(np.uint8)


@pytest.mark.parametrize("size, count", [(32, 12), (64, 2), (128, 4), (256, 1)])
def test_rendering_matches_the_originals_recipe(size, count):
    """The generator's images (paddle stamps reused by orientation, markers on a window) are
    exactly the original's whole-canvas rendering of the same paddles and markers."""
    p = gen.params_for(size)
    rng = np.random.default_rng(size)
    for i in range(count):
        drawn = gen.sample(p, i % 2, rng)
        np.testing.assert_array_equal(drawn.image, _reference_render(p, drawn))


def test_image_stats():
    image = np.zeros((8, 8), np.uint8)
    image[0, 0] = image[1, 1] = 255  # one 8-connected component (diagonal)
    image[5, 5:8] = 10
    stats = gen.image_stats(image)
    assert stats == {"fraction_lit": 5 / 64, "mean": (510 + 30) / 64, "mean_lit": 540 / 5,
                     "components": 2, "saturated": 2}
    assert np.isnan(gen.image_stats(np.zeros((4, 4), np.uint8))["mean_lit"])
    summary = gen.summarize([stats, gen.image_stats(np.zeros((8, 8), np.uint8))])
    assert summary["components"] == (1.0, 1.0) and summary["mean_lit"][0] == 108.0


def test_stats_report_groups_release_folders(data_dir, tmp_path):
    """--stats: one column per difficulty folder (images under imgs/<k>) or plain folder, at
    most `limit` images each, beside the original's values at that size."""
    plain = tmp_path / "plain"
    plain.mkdir()
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(plain / "a.png")
    (plain / "empty.png").write_bytes(b"")  # skipped, as the release's empty file
    table = gen.stats_report([data_dir, str(plain)], limit=30).splitlines()
    root = os.path.join(data_dir, "pathfinder32", "curv_contour_length_14")
    assert table[0] == (f"| statistic (mean per image) | original 32 px | {root} (30 images, 32 px)"
                        f" | {plain} (1 images, 32 px) |")
    assert table[2].startswith("| fraction of pixels > 0 | 0.342 | 0.")
    assert table[2].endswith("| 1.0000 ± nan |") and table[6].endswith("| 1024.00 ± nan |")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(PathError, match="no PNG images there"):
        gen.stats_report([str(tmp_path / "nothing")])
    with pytest.raises(PathError, match="no such folder or file"):
        gen.stats_report([str(tmp_path / "missing")])


def _files(root):
    """{relative path: bytes} of every file under root."""
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
            for d, _, names in os.walk(root) for f in names}


def test_the_files_do_not_depend_on_processes_or_shards(tmp_path, monkeypatch, capsys):
    """Each image has its own seeded generator: one process in folder-sized shards and two
    processes in shards of 5 write the same bytes; the progress bar counts every image."""
    one = gen.write(str(tmp_path / "one"), num=30, seed=3, image_size=16, difficulty="easy",
                    per_folder=12, processes=1)
    assert "30/30" in capsys.readouterr().err
    monkeypatch.setattr(gen, "SHARD", 5)
    two = gen.write(str(tmp_path / "two"), num=30, seed=3, image_size=16, difficulty="easy",
                    per_folder=12, processes=2)
    files = _files(one)
    assert len(files) == 30 + 3 and files == _files(two)
    labels = [list(np.load(os.path.join(one, "metadata", f"{k}.npy"))[:, 3]) for k in range(3)]
    assert [row.count("1") for row in labels] == [6, 6, 3]  # balanced within each folder
    other = gen.write(str(tmp_path / "other"), num=30, seed=4, image_size=16,
                      difficulty="easy", per_folder=12, processes=1)
    assert _files(other) != files
