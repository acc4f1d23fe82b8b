"""Speed of the Pathfinder / Path-X generator: ms per image in one process at each image size,
against the original generator's ~0.3 s (32 px) and ~2 s (128 px) per image on one core.

    python benchmarks/lra_generate.py [--images=200]

For the end-to-end rate with all cores and PNG writing, time `python -m lra.generate
--task=pathfinder --out=DIR --num=N` (it prints images/s).
"""
import argparse
import time

import numpy as np

from lra.generate import pathfinder

ORIGINAL_S = {32: 0.3, 128: 2.0}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--sizes", default="32,64,128,256")
    args = parser.parse_args()
    for size in map(int, args.sizes.split(",")):
        p = pathfinder.params_for(size)
        rng = np.random.default_rng(0)
        pathfinder.make_image(p, 1, rng)  # warm-up
        start = time.perf_counter()
        for i in range(args.images):
            pathfinder.make_image(p, i % 2, rng)
        per = (time.perf_counter() - start) / args.images
        vs = (f", {ORIGINAL_S[size] / per:.0f}x faster than the original's "
              f"{ORIGINAL_S[size]} s" if size in ORIGINAL_S else "")
        print(f"{size:4d} px: {per * 1e3:6.1f} ms/image, {1 / per:6.0f} images/s per process{vs}")


if __name__ == "__main__":
    main()
