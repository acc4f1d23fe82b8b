"""Pathfinder / Path-X generator: the snakes of drewlinsley/pathfinder (`snakes2.py`, with the
scipy.misc image functions it was written for) at the LRA parameters, drawn and rendered as the
original draws and renders them, in our own code.

One image (coordinates are whole pixels, (row, column)):
- Two target snakes A and B. Seed A: a paddle at a whole-degree orientation from a tail drawn
  uniformly among the pixels where the paddle's full-occupancy footprint stays inside the
  central box 2 * seed_distance from the edges (at 32 px a 4 x 4 box). Seed B: a paddle at any
  whole degree from the pixel seed_distance from A's tail at a whole-degree bearing. Then
  contour_length - 1 extensions, alternating A and B. An extension steps paddle_length +
  2 * margin on from the last pivot (margin behind the paddle's start) along the last
  orientation, and draws a new paddle end among the pixels of the circle of radius
  paddle_length + margin around that point, weighted by cos(min(continuity * turn, pi / 2))**2
  times the free part (1 - x) of the occupancy dilated by `margin`; the paddle runs from that
  end back towards the circle's centre. So paddles are paddle_length long with gaps of about
  2 * margin: a path is a line of dashes. Up to three draws; one is kept when occupancy plus
  the paddle's own occupancy stays below 1.8 everywhere. Any failure (no free tail, an end or
  pivot off the image, no weight left, three overlapping draws) draws both snakes again: a few
  hundred times per image at 32 and 128 px, thousands at 64 px, as in the original.
- Occupancy: a paddle's occupancy is its line dilated by margin * antialias_scale on the fine
  grid and resampled as the line is. A snake's newest paddle enters the occupancy when the
  next one is placed (so consecutive paddles may touch) and its last one when it ends; of the
  target snakes only B's last paddle ever enters (a quirk of the original, kept). The image's
  outer `padding` pixels are occupied.
- Distractors: num_distractors snakes of distractor_length paddles, each tried up to 5 times
  and dropped if all fail; a seed's tail is drawn among the pixels where its footprint meets
  occupancy <= 0.3 only (none when under 1% of the image is that free).
  A quirk of the original decides most seeds at 32 px: a footprint that leaves some pixel of
  the image without a tap inside the image (at 32 px a few pixels on one side of the tail) makes
  its dilation -DBL_MAX there and its search for free pixels give up: the seed fails. So at
  32 px about 1 distractor of 5 is placed, and 92% of first seeds fail (`_Geometry.covers`).
- Markers: disks of marker_radius on A's or B's tail and on the end (last paddle's start) of
  the same snake (label 1) or of the other one (label 0).
Rendering: each paddle is a PIL line (width paddle_thickness * a, a = antialias_scale) from the
centre of a (2K * a + 1)-pixel canvas (K = paddle_length + ceil(paddle_thickness) + margin),
resampled with PIL's Lanczos filter to 2K + 1 pixels (uint8), / 255 times the snake's contrast;
a marker is a disk on the a-times finer grid resampled by a. The image is the pixelwise maximum
of them all, byte-scaled so that its maximum is 255 (scipy.misc.imsave). Strokes a pixel or
less wide come out dim, with faint Lanczos ringing beside them: most lit pixels are dim, few
are 255, and at 128 px the ringing makes many tiny extra components. Contrasts: 32 px target
paddles 2 * 0.75 (snake times paddle contrast), distractors 2, markers 1 (the brightest stroke
pixels reach ~1.15, so both strokes and markers set the 255); 128 px all 0.9, markers 1.

A paddle's line and occupancy depend only on its end on the fine grid (a rounding of its
orientation), so they are built once per end and reused (`_Geometry`): an image is integer
bookkeeping and a few small array operations per paddle.

Statistics against the original (`image_stats`, `python -m lra.generate --stats DIR`): the
means per image of ORIGINAL_STATS, measured on the original generator run with these
parameters; tests/lra/test_pathfinder_stats.py checks each of ours at 32 and 128 px within
`stats_tolerance` (the reasoning is there).

Parameters (PRESETS) are those in the docstrings of the LRA TFDS builders (google-research/
long-range-arena, lra_benchmarks/data/pathfinder.py) over snakes2_wrapper.py's defaults
(paddle_length 5, seed_distance 27, padding 22, one paddle contrast 1); e.g. 32 px: margin 1,
seed_distance 7, marker_radius 1.5, paddle_length 2, thickness 0.5, antialias_scale 2,
continuity 1.0, snake contrast 2, paddle contrast 0.75, distractors of contour_length // 3
paddles, 20 // that many of them (so the difficulty folders differ in distractors too).

Files, as the release: `<out>/pathfinder<N>/<difficulty>/imgs/<k>/sample_<j>.png` (8-bit gray) and
`<out>/pathfinder<N>/<difficulty>/metadata/<k>.npy` (binary numpy, one row per image: subfolder,
file name, image index, label, continuity, contour_length, distractor_length, paddle_length,
paddle_thickness, paddle_margin, number of paddle contrasts).
"""
import collections
import contextlib
import dataclasses
import math
import multiprocessing
import os
import re

import numpy as np
from PIL import Image, ImageDraw

