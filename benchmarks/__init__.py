"""Speed, memory and scaling measurements (issue 7); never timed unit tests.

One command each, from any folder once the checkout is installed (`pip install -e .`):

    python -m benchmarks.scaling     forward+backward time and peak memory per family, L = 1K..64K
    python -m benchmarks.roofline    measured matmul peak (float32, bfloat16)
    python -m benchmarks.mfu         MFU of the LRA Text-sized training step at L = 4K
    python -m benchmarks.ssm         the S4 layer alone: kernel vs convolution, fft vs scan,
                                     dplr vs diag
    python -m benchmarks.attention   blocked local / chunk / full / jax.nn.dot_product_attention
    python -m benchmarks.generate    decoding time and memory per token (needs spade_jax.decode)
    python -m benchmarks.reproduce   the time-boxed accelerator run: blocks, S4 layer, MFU against
                                     the chip's published peak, ListOps for a time box

Each writes JSON, a markdown table and a log-log PNG into a fresh output folder and prints the
table; `--quick` is a smoke run in seconds. See docs/benchmarks.md and benchmarks/common.py.
"""
