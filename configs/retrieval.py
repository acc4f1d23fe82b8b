"""Retrieval (LRA): do two ACL Anthology papers cite each other? Two byte sequences of 4000.

Full run (real data: `tsv_data/new_aan_pairs.{train,eval,test}.tsv` in the LRA release):
    python -m lra.main --config=configs/retrieval.py --config.data_dir=LRA_RELEASE --workdir=runs/retrieval
  A shared encoder reads both documents; [e1, e2, e1*e2, e1-e2] -> MLP -> 2 (as S4 and S5).
  Each family trains on the recipe of its best published number (docs/recipes.md holds the table
  and the differences common to every task; tests/test_recipes.py keeps the two in step):
  - spade, spade_chunk, local: MEGA's Retrieval recipe (facebookresearch/mega
    examples/mega/README.lra.md): 6 layers x 128 (FFN 256), batch 64 (8 x update-freq 8),
    91,960 updates, Adam (0.9, 0.98), lr 3e-3, linear warmup 10k then linear decay to 0, weight
    decay 0.04, clip 1, dropout 0.1, post-norm (MEGA: ScaleNorm; ours LayerNorm), mean pooling.
    Ours beside it: 2 heads of 64 (MEGA: one gated head, z_dim 64), window radius 127 / chunks
    of 128, S4 d_state 64 with its group at 1e-3 without weight decay.
  - s4: state-spaces/s4 configs/experiment/lra/s4-aan.yaml: 6 x 256, d_state 4, pre-norm,
    batch 64, 50k steps (5k warmup, cosine), AdamW (0.9, 0.999) lr 0.01, wd 0.05, no dropout,
    no clipping; SSM lr 1e-3 (there dt trains at the main lr).
  - transformer: google-research/long-range-arena matching/configs/base_match_config.py: 4 x
    128, 4 heads, MLP 512, batch 32, 5k steps, Adam (0.9, 0.98) with decoupled weight decay 0.1,
    no clipping, CLS pooling, learned positions. Its 5k steps end inside its 8k-step warmup
    toward 0.05 / sqrt(8000) = 5.59e-4: the rate climbs linearly to 5/8 of that and never decays
    (ours: the same warmup, then a constant schedule that is never reached). Its head combines
    the two CLS vectors as ours does.
  Published test accuracy: SPADE 91.17 (unconfirmed), MEGA 91.25, MEGA-chunk 90.97,
  S4 90.90, Transformer 57.46 (lra.md). Hardware: the recipes' (MEGA: one A100-40GB). Time: not
  yet measured on an accelerator; spade trains on 47B tokens (steps x batch x 2 x 4000), s4 on
  26B, the transformer on 1.3B; hours = tokens / (tokens/s
  measured by `python -m benchmarks.reproduce`) / 3600.
Quick run (CPU; stand-in pairs from standard-library documents, which are not AAN; about 5
minutes on 2 cores; measured: SPADE 80.0% test accuracy against 50% for the majority class):
    python -m lra.main --config=configs/retrieval.py:quick --workdir=runs/retrieval-quick
Other families: configs/retrieval.py:model=s4 (spade_chunk, transformer, local), with quick /
smoke.
"""
from lra import configs

PAPER = {
    "data_options": {"max_length": 4000},
    "model.num_layers": 6, "model.d_model": 128, "model.num_heads": 2, "model.d_ff": 256,
    "model.radius": 127, "model.chunk_size": 128, "model.dropout": 0.1, "model.s4.d_state": 64,
    "model.norm": "post", "model.pooling": "mean",
    "batch_size": 64, "num_train_steps": 91_960, "optimizer.learning_rate": 3e-3,
    "optimizer.schedule": "linear", "optimizer.end_lr_factor": 0.0, "optimizer.b2": 0.98,
    "optimizer.clip_norm": 1.0, "optimizer.weight_decay": 0.04, "optimizer.warmup_steps": 10_000,
    "optimizer.ssm_learning_rate": 1e-3, "eval_every": 2_500, "checkpoint_every": 2_500,
    "log_every": 100,
}
# The baselines' own recipes (the paper variant only: quick and smoke derive from PAPER).
PAPER_BY_FAMILY = {
    "s4": {
        "model.num_layers": 6, "model.d_model": 256, "model.d_ff": 128, "model.dropout": 0.0,
        "model.s4.d_state": 4, "model.norm": "pre",
        "batch_size": 64, "num_train_steps": 50_000, "optimizer.learning_rate": 1e-2,
        "optimizer.schedule": "cosine", "optimizer.b2": 0.999, "optimizer.clip_norm": 0.0,
        "optimizer.weight_decay": 0.05, "optimizer.warmup_steps": 5_000,
        "eval_every": 2_000, "checkpoint_every": 2_000,
    },
    "transformer": {
        "model.num_layers": 4, "model.d_model": 128, "model.num_heads": 4, "model.d_ff": 512,
        "model.dropout": 0.1, "model.norm": "pre", "model.pooling": "cls",
        "model.position": "learned",
        "batch_size": 32, "num_train_steps": 5_000, "optimizer.learning_rate": 5.59e-4,
        "optimizer.schedule": "constant", "optimizer.eps": 1e-9,
        "optimizer.clip_norm": 0.0, "optimizer.weight_decay": 0.1,
        "optimizer.warmup_steps": 8_000, "eval_every": 250, "checkpoint_every": 250,
    },
}
QUICK = {
    "generate": {"num": 3_000, "seed": 0},
    "data_options": {"max_length": 512},
    "model.radius": 31, "model.chunk_size": 32, "model.s4.d_state": 32, "model.norm": "pre",
    "batch_size": 16, "num_train_steps": 600, "optimizer.learning_rate": 2e-3,
    "optimizer.schedule": "cosine", "optimizer.warmup_steps": 60, "eval_every": 200,
    "checkpoint_every": 200, "log_every": 20,
}
SMOKE = {
    "generate": {"num": 40, "seed": 0},
    "data_options": {"max_length": 64},
    "model.norm": "pre", "optimizer.schedule": "cosine", "optimizer.warmup_steps": 5_000,
}


# Full attention over two documents of 512 runs about 3x slower than SPADE on the CPU: fewer
# steps keep the transformer's quick run within its 10 minutes.
QUICK_BY_FAMILY = {"transformer": {"num_train_steps": 300, "eval_every": 100,
                                   "checkpoint_every": 100}}


def get_config(arg=None):
    return configs.build("retrieval", arg, paper=PAPER, quick=QUICK, smoke=SMOKE,
                         paper_by_family=PAPER_BY_FAMILY, quick_by_family=QUICK_BY_FAMILY)
