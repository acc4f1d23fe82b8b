"""Speed, memory and scaling measurements (issue 7); never timed unit tests.

One command each, from any folder once the checkout is installed (`pip install -e .`):

    python -m benchmarks.scaling     forward+backward time and peak memory per family, L = 1K..64K
    python -m benchmarks.roofline    measured matmul peak (float32, bfloat16)
    python -m benchmarks.mfu         MFU of the LRA Text-sized training step at L = 4K
    python -m benchmarks.ssm         the S4 layer alone: kernel vs convolution, fft vs scan,
                                     dplr vs diag
    python -m benchmarks.attention   blocked local / chunk / full / jax.nn.dot_product_attention
    python -m benchmarks.generate    decoding time and memory per token (needs spade_jax.model.decode)
    python -m benchmarks.reproduce   the time-boxed accelerator run: blocks, S4 layer, MFU against
                                     the chip's published peak, ListOps for a time box

Each writes JSON, a markdown table and a log-log PNG into a fresh output folder and prints the
table; `--quick` is a smoke run in seconds. See docs/benchmarks.md.

The harness, one job per module:
    flags        the flags every benchmark takes (lengths, budgets, --quick, --set KEY=VALUE)
    text_config  the LRA Text config (configs/text.py) a benchmark measures a family at
    timing       inside a point: compile apart, time calls, peak memory, out-of-memory errors
    isolation    one fresh process per point (benchmarks.point), its time and memory budgets
    sweep        series over increasing lengths, each stopped at its first failure
    rows         a point's row: statuses, memory above baseline, time per token, lookup
    fit          growth exponents, ratios and target lines
    report       markdown tables and columns, the output folder, <name>.json / .md
    plots        log-log plots (<name>.png)
    machine      the machine header: host, versions, commit, load, the points' JAX runtime
    peers        --peer_dir: public peers (S5, LRA) from clones outside the repo, timed alike
"""
import os

# The checkout's root: configs/ and benchmarks/results/ are found from it, and the points'
# processes import benchmarks and spade_jax from it.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
