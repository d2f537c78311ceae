"""Train K networks of one architecture as one batched computation ("lockstep").

Small networks waste a machine: a Model A step at batch 32 costs far more in per-step overhead
(Python, autograd, the optimizer) than in arithmetic, and on a GPU it leaves the device idle.
``StackedNetwork`` reads the traced graph of K structurally identical models, stacks each layer's
tensors along a new first dimension (``(K, ...)``) and runs all K as one batched model: linear
layers as batched matrix products (computed feature-major, y^T = W x^T, the fast form on CPU for
any width), convolutions as one grouped convolution (channels-last on CPU), pointwise ops and
pooling on the stacked activations.

``train_lockstep`` (``LockstepTrainer``) is ``trainer.train`` for K models at once, network by
network the same thing: each model keeps its own data order (its own seeded generator; when all
seeds are equal the networks share one order and read one shared input), its own slice of the
optimizer state (elementwise optimizers on stacked parameters are per-network identical to
separate ones, because each network's gradient is that of its own mean loss), and its own early
stopping and restore-best; a network that stops is removed from the stack (parameters and
optimizer state are sliced), so it costs nothing afterwards.

The results equal K calls of ``train`` up to floating-point reassociation (batched kernels sum in
another order): see docs/lockstep.md for the tolerances the tests hold. Supported: Linear,
Conv2d (groups=1, zero padding), BatchNorm1d/2d/3d (one BatchNorm over the K*C channels of the
stacked activation: per-network statistics are per-channel statistics), dropout (each network
draws its own masks from its own generator, seeded per network, at its own activation shape),
pointwise activations, pooling, Flatten, additions and other binary ops (``alpha=`` included),
LSTM / GRU / RNN (``stacked_recurrent``), Embedding, and indexing, permutes, reshapes,
reductions over a dimension and concatenation (``stacked_shapes``); more module types can be
registered with ``register_stacker``. The pieces: ``stacked_ops`` (the ops), ``stacked_network``
(the traced program), this module (the trainer). Every model must configure each
module alike (stride, slopes, ...), and a forward must not differ between train and eval mode
other than in functional dropouts' ``training`` flag. Learning-rate schedules are followed (every
network of a batch is at the same epoch and step); augmentation (``augment``) is refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn import functional as F

from ..data.splits import DatasetSplits
from ..errors import ConfigError, TrainingDiverged
from ..progress import progress_bar
from .config import TrainConfig
from .fused_chain import FusedChain
from .schedules import learning_rate, schedule_is_constant, set_learning_rate
from .stacked_network import (
    LAYOUTS,
    StackedNetwork,
    eval_chunk,
    evaluate_lockstep,
    trace_stackable,
)
from .stacked_ops import (
    LockstepUnsupported,
    Stacked,
    StackedConv2d,
    StackedOp,
    register_stacker,
)
from .trainer import EpochRecord, PlainSGD, TrainResult, fast_optimizer, resolve_device

__all__ = [
    "LAYOUTS", "LockstepDiverged", "LockstepTrainer", "LockstepUnsupported", "Stacked",
    "StackedConv2d", "StackedNetwork", "StackedOp", "eval_chunk", "evaluate_lockstep",
    "register_stacker", "trace_stackable", "train_lockstep",
]


class LockstepDiverged(TrainingDiverged):
    """Some networks diverged; the others finished. ``results[i]`` is None for a failed network
    and ``failed[i]`` says why."""

    def __init__(self, message: str, results: list[TrainResult | None], failed: dict[int, str]):
        super().__init__(message)
        self.results = results
        self.failed = failed


def _optimizer(stacked: StackedNetwork, config: TrainConfig):
    """``make_optimizer``'s optimizer for the stacked parameters (elementwise updates on stacked
    parameters are each network's own), in as few calls as possible."""
    return fast_optimizer(stacked, config)


