"""Image (LRA): CIFAR-10 in grayscale, one token per pixel, a sequence of 1024; 10 classes.

Full run (real data: TFDS `cifar10` prepared, or `cifar-10-batches-bin` in data_dir):
    python -m lra.main --config=configs/image.py --config.data_dir=DATA --workdir=runs/image
  Sized for one accelerator: 6 layers x 128, batch 50, 100k steps; about 8-12 hours.
  Published test accuracy: S4 88.65, MEGA 90.44, Transformer 42.44 (lra.md).
Quick run (CPU; stand-in images of generated shapes in the CIFAR-10 binary format, not CIFAR;
about 5 minutes on 2 cores; measured: SPADE 54.4% test accuracy against 12.2% for the majority
class):
    python -m lra.main --config=configs/image.py:quick --workdir=runs/image-quick
Other families: configs/image.py:model=s4 (spade_chunk, transformer, local), with quick / smoke.
"""
from lra import configs

FULL = {
    "model.input_encoder": "linear",  # pixel values through Linear(1 -> d), as S4
    "model.num_layers": 6, "model.d_model": 128, "model.num_heads": 4, "model.d_ff": 256,
    "model.radius": 127, "model.chunk_size": 128, "model.dropout": 0.1, "model.s4.d_state": 64,
    "batch_size": 50, "num_train_steps": 100_000, "optimizer.learning_rate": 4e-3,
    "optimizer.weight_decay": 0.02, "optimizer.warmup_steps": 9_000,
    "optimizer.ssm_learning_rate": 1e-3, "eval_every": 2_500, "checkpoint_every": 2_500,
    "log_every": 100,
}
QUICK = {
    "generate": {"num": 3_000, "seed": 0},
    "model.radius": 31, "model.chunk_size": 32, "model.s4.d_state": 32,
    "batch_size": 16, "num_train_steps": 600, "optimizer.learning_rate": 2e-3,
    "optimizer.warmup_steps": 60, "eval_every": 200, "checkpoint_every": 200, "log_every": 20,
}
SMOKE = {
    "generate": {"num": 36, "seed": 0},
}


# Full attention at L = 1024 runs several times slower than SPADE on the CPU: fewer steps
# keep the transformer's quick run within its 10 minutes.
QUICK_BY_FAMILY = {"transformer": {"num_train_steps": 200, "eval_every": 100,
                                   "checkpoint_every": 100, "log_every": 10}}


def get_config(arg=None):
    return configs.build("image", arg, full=FULL, quick=QUICK, smoke=SMOKE,
                         quick_by_family=QUICK_BY_FAMILY)
