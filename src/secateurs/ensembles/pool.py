"""A pool of trained models seen only through their class probabilities, with validation.

Everything the ensemble-pruning code needs is here: per-model probabilities on a *selection* split
(validation data, used to choose a team) and optionally on a *test* split (only ever used to report
the chosen team's accuracy), plus optional per-model costs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .ties import tie_tolerance, vote_argmax

#: Each row of a probability array must sum to 1 within this absolute tolerance.
PROB_SUM_TOLERANCE = 1e-3
COST_KINDS = ("params", "macs")
RESERVED_NAMES = ("labels", "test", "costs")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax over the last axis, computed in float64 and stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def check_model_name(name: Any) -> str:
    """A model name becomes a file name ``<name>.npy``: refuse what cannot be one."""
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"model name {name!r} is not a non-empty string")
    bad = [ch for ch in ("/", "\\", "\0") if ch in name]
    if bad or name.startswith(".") or name in RESERVED_NAMES or name != name.strip():
        raise DataError(
            f"model name {name!r} cannot be used as a file name <name>.npy "
            f"(no '/', '\\', leading dot or surrounding spaces; not one of {list(RESERVED_NAMES)})"
        )
    return name


def _check_labels(labels: Any, num_classes: int, where: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise DataError(f"{where} labels must be a 1-D array of N integers, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise DataError(f"{where} labels must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        bad = int(arr[(arr < 0) | (arr >= num_classes)][0])
        raise DataError(
            f"{where} label {bad} is out of range: the probabilities have {num_classes} classes, "
            f"so labels must lie in 0..{num_classes - 1}"
        )
    return arr.astype(np.int64)


def _check_probs(
    names: Sequence[str], probs: Any, where: str, logits: bool
) -> np.ndarray:
    """Stack per-model arrays into [M, N, C], checking shape, finiteness and normalisation."""
    arrays = list(probs) if not isinstance(probs, np.ndarray) else [probs[i] for i in range(len(probs))]
    if len(arrays) != len(names):
        raise DataError(f"{where}: {len(names)} model names but {len(arrays)} probability arrays")
    shape = None
    checked = []
    for name, a in zip(names, arrays, strict=True):
        a = np.asarray(a)
        if a.dtype.kind not in "fiu":
            raise DataError(f"{where} model {name!r}: expected numbers, got dtype {a.dtype}")
        if a.ndim != 2:
            raise DataError(
                f"{where} model {name!r}: expected an N x C array of "
                f"{'logits' if logits else 'probabilities'}, got shape {a.shape}"
            )
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise DataError(
                f"{where} model {name!r} has shape {a.shape} but model {names[0]!r} has {shape}: "
                "every model must give N x C values for the same samples and classes"
            )
        if not np.all(np.isfinite(a)):
            bad = np.argwhere(~np.isfinite(a))[0]
            raise DataError(
                f"{where} model {name!r} has a non-finite value (NaN or inf) at sample {bad[0]}, "
                f"class {bad[1]}"
            )
        checked.append(a)
    assert shape is not None
    if shape[1] < 2:
        raise DataError(f"{where}: need at least 2 classes, got {shape[1]}")
    if shape[0] < 1:
        raise DataError(f"{where}: no samples")
    # float32 input stays float32 (half the memory); anything else becomes float64.
    dtype = np.float32 if all(a.dtype == np.float32 for a in checked) else np.float64
    stacked = np.empty((len(checked), *shape), dtype=dtype)
    for i, (name, a) in enumerate(zip(names, checked, strict=True)):
        if logits:
            stacked[i] = softmax(a)
            continue
        lo, hi = float(a.min()), float(a.max())
        if lo < -PROB_SUM_TOLERANCE or hi > 1 + PROB_SUM_TOLERANCE:
            raise DataError(
                f"{where} model {name!r} has values in [{lo:.4g}, {hi:.4g}], not probabilities in "
                "[0, 1] (pass --logits / logits=True if these are logits)"
            )
        sums = a.sum(axis=1, dtype=np.float64)
        off = np.abs(sums - 1.0)
        if off.max() > PROB_SUM_TOLERANCE:
            row = int(off.argmax())
            raise DataError(
                f"{where} model {name!r}: probabilities of sample {row} sum to {sums[row]:.6g}, "
                f"expected 1 within {PROB_SUM_TOLERANCE:g} (pass --logits / logits=True if these "
                "are logits)"
            )
        stacked[i] = a
    return stacked


def _check_costs(names: Sequence[str], costs: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """``{model: {"params": x, "macs": y}}`` -> ``{"params": array[M], ...}`` (kinds all models give)."""
    if costs is None:
        return {}
    if not isinstance(costs, Mapping):
        raise DataError(f"costs must map model names to {{'params': .., 'macs': ..}}, got {costs!r}")
    unknown = sorted(set(costs) - set(names))
    if unknown:
        raise DataError(f"costs name models that are not in the pool: {unknown}; pool: {list(names)}")
    missing = [n for n in names if n not in costs]
    if missing:
        raise DataError(f"costs are given for some models but not for {missing}")
    for n in names:
        if not isinstance(costs[n], Mapping):
            raise DataError(f"costs of model {n!r} must be a mapping like {{'params': 1000}}")
        extra = sorted(set(costs[n]) - set(COST_KINDS))
        if extra:
            raise DataError(f"costs of model {n!r} have unknown keys {extra}; allowed: {COST_KINDS}")
    out: dict[str, np.ndarray] = {}
    for kind in COST_KINDS:
        have = [kind in costs[n] for n in names]
        if not any(have):
            continue
        if not all(have):
            lacking = [n for n, h in zip(names, have, strict=True) if not h]
            raise DataError(f"costs give {kind!r} for some models but not for {lacking}")
        values = []
        for n in names:
            v = costs[n][kind]
            number = None if isinstance(v, bool) or not isinstance(v, (int, float)) else v
            try:  # an int too large for a float (JSON allows any) is not a usable cost either
                number = None if number is None else float(number)
            except OverflowError:
                number = None
            if number is None or not np.isfinite(number) or number < 0:
                shown = repr(v) if len(repr(v)) <= 40 else f"{repr(v)[:20]}... ({len(repr(v))} digits)"
                raise DataError(
                    f"cost {kind!r} of model {n!r} is {shown}; expected a finite number >= 0"
                )
            values.append(number)
        arr = np.asarray(values)
        if arr.sum() <= 0:
            raise DataError(f"costs {kind!r} are all zero; cannot compute cost fractions")
        out[kind] = arr
    return out


@dataclass(frozen=True, eq=False)
class Split:
    """Probabilities of every model on one split, with its labels and derived per-model facts."""

    probs: np.ndarray  # [M, N, C]
    labels: np.ndarray  # [N]

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.probs.shape[2])

    @cached_property
    def preds(self) -> np.ndarray:
        """[M, N] predicted class of each model (argmax; ties, within the inputs' precision
        (``ties``), to the lowest class)."""
        return vote_argmax(self.probs, tie_tolerance(self.probs.dtype))

    @cached_property
    def correct(self) -> np.ndarray:
        """[M, N] whether each model is right on each sample."""
        return self.preds == self.labels[None, :]

    @cached_property
    def accuracy(self) -> np.ndarray:
        """[M] accuracy of each model on this split."""
        return self.correct.mean(axis=1)


@dataclass(frozen=True, eq=False)
class PredictionPool:
    """M models' probabilities on a selection split (and optionally a test split).

    Build it with :meth:`from_arrays` (in-memory arrays) or :meth:`from_directory` (the documented
    ``.npy`` interchange format). Selection code only reads :attr:`selection`; :attr:`test` is
    read after a team has been chosen, to report its accuracy.
    """

    names: tuple[str, ...]
    selection: Split
    test: Split | None = None
    costs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_models(self) -> int:
        return len(self.names)

    @property
    def num_classes(self) -> int:
        return self.selection.num_classes

    @classmethod
    def from_arrays(
        cls,
        names: Sequence[str],
        probs: Any,
        labels: Any,
        test_probs: Any = None,
        test_labels: Any = None,
        costs: Mapping[str, Mapping[str, float]] | None = None,
        logits: bool = False,
    ) -> PredictionPool:
        """Validate and wrap arrays: ``probs`` is [M, N, C] (or a list of M arrays N x C).

        ``logits=True`` applies a softmax first. ``costs`` maps each model name to
        ``{"params": .., "macs": ..}`` (either or both). Raises DataError on bad input.
        """
        names = tuple(check_model_name(n) for n in names)
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise DataError(f"model names must be unique; repeated: {dup}")
        forms: dict[str, str] = {}
        for n in names:  # names that print alike: "é" as one code point and as e + accent
            twin = forms.setdefault(unicodedata.normalize("NFC", n), n)
            if twin != n:
                raise DataError(f"model names {twin!r} and {n!r} are one name written in two "
                                "Unicode forms (composed and decomposed accents); rename one")
        if len(names) < 2:
            raise DataError(f"a pool needs at least 2 models to form a team, got {len(names)}")
        sel_probs = _check_probs(names, probs, "selection split", logits)
        sel_labels = _check_labels(labels, sel_probs.shape[2], "selection split")
        if sel_labels.shape[0] != sel_probs.shape[1]:
            raise DataError(
                f"selection split: {sel_labels.shape[0]} labels but {sel_probs.shape[1]} samples "
                "of probabilities"
            )
        test = None
        if (test_probs is None) != (test_labels is None):
            raise DataError("give both test probabilities and test labels, or neither")
        if test_probs is not None:
            t_probs = _check_probs(names, test_probs, "test split", logits)
            if t_probs.shape[2] != sel_probs.shape[2]:
                raise DataError(
                    f"test split has {t_probs.shape[2]} classes but the selection split has "
                    f"{sel_probs.shape[2]}"
                )
            t_labels = _check_labels(test_labels, t_probs.shape[2], "test split")
            if t_labels.shape[0] != t_probs.shape[1]:
                raise DataError(
                    f"test split: {t_labels.shape[0]} labels but {t_probs.shape[1]} samples of "
                    "probabilities"
                )
            test = Split(t_probs, t_labels)
        return cls(names, Split(sel_probs, sel_labels), test, _check_costs(names, costs))

    @classmethod
    def from_directory(cls, path: Any, logits: bool = False) -> PredictionPool:
        """Load the ``.npy`` interchange format (see docs/ensembles.md)."""
        from .interchange import load_predictions

        return load_predictions(path, logits=logits)

    def save(self, path: Any) -> Any:
        """Write this pool in the interchange format (atomic writes)."""
        from .interchange import save_predictions

        return save_predictions(
            path,
            self.names,
            self.selection.probs,
            self.selection.labels,
            None if self.test is None else self.test.probs,
            None if self.test is None else self.test.labels,
            self.costs_by_model() or None,
        )

    def costs_by_model(self) -> dict[str, dict[str, float]]:
        return {
            n: {kind: float(v[i]) for kind, v in self.costs.items()} for i, n in enumerate(self.names)
        }

    def index_of(self, team: Sequence[str | int]) -> tuple[int, ...]:
        """Model names or indices -> sorted unique indices; ConfigError on unknown or repeated."""
        idx = []
        for t in team:
            if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
                if not 0 <= int(t) < self.num_models:
                    raise ConfigError(f"model index {t} is out of range 0..{self.num_models - 1}")
                idx.append(int(t))
            elif isinstance(t, str) and t in self.names:
                idx.append(self.names.index(t))
            else:
                raise ConfigError(f"unknown model {t!r}; the pool has {list(self.names)}")
        if len(set(idx)) != len(idx):
            raise ConfigError(f"team {list(team)} names a model twice")
        if not idx:
            raise ConfigError("a team needs at least one model; got an empty team")
        return tuple(sorted(idx))
