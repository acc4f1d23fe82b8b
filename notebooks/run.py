"""Executes notebooks/quickstart.ipynb (or the notebooks given) top to bottom on this machine's
kernel and fails, naming the cell, if any cell raises. CI runs it after the tests:

    python notebooks/run.py                       # needs pip install -e ".[notebook]"
    python notebooks/run.py --out=executed.ipynb  # also keep the executed copy (with outputs)

The notebook in git is saved without outputs; this script never writes back to it.
"""
import argparse
import os
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, "notebooks", "quickstart.ipynb")


def execute(path: str, timeout: int, out: str | None = None) -> float:
    """Runs every cell of `path` from the repository root; returns the wall time in seconds."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": ROOT}})
    start = time.perf_counter()
    # the notebook's runs go to a folder removed afterwards (the kernel inherits the variable)
    with tempfile.TemporaryDirectory(prefix="spade-notebook-") as runs:
        os.environ["SPADE_JAX_NOTEBOOK_RUNS"] = runs
        try:
            client.execute()
        finally:
            del os.environ["SPADE_JAX_NOTEBOOK_RUNS"]
            if out:
                nbformat.write(notebook, out)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", default=[DEFAULT])
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--out", help="write the executed notebook here (one notebook only)")
    args = parser.parse_args(argv)
    if args.out and len(args.notebooks) != 1:
        parser.error("--out takes exactly one notebook")
    for path in args.notebooks:
        try:
            seconds = execute(path, args.timeout, args.out)
        except CellExecutionError as error:
            print(f"notebook {path} failed:\n{error}", file=sys.stderr)
            return 1
        print(f"notebook {path}: every cell ran, {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
