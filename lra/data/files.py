"""Finding the task files under a user's data directory, and the errors for bad input.

A user points `data_dir` at the unpacked LRA release (`lra_release/lra_release`); its parent
folders and a folder holding the generated defaults work too.
"""
import os

from spade_jax.runtime.errors import DataError

# Where the release's folders may sit relative to data_dir.
_PREFIXES = ("", "lra_release", os.path.join("lra_release", "lra_release"))


def has_dir(data_dir, relative):
    """True when find_dir would find `relative` under data_dir."""
    return any(os.path.isdir(os.path.join(data_dir, prefix, relative)) for prefix in _PREFIXES)


def find_dir(data_dir, relative, *, task, how_to_get):
    """Returns the existing folder `data_dir/[lra_release/[lra_release/]]relative`.

    Raises DataError naming every place looked at, the layout expected and how to get the data.
    """
    if data_dir is None:
        raise DataError(f"{task}: no data_dir given; {how_to_get}")
    tried = []
    for prefix in _PREFIXES:
        path = os.path.join(data_dir, prefix, relative)
        if os.path.isdir(path):
            return path
        tried.append(path)
    raise DataError(
        f"{task}: folder {relative!r} not found under data_dir {data_dir!r} (looked at "
        f"{', '.join(tried)}). {how_to_get}")


def find_files(data_dir, relative, names, *, task, how_to_get):
    """Returns the paths of `names` inside the folder found by find_dir(data_dir, relative).

    Raises DataError naming the missing file, the files expected there and how to get them.
    """
    folder = find_dir(data_dir, relative, task=task, how_to_get=how_to_get)
    paths = [os.path.join(folder, name) for name in names]
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"{task}: file {path} is missing (expected {sorted(names)} in "
                            f"{folder}). {how_to_get}")
    return paths


def generate_hint(task):
    """The sentence telling a user how to generate an offline default for `task`."""
    return (f"Point data_dir at the unpacked LRA release (lra_release/lra_release), or write an "
            f"offline default with `python -m lra.generate --task={task} --out=DIR` and pass "
            f"data_dir=DIR.")


def count_rows(path, read_rows):
    """The number of examples `read_rows(path)` yields (a pass over the whole file, checking
    every row); DataError if there are none."""
    count = sum(1 for _ in read_rows(path))
    if count == 0:
        raise DataError(f"{path}: no examples")
    return count


def cut_short(paths) -> list:
    """Notes on the text files among `paths` that end without an end of line (a copy or a
    download cut off mid-row looks like that): its last row may be incomplete."""
    notes = []
    for path in paths:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() == 0:
                continue
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                notes.append(f"{path} ends without an end of line: it may have been cut short "
                             f"(its last row is read as it is)")
    return notes
