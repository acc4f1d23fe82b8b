"""Pathfinder / Path-X generator: the snakes of drewlinsley/pathfinder (`snakes2.py`) with the LRA
parameters, vectorised in numpy and run in parallel processes.

An image holds two target snakes whose first paddles are seeded `seed_distance` apart, each of
`contour_length` paddles (a seed paddle then contour_length - 1 extensions, each turning from the
previous direction by at most pi / (3 * continuity)); then `num_distractors` distractor snakes
of `distractor_length` paddles; then two marker disks. Label 1: the markers sit on both ends of
target snake A (one path joins them); label 0: on the start of A and the end of B. A paddle is
a segment of `paddle_length` px and `paddle_thickness` px, anti-aliased by rendering at
`antialias_scale` sub-samples per pixel side and averaging; an occupancy mask dilated by
`paddle_margin` px keeps paddles of different snakes (and non-adjacent paddles of one snake)
apart. Paddle intensity = clip(coverage * contrast, 0, 1), markers 1; the image is then
byte-scaled to 0..255 as the old scipy `imsave` did (max -> 255), which keeps markers visible.

Files, as the release: `<out>/pathfinder<N>/<difficulty>/imgs/<k>/sample_<j>.png` (8-bit gray) and
`<out>/pathfinder<N>/<difficulty>/metadata/<k>.npy` (binary numpy, one row per image: subfolder,
file name, image index, label, continuity, contour_length, distractor_length, paddle_length,
paddle_thickness, paddle_margin, number of contrasts).
"""
import dataclasses
import math
import multiprocessing
import os

import numpy as np
from PIL import Image, ImageDraw

# The release's difficulty folders: each sets only the contour length (paddles per target snake).
RELEASE_DIFFICULTIES = {"curv_baseline": 6, "curv_contour_length_9": 9,
                        "curv_contour_length_14": 14}
# Generator-only difficulties (not in the release): parameter overrides on the size's preset.
# `easy`: curv_baseline's short contours with no distractor snakes, and paths drawn at about half
# the markers' brightness, so that the markers stand out and the only question left is whether
# one path joins them. It exists so that a few CPU minutes can show Pathfinder learning.
GENERATED_DIFFICULTIES = {
    "easy": dict(contour_length=6, num_distractors=0, contrast_scale=0.5),
}
DIFFICULTIES = sorted([*RELEASE_DIFFICULTIES, *GENERATED_DIFFICULTIES])


@dataclasses.dataclass(frozen=True)
class SnakeParams:
    """Generator parameters for one image size (see PRESETS for the LRA values)."""

    image_size: int
    paddle_margin: float
    seed_distance: float
    marker_radius: float
    paddle_length: float
    paddle_thickness: float
    continuity: float
    num_distractors: int
    distractor_length: int
    contrast: float
    contour_length: int = 14
    antialias_scale: int = 4


PRESETS = {
    # 16 px is not in LRA: the 32 px values at half scale, for CPU runs (markers stand out only
    # with the `easy` difficulty's dimmer paths).
    16: SnakeParams(16, paddle_margin=1, seed_distance=4, marker_radius=1.0, paddle_length=1.5,
                    paddle_thickness=0.5, continuity=1.0, num_distractors=2,
                    distractor_length=3, contrast=2.0),
    32: SnakeParams(32, paddle_margin=1, seed_distance=7, marker_radius=1.5, paddle_length=2,
                    paddle_thickness=0.5, continuity=1.0, num_distractors=5,
                    distractor_length=4, contrast=2.0),
    64: SnakeParams(64, paddle_margin=1, seed_distance=12, marker_radius=2, paddle_length=3,
                    paddle_thickness=1.0, continuity=1.4, num_distractors=6,
                    distractor_length=4, contrast=1.0),
    128: SnakeParams(128, paddle_margin=2, seed_distance=20, marker_radius=3, paddle_length=5,
                     paddle_thickness=1.5, continuity=1.8, num_distractors=8,
                     distractor_length=4, contrast=0.9),
    256: SnakeParams(256, paddle_margin=3, seed_distance=40, marker_radius=5, paddle_length=10,
                     paddle_thickness=2.5, continuity=1.8, num_distractors=8,
                     distractor_length=4, contrast=0.9),
}

