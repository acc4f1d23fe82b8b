"""Forward+backward time per token and peak memory against sequence length, for one block and
for a small model of each family at the same width (issue 7, `scaling`).

    python -m benchmarks.scaling [--lengths=1K,2K,4K,8K,16K,32K,64K] [--families=spade,...]
                                 [--scopes=block,model] [--batch=1] [--repeats=5] [--quick]

Families (lra.configs): spade (S4 beside window attention in layer 0, window attention above),
spade_chunk (chunk attention instead of the window), local (window attention only), s4 (S4
blocks only), transformer (full attention). All at the LRA Text width of configs/text.py
(d_model 128, 4 heads, d_ff 256, radius 127, chunk 128, S4 d_state 64, relative positions).
Scopes: 'block' is a one-layer classifier (embedding, ONE block of the family -- for spade its
global block --, mean pooling, linear head); 'model' is the 4-layer classifier. One point = one
`jax.value_and_grad` of the cross-entropy on random tokens (batch x L), dropout off, in a fresh
process; compile time is reported apart; the median of --repeats steps after warm-up.

Prints a table per point, the fitted growth exponent of time per sequence (and of memory) per
family, and the issue's targets: SPADE block >= 20x faster than the full-attention block at
L = 16K with <= 1/10 of its memory; SPADE's time exponent from 1K to 64K <= 1.15.
"""
import sys

from benchmarks import fit, flags, plots, report, sweep, text_config, timing
from benchmarks.rows import OK, exit_code, find, memory_above_base, memory_mib, per_token_us
from spade_jax.runtime import cli
from spade_jax.model import families

FAMILIES = tuple(families.FAMILIES)
SCOPES = ("block", "model")
TARGET_LENGTH = 16384


def measure(model: dict, length: int, batch: int, repeats: int, warmup: int,
            deadline=None) -> dict:
    """(In a point.) Times value_and_grad of the classifier `model` (ModelConfig fields) on
    random tokens (batch, length)."""
    import flax.linen as nn
    import jax
    import optax

    from spade_jax.model import models
    from spade_jax.model.config import ModelConfig

    cfg = ModelConfig.from_config(dict(model, max_len=length))
    net = models.build_model(cfg)
    key_tokens, key_labels, key_init = jax.random.split(jax.random.PRNGKey(0), 3)
    tokens = jax.random.randint(key_tokens, (batch, length), 1, cfg.vocab_size)
    labels = jax.random.randint(key_labels, (batch,), 0, cfg.num_classes)
    params = nn.unbox(jax.jit(net.init)(key_init, tokens[:, :8])["params"])

    def loss(p, tokens, labels):
        logits = net.apply({"params": p}, tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    stats = timing.time_jitted(jax.value_and_grad(loss), params, tokens, labels,
                               repeats=repeats, warmup=warmup, deadline=deadline)
    return dict(stats, tokens=batch * length, layers=list(families.layer_kinds(cfg)),
                params=sum(x.size for x in jax.tree_util.tree_leaves(params)),
                analytic_flops=families.train_step_flops(cfg, length, batch))


COLUMNS = [("scope", lambda r: r["scope"]), ("family", lambda r: r["family"])] + \
    report.TIMING_COLUMNS + [
    report.PER_TOKEN_COLUMN,
    ("GFLOP/s", lambda r: report.fmt(report.div(
        report.div(r.get("analytic_flops"), r.get("median_s")), 1e9))),
] + report.MEMORY_COLUMNS


def targets(rows, fits, lengths):
    at = TARGET_LENGTH if TARGET_LENGTH in lengths else max(lengths)
    label = flags.length_label(at)
    spade = find(rows, scope="block", family="spade", length=at)
    full = find(rows, scope="block", family="transformer", length=at)
    ok = all(r is not None and r["status"] == OK for r in (spade, full))
    missing = fit.why_missing({"spade block": spade, "transformer block": full})
    speed = full["median_s"] / spade["median_s"] if ok else None
    m_spade, m_full = (memory_above_base(r) if ok else None for r in (spade, full))
    memory = m_spade / m_full if ok and m_spade is not None and m_full else None
    out = [
        fit.target(f"SPADE block fwd+bwd at L={label}: speed-up over the full-attention block",
                   speed, 20, higher_is_better=True, unit="x", missing=missing),
        fit.target(f"SPADE block peak memory at L={label} as a fraction of the full-attention "
                   f"block's", memory, 0.1, higher_is_better=False,
                   missing=missing or "no memory statistics"),
    ]
    for scope in SCOPES:
        spade_fit = fits["time"].get(f"{scope}/spade")
        span = (f"{flags.length_label(spade_fit['from'])}..{flags.length_label(spade_fit['to'])}"
                if spade_fit else "1K..64K")
        out.append(fit.target(
            f"growth exponent of SPADE ({scope}) time per sequence, L = {span}",
            spade_fit and spade_fit["exponent"], 1.15, higher_is_better=False,
            missing="fewer than two lengths measured"))
    return out


@cli.user_errors
def main(argv=None):
    p = flags.parser(__doc__, batch=1)
    flags.add_names(p, "--families", FAMILIES)
    flags.add_names(p, "--scopes", SCOPES)
    flags.add_config_overrides(p)
    args = flags.parse(p, argv)
    if any(not key.startswith("model.") for key, _ in args.set):
        p.error("--set: scaling takes model fields only (model.<field>=<value>)")
    # --set comes last: it may change what --quick and the dropout-free step set (dropout too)
    changes = dict(text_config.QUICK_MODEL if args.quick else {}, dropout=0.0)
    changes.update((key[len("model."):], value) for key, value in args.set)
    out, header = report.start("scaling", args)
    series = []
    for scope in args.scopes:
        for family in args.families:
            model = text_config.text_model(f"model={family}", **changes)
            if scope == "block":
                model.update(num_layers=1, global_layers=[0])
            series.append({"label": f"{scope}/{family}", "scope": scope, "family": family,
                           "kwargs": {"model": model, "batch": args.batch}})
    rows = sweep.run(series, args.lengths, args, "benchmarks.scaling:measure",
                     runtime=header)
    fits, fit_sections = fit.growth(rows)
    goals = targets(rows, fits, args.lengths)

    def plot(path):
        panels = []
        for scope in args.scopes:
            mine = [r for r in rows if r["scope"] == scope]
            panels.append({"title": f"{scope}: forward+backward time per token",
                           "ylabel": "microseconds per token",
                           "guides": plots.PER_TOKEN_GUIDES,
                           "series": plots.series_points(mine, per_token_us,
                                                         key=lambda r: r["family"])})
            panels.append({"title": f"{scope}: peak memory above a fresh JAX process",
                           "ylabel": "MiB", "series": plots.series_points(
                               mine, memory_mib, key=lambda r: r["family"])})
        plots.loglog_plot(path, panels, f"scaling (batch {args.batch})")

    report.write_report(out, "scaling", header=header, args=args, rows=rows, plot=plot,
                        targets=goals, data={"fits": fits}, sections=[
                            (f"Forward+backward, batch {args.batch}"
                             f"{flags.overrides_label(args)}",
                             report.markdown_table(rows, COLUMNS))] + fit_sections)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
