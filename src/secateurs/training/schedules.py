"""Learning-rate schedules as a pure function of the position in training.

A schedule is computed, not stepped: ``learning_rate(config, epoch, step, steps_per_epoch)`` gives
the rate of one optimizer step from nothing but its position, so the sequential trainer, the
lockstep trainer and a user's own loop get the same rates, and a resumed or early-stopped run
cannot drift from the formula. Positions are counted in ``config.schedule_unit``: with ``epoch``
the rate changes once per epoch (as ``torch.optim.lr_scheduler`` stepped per epoch), with
``step`` at every optimizer step.
"""

from __future__ import annotations

import math

from .config import TrainConfig


def schedule_is_constant(config: TrainConfig) -> bool:
    """True when every step uses ``config.lr`` (no schedule, no warm-up)."""
    return config.schedule == "constant" and config.warmup_epochs == 0


def learning_rate(config: TrainConfig, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The learning rate of step ``step`` (0-based) of epoch ``epoch`` (0-based).

    With ``u`` the position in units (the epoch, or ``epoch * steps_per_epoch + step``), ``T`` the
    units in ``max_epochs`` and ``W`` those in ``warmup_epochs`` (rounded up):

    - warm-up, ``u < W``: ``lr * (u + 1) / W`` (linear, reaching ``lr`` at the end of warm-up);
    - ``constant``: ``lr``;
    - ``step``: ``lr * gamma ** k``, ``k`` the number of milestones ``m`` with ``epoch >= m``
      (``MultiStepLR``: milestone 30 means epochs 0-29 at ``lr``, epoch 30 on at ``lr * gamma``);
    - ``cosine``: ``min_lr + (lr - min_lr) * (1 + cos(pi * (u - W) / (T - W))) / 2``
      (``CosineAnnealingLR`` with ``T_max = T - W``, starting after the warm-up).
    """
    per = steps_per_epoch if config.schedule_unit == "step" else 1
    u = epoch * per + (step if config.schedule_unit == "step" else 0)
    total = config.max_epochs * per
    warm = math.ceil(config.warmup_epochs * per)
    if u < warm:
        return config.lr * (u + 1) / warm
    if config.schedule == "step":
        return config.lr * config.gamma ** sum(1 for m in config.milestones if epoch >= m)
    if config.schedule == "cosine":
        progress = min((u - warm) / (total - warm), 1.0)
        return config.min_lr + (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress)) / 2
    return config.lr


def set_learning_rate(optimizer, lr: float) -> None:
    """Set every parameter group's rate (``torch.optim`` optimizers and the lockstep plain SGD)."""
    if hasattr(optimizer, "param_groups"):
        for group in optimizer.param_groups:
            group["lr"] = lr
    else:
        optimizer.lr = lr