from lra.generate.progress import available_cores, progress_bar
from spade_jax.runtime.errors import DataError, PathError

# The release's difficulty folders: each sets the contour length (paddles per target snake), and
# with it the distractors' length (contour_length // 3) and number.
RELEASE_DIFFICULTIES = {"curv_baseline": 6, "curv_contour_length_9": 9,
                        "curv_contour_length_14": 14}
# Generator-only difficulties (not in the release): parameter overrides on the size's preset.
# `easy`: curv_baseline's short contours with no distractor snakes, and paths drawn at half the
# contrast, so that the markers stand out and the only question left is whether one path joins
# them. It exists so that a few CPU minutes can show Pathfinder learning.
GENERATED_DIFFICULTIES = {
    "easy": dict(contour_length=6, distractor_paddles=0, contrast_scale=0.5),
}
DIFFICULTIES = sorted([*RELEASE_DIFFICULTIES, *GENERATED_DIFFICULTIES])

# Image statistics (image_stats; `python -m lra.generate --stats`), to compare with the original.
STATS = ("fraction_lit", "mean", "mean_lit", "components", "saturated")
STATS_HELP = {
    "fraction_lit": "fraction of pixels > 0",
    "mean": "mean pixel",
    "mean_lit": "mean of the pixels > 0",
    "components": "8-connected components of pixels > 0",
    "saturated": "pixels equal to 255",
}
# Per-image means over images of the original generator (drewlinsley/pathfinder snakes2.py, LRA
# parameters, scipy.misc's byte scaling): at 32 and 128 px issue 19's table (1000 and 100
# images); at 64 and 256 px 37 and 20 images (components only to within about 10%).
ORIGINAL_STATS = {
    32: {"fraction_lit": 0.342, "mean": 20.2, "mean_lit": 59.2, "components": 8.3,
         "saturated": 2.2},
    64: {"fraction_lit": 0.263, "mean": 13.51, "mean_lit": 51.4, "components": 12.8,
         "saturated": 10.05},
    128: {"fraction_lit": 0.1375, "mean": 7.93, "mean_lit": 57.7, "components": 70.6,
          "saturated": 12.0},
    256: {"fraction_lit": 0.0386, "mean": 2.95, "mean_lit": 76.5, "components": 81.2,
          "saturated": 223.4},
}
ORIGINAL_IMAGES = {32: 1000, 64: 37, 128: 100, 256: 20}
# Per-image standard deviations of the same statistics, measured on 431 (32 px) and 72 (128 px)
# images of the original generator.
ORIGINAL_SD = {
    32: {"fraction_lit": 0.0407, "mean": 2.15, "mean_lit": 4.00, "components": 3.24,
         "saturated": 1.36},
    128: {"fraction_lit": 0.0056, "mean": 0.363, "mean_lit": 1.61, "components": 23.2,
          "saturated": 0.118},
}
STATS_Z = 4.0
STATS_RELATIVE = 0.01


def stats_tolerance(size, name, sd, n):
    """How far the mean of statistic `name` over n of our images (per-image standard deviation
    sd) may lie from the original's ORIGINAL_STATS[size][name] (at 32 or 128 px):

        STATS_Z * sqrt(sd**2 / n + ORIGINAL_SD**2 / ORIGINAL_IMAGES)      sampling spread
        + half a unit of the reference's last digit                      its rounding
        + STATS_RELATIVE * |reference|                                   margin

    The sampling spread is that of the difference of two independent means, at 4 standard
    errors: a same-distribution generator exceeds it with probability ~6e-5 per statistic
    (two-sided normal; means of >= 80 images are close to normal), ~6e-4 for all ten checks.
    The margin, 1% of the value, is below the resolution of the table's three significant
    digits for most entries and far below any visible change of rendering (the previous
    renderer was off by 20% to 2000%); it absorbs differences of the original's own runs that
    its sampling spread does not model (e.g. the Lanczos rounding of other Pillow versions).
    """
    reference = ORIGINAL_STATS[size][name]
    decimals = len(repr(float(reference)).split(".")[1])
    spread = math.sqrt(sd ** 2 / n + ORIGINAL_SD[size][name] ** 2 / ORIGINAL_IMAGES[size])
    return STATS_Z * spread + 0.5 * 10.0 ** -decimals + STATS_RELATIVE * abs(reference)


