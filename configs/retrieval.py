"""Retrieval (LRA): do two ACL Anthology papers cite each other? Two byte sequences of 4000.

Full run (real data: `tsv_data/new_aan_pairs.{train,eval,test}.tsv` in the LRA release):
    python -m lra.main --config=configs/retrieval.py --config.data_dir=LRA_RELEASE --workdir=runs/retrieval
  Sized for one accelerator: a shared 4 x 128 encoder, [e1, e2, e1*e2, e1-e2] -> MLP head,
  batch 32, 50k steps; about 8-12 hours.
  Published test accuracy: S4 90.90, MEGA 91.25, Transformer 57.46 (lra.md).
Quick run (CPU; stand-in pairs from standard-library documents, which are not AAN; about 5
minutes on 2 cores; measured: SPADE 80.0% test accuracy against 50% for the majority class):
    python -m lra.main --config=configs/retrieval.py:quick --workdir=runs/retrieval-quick
Other families: configs/retrieval.py:model=s4 (spade_chunk, transformer, local), with quick /
smoke.
"""
from lra import configs

FULL = {
    "data_options": {"max_length": 4000},
    "model.num_layers": 4, "model.d_model": 128, "model.num_heads": 4, "model.d_ff": 256,
    "model.radius": 127, "model.chunk_size": 128, "model.dropout": 0.1, "model.s4.d_state": 64,
    "batch_size": 32, "num_train_steps": 50_000, "optimizer.learning_rate": 3e-3,
    "optimizer.weight_decay": 0.04, "optimizer.warmup_steps": 5_000,
    "optimizer.ssm_learning_rate": 1e-3, "eval_every": 2_500, "checkpoint_every": 2_500,
    "log_every": 100,
}
QUICK = {
    "generate": {"num": 3_000, "seed": 0},
    "data_options": {"max_length": 512},
    "model.radius": 31, "model.chunk_size": 32, "model.s4.d_state": 32,
    "batch_size": 16, "num_train_steps": 600, "optimizer.learning_rate": 2e-3,
    "optimizer.warmup_steps": 60, "eval_every": 200, "checkpoint_every": 200, "log_every": 20,
}
SMOKE = {
    "generate": {"num": 40, "seed": 0},
    "data_options": {"max_length": 64},
}


# Full attention over two documents of 512 runs about 3x slower than SPADE on the CPU: fewer
# steps keep the transformer's quick run within its 10 minutes.
QUICK_BY_FAMILY = {"transformer": {"num_train_steps": 300, "eval_every": 100,
                                   "checkpoint_every": 100}}


def get_config(arg=None):
    return configs.build("retrieval", arg, full=FULL, quick=QUICK, smoke=SMOKE,
                         quick_by_family=QUICK_BY_FAMILY)
