"""Pathfinder (LRA): are the two dots joined by one path? 32 x 32 pixels as a sequence of 1024.

Full run (real data, `pathfinder32/curv_contour_length_14`):
    python -m lra.main --config=configs/pathfinder.py --config.data_dir=LRA_RELEASE --workdir=runs/pathfinder
  Each family trains on the recipe of its best published number (docs/recipes.md holds the table
  and the differences common to every task; tests/test_recipes.py keeps the two in step):
  - spade, spade_chunk, local: MEGA's Pathfinder recipe (facebookresearch/mega
    examples/mega/README.lra.md): 6 layers x 128 (FFN 256), batch 128, 250k updates, Adam
    (0.9, 0.98), lr 1e-2, linear warmup 50k then linear decay to 0, weight decay 0.01, clip 1,
    no dropout, pre-norm (MEGA: BatchNorm; ours LayerNorm), mean pooling; pixels through
    Linear(1 -> d) (MEGA normalises them by 0.5 / 0.5, as ours maps 0..255 to [-1, 1]).
    Ours beside it: 2 heads of 64 (MEGA: one gated head, z_dim 64), window radius 127 / chunks
    of 128 (MEGA-chunk's 128), S4 d_state 64 with its group at 1e-3 without
    weight decay.
  - s4: state-spaces/s4 configs/experiment/lra/s4-pathfinder.yaml: 6 x 256, d_state 64,
    pre-norm, no dropout, batch 64, 500k steps (50k warmup, cosine), AdamW (0.9, 0.999) lr
    0.004, wd 0.05, no clipping; A, B, dt at 1e-3 without weight decay (as our SSM group).
  - transformer: google-research/long-range-arena image/configs/pathfinder32/transformer_base.py:
    4 layers x 32, 4 heads, MLP 32, dropout 0.2, mean pooling, pixel values as token ids,
    batch 512, 62.4k steps (200 epochs of 160k), Adam (0.9, 0.98), lr 1e-3 with a 312-step
    warmup and cosine decay, no weight decay, no clipping. Its fixed sinusoidal positions are
    learned ones here; its qkv_dim 16 and attention dropout 0.1 have no counterpart.
  Published test accuracy: SPADE 96.23 (unconfirmed), MEGA 96.01, MEGA-chunk 94.41,
  S4 94.20, Transformer 71.40 (lra.md). Hardware: the recipes' (MEGA: one A100-40GB). Time: not
  yet measured on an accelerator; each family trains on ~33B tokens (steps x batch x 1024);
  hours = tokens / (tokens/s measured by `python -m benchmarks.reproduce`) / 3600.
Quick run (CPU; generated, easier `curv_baseline` images; about 8 minutes on 2 cores). It checks
the pipeline end to end but does NOT learn yet: 1000 steps of batch 16 (16k images seen) stay at
chance (measured: 48-51% validation accuracy at steps 250-1000, 49.1% test). Pathfinder needs
far more examples (S4 trains for 500k steps); for a CPU run that learns, raise
--config.num_train_steps and --config.generate.num and expect hours. Easier data did not help
within the budget either: the generator's `easy` difficulty (no distractors, dimmer paths) stayed
at 50.75% validation after 750 steps at 32 px, and at 50% after 750 steps of batch 32 with the
generator's 16 px preset, where a Transformer also stayed at 50% after 500 steps.
    python -m lra.main --config=configs/pathfinder.py:quick --workdir=runs/pathfinder-quick
Other families: configs/pathfinder.py:model=s4 (spade_chunk, transformer, local), with quick /
smoke.
"""
from lra import configs

IMAGE_SIZE = 32  # pixels per side: data_options.image_size of every variant

PAPER = {
    "data_options": {"image_size": IMAGE_SIZE},  # pathfinder32: 1024 pixels
    "model.input_encoder": "linear",  # pixel values through Linear(1 -> d), as S4
    "model.num_layers": 6, "model.d_model": 128, "model.num_heads": 2, "model.d_ff": 256,
    "model.radius": 127, "model.chunk_size": 128, "model.dropout": 0.0, "model.s4.d_state": 64,
    "model.norm": "pre", "model.pooling": "mean",
    "batch_size": 128, "num_train_steps": 250_000, "optimizer.learning_rate": 1e-2,
    "optimizer.schedule": "linear", "optimizer.end_lr_factor": 0.0, "optimizer.b2": 0.98,
    "optimizer.clip_norm": 1.0, "optimizer.weight_decay": 0.01, "optimizer.warmup_steps": 50_000,
    "optimizer.ssm_learning_rate": 1e-3, "eval_every": 5_000, "checkpoint_every": 5_000,
    "log_every": 200,
}
# The baselines' own recipes (the paper variant only: quick and smoke derive from PAPER).
PAPER_BY_FAMILY = {
    "s4": {
        "model.num_layers": 6, "model.d_model": 256, "model.d_ff": 128, "model.dropout": 0.0,
        "model.s4.d_state": 64, "model.norm": "pre",
        "batch_size": 64, "num_train_steps": 500_000, "optimizer.learning_rate": 4e-3,
        "optimizer.schedule": "cosine", "optimizer.b2": 0.999, "optimizer.clip_norm": 0.0,
        "optimizer.weight_decay": 0.05, "optimizer.warmup_steps": 50_000,
        "eval_every": 10_000, "checkpoint_every": 10_000,
    },
    "transformer": {
        "model.input_encoder": "embed",
        "model.num_layers": 4, "model.d_model": 32, "model.num_heads": 4, "model.d_ff": 32,
        "model.dropout": 0.2, "model.norm": "pre", "model.pooling": "mean",
        "model.position": "learned",
        "batch_size": 512, "num_train_steps": 62_400, "optimizer.learning_rate": 1e-3,
        "optimizer.schedule": "cosine", "optimizer.eps": 1e-9,
        "optimizer.clip_norm": 0.0, "optimizer.weight_decay": 0.0,
        "optimizer.warmup_steps": 312, "eval_every": 1_560, "checkpoint_every": 1_560,
    },
}
QUICK = {
    "generate": {"num": 8_000, "seed": 0, "image_size": 32, "difficulty": "curv_baseline"},
    "data_options": {"difficulty": "curv_baseline", "image_size": IMAGE_SIZE},
    "model.radius": 31, "model.chunk_size": 32, "model.s4.d_state": 32,
    "batch_size": 16, "num_train_steps": 1_000, "optimizer.learning_rate": 4e-3,
    "optimizer.schedule": "cosine", "optimizer.weight_decay": 0.05, "optimizer.warmup_steps": 100,
    "eval_every": 250, "checkpoint_every": 250, "log_every": 50,
}
SMOKE = {
    "generate": {"num": 24, "seed": 0, "image_size": 32, "difficulty": "curv_baseline",
                 "per_folder": 12, "processes": 1},
    "data_options": {"difficulty": "curv_baseline", "image_size": IMAGE_SIZE},
    "optimizer.learning_rate": 4e-3, "optimizer.schedule": "cosine",
    "optimizer.weight_decay": 0.05, "optimizer.warmup_steps": 10_000,
}
# Full attention at L = 1024 runs several times slower than SPADE on the CPU: fewer steps keep
# the transformer's quick run within its 10 minutes.
QUICK_BY_FAMILY = {"transformer": {"num_train_steps": 200, "eval_every": 100,
                                   "checkpoint_every": 100, "log_every": 10}}


def get_config(arg=None):
    return configs.build("pathfinder", arg, paper=PAPER, quick=QUICK, smoke=SMOKE,
                         paper_by_family=PAPER_BY_FAMILY, quick_by_family=QUICK_BY_FAMILY)
