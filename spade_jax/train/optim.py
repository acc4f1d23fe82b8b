"""Optimiser from the config: optax AdamW / Adam / SGD-Nesterov, schedules, parameter groups.

Groups, chosen by each parameter's full path:
  ssm       S4's A_re, A_im, P, B, log_dt (spade_jax.model.ssm.SSM_PARAM_NAMES): their own learning
            rate (`optimizer.ssm_learning_rate`) and weight decay (`optimizer.ssm_weight_decay`)
  no_decay  biases and LayerNorm scales: no weight decay
  frozen    with `optimizer.freeze_ssm`, every parameter of an S4 layer (updates are zero)
  default   everything else
Global-norm clipping (`optimizer.clip_norm`, 0 = off) applies to all gradients together.
The section's fields and allowed values are spade_jax.train.defaults.Optimizer's (checked there).
"""
import optax
from jax.tree_util import DictKey, tree_map_with_path

from spade_jax.model.ssm import SSM_PARAM_NAMES


def _names(path) -> list:
    return [str(k.key) for k in path if isinstance(k, DictKey)]  # skips boxes' `.value`


def in_s4(path) -> bool:
    """Whether the parameter at `path` belongs to an S4 layer (a module named 's4')."""
    return "s4" in _names(path)[:-1]


def parameter_group(path, freeze_ssm: bool = False) -> str:
    """The group of a parameter given its path in the params tree."""
    names = _names(path)
    if in_s4(path) and freeze_ssm:
        return "frozen"
    if in_s4(path) and names[-1] in SSM_PARAM_NAMES:
        return "ssm"
    if names[-1] in ("bias", "scale"):
        return "no_decay"
    return "default"


def schedule(peak: float, cfg, num_steps: int):
    """Linear warmup from 0 over `warmup_steps`, then cosine / linear decay to
    `peak * end_lr_factor` at `num_steps`, or constant."""
    warmup = int(cfg.warmup_steps)
    end = peak * float(cfg.end_lr_factor)
    decay_steps = max(num_steps - warmup, 1)
    if cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=float(cfg.end_lr_factor))
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(peak, end, decay_steps)
    else:  # 'constant' (defaults.SCHEDULES)
        decay = optax.constant_schedule(peak)
    if warmup <= 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def _base(cfg, learning_rate, weight_decay):
    if cfg.name == "adamw":
        return optax.adamw(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                           weight_decay=weight_decay)
    if cfg.name == "adam":  # no weight decay (defaults.validate refuses one)
        return optax.adam(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    # 'sgd' (defaults.OPTIMIZERS)
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.sgd(learning_rate, momentum=cfg.momentum, nesterov=cfg.nesterov))


def make_optimizer(cfg, num_steps: int):
    """Returns (optax transformation, learning-rate schedule of the default group)."""
    lr = schedule(float(cfg.learning_rate), cfg, num_steps)
    ssm_peak = cfg.learning_rate if cfg.ssm_learning_rate is None else cfg.ssm_learning_rate
    groups = {
        "default": _base(cfg, lr, cfg.weight_decay),
        "no_decay": _base(cfg, lr, 0.0),
        "ssm": _base(cfg, schedule(float(ssm_peak), cfg, num_steps), cfg.ssm_weight_decay),
        "frozen": optax.set_to_zero(),
    }
    labels = lambda params: tree_map_with_path(
        lambda path, _: parameter_group(path, cfg.freeze_ssm), params)
    tx = optax.multi_transform(groups, labels)
    if cfg.clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    return tx, lr
