"""Public peers timed side by side with our rows (issue 22), from clones in a folder the user
names (`--peer_dir DIR` of benchmarks.ssm and benchmarks.attention); their code is never copied
into this repository.

    DIR/S5                a clone of https://github.com/lindermanlab/S5
    DIR/long-range-arena  a clone of https://github.com/google-research/long-range-arena

A peer's code is loaded only inside a point's fresh process (benchmarks.point) and timed there by
the same harness as our rows (benchmarks.timing: compiled apart, median of --repeats, the same
shapes and, for fwd+bwd, the same loss). `check` asks a fresh process whether each wanted peer
loads with the installed JAX and Flax (the parent starts no JAX backend); a peer whose folder is
absent, or whose code does not load, is left out and the report says why.

Peers (PEERS):
  s5         benchmarks.ssm: S5's SSM (s5/ssm.py, S5SSM) as their s5/train.py builds it: state
             size --d_state (P = d_state / 2 complex modes with conj_sym=True, their default),
             HiPPO-LegS initialisation in 8 blocks (their --blocks default; 1 block when
             d_state is not a multiple of 16), C_init 'trunc_standard_normal', discretization
             'zoh', dt in [0.001, 0.1], bidirectional unless --causal; vmapped over the batch.
             The SSM alone, y = SSM(u) + D * u, as our S4Layer. s5/ssm.py annotates S5SSM's
             fields with jax.numpy.DeviceArray (removed from JAX in 0.4.14): it is compiled with
             its annotations left unevaluated (`from __future__ import annotations`), which
             changes nothing else.
  lra_block  benchmarks.attention: LRA's local attention with blocks of --lra_block keys
             (lra_benchmarks/models/local/local_attention.py). Its module imports the removed
             flax.deprecated.nn, so its LocalAttention cannot run: its pure-JAX
             `local_dot_product_attention` (and `_invert_perm`) are loaded alone (`functions_from`)
             and called on q, k, v as LocalAttention.apply does after its projections: the
             sequence padded by block - L % block (a whole block when L is a multiple), reshaped
             to (batch, block, L / block, heads, head_dim), attention over axis 1, no mask, no
             dropout. As written there, each group of `block` keys is the tokens L / block apart;
             the work is that of contiguous blocks.
"""
import ast
import os
import sys
from collections import namedtuple

from benchmarks import ROOT, isolation
from benchmarks.rows import OK
from spade_jax.runtime.errors import PathError

# folder: under --peer_dir; repo: on GitHub; source: the file its code comes from (in folder);
# benchmark: the benchmark whose table it joins.
Peer = namedtuple("Peer", "folder repo source benchmark")
PEERS = {
    "s5": Peer("S5", "lindermanlab/S5", "s5/ssm.py", "ssm"),
    "lra_block": Peer("long-range-arena", "google-research/long-range-arena",
                      "lra_benchmarks/models/local/local_attention.py", "attention"),
}
LRA_FUNCTIONS = ("local_dot_product_attention", "_invert_perm")


def for_benchmark(benchmark: str) -> list:
    """The names of the peers that join `benchmark`'s table ('ssm' or 'attention')."""
    return [name for name, peer in PEERS.items() if peer.benchmark == benchmark]


def checked_dir(peer_dir):
    """--peer_dir as an absolute path (None stays None); PathError if it is not a folder or lies
    inside this checkout (the peers' code is never placed in the project)."""
    if peer_dir is None:
        return None
    path = os.path.realpath(os.path.expanduser(peer_dir))
    if not os.path.isdir(path):
        raise PathError(f"--peer_dir {peer_dir} is not a folder: name the folder that holds the "
                        f"peers' clones (e.g. DIR/S5 = git clone https://github.com/"
                        f"{PEERS['s5'].repo}), or leave --peer_dir out to run without peers")
    if os.path.commonpath([path, os.path.realpath(ROOT)]) == os.path.realpath(ROOT):
        raise PathError(f"--peer_dir {peer_dir} lies inside this checkout ({ROOT}): the peers' "
                        f"code must stay outside the project; clone them into another folder")
    return path


