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

from benchmarks import common
from spade_jax import cli

FAMILIES = ("spade", "spade_chunk", "local", "s4", "transformer")  # lra.configs.FAMILIES
SCOPES = ("block", "model")
TARGET_LENGTH = 16384


def measure(model: dict, length: int, batch: int, repeats: int, warmup: int) -> dict:
    """(In a point.) Times value_and_grad of the classifier `model` (ModelConfig fields) on
    random tokens (batch, length)."""
    import flax.linen as nn
    import jax
    import optax

    from spade_jax import flops, models
    from spade_jax.config import ModelConfig

    cfg = ModelConfig.from_config(dict(model, max_len=length))
    net = models.build_model(cfg)
    key_tokens, key_labels, key_init = jax.random.split(jax.random.PRNGKey(0), 3)
    tokens = jax.random.randint(key_tokens, (batch, length), 1, cfg.vocab_size)
    labels = jax.random.randint(key_labels, (batch,), 0, cfg.num_classes)
    params = nn.unbox(jax.jit(net.init)(key_init, tokens[:, :8])["params"])

    def loss(p, tokens, labels):
        logits = net.apply({"params": p}, tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    stats = common.time_jitted(jax.value_and_grad(loss), params, tokens, labels,
                               repeats=repeats, warmup=warmup)
    return dict(stats, tokens=batch * length, layers=list(cfg.layer_kinds()),
                params=sum(x.size for x in jax.tree_util.tree_leaves(params)),
                analytic_flops=flops.train_step_flops(cfg, length, batch))


COLUMNS = [("scope", lambda r: r["scope"]), ("family", lambda r: r["family"])] + \
    common.TIMING_COLUMNS + [
    common.PER_TOKEN_COLUMN,
    ("GFLOP/s", lambda r: common.fmt(common.div(
        common.div(r.get("analytic_flops"), r.get("median_s")), 1e9))),
] + common.MEMORY_COLUMNS


def targets(rows, fits, lengths):
    at = TARGET_LENGTH if TARGET_LENGTH in lengths else max(lengths)
    label = common.length_label(at)
    spade = common.find(rows, scope="block", family="spade", length=at)
    full = common.find(rows, scope="block", family="transformer", length=at)
    ok = all(r is not None and r["status"] == common.OK for r in (spade, full))
    missing = common.why_missing({"spade block": spade, "transformer block": full})
    speed = full["median_s"] / spade["median_s"] if ok else None
    m_spade, m_full = (common.memory_above_base(r) if ok else None for r in (spade, full))
    memory = m_spade / m_full if ok and m_spade is not None and m_full else None
    out = [
        common.target(f"SPADE block fwd+bwd at L={label}: speed-up over the full-attention block",
                      speed, 20, higher_is_better=True, unit="x", missing=missing),
        common.target(f"SPADE block peak memory at L={label} as a fraction of the full-attention "
                      f"block's", memory, 0.1, higher_is_better=False,
                      missing=missing or "no memory statistics"),
    ]
    for scope in SCOPES:
        fit = fits["time"].get(f"{scope}/spade")
        span = (f"{common.length_label(fit['from'])}..{common.length_label(fit['to'])}" if fit
                else "1K..64K")
        out.append(common.target(
            f"growth exponent of SPADE ({scope}) time per sequence, L = {span}",
            fit and fit["exponent"], 1.15, higher_is_better=False,
            missing="fewer than two lengths measured"))
    return out


@cli.user_errors
def main(argv=None):
    p = common.parser(__doc__, batch=1)
    common.add_names(p, "--families", FAMILIES)
    common.add_names(p, "--scopes", SCOPES)
    common.add_config_overrides(p)
    args = common.parse(p, argv)
    if any(not key.startswith("model.") for key, _ in args.set):
        p.error("--set: scaling takes model fields only (model.<field>=<value>)")
    changes = dict(common.QUICK_MODEL if args.quick else {}, dropout=0.0,
                   **{key[len("model."):]: value for key, value in args.set})
    out, header = common.start("scaling", args)
    series = []
    for scope in args.scopes:
        for family in args.families:
            model = common.text_model(f"model={family}", **changes)
            if scope == "block":
                model.update(num_layers=1, global_layers=[0])
            series.append({"label": f"{scope}/{family}", "scope": scope, "family": family,
                           "kwargs": {"model": model, "batch": args.batch}})
    rows = common.sweep(series, args.lengths, args, "benchmarks.scaling:measure")
    fits, fit_sections = common.growth(rows)
    goals = targets(rows, fits, args.lengths)

    def plot(path):
        panels = []
        for scope in args.scopes:
            mine = [r for r in rows if r["scope"] == scope]
            panels.append({"title": f"{scope}: forward+backward time per token",
                           "ylabel": "microseconds per token",
                           "guides": common.PER_TOKEN_GUIDES,
                           "series": common.series_points(mine, common.per_token_us,
                                                          key=lambda r: r["family"])})
            panels.append({"title": f"{scope}: peak memory above a fresh JAX process",
                           "ylabel": "MiB", "series": common.series_points(
                               mine, common.memory_mib, key=lambda r: r["family"])})
        common.loglog_plot(path, panels, f"scaling (batch {args.batch})")

    common.write_report(out, "scaling", header=header, args=args, rows=rows, plot=plot,
                        targets=goals, data={"fits": fits}, sections=[
                            (f"Forward+backward, batch {args.batch}"
                             f"{common.overrides_label(args)}",
                             common.markdown_table(rows, COLUMNS))] + fit_sections)
    return common.exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