@dataclasses.dataclass(frozen=True)
class SnakeParams:
    """Generator parameters for one image size (see PRESETS for the LRA values).

    paddle_margins: one is drawn per image (128 px: 2 or 3). distractor_paddles: the wrapper's
    budget; num_distractors = distractor_paddles // distractor_length. Target paddles have
    contrast snake_contrast * paddle_contrast, distractor paddles snake_contrast, markers 1.
    """

    image_size: int
    paddle_margins: tuple
    seed_distance: int
    marker_radius: float
    paddle_length: int
    paddle_thickness: float
    continuity: float
    distractor_paddles: int
    snake_contrast: float
    paddle_contrast: float = 1.0
    contour_length: int = 14
    padding: int = 1
    antialias_scale: int = 2

    @property
    def distractor_length(self):
        return max(1, self.contour_length // 3)

    @property
    def num_distractors(self):
        return self.distractor_paddles // self.distractor_length

    @property
    def target_contrast(self):
        return self.snake_contrast * self.paddle_contrast


PRESETS = {
    # 16 px is not in LRA: the 32 px paddles, seeds 3 px apart, for CPU runs. Only contours of up
    # to 6 paddles fit (the `easy` and `curv_baseline` difficulties).
    16: SnakeParams(16, paddle_margins=(1,), seed_distance=3, marker_radius=1.0,
                    paddle_length=2, paddle_thickness=0.5, continuity=1.0,
                    distractor_paddles=10, snake_contrast=2.0, paddle_contrast=0.75),
    32: SnakeParams(32, paddle_margins=(1,), seed_distance=7, marker_radius=1.5,
                    paddle_length=2, paddle_thickness=0.5, continuity=1.0,
                    distractor_paddles=20, snake_contrast=2.0, paddle_contrast=0.75),
    64: SnakeParams(64, paddle_margins=(1,), seed_distance=12, marker_radius=2.5,
                    paddle_length=5, paddle_thickness=1.0, continuity=1.8,
                    distractor_paddles=22, snake_contrast=0.8),
    128: SnakeParams(128, paddle_margins=(2, 3), seed_distance=20, marker_radius=3,
                     paddle_length=5, paddle_thickness=1.5, continuity=1.8,
                     distractor_paddles=35, snake_contrast=0.9),
    256: SnakeParams(256, paddle_margins=(3,), seed_distance=27, marker_radius=5,
                     paddle_length=5, paddle_thickness=2.0, continuity=1.8,
                     distractor_paddles=30, snake_contrast=1.0, padding=22),
}

_LONGEST_CONTOUR = {16: 6}  # target contours that fit at all (else none in a million tries)
_TRIALS = 3  # draws per seed or extension (the original's max_paddle_retrial 2, plus one)
_SNAKE_TRIES = 5  # tries per distractor snake (max_distractor_contour_retrial 4, plus one)
_MAX_TARGET_TRIES = 1_000_000  # target pairs tried before giving up (needed: ~300 at 32 and
# 128 px, ~7000 at 64 px)
_FREE = 76  # occupancy <= 0.3 (in 1/255) counts as free for a seed
_OVERLAP = 459  # occupancy + paddle occupancy must stay below 1.8 (in 1/255)

Sample = collections.namedtuple("Sample", "image markers snakes marker_snakes margin")
Sample.__doc__ = """One image and how it was drawn.

image: uint8 (N, N). markers: ((x, y), (x, y)), the columns and rows of the two marker centres.
snakes: per snake (the two targets first, then the distractors placed) its paddles, each as
(row, column, orientation): a line of paddle_length from that pixel at that angle (radians,
rows growing with sin). marker_snakes: the indices in `snakes` of the snakes the two markers
sit on (equal iff the label is 1). margin: the paddle margin drawn for this image."""


def _lanczos(array, size):
    """uint8 (h, w) resampled to (size, size) by PIL's Lanczos filter (scipy.misc.imresize)."""
    return np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.LANCZOS))


def _dilate(array, radius):
    """Grey dilation of a 2-D array by the disk x**2 + y**2 <= radius**2 (outside ignored)."""
    r = int(radius)
    h, w = array.shape
    padded = np.zeros((h + 2 * r, w + 2 * r), array.dtype)
    padded[r:r + h, r:r + w] = array
    out = np.zeros_like(array)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= radius * radius:
                np.maximum(out, padded[r + dy:r + dy + h, r + dx:r + dx + w], out=out)
    return out


def _reverse(theta):
    """The opposite orientation, in [-pi, pi) as the original computes it."""
    return theta + math.pi if theta < 0 else theta - math.pi


class _Stamp:
    """One paddle drawn from the centre of an (S, S) square, S = 2K + 1: `line` (uint8),
    `mask` (its occupancy, uint8 in 1/255), `limit` (the occupancy above which the paddle
    overlaps it), `free` ((S + 2m) square: 255 minus the occupancy dilated by the margin m).
    `head` is the paddle's end on the fine grid, relative to the start."""

    def __init__(self, g, head):
        a, k = g.aa, g.K
        center = k * a
        blown = Image.new("L", (2 * k * a + 1,) * 2, 0)
        ImageDraw.Draw(blown).line([(center, center), (center + head[1], center + head[0])],
                                   fill=255, width=int(round(g.thickness * a)))
        blown = np.asarray(blown)
        self.line = _lanczos(blown, g.S)
        self.mask = _lanczos(_dilate(blown, g.m * a), g.S)
        self.limit = np.minimum(_OVERLAP - 1 - self.mask.astype(np.int16), 255).astype(np.uint8)
        padded = np.zeros((g.S + 2 * g.m,) * 2, np.uint8)
        padded[g.m:g.m + g.S, g.m:g.m + g.S] = self.mask
        self.free = 255 - _dilate(padded, g.m)
        self._lines = {}

    def line_at(self, contrast):
        """float32 line * contrast, as the original scales it (uint8 / 255 * contrast)."""
        if contrast not in self._lines:
            self._lines[contrast] = ((self.line.astype(np.float32) / np.float32(255.0))
                                     * np.float32(contrast))
        return self._lines[contrast]


