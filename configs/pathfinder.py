"""Pathfinder (LRA): are the two dots joined by one path? 32 x 32 pixels as a sequence of 1024.

Full run (real data, `pathfinder32/curv_contour_length_14`):
    python -m lra.main --config=configs/pathfinder.py --config.data_dir=LRA_RELEASE --workdir=runs/pathfinder
  Sized for one accelerator: 6 layers x 128, batch 64, 100k steps; about 6-10 hours.
  Published test accuracy: S4 94.20, MEGA 96.01, Transformer 71.40 (lra.md).
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

FULL = {
    "model.input_encoder": "linear",  # pixel values through Linear(1 -> d), as S4
    "model.num_layers": 6, "model.d_model": 128, "model.num_heads": 4, "model.d_ff": 256,
    "model.radius": 127, "model.chunk_size": 128, "model.dropout": 0.0, "model.s4.d_state": 64,
    "batch_size": 64, "num_train_steps": 100_000, "optimizer.learning_rate": 4e-3,
    "optimizer.weight_decay": 0.05, "optimizer.warmup_steps": 10_000,
    "optimizer.ssm_learning_rate": 1e-3, "eval_every": 5_000, "checkpoint_every": 5_000,
    "log_every": 200,
}
QUICK = {
    "generate": {"num": 8_000, "seed": 0, "image_size": 32, "difficulty": "curv_baseline"},
    "data_options": {"difficulty": "curv_baseline"},
    "model.radius": 31, "model.chunk_size": 32, "model.s4.d_state": 32,
    "batch_size": 16, "num_train_steps": 1_000, "optimizer.learning_rate": 4e-3,
    "optimizer.warmup_steps": 100, "eval_every": 250, "checkpoint_every": 250, "log_every": 50,
}
SMOKE = {
    "generate": {"num": 24, "seed": 0, "image_size": 32, "difficulty": "curv_baseline",
                 "per_folder": 12, "processes": 1},
    "data_options": {"difficulty": "curv_baseline"},
}
# Full attention at L = 1024 runs several times slower than SPADE on the CPU: fewer steps keep
# the transformer's quick run within its 10 minutes.
QUICK_BY_FAMILY = {"transformer": {"num_train_steps": 200, "eval_every": 100,
                                   "checkpoint_every": 100, "log_every": 10}}


def get_config(arg=None):
    return configs.build("pathfinder", arg, full=FULL, quick=QUICK, smoke=SMOKE,
                         quick_by_family=QUICK_BY_FAMILY)
