"""ListOps (LRA): nested MIN / MAX / MED / SUM-MOD expressions, 10 classes, length <= 2000.

Full run (the published recipes; real data):
    python -m lra.main --config=configs/listops.py --config.data_dir=LRA_RELEASE --workdir=runs/listops
  Each family trains on the recipe of its best published number (docs/recipes.md holds the table
  and the differences common to every task; tests/test_recipes.py keeps the two in step):
  - spade, spade_chunk, local: MEGA's ListOps recipe (facebookresearch/mega
    examples/mega/README.lra.md): 6 layers x 80 (FFN 160), batch 64, 90k updates, Adam
    (0.9, 0.98), lr 1e-3, linear warmup 3k then linear decay to 0, weight decay 0.01, clip 1,
    dropout 0.1, post-norm, mean pooling. SPADE's own LRA recipe is not public (spade.md).
    Ours beside it: 2 heads of 40 (MEGA: one gated head, z_dim 64), window radius 127 / chunks of
    128 (MEGA-chunk's 128), S4 d_state 64 with A, B, P, dt at 1e-3 without weight decay (the
    SPADE reference's S4 group).
  - s4: state-spaces/s4 configs/experiment/lra/s4-listops.yaml: 6 x 256, d_state 4, post-norm,
    batch 32, 120k steps (12k warmup, cosine), AdamW (0.9, 0.999) lr 0.01, wd 0.05, no dropout,
    no clipping; SSM lr 1e-3 (there dt trains at the main lr: ours keeps dt in the SSM group).
  - transformer: google-research/long-range-arena listops/configs/base_listops_config.py: 4 x
    512, 8 heads, MLP 1024, batch 32, 5k steps, Adam (0.9, 0.98) with decoupled weight decay
    0.1, no clipping, CLS pooling, learned positions. Its schedule 0.05 * min(1, t/1000) /
    sqrt(max(t, 1000)) peaks at 1.58e-3; ours decays linearly from there to its value at 5k
    (factor 0.447) instead of as 1/sqrt(t).
  Published test accuracy: SPADE 60.50 (unconfirmed), MEGA 63.14, MEGA-chunk 58.76,
  S4 59.60, Transformer 36.37 (lra.md). Hardware: the recipes' (MEGA: one A100-40GB; S4: one
  A100). Time: not yet measured on an accelerator; spade trains on 11.5B tokens (steps x batch x
  length), s4 on 7.7B, the transformer on 0.32B; hours = tokens / (tokens/s
  measured by `python -m benchmarks.reproduce`) / 3600.
Quick run (CPU, generated data, expressions of 20-200 tokens; about 6 minutes on 2 cores;
35-40% test accuracy against 16% for the majority class):
    python -m lra.main --config=configs/listops.py:quick --workdir=runs/listops-quick
Other families: configs/listops.py:model=transformer (spade_chunk, local, s4), combinable with
quick / smoke.
"""
from lra import configs

PAPER = {
    "data_options": {"max_length": 2000},  # the release's longest expression
    "model.num_layers": 6, "model.d_model": 80, "model.num_heads": 2, "model.d_ff": 160,
    "model.radius": 127, "model.chunk_size": 128, "model.dropout": 0.1, "model.s4.d_state": 64,
    "model.norm": "post", "model.pooling": "mean",
    "batch_size": 64, "num_train_steps": 90_000, "optimizer.learning_rate": 1e-3,
    "optimizer.schedule": "linear", "optimizer.end_lr_factor": 0.0, "optimizer.b2": 0.98,
    "optimizer.clip_norm": 1.0, "optimizer.weight_decay": 0.01, "optimizer.warmup_steps": 3_000,
    "optimizer.ssm_learning_rate": 1e-3, "eval_every": 2_500, "checkpoint_every": 2_500,
    "log_every": 100,
}
# The baselines' own recipes (the paper variant only: quick and smoke derive from PAPER).
PAPER_BY_FAMILY = {
    "s4": {
        "model.num_layers": 6, "model.d_model": 256, "model.d_ff": 128, "model.dropout": 0.0,
        "model.s4.d_state": 4, "model.norm": "post",
        "batch_size": 32, "num_train_steps": 120_000, "optimizer.learning_rate": 1e-2,
        "optimizer.schedule": "cosine", "optimizer.b2": 0.999, "optimizer.clip_norm": 0.0,
        "optimizer.weight_decay": 0.05, "optimizer.warmup_steps": 12_000,
        "eval_every": 3_000, "checkpoint_every": 3_000,
    },
    "transformer": {
        "model.num_layers": 4, "model.d_model": 512, "model.num_heads": 8, "model.d_ff": 1024,
        "model.dropout": 0.1, "model.norm": "pre", "model.pooling": "cls",
        "model.position": "learned",
        "batch_size": 32, "num_train_steps": 5_000, "optimizer.learning_rate": 1.58e-3,
        "optimizer.schedule": "linear", "optimizer.end_lr_factor": 0.447, "optimizer.eps": 1e-9,
        "optimizer.clip_norm": 0.0, "optimizer.weight_decay": 0.1,
        "optimizer.warmup_steps": 1_000, "eval_every": 250, "checkpoint_every": 250,
    },
}
QUICK = {
    "generate": {"num": 20_000, "seed": 0, "min_length": 20, "max_length": 200},
    "data_options": {"max_length": 200},
    "model.radius": 15, "model.chunk_size": 16, "model.norm": "pre",
    "batch_size": 32, "num_train_steps": 2_000, "optimizer.learning_rate": 2e-3,
    "optimizer.schedule": "cosine", "optimizer.weight_decay": 0.01,
    "optimizer.warmup_steps": 200, "eval_every": 500, "checkpoint_every": 500, "log_every": 50,
}
SMOKE = {
    "generate": {"num": 60, "seed": 0, "min_length": 5, "max_length": 40},
    "data_options": {"max_length": 40},
    "model.norm": "pre", "batch_size": 4, "optimizer.schedule": "cosine",
    "optimizer.warmup_steps": 5_000,
}


def get_config(arg=None):
    return configs.build("listops", arg, paper=PAPER, quick=QUICK, smoke=SMOKE,
                         paper_by_family=PAPER_BY_FAMILY)