def root_of(peer_dir: str, name: str) -> str:
    """The peer's clone: <peer_dir>/<folder>."""
    return os.path.join(peer_dir, PEERS[name].folder)


def available(peer_dir: str, name: str, *, timeout_s: float = 120.0, runtime=None) -> tuple:
    """(ok, why): whether peer `name` can be measured from peer_dir. Its file must be there, and
    it must load in a fresh process (`probe`; the parent never imports JAX). ok: `why` says how it
    was loaded; not ok: why it is left out."""
    peer = PEERS[name]
    root = root_of(peer_dir, name)
    source = os.path.join(root, peer.source)
    if not os.path.isdir(root):
        return False, (f"absent: no folder {root} (clone https://github.com/{peer.repo} "
                       f"there)")
    if not os.path.isfile(source):
        return False, f"{root} holds no {peer.source} (is it a clone of {peer.repo}?)"
    result = isolation.run_point("benchmarks.peers:probe", {"name": name, "root": root},
                                 timeout_s=timeout_s, runtime=runtime)
    if result.get("status") != OK:
        return False, (f"cannot be loaded with this JAX / Flax: {result.get('status')}: "
                       f"{result.get('detail', '')}")
    return True, result["loaded"]


def check(peer_dir, names, **kwargs) -> tuple:
    """({name: how it was loaded}, {name: why it is left out}) for the peers `names`; both empty
    without --peer_dir."""
    loaded, left_out = {}, {}
    if peer_dir is None:
        return loaded, left_out
    for name in names:
        ok, why = available(peer_dir, name, **kwargs)
        (loaded if ok else left_out)[name] = why
        if not ok:
            print(f"{name}: not measured: {why}", file=sys.stderr)
    return loaded, left_out


def notes_section(loaded: dict, left_out: dict, heading: str = "Peers") -> list:
    """The report's sections for the peers: (heading, how each was loaded) and ('Not measured',
    why each left out was), each only when it has lines."""
    sections = []
    if loaded:
        sections.append((heading, "\n".join(f"- {n}: {how}" for n, how in loaded.items())))
    if left_out:
        sections.append(("Not measured", "\n".join(f"- {n}: {why}"
                                                   for n, why in left_out.items())))
    return sections


def record(peer_dir, loaded: dict, left_out: dict) -> dict:
    """What <name>.json records of the peers: {} without --peer_dir (the record is as before),
    else {'peer_dir', 'peers': how each was loaded, 'peers_not_measured': why each was not}."""
    if peer_dir is None:
        return {}
    return {"peer_dir": peer_dir, "peers": loaded, "peers_not_measured": left_out}


# ---- in a point's process ----

def probe(name: str, root: str) -> dict:
    """(In a point.) Loads peer `name` from its clone `root`: {'loaded': how}; raises if it does
    not load."""
    if name == "s5":
        _import_s5(root)
        return {"loaded": f"S5SSM from {os.path.join(root, PEERS[name].source)} (annotations "
                          f"left unevaluated: they name jax.numpy.DeviceArray)"}
    if name == "lra_block":
        _, failed = functions_from(os.path.join(root, PEERS[name].source), LRA_FUNCTIONS)
        by_error = {}
        for line, error in failed:
            by_error.setdefault(error, []).append(str(line))
        skipped = "".join(f"; lines {', '.join(lines)} fail here and are left out ({error})"
                          for error, lines in by_error.items())
        return {"loaded": f"{', '.join(LRA_FUNCTIONS)} from "
                          f"{os.path.join(root, PEERS[name].source)} (called directly{skipped})"}
    raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")


