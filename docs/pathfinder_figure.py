"""Draws docs/pathfinder.png, the README's generated Pathfinder and Path-X images.

    python -m docs.pathfinder_figure

Eight Pathfinder images (32 px, curv_contour_length_14) above four Path-X images (128 px), each
from `lra.generate.pathfinder.sample` with a fixed seed, captioned with its label (1: the two
markers are on one path), enlarged without smoothing so that single pixels stay visible.
"""
import os

import numpy as np
from PIL import Image, ImageDraw

from lra.generate import pathfinder

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pathfinder.png")
ROWS = ((32, 8, 4), (128, 4, 2))  # (image size, images, enlargement)
GAP, CAPTION, TITLE, BACKGROUND = 4, 14, 18, 64


def draw(path: str = OUTPUT, seed: int = 0) -> str:
    width = max(count * (size * scale + GAP) for size, count, scale in ROWS)
    height = sum(TITLE + CAPTION + size * scale + GAP for size, _, scale in ROWS)
    figure = Image.new("L", (width, height), BACKGROUND)
    pen = ImageDraw.Draw(figure)
    top = 0
    for size, count, scale in ROWS:
        name = {32: "Pathfinder", 128: "Path-X"}[size]
        pen.text((2, top + 3), f"{name}: {size} x {size} px, generated "
                               f"(python -m lra.generate --task={name.lower().replace('-', '')})",
                 fill=255)
        top += TITLE
        params = pathfinder.params_for(size)
        rng = np.random.default_rng([seed, size])
        for i in range(count):
            label = (i + 1) % 2
            image = pathfinder.sample(params, label, rng).image
            x = i * (size * scale + GAP)
            pen.text((x + 2, top + 1), f"label {label}", fill=255)
            figure.paste(Image.fromarray(image).resize((size * scale,) * 2, Image.NEAREST),
                         (x, top + CAPTION))
        top += CAPTION + size * scale + GAP
    figure.save(path, optimize=True)
    return path


if __name__ == "__main__":
    print(draw())
