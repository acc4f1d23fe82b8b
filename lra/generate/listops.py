"""The ListOps generator of LRA, faithfully: random operator trees, length window,
de-duplication, left-nested `( left right )` rendering, `Source\\tTarget` TSVs.

tree(depth): below max_depth draw r ~ U(0, 1), at max_depth r = 1; r > 0.25 gives a digit leaf
(length 1); otherwise an operator node with randint(2, max_args) children (built first, at
depth + 1), then the operator from MIN, MAX, MED, SM; its length is 2 + sum of the children's.
Trees start at depth 1. Only trees with min_length < length < max_length are kept.
"""
import os
import random

import numpy as np

from lra.generate.progress import progress_bar
from spade_jax.runtime.errors import ConfigError

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
VALUE_P = 0.25


def generate_tree(rng, depth=1, max_depth=10, max_args=10):
    """Returns (tree, length): tree a digit int or (operator, [children]); length its tokens."""
    r = rng.random() if depth < max_depth else 1.0
    if r > VALUE_P:
        return rng.choice(range(10)), 1
    num_args = rng.randint(2, max_args)
    children, length = [], 2
    for _ in range(num_args):
        child, child_length = generate_tree(rng, depth + 1, max_depth, max_args)
        children.append(child)
        length += child_length
    return (rng.choice(OPERATORS), children), length


def evaluate(tree):
    """The value 0..9 of a tree: MIN, MAX, MED (int of numpy's median), SM (sum mod 10)."""
    if isinstance(tree, int):
        return tree
    op, children = tree
    values = [evaluate(c) for c in children]
    if op == "[MIN":
        return min(values)
    if op == "[MAX":
        return max(values)
    if op == "[MED":
        return int(np.median(values))
    return sum(values) % 10


def render(tree):
    """The release's string: `( ( ( [OP a ) b ) ... ] )`, pairs nested to the left."""
    if isinstance(tree, int):
        return str(tree)
    op, children = tree
    text = f"( {op} {render(children[0])} )"
    for child in children[1:]:
        text = f"( {text} {render(child)} )"
    return f"( {text} {END} )"


def generate(num, seed, *, min_length=500, max_length=2000, max_depth=10, max_args=10):
    """Returns `num` distinct (source, target) pairs, in draw order, of trees with
    min_length < length < max_length (strict, as LRA)."""
    if not 0 <= min_length < max_length - 1:
        raise ConfigError(f"listops: --min_length / config.generate.min_length ({min_length}) "
                          f"must be >= 0 and below --max_length - 1 ({max_length - 1}): trees "
                          f"are kept when min_length < length < max_length")
    rng = random.Random(seed)
    seen, data = set(), []
    with progress_bar(num, "tree") as bar:  # one random stream, as LRA's: one process
        while len(data) < num:
            tree, length = generate_tree(rng, 1, max_depth, max_args)
            if min_length < length < max_length:
                source = render(tree)
                if source not in seen:
                    seen.add(source)
                    data.append((source, evaluate(tree)))
                    bar.update()
    return data


def split_sizes(num):
    """Train/val/test sizes: the release's 96k/2k/2k for num = 100k, same proportions else."""
    val = test = max(1, num // 50)
    return num - val - test, val, test


def write(out, num=100_000, seed=0, *, min_length=500, max_length=2000, **kwargs):
    """Writes `out/listops-1000/basic_{train,val,test}.tsv`; returns their paths."""
    data = generate(num, seed, min_length=min_length, max_length=max_length, **kwargs)
    n_train, n_val, _ = split_sizes(num)
    parts = {"basic_train.tsv": data[:n_train], "basic_val.tsv": data[n_train:n_train + n_val],
             "basic_test.tsv": data[n_train + n_val:]}
    folder = os.path.join(out, "listops-1000")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, rows in parts.items():
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("Source\tTarget\n")
            for source, target in rows:
                f.write(f"{source}\t{target}\n")
        paths.append(path)
    return paths
