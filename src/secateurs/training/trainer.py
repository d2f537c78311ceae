"""Mini-batch training on in-memory tensors, with early stopping.

Batches are slices of a tensor permuted once per epoch, so there is no per-sample Python work and no
DataLoader collation; losses are summed on the device and read once per epoch.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..data.splits import DatasetSplits
from ..errors import ConfigError, TrainingDiverged
from ..progress import progress_bar
from .augment import augment_batch, check_augmentable
from .config import DEVICE_PATTERN, TrainConfig
from .schedules import learning_rate, schedule_is_constant, set_learning_rate
from .seeding import seeded_global_rng


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float


@dataclass
class TrainResult:
    history: list[EpochRecord] = field(default_factory=list)
    epochs: int = 0
    best_epoch: int = 0
    stopped_early: bool = False
    # What a user's training hook returned (``training.hook``); empty for the built-in trainer.
    info: dict = field(default_factory=dict)
    # Inputs a training hook asks DropNet to score units on instead of ``data.x_train`` (an
    # agent's visited states); kept in memory only, never written to a record.
    score_inputs: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "history": [vars(r) for r in self.history],
        }


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(DEVICE_PATTERN, str(device)):
        raise ConfigError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} requested but CUDA is not available; use the CPU (--device cpu, "
            "or training.device: cpu in an experiment config)"
        )
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or auto") from e


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def stateless_optimizer(config: TrainConfig) -> bool:
    """True for plain SGD (no momentum, no weight decay): no optimizer state to carry."""
    return config.optimizer == "sgd" and config.momentum == 0 and config.weight_decay == 0


class PlainSGD:
    """SGD without momentum or weight decay (the paper's setting): ``p -= lr * grad`` for every
    parameter in one multi-tensor call, the very operation ``torch.optim.SGD`` performs, without
    its per-step bookkeeping (which costs more than the update on small networks)."""

    def __init__(self, params, lr: float):
        self.params = [p for p in params if p.requires_grad]
        self.lr = lr
        self.state: dict = {}
        self.param_groups = [{"params": self.params, "lr": lr}]  # what schedules set

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        lr = self.param_groups[0]["lr"]
        pairs = [(p, p.grad) for p in self.params if p.grad is not None]
        if pairs:
            torch._foreach_add_([p for p, _ in pairs], [g for _, g in pairs], alpha=-lr)


def fast_optimizer(model: nn.Module, config: TrainConfig):
    """``make_optimizer``'s optimizer, computing the same updates with fewer calls: plain SGD as
    one multi-tensor update, other SGD on its multi-tensor path."""
    if stateless_optimizer(config):
        return PlainSGD(model.parameters(), config.lr)
    optimizer = make_optimizer(model, config)
    if isinstance(optimizer, torch.optim.SGD):
        for group in optimizer.param_groups:
            group["foreach"] = True
    return optimizer


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for i in range(0, len(y), batch_size):
        xb = x[i : i + batch_size].to(device, non_blocking=True)
        yb = y[i : i + batch_size].to(device, non_blocking=True)
        logits = model(xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    n = max(len(y), 1)
    return loss_sum.item() / n, correct.item() / n


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Softmax probabilities on ``x``, in eval mode, as a CPU float32 tensor."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [
        F.softmax(model(x[i : i + batch_size].to(device)).float(), dim=1).cpu()
        for i in range(0, len(x), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out)


def check_logits(logits: object, num_classes: int, batch: int) -> None:
    """Refuse, in one line, an output cross-entropy cannot train: anything but (batch, classes)
    logits (a squeezed single logit, per-token outputs, a tuple the trainer cannot pick from)."""
    if isinstance(logits, torch.Tensor) and tuple(logits.shape) == (batch, num_classes):
        return
    if not isinstance(logits, torch.Tensor):
        got = f"a {type(logits).__name__}, not a tensor"
        hint = "have forward return the logits (or pass the model to DropNet, which picks them out)"
    else:
        got = f"logits of shape {tuple(logits.shape)}"
        if logits.dim() < 2 or logits.shape[-1] == 1:
            hint = f"end with a layer of {num_classes} outputs, not one (squeezed) logit"
        elif logits.dim() == 2 and logits.shape[0] == batch:
            hint = f"its last layer has {logits.shape[1]} outputs; the data has {num_classes} classes"
        else:
            hint = "return one row of class scores per sample"
    raise ConfigError(
        f"the model returns {got} for a batch of {batch}; training with cross-entropy needs "
        f"({batch}, {num_classes}) logits, one per class; {hint}"
    )


def first_forward(model: nn.Module, x: torch.Tensor):
    """The model on its first batch; a model that cannot take the data (a float layer given
    token ids, a width the data does not have, ids beyond an Embedding) fails in one line
    naming the batch, instead of with a traceback from inside the model."""
    try:
        return model(x)
    except (RuntimeError, IndexError, TypeError, ValueError) as exc:
        text = " ".join(str(exc).split())
        raise ConfigError(
            f"the model fails on a batch of the data, shape {tuple(x.shape)} "
            f"{str(x.dtype).removeprefix('torch.')} ({type(exc).__name__}: {text[:300]}); "
            "check that the model is built for this dataset"
        ) from exc


def train(
    model: nn.Module,
    data: DatasetSplits,
    config: TrainConfig | None = None,
    *,
    seed: int = 0,
    progress: bool = True,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` in place on ``data.train``, early-stopping on ``data.val`` loss.

    Deterministic on CPU for a given seed: the data order (and, with ``config.augment``, each
    batch's crops and flips) comes from a generator seeded with ``seed`` (weights are whatever the
    model holds; seed its construction separately). The learning rate follows ``config``'s
    schedule (``schedules.learning_rate``), set before every step. What the forward draws from
    torch's global generator (dropout) is seeded from ``seed`` too (``seeding.seeded_global_rng``),
    so a run does not depend on what ran before it in the process.
    """
    config = config or TrainConfig()
    device = resolve_device(config.device)
    with seeded_global_rng(seed, device):
        return _train(model, data, config, device, seed, progress, description)


def _train(
    model: nn.Module,
    data: DatasetSplits,
    config: TrainConfig,
    device: torch.device,
    seed: int,
    progress: bool,
    description: str,
) -> TrainResult:
    model.to(device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val, data.y_val
    n = len(y_train)
    if n == 0:
        raise ConfigError("the training split is empty")
    check_augmentable(x_train, config)
    optimizer = fast_optimizer(model, config)
    scheduled = not schedule_is_constant(config)
    gen = torch.Generator().manual_seed(seed)
    result = TrainResult()
    best_loss, best_state, bad_epochs = math.inf, None, 0
    steps = math.ceil(n / config.batch_size)

    with progress_bar(progress) as bar:
        task = bar.add_task(description, total=config.max_epochs, info="")
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=gen).to(device)
            xs, ys = x_train[perm], y_train[perm]
            # Per-step losses and predictions go into buffers, summed once per epoch: two cheap
            # writes per step instead of a running sum and a comparison.
            losses = torch.empty(steps, device=device)
            predicted = torch.empty(n, dtype=torch.int64, device=device)
            for s in range(steps):
                xb = xs[s * config.batch_size : (s + 1) * config.batch_size]
                yb = ys[s * config.batch_size : (s + 1) * config.batch_size]
                xb = augment_batch(xb, config, gen)
                if scheduled:
                    set_learning_rate(optimizer, learning_rate(config, epoch - 1, s, steps))
                if epoch == 1 and s == 0:
                    logits = first_forward(model, xb)
                    check_logits(logits, data.num_classes, len(yb))
                else:
                    logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    losses[s] = loss.detach()
                    start = s * config.batch_size
                    torch.argmax(logits, 1, out=predicted[start : start + len(yb)])
            sizes = torch.full((steps,), float(config.batch_size), device=device)
            sizes[-1] = n - (steps - 1) * config.batch_size
            train_loss = (losses * sizes).sum().item() / n
            correct = (predicted == ys).sum()
            if not math.isfinite(train_loss):
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch}: the loss is {train_loss}; "
                    f"try a smaller learning rate (now {config.lr})"
                )
            val_loss, val_acc = evaluate(model, x_val, y_val, config.eval_batch_size)
            record = EpochRecord(epoch, train_loss, correct.item() / n, val_loss, val_acc)
            result.history.append(record)
            result.epochs = epoch
            bar.update(task, advance=1, info=f"loss {train_loss:.4f} val acc {val_acc:.4f}")
            if val_loss < best_loss:
                best_loss, bad_epochs, result.best_epoch = val_loss, 0, epoch
                if config.restore_best:
                    best_state = copy.deepcopy(model.state_dict())
            else:
                bad_epochs += 1
            if config.patience is not None and bad_epochs >= config.patience:
                result.stopped_early = True
                break
    if config.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    return result