def _rebuild_optimizer(
    old, stacked: StackedNetwork, config: TrainConfig,
    mapping: dict[nn.Parameter, nn.Parameter], keep: torch.Tensor, k_old: int,
):
    """A new optimizer for the sliced parameters carrying the kept networks' state."""
    new = _optimizer(stacked, config)
    for p_old, p_new in mapping.items():
        state = old.state.get(p_old)
        if not state:
            continue
        new.state[p_new] = {
            name: (
                v.index_select(0, keep.to(v.device))
                if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == k_old
                else v
            )
            for name, v in state.items()
        }
    return new


def _batches(perms: torch.Tensor, batch_size: int, layout: str) -> list[torch.Tensor]:
    """Each step's sample indices, flattened in the order the stacked input needs: network-major
    for ``kb`` ((K, B) -> K*B), sample-major for ``bk``. One copy per epoch; steps are views."""
    k, n = perms.shape
    steps, rest = divmod(n, batch_size)
    parts = []
    if steps:
        main = perms[:, : steps * batch_size].view(k, steps, batch_size)
        main = (main.transpose(0, 1) if layout == "kb" else main.permute(1, 2, 0)).contiguous()
        parts = list(main.view(steps, -1))
    if rest:
        tail = perms[:, steps * batch_size :]
        parts.append((tail if layout == "kb" else tail.t()).reshape(-1))
    return parts


@dataclass
class _Member:
    """One network's training state (what ``trainer.train`` keeps in local variables)."""

    key: int
    model: nn.Module
    generator: torch.Generator
    result: TrainResult
    best_loss: float = math.inf
    bad_epochs: int = 0
    best_state: dict | None = None
    seconds: float = 0.0


@dataclass
class Finished:
    """A network that stopped training: its model holds its final weights (the best epoch's with
    ``restore_best``); ``result`` is None and ``error`` says why if its loss diverged; ``seconds``
    is its share of the batch's training time."""

    key: int
    result: TrainResult | None
    seconds: float
    error: str | None = None


