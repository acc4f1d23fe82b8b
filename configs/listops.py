"""ListOps (LRA): nested MIN / MAX / MED / SUM-MOD expressions, 10 classes, length <= 2000.

Full run (the paper-scale setting; real data):
    python -m lra.main --config=configs/listops.py --config.data_dir=LRA_RELEASE --workdir=runs/listops
  Sized for one accelerator (A100 / TPU v3-8 core): 6 layers x 128, batch 32, 50k steps; about
  5-8 hours. Published test accuracy: S4 59.60, MEGA 63.14, Transformer 36.37 (lra.md); SPADE's
  own ListOps number is not public.
Quick run (CPU, generated data, expressions of 20-200 tokens; about 6 minutes on 2 cores;
35-40% test accuracy against 16% for the majority class):
    python -m lra.main --config=configs/listops.py:quick --workdir=runs/listops-quick
Other families: configs/listops.py:model=transformer (spade_chunk, local, s4), combinable with
quick / smoke.
"""
from lra import configs

FULL = {
    "model.num_layers": 6, "model.d_model": 128, "model.num_heads": 4, "model.d_ff": 256,
    "model.radius": 127, "model.chunk_size": 128, "model.dropout": 0.1, "model.s4.d_state": 64,
    "batch_size": 32, "num_train_steps": 50_000, "optimizer.learning_rate": 1e-3,
    "optimizer.weight_decay": 0.01, "optimizer.warmup_steps": 5_000,
    "optimizer.ssm_learning_rate": 1e-3, "eval_every": 2_500, "checkpoint_every": 2_500,
    "log_every": 100,
}
QUICK = {
    "generate": {"num": 20_000, "seed": 0, "min_length": 20, "max_length": 200},
    "data_options": {"max_length": 200},
    "model.radius": 15, "model.chunk_size": 16,
    "batch_size": 32, "num_train_steps": 2_000, "optimizer.learning_rate": 2e-3,
    "optimizer.warmup_steps": 200, "eval_every": 500, "checkpoint_every": 500, "log_every": 50,
}
SMOKE = {
    "generate": {"num": 60, "seed": 0, "min_length": 5, "max_length": 40},
    "data_options": {"max_length": 40},
    "batch_size": 4,
}


def get_config(arg=None):
    return configs.build("listops", arg, full=FULL, quick=QUICK, smoke=SMOKE)
