"""The tokenised-split cache: memory-mapped numpy arrays on disk, keyed by task, options and
a fingerprint of the source files.

A cache entry is a folder `<cache_dir>/<task>-<split>-<key>/` holding one `.npy` file per field
(e.g. `inputs.npy` (N, L), `targets.npy` (N,)) and `info.json`. It is written into a temporary
folder row by row through `np.lib.format.open_memmap` (so a split is never held in memory) and
renamed into place when complete, so an interrupted build leaves no half-written entry (and the
temporary folder of a build that was killed is removed by the next build). The default
cache_dir is `<data_dir>/.lra_cache`: the only thing ever written inside a data folder; for a
data folder that cannot be written, LRA configs set `data_cache_dir`.
"""
import hashlib
import json
import logging
import os
import shutil
import time

import numpy as np

from spade_jax.runtime import paths

CACHE_VERSION = 2  # 2: info.json holds the split's statistics (cut, empty, largest ids)
CACHE_FOLDER = ".lra_cache"

log = logging.getLogger(__name__)


def fingerprint(paths):
    """A hex digest of the source files: their names, sizes and modification times.

    Contents are not read (Path-X is ~200k files, 3.3 GB), so a rewritten file is detected by its
    changed size or mtime.
    """
    h = hashlib.sha256()
    for path in sorted(paths):
        st = os.stat(path)
        h.update(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_key(task, split, options, source_paths):
    """The 16-hex-digit key of a split: task, split, reader options and source fingerprint."""
    blob = json.dumps({"version": CACHE_VERSION, "task": task, "split": split,
                       "options": options, "files": fingerprint(source_paths)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class CachedSplit:
    """A tokenised split, memory-mapped: random access to examples.

    `split[i]` is `{'inputs': int32[L], 'targets': int}` (dual tasks: `inputs1`, `inputs2`).
    Attributes: `spec` (the TaskSpec it holds examples of), `arrays` (field name -> memmap (N, L)
    or (N,)), `path`, `info`.
    """

    def __init__(self, path, spec):
        self.path, self.spec = path, spec
        with open(os.path.join(path, "info.json")) as f:
            self.info = json.load(f)
        if self.info["task"] != spec.name:
            raise ValueError(f"{path} caches task {self.info['task']!r}, not {spec.name!r}")
        self.fields = list(self.info["fields"])
        self.arrays = {name: np.load(os.path.join(path, name + ".npy"), mmap_mode="r")
                       for name in self.fields + ["targets"]}
        self._len = int(self.arrays["targets"].shape[0])
        if self._len != self.info["num_examples"] or any(
                len(self.arrays[name]) != self._len for name in self.fields):
            raise ValueError(f"{path}: arrays of {self._len} rows, info.json says "
                             f"{self.info['num_examples']}")

    @property
    def stats(self) -> dict:
        """What the reader gave, counted when the split was cached: 'cut' and 'empty' ({field:
        examples longer than the length / without a token}), 'mostly_oov' (examples whose tokens
        are mostly the task's out-of-vocabulary id), 'max_id' ({field: largest token id}),
        'max_target'."""
        return self.info["stats"]

    def summary(self) -> str | None:
        """One line on the examples that were cut, empty or mostly out of vocabulary (None when
        there were none)."""
        stats, n = self.stats, self._len
        length = {name: self.arrays[name].shape[1] for name in self.fields}
        parts = [f"{count:,} of {n:,} examples{'' if len(self.fields) == 1 else f' ({name})'} cut "
                 f"to {length[name]} tokens" for name, count in stats["cut"].items() if count]
        parts += [f"{count:,} empty{'' if len(self.fields) == 1 else f' ({name})'}"
                  for name, count in stats["empty"].items() if count]
        if stats["mostly_oov"]:
            parts.append(f"{stats['mostly_oov']:,} mostly out-of-vocabulary tokens")
        return "; ".join(parts + stats.get("notes", [])) or None

    def __getstate__(self):
        return {"path": self.path, "spec": self.spec}  # re-opened, not copied, elsewhere

    def __setstate__(self, state):
        self.__init__(state["path"], state["spec"])

    def __len__(self):
        return self._len

    def __getitem__(self, index):
        index = int(index)
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} out of range for a split of {self._len} examples")
        example = {name: np.asarray(self.arrays[name][index], dtype=np.int32)
                   for name in self.fields}
        example["targets"] = int(self.arrays["targets"][index])
        return example

    def __repr__(self):
        return f"CachedSplit({self.info['task']!r}, {self.info['split']!r}, n={self._len})"


def build_or_load(*, spec, split, options, source_paths, cache_dir, fields, num_examples,
                  rows, rebuild=False, notes=None):
    """Returns the CachedSplit for these inputs, building it first if it is not on disk.

    spec: the TaskSpec of the task (its name keys the entry; its pad_id fills the padding).
    source_paths: the files read; their names, sizes and mtimes key the entry (never read here).
    fields: {name: (length, numpy dtype)} of the token arrays, e.g. {'inputs': (2000, np.uint8)}.
    num_examples: the number of rows `rows()` will yield: an int, or a callable returning it
      (called only when the entry is built, so a count that reads the whole file costs nothing
      on a cache hit).
    rows: a callable returning an iterator of `(tokens, target)`, tokens a dict {name: 1-D int
      array} (cut to the field length and padded here with spec.pad_id), target an int.
    notes: an optional callable returning lines about the sources, kept with the statistics
      and shown in the split's summary (e.g. files.cut_short).
    """
    task = spec.name
    key = cache_key(task, split, options, source_paths)
    final = os.path.join(cache_dir, f"{task}-{split}-{key}")
    if os.path.isdir(final) and not rebuild:
        try:
            return CachedSplit(final, spec)
        except (OSError, ValueError, KeyError) as e:  # a cut or garbled entry: it is a cache
            message = (f"the token cache {final} is damaged ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200] if str(e) else ''}); rebuilding it")
            log.warning(message)
            print(f"lra: {message}", flush=True)
            rebuild = True
    start = time.time()
    if callable(num_examples):
        num_examples = num_examples()
    with paths.atomic_folder(final, prefix=f".{task}-{split}-", what="the token cache",
                             hint="set --config.data_cache_dir=DIR to a writable folder (in "
                                  "Python: pass cache_dir= to load_split)") as tmp:
        _write(tmp, spec=spec, split=split, options=options, key=key, fields=fields,
               num_examples=num_examples, rows=rows, notes=notes() if notes else [])
        if rebuild and os.path.isdir(final):
            shutil.rmtree(final)
    log.info("cached %s/%s: %d examples in %.1f s at %s", task, split, num_examples,
             time.time() - start, final)
    return CachedSplit(final, spec)


def _write(tmp, *, spec, split, options, key, fields, num_examples, rows, notes=()):
    """Writes one cache entry into the folder `tmp` (see build_or_load): the arrays, and in
    info.json the split's statistics (CachedSplit.stats). Tokens longer than their field are
    cut here, and counted."""
    task = spec.name
    arrays = {name: np.lib.format.open_memmap(os.path.join(tmp, name + ".npy"), mode="w+",
                                              dtype=dtype, shape=(num_examples, length))
              for name, (length, dtype) in fields.items()}
    if spec.pad_id:
        for array in arrays.values():
            array[:] = spec.pad_id  # the files start as zeros
    targets = np.zeros((num_examples,), np.int32)
    cut, empty = dict.fromkeys(fields, 0), dict.fromkeys(fields, 0)
    max_id, mostly_oov = dict.fromkeys(fields, 0), 0
    count = 0
    for tokens, target in rows():
        if count >= num_examples:
            raise RuntimeError(f"{task}/{split}: reader yielded more than {num_examples} rows")
        oov = real = 0
        for name, values in tokens.items():
            values = np.asarray(values)
            length = fields[name][0]
            if len(values) > length:
                cut[name] += 1
                values = values[:length]
            arrays[name][count, :len(values)] = values
            present = values[values != spec.pad_id] if spec.padded else values
            empty[name] += not len(present)
            if len(present):
                max_id[name] = max(max_id[name], int(present.max()))
            real += len(present)
            if spec.oov_id is not None:
                oov += int(np.sum(present == spec.oov_id))
        mostly_oov += real > 0 and oov * 2 > real
        targets[count] = target
        count += 1
    if count != num_examples:
        raise RuntimeError(f"{task}/{split}: reader yielded {count} rows, expected "
                           f"{num_examples}")
    for array in arrays.values():
        array.flush()
    del arrays
    np.save(os.path.join(tmp, "targets.npy"), targets)
    stats = {"cut": cut, "empty": empty, "mostly_oov": int(mostly_oov), "max_id": max_id,
             "max_target": int(targets.max()) if num_examples else 0, "notes": list(notes)}
    with open(os.path.join(tmp, "info.json"), "w") as f:
        json.dump({"task": task, "split": split, "options": options, "key": key,
                   "fields": sorted(fields), "num_examples": num_examples, "stats": stats},
                  f, indent=1)