_CANDIDATES = 8  # turning angles tried at once per extension
_SEED_TRIES = 50


class _Failed(Exception):
    """A target snake could not be placed; the image is started again."""


def _segment_distance(px, py, x0, y0, x1, y1):
    """Distance from points (px, py) (any shape, broadcast) to segments (x0, y0)-(x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    t = ((px - x0) * dx + (py - y0) * dy) / np.maximum(dx * dx + dy * dy, 1e-12)
    t = np.minimum(np.maximum(t, 0.0), 1.0)
    return np.hypot(px - (x0 + t * dx), py - (y0 + t * dy))


class _Canvas:
    """Occupancy bookkeeping and snake growth for one image.

    `occ` is the (N + 2R, N + 2R) occupancy (dilated by paddle_margin) of committed paddles and
    reserved marker places, padded by R on every side so that the (G, G) box (G = 2R + 1) around
    any point of the image is a plain slice.
    """

    def __init__(self, p, rng):
        self.p, self.rng = p, rng
        n = p.image_size
        self.r = int(math.ceil(p.paddle_length + p.paddle_thickness + p.paddle_margin
                               + p.marker_radius)) + 2
        self.occ = np.zeros((n + 2 * self.r, n + 2 * self.r), bool)
        self.grid = np.arange(-self.r, self.r + 1) + 0.5  # pixel-centre offsets from floor(x)
        self.segments = []  # (x0, y0, x1, y1, contrast)
        self.window = 1 + int(math.ceil((p.paddle_thickness + p.paddle_margin + 1)
                                        / p.paddle_length))
        self.touch = p.paddle_thickness / 2 + 0.5
        self.keep = p.paddle_thickness / 2 + p.paddle_margin + 1.0

    def _box(self, x, y):
        """(occupancy view (G, G), pixel-centre xs (G,), ys (G,)) of the box around (x, y)."""
        ix, iy = int(math.floor(x)), int(math.floor(y))
        g = 2 * self.r + 1
        return self.occ[iy:iy + g, ix:ix + g], ix + self.grid, iy + self.grid

    def _fits(self, x, y, thetas):
        """(index of the first angle whose paddle from (x, y) fits or -1, end xs, end ys)."""
        p, n = self.p, self.p.image_size
        x1 = x + p.paddle_length * np.cos(thetas)
        y1 = y + p.paddle_length * np.sin(thetas)
        ok = (x1 >= 1.0) & (x1 <= n - 1.0) & (y1 >= 1.0) & (y1 <= n - 1.0)
        occ, cx, cy = self._box(x, y)
        d = _segment_distance(cx[None, None, :], cy[None, :, None], x, y,
                              x1[:, None, None], y1[:, None, None])
        hit = ((d <= self.touch) & occ).any(axis=(1, 2))
        good = np.flatnonzero(ok & ~hit)
        return (int(good[0]), x1, y1) if len(good) else (-1, x1, y1)

    def _commit(self, seg):
        """Marks the dilated pixels of segment (x0, y0, x1, y1) occupied."""
        x0, y0, x1, y1 = seg
        occ, cx, cy = self._box(x0, y0)
        occ |= _segment_distance(cx[None, :], cy[:, None], x0, y0, x1, y1) <= self.keep

    def reserve_disk(self, x, y, radius):
        """Marks the pixels within `radius` (+ paddle_margin) of (x, y) occupied (markers)."""
        occ, cx, cy = self._box(x, y)
        occ |= np.hypot(cx[None, :] - x, cy[:, None] - y) <= radius + self.p.paddle_margin + 0.5

    def snake(self, num_paddles, contrast, start=None, required=True):
        """Grows one snake; returns its (start, end) points, or None if it could not be placed.

        start: the seed point (else random). A required snake that fails raises _Failed.
        """
        p, rng, n = self.p, self.rng, self.p.image_size
        for _ in range(_SEED_TRIES):
            x, y = start if start is not None else rng.uniform(1.0, n - 1.0, size=2)
            k, xs, ys = self._fits(x, y, rng.uniform(-np.pi, np.pi, _CANDIDATES))
            if k >= 0:
                break
            if start is not None:
                break
        else:
            k = -1
        if k < 0:
            if required:
                raise _Failed
            return None
        pending = [(x, y, xs[k], ys[k])]
        theta = math.atan2(ys[k] - y, xs[k] - x)
        origin = (x, y)
        max_turn = np.pi / (3 * p.continuity)
        for _ in range(num_paddles - 1):
            x, y = pending[-1][2], pending[-1][3]
            thetas = theta + rng.uniform(-max_turn, max_turn, _CANDIDATES)
            k, xs, ys = self._fits(x, y, thetas)
            if k < 0:
                if required:
                    raise _Failed
                break
            pending.append((x, y, xs[k], ys[k]))
            theta = thetas[k]
            if len(pending) > self.window:
                self._commit(pending[-self.window - 1])
        for seg in pending[-self.window - 1:]:
            self._commit(seg)
        self.segments += [seg + (contrast,) for seg in pending]
        return origin, (pending[-1][2], pending[-1][3])


def _render(p, segments, markers):
    """The byte-scaled uint8 (N, N) image of segments (x0, y0, x1, y1, contrast) and marker
    centres, anti-aliased by averaging antialias_scale**2 sub-samples per pixel."""
    n, a = p.image_size, p.antialias_scale
    img = np.zeros((n, n), np.float32)

    def splat(x0, y0, x1, y1, radius, value):
        """Draws capsules (segments thickened by radius) with intensities value; all (S,)."""
        # Each box starts 1 px before min(x) - radius and spans the segment (at most
        # paddle_length per axis) plus 2 * radius plus 2 px.
        side = int(math.ceil(p.paddle_length + 2 * float(radius.max()))) + 3
        ox = np.floor(np.minimum(x0, x1) - radius).astype(int)[:, None] - 1
        oy = np.floor(np.minimum(y0, y1) - radius).astype(int)[:, None] - 1
        sub = (np.arange(side * a) + 0.5) / a  # sub-sample offsets in px
        sx = ox[:, None, :] + sub[None, None, :]  # (S, 1, side*a)
        sy = oy[:, :, None] + sub[None, :, None]  # (S, side*a, 1)
        d = _segment_distance(sx, sy, x0[:, None, None], y0[:, None, None],
                              x1[:, None, None], y1[:, None, None])
        cover = (d <= radius[:, None, None]).reshape(len(x0), side, a, side, a).mean((2, 4))
        val = np.clip(cover * value[:, None, None], 0, 1).astype(np.float32)
        cols = ox[:, None, :] + np.arange(side)[None, None, :]
        rows = oy[:, :, None] + np.arange(side)[None, :, None]
        cols = np.broadcast_to(cols, val.shape)
        rows = np.broadcast_to(rows, val.shape)
        inside = (cols >= 0) & (cols < n) & (rows >= 0) & (rows < n) & (val > 0)
        np.maximum.at(img, (rows[inside], cols[inside]), val[inside])

    seg = np.array(segments, np.float64)
    splat(seg[:, 0], seg[:, 1], seg[:, 2], seg[:, 3],
          np.full(len(seg), p.paddle_thickness / 2), seg[:, 4])
    mk = np.array(markers, np.float64)
    splat(mk[:, 0], mk[:, 1], mk[:, 0], mk[:, 1], np.full(len(mk), p.marker_radius),
          np.ones(len(mk)))
    top = img.max()
    return (img * (255.0 / top)).astype(np.uint8) if top > 0 else img.astype(np.uint8)


def make_image(p, label, rng):
    """Returns (uint8 (N, N) image, markers ((x, y), (x, y)) in px); label 1 = the markers are
    joined by one path, 0 = they lie on different paths."""
    n = p.image_size
    while True:
        canvas = _Canvas(p, rng)
        try:
            a0 = rng.uniform(1.0, n - 1.0, size=2)
            phi = rng.uniform(-np.pi, np.pi)
            b0 = a0 + p.seed_distance * np.array([np.cos(phi), np.sin(phi)])
            if not ((b0 >= 1.0) & (b0 <= n - 1.0)).all():
                continue
            a_start, a_end = canvas.snake(p.contour_length, p.contrast, start=a0)
            for x, y in (a_start, a_end):  # keep snake B off the possible marker places
                canvas.reserve_disk(x, y, p.marker_radius)
            _, b_end = canvas.snake(p.contour_length, p.contrast, start=b0)
        except _Failed:
            continue
        canvas.reserve_disk(*b_end, p.marker_radius)
        markers = [a_start, a_end] if label == 1 else [a_start, b_end]
        for _ in range(p.num_distractors):
            canvas.snake(p.distractor_length, p.contrast, required=False)
        return _render(p, canvas.segments, markers), tuple(tuple(map(float, m)) for m in markers)


def params_for(image_size, difficulty="curv_contour_length_14"):
    """The generator parameters at image_size (16, 32, 64, 128, 256) for a difficulty: a release
    folder name (LRA's parameters) or a generator-only one (GENERATED_DIFFICULTIES)."""
    if image_size not in PRESETS:
        raise ValueError(f"image_size must be one of {sorted(PRESETS)}, got {image_size}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    preset = PRESETS[image_size]
    if difficulty in RELEASE_DIFFICULTIES:
        return dataclasses.replace(preset, contour_length=RELEASE_DIFFICULTIES[difficulty])
    overrides = dict(GENERATED_DIFFICULTIES[difficulty])
    overrides["contrast"] = preset.contrast * overrides.pop("contrast_scale", 1.0)
    return dataclasses.replace(preset, **overrides)


def _write_folder(job):
    """Writes imgs/<k>/sample_<j>.png and metadata/<k>.npy for one folder; returns k."""
    root, k, count, p, seed = job
    rng = np.random.default_rng([seed, k])
    labels = np.array([1] * (count // 2) + [0] * (count - count // 2))
    labels = labels[rng.permutation(count)] if count > 1 else labels[:count]
    os.makedirs(os.path.join(root, "imgs", str(k)), exist_ok=True)
    rows = []
    for j, label in enumerate(labels):
        img, _ = make_image(p, int(label), rng)
        name = f"sample_{j}.png"
        Image.fromarray(img, mode="L").save(os.path.join(root, "imgs", str(k), name))
        rows.append([f"imgs/{k}", name, str(j), str(int(label)), str(p.continuity),
                     str(p.contour_length), str(p.distractor_length), str(p.paddle_length),
                     str(p.paddle_thickness), str(p.paddle_margin), "1"])
    np.save(os.path.join(root, "metadata", f"{k}.npy"), np.array(rows))
    return k


def write(out, num, seed=0, *, image_size=32, difficulty="curv_contour_length_14",
          per_folder=1000, processes=None):
    """Writes `num` images (labels balanced within each folder) under
    `out/pathfinder<image_size>/<difficulty>/` in `processes` worker processes; returns that path.
    """
    p = params_for(image_size, difficulty)
    root = os.path.join(out, f"pathfinder{image_size}", difficulty)
    os.makedirs(os.path.join(root, "metadata"), exist_ok=True)
    jobs = [(root, k, min(per_folder, num - k * per_folder), p, seed)
            for k in range((num + per_folder - 1) // per_folder)]
    processes = processes or min(len(jobs), os.cpu_count() or 1)
    if processes <= 1:
        for job in jobs:
            _write_folder(job)
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            for _ in pool.imap_unordered(_write_folder, jobs):
                pass
    return root


def save_grid(root, path, count=16, columns=8, scale=None):
    """Saves a PNG grid of the first `count` images under the difficulty folder `root`, each
    captioned with its label (1 = joined), upscaled to about 128 px; returns path."""
    from lra.data import pathfinder as reader  # the same reader as training (one code path)

    examples = reader.list_examples(root)[:count]
    images = [np.asarray(Image.open(p).convert("L")) for p, _ in examples]
    size = images[0].shape[0]
    scale = scale or max(1, 128 // size)
    cell, caption = size * scale, 14
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("L", (columns * (cell + 4), rows * (cell + caption + 4)), 64)
    draw = ImageDraw.Draw(grid)
    for i, (img, (_, label)) in enumerate(zip(images, examples)):
        x, y = (i % columns) * (cell + 4), (i // columns) * (cell + caption + 4)
        grid.paste(Image.fromarray(img).resize((cell, cell), Image.NEAREST), (x, y + caption))
        draw.text((x + 2, y + 1), f"label {label}", fill=255)
    grid.save(path)
    return path