def _import_s5(root: str):
    """s5.ssm and s5.ssm_init from the clone `root` (first on sys.path); s5/ssm.py compiled with
    postponed annotations (see the module docstring)."""
    import __future__
    import importlib
    import importlib.util
    if root not in sys.path:
        sys.path.insert(0, root)
    importlib.import_module("s5")
    path = os.path.join(root, PEERS["s5"].source)
    spec = importlib.util.spec_from_file_location("s5.ssm", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["s5.ssm"] = module
    with open(path) as f:
        code = compile(f.read(), path, "exec", flags=__future__.annotations.compiler_flag,
                       dont_inherit=True)
    exec(code, module.__dict__)
    return module, importlib.import_module("s5.ssm_init")


def s5_layer(root: str, d_model: int, d_state: int, bidirectional: bool):
    """(In a point.) S5's SSM built as their s5/train.py does (see the module docstring):
    (init(key, u (L, H)) -> params, fn(params, u (batch, L, H)) -> (batch, L, H) float32)."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import block_diag

    if d_state % 2:
        raise ValueError(f"S5 with conj_sym needs an even state size, got --d_state={d_state}")
    ssm, ssm_init = _import_s5(root)
    blocks = 8 if d_state % 16 == 0 else 1
    block = d_state // blocks
    lam, _, _, v, _ = ssm_init.make_DPLR_HiPPO(block)
    half = block // 2  # conj_sym: one of each conjugate pair
    lam, v = lam[:half], v[:, :half]
    lam = (lam * jnp.ones((blocks, half))).ravel()
    layer = ssm.init_S5SSM(
        H=d_model, P=d_state // 2, Lambda_re_init=lam.real, Lambda_im_init=lam.imag,
        V=block_diag(*([v] * blocks)), Vinv=block_diag(*([v.conj().T] * blocks)),
        C_init="trunc_standard_normal", discretization="zoh", dt_min=0.001, dt_max=0.1,
        conj_sym=True, clip_eigs=False, bidirectional=bidirectional)()
    return layer.init, lambda params, u: jax.vmap(lambda seq: layer.apply(params, seq))(u)


def functions_from(path: str, names) -> tuple:
    """(In a point.) ([the named top-level functions], [(line, error) of each import that
    failed]) of a Python file whose module cannot be imported: its top-level imports are run
    (those that fail are left out), then only the named function definitions. ImportError if a named
    function is not there."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    namespace = {"__name__": os.path.splitext(os.path.basename(path))[0], "__file__": path}
    failed = []
    for node in tree.body:
        wanted = isinstance(node, ast.FunctionDef) and node.name in names
        if not (wanted or isinstance(node, (ast.Import, ast.ImportFrom))):
            continue
        code = compile(ast.Module(body=[node], type_ignores=[]), path, "exec")
        try:
            exec(code, namespace)
        except ImportError as error:
            if wanted:
                raise
            failed.append((node.lineno, f"{type(error).__name__}: {error}"))
    missing = [n for n in names if not callable(namespace.get(n))]
    if missing:
        raise ImportError(f"{path} defines no top-level {', '.join(missing)}")
    return [namespace[n] for n in names], failed


def lra_block_attention(root: str, block: int):
    """(In a point.) q, k, v (batch, L, heads, head_dim) -> (batch, L, heads, head_dim): LRA's
    local_dot_product_attention over blocks of `block` keys, as LocalAttention.apply calls it
    (see the module docstring)."""
    import jax.numpy as jnp

    (attend, _), _ = functions_from(os.path.join(root, PEERS["lra_block"].source),
                                    LRA_FUNCTIONS)

    def fn(q, k, v):
        batch, length, heads, head_dim = q.shape
        extra = block - length % block  # LocalAttention.apply's padding
        padded = length + extra
        shape = (batch, block, padded // block, heads, head_dim)
        q, k, v = (jnp.pad(t, ((0, 0), (0, extra), (0, 0), (0, 0))).reshape(shape)
                   for t in (q, k, v))
        y = attend(q, k, v, dtype=q.dtype, axis=(1,), deterministic=True)
        return y.reshape(batch, padded, heads, head_dim)[:, :length]
    return fn