class LockstepTrainer:
    """Networks of one architecture trained together, epoch by epoch, each exactly as
    ``trainer.train`` would train it alone (own data order, early stopping, restore-best).

    All networks start together; a network that stops leaves the batch (parameters and optimizer
    state are sliced). Networks do not join a running batch: a newcomer's optimizer state would
    be at another step, and refilling freed slots with DropNet runs' next rounds was measured to
    gain nothing (the batch then keeps the widths of its least pruned member, which costs what
    the fuller batch saves), so the DropNet driver keeps its rounds in step.
    """

    fused_steps: bool = True  # False: every step through autograd (to compare the two)

    def __init__(
        self,
        models: Sequence[nn.Module],
        seeds: Sequence[int],
        data: DatasetSplits,
        config: TrainConfig | None = None,
        *,
        graph: fx.Graph | None = None,
        dropout_seeds: Sequence[int] | None = None,
    ):
        """Network ``i`` is ``models[i]`` with the data order of ``seeds[i]`` (equal seeds for
        all: one generator, one shared input) and dropout masks from a generator seeded by
        ``dropout_seeds[i]`` (default ``seeds[i]``); ``graph`` as in ``StackedNetwork``."""
        self.config = config or TrainConfig()
        if self.config.augment:
            raise LockstepUnsupported(
                "augment=true: lockstep training does not batch augmentation; train the models "
                "one by one (trainer.train)"
            )
        self.scheduled = not schedule_is_constant(self.config)
        self.device = resolve_device(self.config.device)
        self.x_train, self.y_train = data.x_train.to(self.device), data.y_train.to(self.device)
        self.x_val, self.y_val = data.x_val, data.y_val
        self.n = len(self.y_train)
        if self.n == 0:
            raise ConfigError("the training split is empty")
        if len(set(seeds)) == 1:  # one shared order: one generator for all
            generators = [torch.Generator().manual_seed(int(seeds[0]))] * len(models)
        else:
            generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.members = [
            _Member(i, model.to(self.device), gen, TrainResult())
            for i, (model, gen) in enumerate(zip(models, generators, strict=True))
        ]
        self.stacked: StackedNetwork | None = StackedNetwork(models, graph).to(self.device)
        self.stacked.seed_dropout(list(dropout_seeds) if dropout_seeds is not None else seeds)
        self.optimizer = _optimizer(self.stacked, self.config)
        self.fused = self._fused_chain()
        self.per_sample = self.stacked.elements_per_sample(self.x_train[:1])
        self.chunk = self._eval_chunk()

    def _fused_chain(self) -> FusedChain | None:
        """The hand-written step where it computes what autograd would (see ``fused_chain``)."""
        if not self.fused_steps or not isinstance(self.optimizer, PlainSGD):
            return None
        stages = self.stacked.fused_stages()
        flat = len(self.x_train.shape) == 2 or (stages and stages[0].kind == "flatten")
        return FusedChain.of(stages) if flat and self.stacked.input_layout == "kb" else None

    def __len__(self) -> int:
        return len(self.members)

    def _eval_chunk(self) -> int:
        return eval_chunk(
            self.stacked.k, self.per_sample, self.config.eval_batch_size, self.device
        )

    def epoch(self) -> list[Finished]:
        """Train every network one epoch; returns those that stopped (and leave the batch)."""
        config, stacked, device = self.config, self.stacked, self.device
        members, ka, n, bs = self.members, len(self.members), self.n, self.config.batch_size
        sample = self.x_train.shape[1:]
        shared = len({id(m.generator) for m in members}) == 1  # one order (or one network)
        layout = "shared" if shared else stacked.input_layout
        start = time.perf_counter()
        stacked.train()
        losses_seen, predictions = [], []
        if shared:
            perm = torch.randperm(n, generator=members[0].generator).to(device)
            # each step gathers its own rows (below): gathering the whole epoch at once writes
            # a fresh copy of the training set, whose page faults cost more than the gathers
            rows = list(perm.split(bs))
            targets = self.y_train.index_select(0, perm).split(bs)
        else:
            perms = torch.stack([torch.randperm(n, generator=m.generator) for m in members])
            perms = perms.to(device)
            rows = _batches(perms, bs, layout)
            by_network = rows if layout == "kb" else _batches(perms, bs, "kb")
            targets = self.y_train.index_select(0, torch.cat(by_network))
            targets = targets.split([len(r) for r in rows])
        epoch_index = members[0].result.epochs  # every member started with the batch
        # a step's inputs, overwritten by the next step (nothing keeps them past their step)
        rows_buffer = self.x_train.new_empty(((1 if shared else ka) * bs, *sample))
        fused = self.fused
        for step, (xb, yb) in enumerate(zip(rows, targets, strict=True)):
            if self.scheduled:
                set_learning_rate(
                    self.optimizer, learning_rate(config, epoch_index, step, len(rows))
                )
            b = len(yb) // (1 if shared else ka)
            if len(xb) == len(rows_buffer):  # one buffer for every full step: no allocation
                xb = torch.index_select(self.x_train, 0, xb, out=rows_buffer)
            else:
                xb = self.x_train.index_select(0, xb)
            if not shared:
                xb = xb.view(*((ka, b) if layout == "kb" else (b, ka)), *sample)
            # network-major targets, as the logits are flattened
            target = yb.view(1, b).expand(ka, b) if shared else yb.view(ka, b)
            if fused is not None:
                losses, logits = fused.step(xb, shared, target, self.optimizer.param_groups[0]["lr"])
            else:
                logits = stacked(xb, "shared" if shared else layout)
                # The sum of per-network mean losses: each network's gradient is its own
                # loss's. Classes on dim 1, (K, classes, B): the layout the last linear layer
                # writes and the fast one for log-softmax over few classes.
                losses = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
                self.optimizer.zero_grad(set_to_none=True)
                (losses.sum() / b).backward()
                self.optimizer.step()
                losses, logits = losses.detach(), logits.detach()
            losses_seen.append(losses)
            predictions.append(logits.contiguous().argmax(2) == target)  # fast dim
        train_losses = [v / n for v in torch.cat(losses_seen, 1).sum(1).tolist()]
        train_accs = [c / n for c in torch.cat(predictions, 1).sum(1).tolist()]
        val = evaluate_lockstep(stacked, self.x_val, self.y_val, self.chunk)
        share = (time.perf_counter() - start) / ka
        finished: list[Finished] = []
        stopped: list[int] = []
        for pos, m in enumerate(members):
            m.seconds += share
            if not math.isfinite(train_losses[pos]):
                stopped.append(pos)
                finished.append(Finished(
                    m.key, None, m.seconds,
                    f"training diverged at epoch {m.result.epochs + 1}: the loss is "
                    f"{train_losses[pos]}; try a smaller learning rate (now {config.lr})",
                ))
                continue
            result = m.result
            epoch = result.epochs + 1
            val_loss, val_acc = val[pos]
            result.history.append(
                EpochRecord(epoch, train_losses[pos], train_accs[pos], val_loss, val_acc)
            )
            result.epochs = epoch
            if val_loss < m.best_loss:
                m.best_loss, m.bad_epochs, result.best_epoch = val_loss, 0, epoch
                if config.restore_best:
                    m.best_state = stacked.slice_state(pos)
            else:
                m.bad_epochs += 1
            early = config.patience is not None and m.bad_epochs >= config.patience
            if early or epoch >= config.max_epochs:
                result.stopped_early = early
                stopped.append(pos)
                finished.append(Finished(m.key, result, m.seconds))
        if stopped:
            for pos in stopped:
                m = members[pos]
                if config.restore_best and m.best_state is not None:
                    stacked.load_slice(pos, m.best_state)
                stacked.write_back(m.model, pos)
            keep = [p for p in range(ka) if p not in set(stopped)]
            self.members = [members[p] for p in keep]
            if keep:
                mapping = stacked.select(keep)
                index = torch.tensor(keep, dtype=torch.long)
                self.optimizer = _rebuild_optimizer(
                    self.optimizer, stacked, config, mapping, index, ka
                )
                self.fused = self._fused_chain()
                self.chunk = self._eval_chunk()  # fewer networks: larger chunks fit the budget
            else:
                self.stacked = None
        return finished


