"""The guard on a diverging model, checked after every step before anything of it is saved:
non-finite loss or gradients (unless config.skip_nonfinite), non-finite parameters, or more than
config.max_skipped_fraction of the last config.skip_window updates skipped."""
import collections

import numpy as np

from spade_jax.runtime.errors import UserError


class DivergedError(UserError, FloatingPointError):
    """Training diverged (non-finite loss or parameters); the message names the step, the last
    good checkpoint and what to change."""


class Divergence:
    def __init__(self, engine, workdir, ckpts):
        self.engine, self.workdir, self.ckpts = engine, workdir, ckpts
        self.recent = collections.deque(maxlen=int(engine.skip_window))

    def check(self, step: int, metrics: dict) -> None:
        """Raises DivergedError for the step's host metrics ('finite', 'loss', 'grad_norm',
        'param_norm')."""
        cfg, finite = self.engine, bool(metrics["finite"])
        latest = self.ckpts.latest.latest_step()
        last = (f"no checkpoint was saved yet in {self.workdir}" if latest is None else
                f"the last good checkpoint is step {latest} in {self.workdir}")
        if not finite and not cfg.skip_nonfinite:
            raise DivergedError(
                f"non-finite loss or gradients at step {step} (loss {metrics['loss']}, "
                f"gradient norm {metrics['grad_norm']}); {last}. Lower the learning rate, or set "
                f"config.skip_nonfinite=True to skip such updates")
        if not np.isfinite(metrics["param_norm"]):
            raise DivergedError(
                f"the parameters are no longer finite after step {step} (an update overflowed; "
                f"gradient norm {metrics['grad_norm']}); {last}. Lower "
                f"config.optimizer.learning_rate or config.optimizer.clip_norm")
        self.recent.append(not finite)
        skipped = sum(self.recent)
        if skipped > cfg.max_skipped_fraction * self.recent.maxlen:
            raise DivergedError(
                f"the model has diverged: {skipped} of the last {len(self.recent)} updates (to "
                f"step {step}) had a non-finite loss or gradients and were skipped, more than "
                f"config.max_skipped_fraction = {cfg.max_skipped_fraction} of "
                f"config.skip_window = {cfg.skip_window}; {last}. Lower the learning rate or "
                f"check the data")
