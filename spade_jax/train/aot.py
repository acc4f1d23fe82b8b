"""A job's steps compiled ahead of time for a device set (abstract TPU devices included) and
what the compiler says of each: memory per chip and whether it fits, FLOPs and bytes per step,
the compiler's own step-time estimate beside a roofline bound, the collectives, where the bytes
go.

    job = spade_jax.train.job.build(config, task, devices=accelerators.topology_devices(accel))
    reports = compile_steps(job, accel.chip)      # [train, eval(, decode)] step reports

Every figure is per chip (per device) and per step, read from the compiled executable:
`memory_analysis()` (arguments, outputs, aliased donations, temporaries, code), `cost_analysis()`
('flops', 'bytes accessed', 'optimal_seconds') and the optimised HLO text (collectives, the
memory traffic by source). Nothing runs. The compiler's 'optimal_seconds' is an estimate, never
a measurement, and it is kept only where it is sane (positive and not below half the roofline
bound; it came back negative for the full Path-X steps); otherwise the roofline bound alone
stands, and `time_basis` says which.
"""
import math
import re
import time

import jax
import numpy as np

from spade_jax.model import decode
from spade_jax.train import sharding

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s4": 1, "u4": 1, "f8e4m3fn": 1, "f8e5m2": 1,
          "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4,
          "f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16}
_OP = re.compile(r"=\s*(.*?)\s(" + "|".join(COLLECTIVES) + r")(-start)?\(")
# An array in HLO text: dtype, dimensions and, where printed, its layout ({1,0:T(8,128)S(1)}).
_ARRAY = re.compile(r"\b(" + "|".join(_BYTES) + r")\[([\d,]*)\](\{[^}]*\})?")
# The TPU compiler's refusal when a program's temporaries cannot fit, e.g. "the total memory
# required for HLO temporaries (48.10G) exceeds available HBM (30.75G)".
_OOM_NEEDED = re.compile(r"required for [^(]*\((\d+(?:\.\d+)?)([KMGT])\)")
_OOM_AVAILABLE = re.compile(r"available HBM \((\d+(?:\.\d+)?)([KMGT])\)")
_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _array_bytes(text: str) -> list:
    return [_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d)
            for dtype, dims, _ in _ARRAY.findall(text)]


