"""One DropNet run: train, record, score, drop a fraction of the remaining units, reset, repeat.

``DropNet`` holds one run's state and its steps (``train_round``, ``record``, ``choose``,
``prune_step``, ``reset``); ``pruning.driver`` takes one run or many through them, so scoring,
selection and resets are the same code for a single run and a batched study.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..data.splits import DatasetSplits
from ..errors import ConfigError
from ..models import build_model
from ..training import TrainConfig, TrainResult, split_metrics, train
from ..training.hook import (
    RoundInfo,
    TrainFn,
    as_train_result,
    check_score_inputs,
    resolve_train_fn,
)
from ..training.seeding import seeded_global_rng
from ..training.trainer import check_logits, resolve_device
from .importance import unit_scores
from .masks import MaskedNetwork
from .metrics import get_metric
from .oracle import oracle_choice
from .schedule import StopRule
from .selection import select_units

RESETS = ("initial", "random", "continue")
COUPLINGS = ("separate", "group")


@dataclass
class DropNetConfig:
    """One DropNet run's settings (the defaults are the authors' code: p = 0.2 down to 10%)."""

    metric: str = "minimum"
    fraction: float = 0.2
    until: float | None = 0.1
    kappa: float | None = None
    max_rounds: int | None = None
    reset: str = "initial"
    one_per_round: bool = False
    score_samples: int | None = None
    keep_weights: bool = True
    coupled: str = "separate"
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Types and ranges (run again by the driver: fields can be changed after construction)."""
        get_metric(self.metric)
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(
                f"train must be a TrainConfig, got {type(self.train).__name__} (from a dict: "
                "TrainConfig(**values) or DropNetConfig.from_dict)"
            )
        self.train.validate()
        for name in ("one_per_round", "keep_weights"):
            if not isinstance(getattr(self, name), bool):  # "no" would be truthy
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("fraction", "until", "kappa"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        for name in ("max_rounds", "score_samples"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Integral)
            ):
                raise ConfigError(f"{name} must be an integer or None, got {value!r}")
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.reset not in RESETS:
            raise ConfigError(f"--reset must be one of {RESETS}, got {self.reset!r}")
        if self.coupled not in COUPLINGS:
            raise ConfigError(f"--coupled must be one of {COUPLINGS}, got {self.coupled!r}")
        if self.score_samples is not None and self.score_samples < 1:
            raise ConfigError(f"score_samples must be >= 1, got {self.score_samples}")
        self.stop_rule()  # validates until / kappa / max_rounds

    def stop_rule(self) -> StopRule:
        return StopRule(self.until, self.kappa, self.max_rounds)

    def to_dict(self) -> dict:
        return {**asdict(self), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> DropNetConfig:
        values = dict(values)
        train_cfg = TrainConfig.from_dict(values.pop("train", {}))
        return cls(**values, train=train_cfg)


def _state_to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def group_coupled(
    scores: dict[str, torch.Tensor], alive: dict[str, torch.Tensor], groups: list[tuple[str, ...]]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Merge each group of coupled layers (channels that meet in a residual addition) into one
    virtual layer: a channel is alive while any producer keeps it and scores the mean of the
    producers that keep it. Selection then drops a channel from every producer at once, so that
    export can remove it (the cleaner option; the paper masks each conv on its own)."""
    if not groups:
        return scores, alive
    grouped = {layer for g in groups for layer in g}
    out_scores = {k: v for k, v in scores.items() if k not in grouped}
    out_alive = {k: v for k, v in alive.items() if k not in grouped}
    for g in groups:
        on = torch.stack([alive[k] for k in g]).float()
        values = torch.stack([scores[k].float() for k in g])
        out_alive["+".join(g)] = on.sum(0) > 0
        out_scores["+".join(g)] = (values * on).sum(0) / on.sum(0).clamp(min=1)
    return out_scores, out_alive


def ungroup_coupled(
    drop: dict[str, list[int]], groups: list[tuple[str, ...]], alive: dict[str, torch.Tensor]
) -> dict[str, list[int]]:
    """Spread a virtual layer's dropped channels over its producers (where still alive)."""
    if not groups:
        return drop
    out = {k: list(v) for k, v in drop.items() if "+" not in k or k in alive}
    for g in groups:
        for layer in g:
            out[layer] = [u for u in drop.get("+".join(g), []) if bool(alive[layer][u])]
    return out


def _private_copy(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as exc:  # a module holding something that cannot be copied
        raise ConfigError(
            f"DropNet works on a copy of the model you pass, and this {type(model).__name__} "
            f"cannot be copied ({type(exc).__name__}: {exc}); pass a registry spec or a module "
            "that copy.deepcopy accepts"
        ) from exc


class DropNet:
    """One DropNet run of one network on one dataset with one metric and seed.

    ``model``: a registry spec (built with ``seed``) or a module. A module is **copied**: the run
    trains, masks and resets its own copy (``self.masked``), and the module passed in keeps its
    weights and structure. Its weights as passed in are θ0 (``reset="initial"``).
    ``train_fn``: a training hook (``training.hook``: ``train_fn(network, info)``, or an object
    with that ``fit`` method) that trains each round's masked network instead of the built-in
    trainer.
    """

    def __init__(
        self,
        model: nn.Module | str,
        data: DatasetSplits,
        config: DropNetConfig | None = None,
        *,
        seed: int = 0,
        train_fn: TrainFn | None = None,
    ):
        self.config = config or DropNetConfig()
        self.data = data
        self.seed = seed
        self.metric = get_metric(self.config.metric)
        self.train_fn = resolve_train_fn(train_fn)
        if isinstance(model, str):
            with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
                torch.manual_seed(seed)
                model = build_model(model, data.input_shape, data.num_classes)
        else:
            model = _private_copy(model)
        self.masked = MaskedNetwork(model, data.x_train[:2])
        mode = self.masked.training
        with torch.no_grad():  # cross-entropy, the records and the scores need (N, classes)
            example = data.x_train[:2]
            check_logits(self.masked.eval()(example), data.num_classes, len(example))
        self.masked.train(mode)
        self.initial = _state_to_cpu(self.masked.weight_state_dict())
        self.generator = torch.Generator().manual_seed(seed)  # ties and random metrics
        self.round = 0
        self.rounds: list[dict] = []
        self.dropped: list[dict] = []  # {"layer", "index", "round": first round without it}
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.scores: dict[int, dict[str, list[float]]] = {}  # round -> the scores it ranked by
        self.stop_reason: str | None = None
        self.forked_from: str | None = None  # the metric whose round 0 this run copied
        self.score_inputs: torch.Tensor | None = None  # the hook's inputs to score on, if any
        self._unpruned_counts: tuple[int, int] | None = None

    # -- steps -------------------------------------------------------------------------------
    @property
    def round_seed(self) -> int:
        """This round's training seed (data order, augmentation), from the run's seed and round."""
        return self.seed * 100_003 + self.round

    def round_info(self) -> RoundInfo:
        """What a training hook is told about this round."""
        return RoundInfo(
            round=self.round,
            run_seed=self.seed,
            seed=self.round_seed,
            generator=torch.Generator().manual_seed(self.round_seed),
            data=self.data,
            config=copy.deepcopy(self.config.train),  # a hook's edits stay in its round
            device=resolve_device(self.config.train.device),
            remaining=self.masked.remaining_fraction(),
            metric=self.config.metric,
        )

    def train_round(self, progress: bool = False) -> TrainResult:
        """Train the current masked network: with the training hook when one is given, else the
        built-in trainer (data order seeded by seed and round)."""
        if self.train_fn is not None:
            return self._train_with_hook()
        return train(
            self.masked,
            self.data,
            self.config.train,
            seed=self.round_seed,
            progress=progress,
            description=f"{self.config.metric} round {self.round}",
        )

    def _train_with_hook(self) -> TrainResult:
        def masks() -> dict[str, torch.Tensor]:
            return {k: m.mask.detach().float().cpu().clone()
                    for k, m in self.masked.mask_modules().items()}

        before = masks()
        info = self.round_info()
        self.masked.train()  # as the built-in trainer starts: not the mode the last round left
        with seeded_global_rng(info.seed, info.device):  # a hook's DataLoader, dropout, random
            output = self.train_fn(self.masked, info)
        after = masks()
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        if changed:
            raise ConfigError(
                f"the training hook changed the masks of {', '.join(changed)} in round "
                f"{self.round}; a hook trains the weights and must leave the masks alone"
            )
        result = as_train_result(output)
        self.score_inputs = check_score_inputs(
            result.score_inputs, self.data.input_shape, self.data.x_train.dtype
        )
        return result

    def record(
        self, result: TrainResult, seconds: float = 0.0, metrics: dict[str, float] | None = None
    ) -> dict:
        """Measure the trained network of this round, keep its weights, decide whether to stop.

        ``metrics``: the splits' losses and accuracies (``split_metrics``' keys) when the driver
        has measured them already (the lockstep driver measures many runs in one pass)."""
        from .counting import implied_params_macs

        example = self.data.x_train[:1].to(next(self.masked.parameters()).device)
        params, macs = implied_params_macs(self.masked, example)
        if self._unpruned_counts is None:
            self._unpruned_counts = (params, macs)
        masks = self.masked.get_masks()
        row = {
            "round": self.round,
            "remaining": self.masked.remaining_fraction(),
            "units": sum(int(m.sum()) for m in masks.values()),
            "params": params,
            "macs": macs,
            "params_fraction": params / self._unpruned_counts[0],
            "macs_fraction": macs / self._unpruned_counts[1],
            **(
                split_metrics(self.masked, self.data, self.config.train.eval_batch_size)
                if metrics is None
                else metrics
            ),
            "epochs": result.epochs,
            "seconds": seconds,
            "widths": {k: int(m.sum()) for k, m in masks.items()},
            "remaining_per_layer": self.masked.remaining_per_layer(),
        }
        if result.info:
            row["train_info"] = dict(result.info)
        self.rounds.append(row)
        if self.config.keep_weights:
            self.weights[self.round] = _state_to_cpu(self.masked.weight_state_dict())
        self.stop_reason = self.config.stop_rule().reason_to_stop(self.rounds)
        return row

    def choose(self, scores: dict[str, torch.Tensor] | None = None) -> dict[str, list[int]]:
        """The units this round drops, by the metric (or the oracle). ``scores``: this round's
        unit scores when the driver has computed them already (not for the oracle). Units are
        scored on the training hook's ``score_inputs`` when it returned some, else on
        ``data.x_train``. A look only: the random draws (random metrics, ties) are put back, so
        ``prune_step`` then drops exactly these units."""
        state = self.generator.get_state()
        try:
            return self._choose(scores)
        finally:
            self.generator.set_state(state)

    def _choose(self, scores: dict[str, torch.Tensor] | None) -> dict[str, list[int]]:
        if scores is not None:
            return self.select(scores)
        cfg, x = self.config, self.data.x_train if self.score_inputs is None else self.score_inputs
        if self.metric.criterion == "oracle":
            if self.score_inputs is not None:
                raise ConfigError(
                    "the oracle ranks units by the training loss on data.x_train and y_train; "
                    "it cannot use a training hook's score_inputs (they have no labels)"
                )
            y = self.data.y_train
            if cfg.score_samples:
                x, y = x[: cfg.score_samples], y[: cfg.score_samples]
            pick = oracle_choice(self.masked, x, y, generator=self.generator)
            return {} if pick is None else {pick[0]: [pick[1]]}
        scores = unit_scores(
            self.metric.criterion,
            self.masked,
            x,
            samples=cfg.score_samples,
            batch_size=cfg.train.eval_batch_size,
        )
        return self.select(scores)

    def select(self, scores: dict[str, torch.Tensor]) -> dict[str, list[int]]:
        """The units to drop given this round's scores (lower goes first), by the metric's scope,
        the budget and the coupling rule; shared by every driver so that all select alike."""
        cfg = self.config
        self.scores[self.round] = {k: v.detach().cpu().float().tolist() for k, v in scores.items()}
        alive = {k: v.cpu() for k, v in self.masked.get_masks().items()}
        groups = self.masked.coupled_groups if cfg.coupled == "group" else []
        grouped_scores, grouped_alive = group_coupled(scores, alive, groups)
        drop = select_units(
            grouped_scores,
            grouped_alive,
            cfg.fraction,
            scope=self.metric.scope,
            one_per_round=cfg.one_per_round,
            generator=self.generator,
        )
        return ungroup_coupled(drop, groups, alive)

    def prune_step(self, scores: dict[str, torch.Tensor] | None = None) -> int:
        """Score (unless ``scores`` are given, see ``choose``), drop, reset; returns how many units
        were dropped (0: nothing left to drop)."""
        drop = self._choose(scores)
        count = sum(len(v) for v in drop.values())
        if count == 0:
            self.stop_reason = "no layer has a unit left to drop"
            return 0
        masks = self.masked.get_masks()
        for layer, units in drop.items():
            for unit in units:
                masks[layer][unit] = False
                self.dropped.append({"layer": layer, "index": unit, "round": self.round + 1})
        self.masked.set_masks(masks)
        self.round += 1
        self.reset()
        return count

    def reset(self) -> None:
        """Apply the reset policy to the surviving weights (masks are never touched)."""
        if self.config.reset == "initial":
            device = next(self.masked.parameters()).device
            self.masked.load_weight_state_dict({k: v.to(device) for k, v in self.initial.items()})
        elif self.config.reset == "random":
            self._reset_randomly()

    def _reset_randomly(self) -> None:
        """Re-draw every weight its module knows how to initialise (``reset_parameters``, or
        ``_reset_parameters`` as attention layers and transformers have), children before their
        parents as at construction; what no module re-draws (a bare ``nn.Parameter`` such as a
        class token, a buffer of the user's) and every frozen parameter (``requires_grad=False``:
        a pretrained part) go back to their values in θ0."""
        named = [(n, m) for n, m in self.masked.named_modules() if m is not self.masked]
        redrawn: set[str] = set()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 100_003 + 50_000 + self.round)
            for name, module in reversed(named):
                init = getattr(module, "reset_parameters", None)
                init = init if callable(init) else getattr(module, "_reset_parameters", None)
                if callable(init):
                    init()
                    redrawn.update(f"{name}.{key}" for key in module.state_dict())
        frozen = {k for k, p in self.masked.named_parameters() if not p.requires_grad}
        rest = {k: v for k, v in self.initial.items() if k not in redrawn or k in frozen}
        if rest:
            device = next(self.masked.parameters()).device
            self.masked.load_state_dict({k: v.to(device) for k, v in rest.items()}, strict=False)

    # -- the driver ---------------------------------------------------------------------------
    def run(
        self, on_round: Callable[[DropNet, dict], None] | None = None, *, lockstep: bool = True
    ) -> DropNetResult:
        """Run to the stop rule: ``pruning.driver.run_dropnets`` with a batch of one (the stacked
        engine trains only the alive units; ``lockstep=False`` or a hook: the built-in trainer
        or the hook)."""
        from .driver import run_dropnets  # the driver builds on this module

        return run_dropnets([self], lockstep=lockstep, on_round=on_round)[0]

    def network_at(self, round_: int) -> MaskedNetwork:
        """A copy of the masked network as trained in round ``round_`` (weights must be kept)."""
        result = self.result()
        masks = result.masks_at(round_)
        if round_ not in self.weights:
            raise ConfigError(f"round {round_} has no kept weights (keep_weights=False?)")
        net = copy.deepcopy(self.masked)
        device = next(net.parameters()).device
        net.load_weight_state_dict({k: v.to(device) for k, v in self.weights[round_].items()})
        net.set_masks(masks)
        return net

    def result(self) -> DropNetResult:
        return DropNetResult(
            metric=self.config.metric,
            seed=self.seed,
            config=self.config.to_dict(),
            layers=list(self.masked.layers),
            widths=dict(self.masked.widths),
            rounds=list(self.rounds),
            dropped=list(self.dropped),
            stop_reason=self.stop_reason,
            initial=self.initial,
            weights=dict(self.weights),
            scores=dict(self.scores),
            forked_from=self.forked_from,
        )


@dataclass
class DropNetResult:
    """A finished run: per-round records, every dropped unit (layer, original index, round), the
    initial weights and (when kept) each round's trained weights."""

    metric: str
    seed: int
    config: dict
    layers: list[str]
    widths: dict[str, int]
    rounds: list[dict]
    dropped: list[dict]
    stop_reason: str | None
    initial: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    weights: dict[int, dict[str, torch.Tensor]] = field(repr=False, default_factory=dict)
    # round -> per layer, the unit scores that round's selection ranked by (none for the oracle)
    scores: dict[int, dict[str, list[float]]] = field(repr=False, default_factory=dict)
    # round 0 was trained once for runs that share it, and copied: the metric that trained it
    forked_from: str | None = None

    def masks_at(self, round_: int) -> dict[str, torch.Tensor]:
        """Alive units of every layer in round ``round_`` (rebuilt from the drop record)."""
        if not 0 <= round_ < len(self.rounds):
            raise ConfigError(
                f"round {round_} does not exist; rounds are 0..{len(self.rounds) - 1}"
            )
        masks = {k: torch.ones(w, dtype=torch.bool) for k, w in self.widths.items()}
        for d in self.dropped:
            if d["round"] <= round_:
                masks[d["layer"]][d["index"]] = False
        return masks

    def round_nearest(self, remaining: float | None = None, pruned: float | None = None) -> int:
        """The round whose remaining fraction is nearest (ties: the earlier round)."""
        target = remaining if remaining is not None else 1.0 - float(pruned)
        return min(range(len(self.rounds)), key=lambda r: abs(self.rounds[r]["remaining"] - target))

    def summary(self) -> dict:
        return {
            "metric": self.metric,
            "seed": self.seed,
            "rounds": len(self.rounds),
            "stop_reason": self.stop_reason,
            "forked_from": self.forked_from,
        }


def run_dropnet(
    model: nn.Module | str,
    data: DatasetSplits,
    config: DropNetConfig | None = None,
    *,
    seed: int = 0,
    on_round: Callable[[DropNet, dict], None] | None = None,
    train_fn: TrainFn | None = None,
    lockstep: bool = True,
) -> DropNetResult:
    """Run DropNet to its stop rule. ``model`` is a registry spec (built with ``seed``) or a module
    (copied, left unchanged); ``train_fn``: a training hook (see ``DropNet``); ``lockstep=False``:
    the built-in trainer at full width instead of the stacked engine (see ``DropNet.run``)."""
    run = DropNet(model, data, config, seed=seed, train_fn=train_fn)
    return run.run(on_round, lockstep=lockstep)