class _Geometry:
    """What depends only on the parameters and the image's margin m: paddle stamps by their
    end on the fine grid, the extension circle's pixels and their weights after every possible
    orientation, seed footprints by degree, the empty occupancy.

    Orientations are rows: 0..C-1 the bearings of the C pixels of the extension circle (an
    extension's orientation), C + 180 + d the whole degree d in [-180, 180) (a seed's).
    Occupancy arrays are padded by P zeros on every side: no slice below leaves them.
    """

    def __init__(self, p, m):
        n, a, length = p.image_size, p.antialias_scale, p.paddle_length
        if (p.paddle_thickness * a) % 1:
            raise ValueError("paddle_thickness * antialias_scale must be a whole number")
        if 4 * p.seed_distance >= n:
            raise ValueError(f"seed_distance {p.seed_distance} leaves no room for the first "
                             f"seed at {n} px (it must be under image_size / 4)")
        self.n, self.aa, self.m, self.length = n, a, m, length
        self.thickness = p.paddle_thickness
        self.K = length + math.ceil(p.paddle_thickness) + m
        self.S = 2 * self.K + 1
        self.P = 2 * self.K + 4
        self.Wp = n + 2 * self.P
        self.stamps, self._by_head = [], {}

        radius = length + m  # the extension circle, sampled a pixel of arc apart
        arc = np.arange(0, 360, 360.0 / (2 * radius * np.pi)) * np.pi / 180
        circle = np.stack([np.floor(radius * np.sin(arc)), np.floor(radius * np.cos(arc))], 1)
        circle = np.unique(circle.astype(np.int64), axis=0)
        self.C = len(circle)
        self.cy, self.cx = circle[:, 0].tolist(), circle[:, 1].tolist()
        self.cflat = circle[:, 0] * self.Wp + circle[:, 1]
        bearing = np.arctan2(circle[:, 0], circle[:, 1])
        degrees = np.arange(-180, 180) * np.pi / 180
        rows = np.concatenate([bearing, degrees])
        turn = np.abs(bearing[None, :] - rows[:, None])
        turn = np.minimum(np.minimum(turn, 2 * np.pi - turn) * p.continuity, 0.5 * np.pi)
        self.weights = np.maximum(np.cos(turn), 0) ** 2  # (C + 360, C)
        step = float(length + 2 * m)  # from a pivot to the next
        self.step_y = (step * np.sin(rows)).tolist()
        self.step_x = (step * np.cos(rows)).tolist()
        # An extension to circle pixel c draws its paddle from there, towards the centre.
        self.circle_theta = [_reverse(t) for t in bearing.tolist()]
        self.circle_stamp = [self._stamp(t) for t in self.circle_theta]
        # A seed of degree d: its paddle, its end (L on) and its pivot (L + m back from the end).
        self.seed_theta = degrees.tolist()
        self.seed_stamp = [self._stamp(t) for t in self.seed_theta]
        self.seed_end = [(float(length) * math.sin(t), float(length) * math.cos(t))
                         for t in self.seed_theta]
        self.seed_back = [(float(length + m) * math.sin(_reverse(t)),
                           float(length + m) * math.cos(_reverse(t))) for t in self.seed_theta]
        self._footprints, self._covers, self._first = {}, {}, {}

        P = self.P
        mask = np.zeros((self.Wp, self.Wp), np.uint8)
        inside = mask[P:P + n, P:P + n]
        inside[...] = 255
        inside[p.padding:n - p.padding, p.padding:n - p.padding] = 0
        self.mask0 = mask
        self.free0 = np.zeros_like(mask)
        self.free0[P:P + n, P:P + n] = 255 - _dilate(inside, m)
        # The first seed's tail is sought with everything but the central box occupied.
        self.lined0 = np.zeros_like(mask)
        self.lined0[P:P + n, P:P + n] = 255
        box = slice(P + 2 * p.seed_distance, P + n - 2 * p.seed_distance)
        self.lined0[box, box] = 0

    def _stamp(self, theta):
        """The index of the stamp of a paddle at orientation theta (its end on the fine grid
        rounded up, as the original's translate_coord)."""
        c, dist = self.K * self.aa, float(self.length * self.aa)
        head = (math.ceil(c + dist * math.sin(theta)) - c,
                math.ceil(c + dist * math.cos(theta)) - c)
        if head not in self._by_head:
            self._by_head[head] = len(self.stamps)
            self.stamps.append(_Stamp(self, head))
        return self._by_head[head]

    def footprint(self, degree):
        """(rows, columns) offsets from a seed tail of the pixels where the degree's paddle
        occupancy is full: the original's structuring element, the paddle's occupancy drawn
        from pixel half + 1 of a (2 half + 1)-pixel square (half = paddle_length + margin),
        anchored at its centre."""
        if degree not in self._footprints:
            half = self.length + self.m
            ys, xs = np.nonzero(self.stamps[self.seed_stamp[degree + 180]].mask == 255)
            ys, xs = ys - self.K + 1, xs - self.K + 1
            keep = (np.abs(ys) <= half) & (np.abs(xs) <= half)
            self._footprints[degree] = (ys[keep].tolist(), xs[keep].tolist())
        return self._footprints[degree]

    def covers(self, degree):
        """Whether every pixel of the image has a footprint tap inside the image. Where one
        has none the original's dilation (cv2.dilate) leaves -DBL_MAX, and its search for free
        pixels then finds none (it gives up on any negative value): the seed fails. At 32 px
        the footprints are a few pixels on one side of the tail and most seeds fail so."""
        if degree not in self._covers:
            n = self.n
            hit = np.zeros((n, n), bool)
            for y, x in zip(*self.footprint(degree)):
                hit[max(0, -y):min(n, n - y), max(0, -x):min(n, n - x)] = True
            self._covers[degree] = bool(hit.all())
        return self._covers[degree]

    def free_tails(self, occupancy, degree):
        """Flat indices (row * n + column) of the pixels where the degree's footprint meets
        occupancy <= 0.3 only (taps outside the image ignored); none unless `covers`."""
        if not self.covers(degree):
            return ()
        n, P = self.n, self.P
        worst = np.zeros((n, n), np.uint8)
        for y, x in zip(*self.footprint(degree)):
            np.maximum(worst, occupancy[P + y:P + y + n, P + x:P + x + n], out=worst)
        return np.flatnonzero(worst <= _FREE)

    def first_tails(self, degree):
        """free_tails of the first seed (a fixed occupancy: all but the central box)."""
        if degree not in self._first:
            self._first[degree] = self.free_tails(self.lined0, degree)
        return self._first[degree]


