"""The engine's config: every field the training loop reads, with defaults.

Experiment configs (configs/*.py) start from `default_config()` and change what they need.
"""
import ml_collections

from spade_jax.config import default_model_config
from spade_jax.sharding import DEFAULT_RULES


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = default_model_config()
    c.seed = 0
    c.batch_size = 32  # global batch (all hosts), split into grad_accum_steps micro-batches
    c.grad_accum_steps = 1
    c.num_train_steps = 1000

    c.optimizer = ml_collections.ConfigDict(dict(
        name="adamw", learning_rate=1e-3, b1=0.9, b2=0.98, eps=1e-8, weight_decay=0.01,
        momentum=0.9, nesterov=True, schedule="cosine", warmup_steps=100, end_lr_factor=0.0,
        clip_norm=1.0, ssm_learning_rate=1e-3, ssm_weight_decay=0.0, freeze_ssm=False))

    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.logical_axis_rules = [list(rule) for rule in DEFAULT_RULES]

    c.log_every = 50
    c.eval_every = 500  # validation (and best-checkpoint) interval; 0 = only at the end
    c.eval_batch_size = 0  # 0: batch_size
    c.max_eval_batches = 0  # 0: the whole split
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    c.async_checkpoints = True
    c.skip_nonfinite = False  # True: skip updates with non-finite gradients (and count them)
    c.max_skipped_fraction = 0.1  # skip_nonfinite: stop when more of the last updates were skipped
    c.skip_window = 100  # the last updates that max_skipped_fraction counts
    c.peak_flops = 0.0  # per device, the MFU denominator; 0: measured (float32 matmul) at start
    c.profile_steps = ()  # (first, last): a jax.profiler trace of those steps in WORKDIR/profile
    c.progress_bar = True
    # > 0: stop training after this many seconds of this invocation (every host at the same
    # step), save, evaluate and report as at the end; results.json says stopped_on_budget
    c.max_wall_s = 0.0
    return c