def collectives(hlo_text: str) -> list:
    """[{'kind', 'count', 'bytes'}] of the collectives in an optimised HLO module's text, by
    kind. bytes: the result arrays of each op (an asynchronous start: its largest array, the
    transferred buffer). A loop body's collectives count once, not once per iteration."""
    found = {}
    for line in hlo_text.splitlines():
        match = _OP.search(line)
        if not match:
            continue
        shape, kind, start = match.groups()
        sizes = _array_bytes(shape)
        entry = found.setdefault(kind, {"kind": kind, "count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += (max(sizes) if start else sum(sizes)) if sizes else 0
    return [found[k] for k in COLLECTIVES if k in found]


# One instruction of an HLO module's text: name, result shape, opcode, the rest of the line.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.+?)\s([a-z][a-z0-9\-]*)\((.*)$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
# Instructions that move nothing themselves: their arrays are counted where they are made or used.
_NO_TRAFFIC = {"get-tuple-element", "bitcast", "parameter", "constant", "tuple", "after-all",
               "copy-done", "slice-done"}


def _padded(dims: list, layout: str) -> int:
    """Elements of an array as its layout stores it: the minor dimensions of a tiled layout
    (e.g. {1,0:T(8,128)}) rounded up to whole tiles, as the TPU reads and writes them."""
    order, _, rest = (layout or "").strip("{}").partition(":")
    tile = re.match(r"T\(([\d,]+)\)", rest)
    if not dims or not tile or not order:
        return math.prod(dims)
    physical = [dims[int(i)] for i in reversed(order.split(","))]  # major to minor
    sizes = [int(t) for t in tile.group(1).split(",")]
    for k, size in enumerate(reversed(sizes)):
        if k < len(physical):
            physical[-1 - k] = -(-physical[-1 - k] // size) * size
    return math.prod(physical)


def _arrays(shape: str) -> list:
    """[(bytes, in HBM)] of the arrays in `shape`, in order, as their layouts store them (whole
    tiles). A layout's S(n) names another memory space than HBM (S(1): the TPU core's on-chip
    VMEM), whose reads and writes cost no HBM bandwidth."""
    out = []
    for dtype, dims, layout in _ARRAY.findall(shape):
        dims = [int(d) for d in dims.split(",") if d]
        out.append((_BYTES[dtype] * _padded(dims, layout), "S(" not in (layout or "")))
    return out


def _moved(opcode: str, shape: str, operand_shapes: list) -> tuple:
    """(bytes, HBM bytes) one instruction reads and writes: its operands and results, or for an
    asynchronous copy or slice, what it copies (copy-start's result is (destination, source,
    context), slice-start's ((source), destination, context): a slice reads what it writes)."""
    if opcode in ("copy-start", "slice-start"):
        arrays = _arrays(shape)
        if len(arrays) < 2:
            return 0, 0
        (first, first_hbm), (second, second_hbm) = arrays[:2]
        size = second if opcode == "slice-start" else first
        return 2 * size, size * first_hbm + size * second_hbm
    arrays = _arrays(shape) + [a for s in operand_shapes for a in _arrays(s)]
    return sum(size for size, _ in arrays), sum(size for size, in_hbm in arrays if in_hbm)


def _source(op_name: str) -> str:
    """'fwd' / 'bwd' and the model path of a JAX op name, e.g.
    'jit(train_step)/transpose(jvp(SequenceClassifier))/encoder/layer_1/mixer/dot_general'
    -> 'bwd encoder/layer_1/mixer/dot_general'; '' -> '(unnamed)'."""
    if not op_name:
        return "(unnamed)"
    backward = "transpose(" in op_name
    parts = [p for p in op_name.split("/")[1:] if p]
    parts = [re.sub(r"^(?:transpose\(|jvp\(|jit\()+|\)+$", "", p) for p in parts]
    if parts and parts[0][:1].isupper():  # the model class at the top
        parts = parts[1:]
    return ("bwd " if backward else "fwd ") + "/".join(p for p in parts if p)


def traffic(hlo_text: str, top: int = 10) -> dict:
    """Where a compiled step's memory traffic goes, from its optimised HLO module's text:
    {'bytes', 'hbm_bytes', 'sources': [{'source', 'bytes', 'hbm_bytes'}, ...]}, the `top`
    sources that move most.

    Each instruction of the entry computation reads its operands and writes its results
    ('bytes': every memory space, as the compiler's 'bytes accessed' counts them; 'hbm_bytes':
    the arrays the compiler left in HBM, not in the on-chip VMEM); an asynchronous copy or slice
    moves what it copies. Instructions are grouped by the JAX op that made them (an unnamed one,
    such as the compiler's prefetch, by the first named instruction that uses it): forward or
    backward, the module path, the primitive (see _source). An account, not the compiler's own
    sum: a fusion that reads an operand twice counts it once, and a while loop's body once."""
    lines = hlo_text.splitlines()
    entry = next((i for i, line in enumerate(lines) if line.startswith("ENTRY")), None)
    shapes, rows, users = {}, [], {}
    for line in lines[entry + 1:] if entry is not None else []:
        if line.startswith("}"):
            break
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        name, shape, opcode, rest = match.groups()
        operands = re.findall(r"%([\w.\-]+)", rest.split("), ")[0])
        op_name = _OP_NAME.search(line)
        shapes[name] = shape
        rows.append((name, shape, opcode, operands, op_name.group(1) if op_name else ""))
        for operand in operands:
            users.setdefault(operand, []).append(len(rows) - 1)

    def named_by(index, depth=0):  # the op name of a row, or of the first named row using it
        name, _, opcode, _, op_name = rows[index]
        if op_name and opcode not in _NO_TRAFFIC:
            return op_name
        for user in users.get(name, [])[:4] if depth < 6 else []:
            found = named_by(user, depth + 1)
            if found:
                return found
        return op_name

    sources, total, total_hbm = {}, 0, 0
    for index, (name, shape, opcode, operands, _) in enumerate(rows):
        if opcode in _NO_TRAFFIC:
            continue
        moved, hbm = _moved(opcode, shape, [shapes.get(o, "") for o in operands])
        if moved:
            tally = sources.setdefault(_source(named_by(index)), [0, 0])
            tally[0] += moved
            tally[1] += hbm
            total, total_hbm = total + moved, total_hbm + hbm
    ranked = sorted(sources.items(), key=lambda kv: -kv[1][0])[:top]
    return {"bytes": total, "hbm_bytes": total_hbm,
            "sources": [{"source": s, "bytes": b, "hbm_bytes": h} for s, (b, h) in ranked]}


def tree_bytes_per_device(tree) -> int:
    """Bytes of one device's shard of every array in `tree` (ShapeDtypeStructs with shardings,
    or arrays)."""
    total = 0
    for x in jax.tree_util.tree_leaves(tree):
        shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
        total += math.prod(shape) * np.dtype(x.dtype).itemsize
    return total


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # some JAX versions: one dict per program
        cost = cost[0] if cost else {}
    return dict(cost or {})


def roofline_s(flops: float, bytes_accessed: float, chip) -> float:
    """The least time a step can take on `chip`: its FLOPs at the peak bfloat16 rate or its bytes
    at the HBM bandwidth, whichever is longer."""
    return max(flops / chip.peak_flops, bytes_accessed / chip.hbm_bandwidth)


def sane_estimate(optimal_s, roofline: float):
    """The compiler's estimate if usable: finite, positive and at least half the roofline bound
    (the bound is a floor; an estimate far below it is wrong). Else None."""
    if optimal_s is None or not math.isfinite(optimal_s) or optimal_s <= 0:
        return None
    return float(optimal_s) if optimal_s >= 0.5 * roofline else None


def out_of_memory(error: Exception) -> dict | None:
    """{'needed_bytes', 'available_bytes', 'message'} when `error` is the compiler's refusal of a
    program that cannot fit in HBM (RESOURCE_EXHAUSTED), else None."""
    text = str(error)
    if "RESOURCE_EXHAUSTED" not in text and "Ran out of memory" not in text:
        return None
    size = lambda m: float(m.group(1)) * _UNITS[m.group(2)] if m else None  # noqa: E731
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    return {"needed_bytes": size(_OOM_NEEDED.search(text)),
            "available_bytes": size(_OOM_AVAILABLE.search(text)), "message": first[:500]}


def analyse(name: str, lowered, chip, *, state_bytes: int, batch_bytes: int) -> dict:
    """Compiles `lowered` and reads the compiler's answers (see the module docstring) for `chip`
    (spade_jax.runtime.accelerators.Chip; None: no fit verdict, no roofline). state_bytes /
    batch_bytes: the per-device bytes of the step's state (or parameters) and batch arguments.
    A program the compiler refuses for memory gives fits False and its message."""
    report = {"step": name, "state_bytes": state_bytes, "batch_bytes": batch_bytes}
    started = time.perf_counter()
    try:
        compiled = lowered.compile()
    except Exception as error:  # noqa: BLE001 - only the compiler's out-of-memory refusal is an answer
        oom = out_of_memory(error)
        if oom is None:
            raise
        report.update(compile_s=time.perf_counter() - started, fits=False, refused=oom,
                      peak_memory_per_chip_bytes=oom["needed_bytes"])
        return report
    report["compile_s"] = time.perf_counter() - started
    memory = compiled.memory_analysis()
    peak = (memory.argument_size_in_bytes + memory.output_size_in_bytes
            - memory.alias_size_in_bytes + memory.temp_size_in_bytes
            + memory.generated_code_size_in_bytes)
    report.update(argument_bytes=memory.argument_size_in_bytes,
                  output_bytes=memory.output_size_in_bytes,
                  alias_bytes=memory.alias_size_in_bytes, temp_bytes=memory.temp_size_in_bytes,
                  code_bytes=memory.generated_code_size_in_bytes,
                  peak_memory_per_chip_bytes=peak)
    cost, text = _cost(compiled), compiled.as_text()
    flops, moved = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
    report.update(flops_per_step=flops, bytes_accessed_per_step=moved,
                  transcendentals=float(cost.get("transcendentals", 0.0)),
                  compiler_optimal_s=cost.get("optimal_seconds"),
                  collectives=collectives(text), traffic=traffic(text))
    if chip is not None:
        bound = roofline_s(flops, moved, chip)
        estimate = sane_estimate(cost.get("optimal_seconds"), bound)
        report.update(fits=peak <= chip.hbm_bytes, free_bytes=chip.hbm_bytes - peak,
                      roofline_s=bound, estimate_s=estimate,
                      bound_by="memory" if moved / chip.hbm_bandwidth
                      >= flops / chip.peak_flops else "compute",
                      step_s=estimate if estimate is not None else bound,
                      time_basis="compiler estimate" if estimate is not None else "roofline")
    return report


def _decode_step(job):
    """(lowered decode step, per-device cache bytes) for a language model: one token for each
    of the eval batch's rows against the recurrent cache (spade_jax.model.decode)."""
    model = decode.decoding_model(job.model_cfg)
    rows = job.engine.eval_batch
    params = job.abstract_state.params
    cache = jax.eval_shape(lambda p: decode.init_cache(model, p, rows), params)
    split = sharding.batch_sharding(job.mesh, 1).spec[0]
    data_parallel = math.prod(job.mesh.shape[a] for a in split)

    def placed(x):  # the rows' axis split like a batch, the rest (S4's system) replicated
        by_rows = x.ndim and x.shape[0] == rows and rows % data_parallel == 0
        spec = (split,) + (None,) * (x.ndim - 1) if by_rows else ()
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=jax.sharding.NamedSharding(
            job.mesh, jax.sharding.PartitionSpec(*spec)))

    cache = jax.tree_util.tree_map(placed, cache)
    tokens = jax.ShapeDtypeStruct((rows,), np.int32, sharding=sharding.batch_sharding(job.mesh, 1))
    step = jax.jit(lambda p, c, t: decode.step(model, p, c, t), donate_argnums=1)
    with job.context():
        return step.lower(params, cache, tokens), tree_bytes_per_device(cache)


def compile_steps(job, chip, steps=("train", "eval", "decode")) -> list:
    """The reports (`analyse`) of the job's train step (config.batch_size rows), eval step (the
    eval batch) and, for a language model, decode step, in that order (those named in `steps`)."""
    reports = []
    state = job.abstract_state
    if "train" in steps:
        batch = job.batch()
        reports.append(analyse("train", job.lower_train_step(state, batch), chip,
                               state_bytes=tree_bytes_per_device(state),
                               batch_bytes=tree_bytes_per_device(batch)))
    if "eval" in steps:
        batch = job.batch(job.engine.eval_batch)
        reports.append(analyse("eval", job.lower_eval_step(state.params, batch), chip,
                               state_bytes=tree_bytes_per_device(state.params),
                               batch_bytes=tree_bytes_per_device(batch)))
    if "decode" in steps and job.model_cfg.head == "lm":
        lowered, cache_bytes = _decode_step(job)
        reports.append(analyse("decode", lowered, chip,
                               state_bytes=tree_bytes_per_device(state.params),
                               batch_bytes=cache_bytes))
    return reports