_GEOMETRY = {}


def _geometry(p, m):
    if (p, m) not in _GEOMETRY:
        _GEOMETRY[p, m] = _Geometry(p, m)
    return _GEOMETRY[p, m]


class _Uniform:
    """Uniform floats in [0, 1) from a numpy Generator, drawn in blocks."""

    def __init__(self, rng):
        self.rng, self.buffer = rng, []

    def __call__(self):
        if not self.buffer:
            self.buffer = self.rng.random(1024).tolist()
        return self.buffer.pop()

    def below(self, k):
        """A uniform integer in [0, k)."""
        return min(int(self() * k), k - 1)


class _Snake:
    """A growing snake: pivot (the centre of its next extension circle is a step on from it),
    orientation row, newest paddle (stamp, row, column; occupancy not yet committed), start
    (its seed's tail), end (its newest paddle's start) and paddles (row, column, theta, stamp).
    """

    __slots__ = ("pivot", "row", "pending", "start", "end", "paddles")

    def __init__(self, g, degree, tail, pivot):
        stamp = g.seed_stamp[degree + 180]
        self.pivot, self.row, self.pending = pivot, g.C + 180 + degree, (stamp,) + tail
        self.start = self.end = tail
        self.paddles = [tail + (g.seed_theta[degree + 180], stamp)]


def _seed(g, degree, tail):
    """A _Snake of one seed paddle of `degree` from pixel `tail` (row, column), or None when
    its end or its pivot falls outside the image."""
    n = g.n
    ey, ex = g.seed_end[degree + 180]
    hy, hx = math.ceil(tail[0] + ey), math.ceil(tail[1] + ex)
    by, bx = g.seed_back[degree + 180]
    qy, qx = math.ceil(hy + by), math.ceil(hx + bx)
    if 0 <= hy < n and 0 <= hx < n and 0 <= qy < n and 0 <= qx < n:
        return _Snake(g, degree, tail, (qy, qx))
    return None


class _Canvas:
    """The occupancy (`mask`, uint8 in 1/255) and 255 minus it dilated by the margin (`free`,
    0 outside the image), padded by P around the N x N image."""

    def __init__(self, g, mask, free):
        self.g, self.mask, self.free = g, mask, free
        self.free_flat = free.reshape(-1)

    def copy(self):
        return _Canvas(self.g, self.mask.copy(), self.free.copy())

    def commit(self, stamp, y, x):
        """Adds the occupancy of stamp (an index) drawn from pixel (y, x)."""
        g = self.g
        st, k, s, n, P, m = g.stamps[stamp], g.K, g.S, g.n, g.P, g.m
        y0, x0 = y - k, x - k
        if y0 >= 0 and x0 >= 0 and y0 + s <= n and x0 + s <= n:
            region = self.mask[P + y0:P + y0 + s, P + x0:P + x0 + s]
            np.maximum(region, st.mask, out=region)
        else:  # the original clips stamps at the image's edges
            a0, a1, b0, b1 = max(0, -y0), min(s, n - y0), max(0, -x0), min(s, n - x0)
            region = self.mask[P + y0 + a0:P + y0 + a1, P + x0 + b0:P + x0 + b1]
            np.maximum(region, st.mask[a0:a1, b0:b1], out=region)
        region = self.free[P + y0 - m:P + y0 + s + m, P + x0 - m:P + x0 + s + m]
        np.minimum(region, st.free, out=region)  # the zeros outside the image stay

    def extend(self, snake, u):
        """Adds one paddle to snake (see the module docstring); False if none fits."""
        g = self.g
        row = snake.row
        ny = math.ceil(snake.pivot[0] + g.step_y[row])
        nx = math.ceil(snake.pivot[1] + g.step_x[row])
        cmf = (g.weights[row] * self.free_flat.take(g.cflat + ((ny + g.P) * g.Wp + nx + g.P))
               ).cumsum()
        total = float(cmf[-1])
        if total < 1e-4 * 255:
            return False
        k, s, P = g.K, g.S, g.P
        for _ in range(_TRIALS):
            c = int(cmf.searchsorted(u() * total, "right"))
            c = c if c < g.C else 0
            hy, hx = ny + g.cy[c], nx + g.cx[c]
            stamp = g.circle_stamp[c]
            if (self.mask[P + hy - k:P + hy - k + s, P + hx - k:P + hx - k + s]
                    > g.stamps[stamp].limit).any():
                continue
            self.commit(*snake.pending)
            snake.pending = (stamp, hy, hx)
            snake.pivot, snake.row, snake.end = (ny, nx), c, (hy, hx)
            snake.paddles.append((hy, hx, g.circle_theta[c], stamp))
            return True
        return False

    def seed(self, u):
        """A distractor's seed paddle on a free tail, or None."""
        g = self.g
        n, P = g.n, g.P
        if np.count_nonzero(self.mask[P:P + n, P:P + n] <= _FREE) < 0.01 * n * n:
            return None
        for _ in range(_TRIALS):
            degree = u.below(360) - 180
            tails = g.free_tails(self.mask, degree)
            if not len(tails):
                return None
            snake = _seed(g, degree, divmod(int(tails[u.below(len(tails))]), n))
            if snake is not None:
                return snake
        return None


