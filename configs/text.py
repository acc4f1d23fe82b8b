"""Text (LRA): IMDB sentiment from raw bytes, sequences of 4096 bytes (the paper's setting).

Full run (real data: TFDS `imdb_reviews` prepared, or an `aclImdb` folder in data_dir):
    python -m lra.main --config=configs/text.py --config.data_dir=DATA --workdir=runs/text
  Sized for one accelerator: 4 layers x 128, batch 32, 25k steps; about 4-6 hours.
  `--config.data_options.max_length=1000` gives the official LRA config's 1K setting.
  IMDB has no validation split: as in LRA, the test set also serves as validation.
  Published test accuracy: S4 86.82, MEGA 90.43, SPADE 86.29 (aggregator, unverified),
  Transformer 64.27 (lra.md).
Quick run (CPU; a stand-in corpus of standard-library prose, which is not IMDB; about 8
minutes on 2 cores; measured: SPADE 72.3% test accuracy against 50% for the majority class):
    python -m lra.main --config=configs/text.py:quick --workdir=runs/text-quick
Other families: configs/text.py:model=transformer (spade_chunk, local, s4), with quick / smoke.
On a TPU: --config.model.attention_impl=splash --config.model.position=none (splash attention
takes no relative bias; cudnn is for causal models only).
"""
from lra import configs

FULL = {
    "data_options": {"max_length": 4096},
    "model.num_layers": 4, "model.d_model": 128, "model.num_heads": 4, "model.d_ff": 256,
    "model.radius": 127, "model.chunk_size": 128, "model.dropout": 0.1, "model.s4.d_state": 64,
    "batch_size": 32, "num_train_steps": 25_000, "optimizer.learning_rate": 4e-3,
    "optimizer.weight_decay": 0.01, "optimizer.warmup_steps": 2_500,
    "optimizer.ssm_learning_rate": 1e-3, "eval_every": 1_000, "checkpoint_every": 1_000,
    "log_every": 100,
}
QUICK = {
    "generate": {"num": 3_000, "seed": 0},
    "data_options": {"max_length": 512},
    "model.radius": 31, "model.chunk_size": 32, "model.s4.d_state": 32,
    "batch_size": 16, "num_train_steps": 1_200, "optimizer.learning_rate": 2e-3,
    "optimizer.warmup_steps": 120, "eval_every": 400, "checkpoint_every": 400, "log_every": 50,
}
SMOKE = {
    "generate": {"num": 40, "seed": 0},
    "data_options": {"max_length": 64},
}


# Full attention at L = 512 runs about 3x slower than SPADE on the CPU: fewer steps keep the
# transformer's quick run within its 10 minutes.
QUICK_BY_FAMILY = {"transformer": {"num_train_steps": 500, "eval_every": 250,
                                   "checkpoint_every": 250}}


def get_config(arg=None):
    return configs.build("text", arg, full=FULL, quick=QUICK, smoke=SMOKE,
                         quick_by_family=QUICK_BY_FAMILY)
