"""Image (LRA): CIFAR-10 in grayscale, one token per pixel, a sequence of 1024; 10 classes.

Full run (real data: TFDS `cifar10` prepared, or `cifar-10-batches-bin` in data_dir):
    python -m lra.main --config=configs/image.py --config.data_dir=DATA --workdir=runs/image
  Each family trains on the recipe of its best published number (docs/recipes.md holds the table
  and the differences common to every task; tests/test_recipes.py keeps the two in step):
  - spade, spade_chunk, local: MEGA's Image recipe (facebookresearch/mega
    examples/mega/README.lra.md): 8 layers x 160 (FFN 320), batch 50, 180k updates, Adam
    (0.9, 0.98), lr 1e-2, linear warmup 9k then linear decay to 0, weight decay 0.02, clip 1,
    no dropout, pre-norm (MEGA: BatchNorm; ours LayerNorm), mean pooling; pixels through
    Linear(1 -> d) (MEGA normalises them by 0.48 / 0.24; ours maps 0..255 to [-1, 1]).
    Ours beside it: 2 heads of 80 (MEGA: one gated head, z_dim 96), window radius 127 / chunks
    of 128 (MEGA-chunk's 128), S4 d_state 64 with its group at 1e-3 without
    weight decay.
  - s4: state-spaces/s4 configs/experiment/lra/s4-cifar.yaml: 6 x 512, d_state 64, post-norm,
    dropout 0.1, batch 50, 180k steps (18k warmup, cosine), AdamW (0.9, 0.999) lr 0.01, wd 0.05,
    no clipping; A, B, dt at 1e-3 without weight decay (as our SSM group).
  - transformer: google-research/long-range-arena image/configs/cifar10/transformer_base.py: 1
    layer x 128, 8 heads, MLP 128, dropout 0.3, CLS pooling, learned positions, pixel values as
    token ids (an embedding of 256 rows), batch 256, 35k steps (200 epochs of 45k), Adam (0.9,
    0.98), lr 5e-4 with a 175-step warmup and cosine decay, no weight decay, no clipping. Its
    qkv_dim 64 (below d_model) and attention dropout 0.2 have no counterpart here.
  Published test accuracy: SPADE 88.22 (unconfirmed), MEGA 90.44, MEGA-chunk 85.80,
  S4 88.65, Transformer 42.44 (lra.md). Hardware: the recipes' (MEGA: one A100-40GB). Time: not
  yet measured on an accelerator; each family trains on 9.2B tokens (steps x batch x 1024);
  hours = tokens / (tokens/s measured by `python -m benchmarks.reproduce`) / 3600.
Quick run (CPU; stand-in images of generated shapes in the CIFAR-10 binary format, not CIFAR;
about 5 minutes on 2 cores; measured: SPADE 54.4% test accuracy against 12.2% for the majority
class):
    python -m lra.main --config=configs/image.py:quick --workdir=runs/image-quick
Other families: configs/image.py:model=s4 (spade_chunk, transformer, local), with quick / smoke.
"""
from lra import configs

PAPER = {
    "model.input_encoder": "linear",  # pixel values through Linear(1 -> d), as S4
    "model.num_layers": 8, "model.d_model": 160, "model.num_heads": 2, "model.d_ff": 320,
    "model.radius": 127, "model.chunk_size": 128, "model.dropout": 0.0, "model.s4.d_state": 64,
    "model.norm": "pre", "model.pooling": "mean",
    "batch_size": 50, "num_train_steps": 180_000, "optimizer.learning_rate": 1e-2,
    "optimizer.schedule": "linear", "optimizer.end_lr_factor": 0.0, "optimizer.b2": 0.98,
    "optimizer.clip_norm": 1.0, "optimizer.weight_decay": 0.02, "optimizer.warmup_steps": 9_000,
    "optimizer.ssm_learning_rate": 1e-3, "eval_every": 4_500, "checkpoint_every": 4_500,
    "log_every": 100,
}
# The baselines' own recipes (the paper variant only: quick and smoke derive from PAPER).
PAPER_BY_FAMILY = {
    "s4": {
        "model.num_layers": 6, "model.d_model": 512, "model.d_ff": 256, "model.dropout": 0.1,
        "model.s4.d_state": 64, "model.norm": "post",
        "batch_size": 50, "num_train_steps": 180_000, "optimizer.learning_rate": 1e-2,
        "optimizer.schedule": "cosine", "optimizer.b2": 0.999, "optimizer.clip_norm": 0.0,
        "optimizer.weight_decay": 0.05, "optimizer.warmup_steps": 18_000,
    },
    "transformer": {
        "model.input_encoder": "embed",
        "model.num_layers": 1, "model.d_model": 128, "model.num_heads": 8, "model.d_ff": 128,
        "model.dropout": 0.3, "model.norm": "pre", "model.pooling": "cls",
        "model.position": "learned",
        "batch_size": 256, "num_train_steps": 35_000, "optimizer.learning_rate": 5e-4,
        "optimizer.schedule": "cosine", "optimizer.eps": 1e-9,
        "optimizer.clip_norm": 0.0, "optimizer.weight_decay": 0.0,
        "optimizer.warmup_steps": 175, "eval_every": 875, "checkpoint_every": 875,
    },
}
QUICK = {
    "generate": {"num": 3_000, "seed": 0},
    "model.radius": 31, "model.chunk_size": 32, "model.s4.d_state": 32,
    "batch_size": 16, "num_train_steps": 600, "optimizer.learning_rate": 2e-3,
    "optimizer.schedule": "cosine", "optimizer.warmup_steps": 60, "eval_every": 200,
    "checkpoint_every": 200, "log_every": 20,
}
SMOKE = {
    "generate": {"num": 36, "seed": 0},
    "model.dropout": 0.1, "optimizer.learning_rate": 4e-3, "optimizer.schedule": "cosine",
}


# Full attention at L = 1024 runs several times slower than SPADE on the CPU: fewer steps
# keep the transformer's quick run within its 10 minutes.
QUICK_BY_FAMILY = {"transformer": {"num_train_steps": 200, "eval_every": 100,
                                   "checkpoint_every": 100, "log_every": 10}}


def get_config(arg=None):
    return configs.build("image", arg, paper=PAPER, quick=QUICK, smoke=SMOKE,
                         paper_by_family=PAPER_BY_FAMILY, quick_by_family=QUICK_BY_FAMILY)