def _target_snakes(g, p, u):
    """One try at the two target snakes: (canvas, [snake A, snake B]), or None."""
    for _ in range(_TRIALS):
        degree = u.below(360) - 180
        tails = g.first_tails(degree)
        if not len(tails):
            return None
        a = _seed(g, degree, divmod(int(tails[u.below(len(tails))]), g.n))
        if a is not None:
            break
    else:
        return None
    for _ in range(_TRIALS):
        degree = u.below(360) - 180
        bearing = u.below(360) * math.pi / 180
        b = _seed(g, degree, (int(round(a.start[0] + p.seed_distance * math.sin(bearing))),
                              int(round(a.start[1] + p.seed_distance * math.cos(bearing)))))
        if b is not None:
            break
    else:
        return None
    canvas = _Canvas(g, g.mask0.copy(), g.free0.copy())
    for _ in range(p.contour_length - 1):
        if not (canvas.extend(a, u) and canvas.extend(b, u)):
            return None
    canvas.commit(*b.pending)  # the original commits only the second snake's last paddle
    return canvas, [a, b]


def _distractor(canvas, p, u):
    """One try at a distractor snake: commits and returns it, or None (canvas unchanged)."""
    snake = canvas.seed(u)
    if snake is None:
        return None
    trial = canvas.copy()
    for _ in range(p.distractor_length - 1):
        if not trial.extend(snake, u):
            return None
    trial.commit(*snake.pending)
    canvas.mask[...], canvas.free[...] = trial.mask, trial.free
    return snake


def _marker(p, center):
    """uint8 (N, N): a marker disk on pixel `center` (row, column), drawn on the fine grid
    and resampled by Lanczos. Only a window around it is computed: the same pixels (outside
    it the filter sees only zeros; at the image's edges the window's edges are the image's)."""
    n, a, r = p.image_size, p.antialias_scale, p.marker_radius
    reach = math.ceil(r) + 5  # the disk and the filter's 3-pixel support, with room
    y0, y1 = max(0, center[0] - reach), min(n, center[0] + reach + 1)
    x0, x1 = max(0, center[1] - reach), min(n, center[1] + reach + 1)
    ys = np.arange(y0 * a, y1 * a)[:, None] - center[0] * a
    xs = np.arange(x0 * a, x1 * a)[None, :] - center[1] * a
    disk = np.where(ys ** 2 + xs ** 2 <= (r * a) ** 2, 255, 0).astype(np.uint8)
    out = np.zeros((n, n), np.uint8)
    out[y0:y1, x0:x1] = np.asarray(Image.fromarray(disk).resize((x1 - x0, y1 - y0),
                                                                Image.Resampling.LANCZOS))
    return out


def _bytescale(image):
    """scipy.misc.bytescale (what scipy.misc.imsave did to float images): min -> 0,
    max -> 255, rounded to nearest."""
    low, high = float(image.min()), float(image.max())
    scaled = (image - low) * (255.0 / ((high - low) or 1.0))
    return (scaled.clip(0, 255) + 0.5).astype(np.uint8)


def _render(g, p, snakes, contrasts, centers):
    """The uint8 image of the snakes' paddles (each snake at its contrast) and two markers."""
    n, k, s, P = g.n, g.K, g.S, g.P
    image = np.zeros((g.Wp, g.Wp))
    for snake, contrast in zip(snakes, contrasts):
        for y, x, _, stamp in snake.paddles:
            region = image[P + y - k:P + y - k + s, P + x - k:P + x - k + s]
            np.maximum(region, g.stamps[stamp].line_at(contrast), out=region)
    disks = np.maximum(_marker(p, centers[0]), _marker(p, centers[1]))
    image = np.maximum(image[P:P + n, P:P + n], disks.astype(np.float32) / np.float32(255.0))
    return _bytescale(image)