def train_lockstep(
    models: Sequence[nn.Module],
    data: DatasetSplits,
    config: TrainConfig | None = None,
    *,
    seeds: Sequence[int],
    progress: bool = False,
    description: str = "lockstep",
    graph: fx.Graph | None = None,
    dropout_seeds: Sequence[int] | None = None,
) -> list[TrainResult]:
    """Train K models of one architecture in place, as ``[train(m, data, config, seed=s)]`` would.

    Each model gets the data order of ``seeds[i]``; when all seeds are equal the K networks read
    the same batches. Dropout masks: network ``i`` draws its own from a generator seeded by
    ``dropout_seeds[i]`` (default ``seeds[i]``), so they do not depend on the other networks
    (they are not those of ``train``, which draws from torch's global generator). ``graph``: the
    traced graph of these models (``StackedNetwork.graph``), to skip tracing them again. Raises ``LockstepUnsupported`` for models it cannot batch exactly, and
    ``LockstepDiverged`` (after finishing the others) when some networks' loss became NaN or
    infinite.
    """
    config = config or TrainConfig()
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(models):
        raise ConfigError(f"{len(models)} models but {len(seeds)} seeds; give one seed per model")
    if dropout_seeds is not None and len(dropout_seeds) != len(models):
        raise ConfigError(
            f"{len(models)} models but {len(dropout_seeds)} dropout seeds; give one per model"
        )
    trainer = LockstepTrainer(models, seeds, data, config, graph=graph, dropout_seeds=dropout_seeds)
    results: list[TrainResult | None] = [None] * len(models)
    failed: dict[int, str] = {}
    with progress_bar(progress) as bar:
        task = bar.add_task(description, total=config.max_epochs, info="")
        while len(trainer):
            for f in trainer.epoch():
                results[f.key] = f.result
                if f.error is not None:
                    failed[f.key] = f.error
            bar.update(task, advance=1, info=f"{len(trainer)} of {len(models)} networks training")
    if failed:
        first = min(failed)
        raise LockstepDiverged(
            f"{len(failed)} of {len(models)} networks diverged (network {first}: {failed[first]})",
            results, failed,
        )
    return results  # type: ignore[return-value]