def sample(p, label, rng):
    """Draws one image; returns a Sample (image, markers, snakes, marker_snakes, margin).

    label 1: the markers sit on both ends of one target snake; 0: on the start of one and the
    end of the other. rng: a numpy Generator.
    """
    u = _Uniform(rng)
    margin = p.paddle_margins[u.below(len(p.paddle_margins))]
    g = _geometry(p, margin)
    for _ in range(_MAX_TARGET_TRIES):
        drawn = _target_snakes(g, p, u)
        if drawn is not None:
            break
    else:
        raise RuntimeError(f"no two target snakes fit in {_MAX_TARGET_TRIES} tries: {p}")
    canvas, snakes = drawn
    contrasts = [p.target_contrast] * 2
    for _ in range(p.num_distractors):
        for _ in range(_SNAKE_TRIES):
            snake = _distractor(canvas, p, u)
            if snake is not None:
                snakes.append(snake)
                contrasts.append(p.snake_contrast)
                break
    origin = u.below(2)
    terminal = origin if label == 1 else 1 - origin
    centers = (snakes[origin].start, snakes[terminal].end)
    return Sample(_render(g, p, snakes, contrasts, centers),
                  tuple((x, y) for y, x in centers),
                  [[(y, x, theta) for y, x, theta, _ in s.paddles] for s in snakes],
                  (origin, terminal), margin)


def make_image(p, label, rng):
    """Returns (uint8 (N, N) image, markers ((x, y), (x, y)) in pixels); label 1 = the markers
    are on one path, 0 = on two different paths. See `sample` for how it was drawn."""
    s = sample(p, label, rng)
    return s.image, s.markers


def params_for(image_size, difficulty="curv_contour_length_14"):
    """The generator parameters at image_size (16, 32, 64, 128, 256) for a difficulty: a release
    folder name (LRA's parameters) or a generator-only one (GENERATED_DIFFICULTIES)."""
    if image_size not in PRESETS:
        raise ValueError(f"image_size must be one of {sorted(PRESETS)}, got {image_size}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    preset = PRESETS[image_size]
    if difficulty in RELEASE_DIFFICULTIES:
        p = dataclasses.replace(preset, contour_length=RELEASE_DIFFICULTIES[difficulty])
    else:
        overrides = dict(GENERATED_DIFFICULTIES[difficulty])
        overrides["snake_contrast"] = preset.snake_contrast * overrides.pop("contrast_scale", 1.0)
        p = dataclasses.replace(preset, **overrides)
    longest = _LONGEST_CONTOUR.get(image_size)
    if longest is not None and p.contour_length > longest:
        fits = [d for d, n in RELEASE_DIFFICULTIES.items() if n <= longest] + [
            d for d, o in GENERATED_DIFFICULTIES.items() if o["contour_length"] <= longest]
        raise ValueError(f"at {image_size} px only contours of up to {longest} paddles fit "
                         f"(difficulty {' or '.join(sorted(fits))}), not {difficulty!r} "
                         f"({p.contour_length} paddles)")
    return p


SHARD = 50  # images per unit of work: the progress bar moves and the cores share by shards


def _write_shard(job):
    """Draws images j0 .. j1 - 1 of folder k, writes them as imgs/<k>/sample_<j>.png and returns
    (k, j0, their metadata rows). Image j is drawn from its own generator, seeded by (seed, k,
    j), and the labels from one seeded by (seed, k): the files are the same however the images
    are split into shards and processes."""
    root, k, count, j0, j1, p, seed = job
    rng = np.random.default_rng([seed, k])
    labels = np.array([1] * (count // 2) + [0] * (count - count // 2))
    labels = labels[rng.permutation(count)] if count > 1 else labels[:count]
    rows = []
    for j in range(j0, j1):
        drawn = sample(p, int(labels[j]), np.random.default_rng([seed, k, j]))
        name = f"sample_{j}.png"
        Image.fromarray(drawn.image, mode="L").save(os.path.join(root, "imgs", str(k), name))
        rows.append([f"imgs/{k}", name, str(j), str(int(labels[j])), str(p.continuity),
                     str(p.contour_length), str(p.distractor_length), str(p.paddle_length),
                     str(p.paddle_thickness), str(drawn.margin), "1"])
    return k, j0, rows


def write(out, num, seed=0, *, image_size=32, difficulty="curv_contour_length_14",
          per_folder=1000, processes=None):
    """Writes `num` images (labels balanced within each folder) under
    `out/pathfinder<image_size>/<difficulty>/` with `processes` worker processes (None: every
    available core) and a progress bar on stderr; returns that path. The files do not depend on
    `processes` (see _write_shard).
    """
    p = params_for(image_size, difficulty)
    root = os.path.join(out, f"pathfinder{image_size}", difficulty)
    os.makedirs(os.path.join(root, "metadata"), exist_ok=True)
    folders = {k: min(per_folder, num - k * per_folder)
               for k in range((num + per_folder - 1) // per_folder)}
    jobs = [(root, k, count, j0, min(j0 + SHARD, count), p, seed)
            for k, count in folders.items() for j0 in range(0, count, SHARD)]
    for k in folders:
        os.makedirs(os.path.join(root, "imgs", str(k)), exist_ok=True)
    processes = min(len(jobs), processes or available_cores())
    pending = {k: {} for k in folders}  # k -> {j0: rows} until the folder is complete
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(progress_bar(num, "img"))
        if processes <= 1:
            done = map(_write_shard, jobs)
        else:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(
                processes, initializer=_ignore_interrupts))  # Ctrl-C: the parent reports it
            done = pool.imap_unordered(_write_shard, jobs)
        for k, j0, rows in done:
            pending[k][j0] = rows
            bar.update(len(rows))
            if sum(map(len, pending[k].values())) == folders[k]:
                shards = pending.pop(k)
                np.save(os.path.join(root, "metadata", f"{k}.npy"),
                        np.array([row for j in sorted(shards) for row in shards[j]]))
    return root


def _ignore_interrupts():
    """In a worker: Ctrl-C goes to the whole process group; the parent stops the pool and
    reports it once (spade_jax.runtime.cli), instead of every worker printing a traceback."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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


def image_stats(image):
    """The statistics (STATS) of one uint8 (N, N) image: fraction of pixels > 0, mean pixel,
    mean of the pixels > 0 (nan if there are none), number of 8-connected components of pixels
    > 0, number of pixels equal to 255."""
    from scipy import ndimage  # installed with jax

    image = np.asarray(image)
    lit = image > 0
    count = int(np.count_nonzero(lit))
    return {"fraction_lit": count / image.size, "mean": float(image.mean()),
            "mean_lit": float(image[lit].mean()) if count else math.nan,
            "components": int(ndimage.label(lit, structure=np.ones((3, 3), bool))[1]),
            "saturated": int(np.count_nonzero(image == 255))}


def summarize(stats):
    """{statistic: (mean, standard error of the mean)} over image_stats dicts (nan skipped)."""
    out = {}
    for name in STATS:
        values = np.array([s[name] for s in stats], float)
        values = values[~np.isnan(values)]
        error = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
        out[name] = (float(values.mean()) if len(values) else math.nan, float(error))
    return out


def _natural(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _group_of(folder):
    """The folder whose images `folder`'s images are counted with: the one holding `imgs/`
    (a difficulty folder of the release layout) if folder is inside one, else folder."""
    parts = os.path.normpath(folder).split(os.sep)
    if "imgs" not in parts:
        return folder
    return os.sep.join(parts[:parts.index("imgs")]) or "."


def image_groups(path, limit=1000):
    """{group folder: [PNG paths]} of the PNGs under `path` (a folder, or one PNG file), in
    natural order (imgs/2 before imgs/10), at most `limit` per group (0: all) and skipping
    empty files; a group is a difficulty folder of the release layout (`.../imgs/<k>/*.png`)
    or else the folder holding the files. Folders of a full group are not listed."""
    if os.path.isfile(path):
        return {os.path.dirname(path) or ".": [path]}
    if not os.path.isdir(path):
        raise PathError(f"--stats {path}: no such folder or file")
    groups = {}

    def walk(folder):
        group = _group_of(folder)
        if limit and len(groups.get(group, ())) >= limit:
            return
        try:
            entries = sorted(os.scandir(folder), key=lambda e: _natural(e.name))
        except OSError as e:
            raise PathError(f"--stats: cannot list {folder} ({e})") from None
        for entry in entries:
            if entry.is_file() and entry.name.lower().endswith(".png") \
                    and entry.stat().st_size > 0:
                found = groups.setdefault(group, [])
                if limit and len(found) >= limit:
                    return
                found.append(entry.path)
        for entry in entries:
            if entry.is_dir():
                walk(entry.path)

    walk(path)
    if not groups:
        raise PathError(f"--stats {path}: no PNG images there (expected a folder of PNGs, e.g. "
                        f"the release's pathfinder32/curv_contour_length_14)")
    return groups


def folder_stats(path, limit=1000):
    """[(group, image size, number of images, summarize(...))] for the PNGs under path (see
    image_groups); a group holding images of several sizes gives one row per size."""
    rows = []
    for group, files in image_groups(path, limit).items():
        by_size = {}
        for file in files:
            try:
                with Image.open(file) as image:
                    pixels = np.asarray(image.convert("L"))
            except (OSError, ValueError) as e:
                raise DataError(f"{file}: cannot decode image ({e})") from None
            by_size.setdefault(pixels.shape[0], []).append(image_stats(pixels))
        rows += [(group, size, len(stats), summarize(stats))
                 for size, stats in sorted(by_size.items())]
    return rows


def stats_report(paths, limit=1000):
    """A markdown table of the image statistics of the folders `paths` (see folder_stats), with
    the original generator's values (ORIGINAL_STATS) at the sizes found: mean ± standard error
    of the mean over the images."""
    rows = [row for path in paths for row in folder_stats(path, limit)]
    sizes = sorted({size for _, size, _, _ in rows} & set(ORIGINAL_STATS))
    header = (["statistic (mean per image)"] + [f"original {s} px" for s in sizes]
              + [f"{group} ({count} images, {size} px)" for group, size, count, _ in rows])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in STATS:
        cells = [STATS_HELP[name]] + [f"{ORIGINAL_STATS[s][name]}" for s in sizes]
        for _, _, _, summary in rows:
            mean, error = summary[name]
            digits = 4 if name == "fraction_lit" else 2
            cells.append(f"{mean:.{digits}f} ± {error:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
