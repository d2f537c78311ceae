"""A team of physically pruned networks in one safetensors file, run as one ``nn.Module``.

The file holds every member's weights under ``members.<i>.<key>`` and, in its metadata, a JSON
record: the members' names and architectures (what ``save_exported`` records for one network),
the vote rule (and weights), the class count, the input shape and a format version. Loading
rebuilds each member by replaying the recorded surgery (``rebuild_exported``): no pickle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..ensembles.ties import tie_tolerance
from ..errors import ConfigError, DataError
from ..io import load_tensors, save_tensors
from ..pruning.surgery import (
    ExportResult,
    _version,
    export_architecture,
    rebuild_exported,
)

TEAM_FORMAT = "secateurs-team"
FORMAT_VERSION = 1
VOTES = ("soft", "weighted", "plurality", "majority")
_PREFIX = "members"


class TeamEnsemble(nn.Module):
    """Members and a vote rule as one module; ``forward`` gives the vote's class probabilities.

    soft: the mean of the members' softmax outputs; weighted: their weighted mean; plurality and
    majority: the fraction of members voting for each class. ``predict`` gives the labels the
    ensemble code (``secateurs.ensembles``) gives: ties go to the lowest class, and under majority
    voting a sample without more than half of the votes gets -1 (counted wrong). The vote is
    accumulated in float64 so that the labels match the selection code's.
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        *,
        vote: str = "soft",
        weights: Sequence[float] | None = None,
        names: Sequence[str] | None = None,
        num_classes: int | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not members:
            raise ConfigError("a team needs at least one member")
        self.vote = check_vote(vote)
        self.members = nn.ModuleList(members)
        self.names = list(names) if names is not None else [f"m{i}" for i in range(len(members))]
        if len(self.names) != len(members):
            raise ConfigError(f"{len(members)} members but {len(self.names)} names")
        w = check_weights(weights, len(members), self.vote)
        self.register_buffer("vote_weights", torch.tensor(w, dtype=torch.float64), persistent=False)
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape) if input_shape is not None else None

    def member_probs(self, x: torch.Tensor) -> torch.Tensor:
        """[L, N, C] softmax outputs of the members (float32, as the pipeline computed them)."""
        return torch.stack([F.softmax(m(x).float(), dim=1) for m in self.members])

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C] float64 vote totals: summed (weighted) probabilities, or vote counts."""
        probs = self.member_probs(x)
        if self.vote in ("soft", "weighted"):
            w = self.vote_weights.to(probs.device)
            return torch.einsum("l,lnc->nc", w, probs.double())
        votes = F.one_hot(_first_top(probs, tie_tolerance("float32")), probs.shape[2]).double()
        return votes.sum(dim=0)

    def _tied_scores(self, x: torch.Tensor) -> torch.Tensor:
        """``scores`` with totals tied with the highest (within float32's precision,
        ``ensembles.ties``) set equal to it, so the first maximum is the class selection chose."""
        s = self.scores(x)
        if self.vote in ("soft", "weighted"):
            best = s.max(dim=1, keepdim=True).values
            tol = float(tie_tolerance("float32", float(self.vote_weights.sum())))
            s = torch.where(s >= best - tol, best, s)
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self._tied_scores(x)
        return (s / s.sum(dim=1, keepdim=True)).to(torch.float32)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """[N] labels (-1 where majority voting finds no majority)."""
        s = self._tied_scores(x)
        top = s.argmax(dim=1)  # the first maximum: ties go to the lowest class
        if self.vote == "majority":
            top = torch.where(2 * s.max(dim=1).values > len(self.members), top, -1)
        return top


def _first_top(scores: torch.Tensor, tol: float) -> torch.Tensor:
    """The lowest class within ``tol`` of the highest score (``ensembles.ties``: the rule
    selection used, so a deployed team scores what its run reported)."""
    best = scores.max(dim=-1, keepdim=True).values
    return (scores >= best - float(tol)).to(torch.uint8).argmax(dim=-1)


def check_vote(vote: str) -> str:
    if vote not in VOTES:
        raise ConfigError(f"unknown vote rule {vote!r}; expected one of {', '.join(VOTES)}")
    return vote


def check_weights(weights: Sequence[float] | None, size: int, vote: str) -> list[float]:
    """The weights of a weighted vote (all 1 for the other rules)."""
    if vote != "weighted":
        if weights is not None:
            raise ConfigError(f"vote weights are only used with vote 'weighted', not {vote!r}")
        return [1.0] * size
    if weights is None:
        raise ConfigError("vote 'weighted' needs one weight per member")
    w = list(weights)
    ok = len(w) == size and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and v < float("inf")
        for v in w
    )
    if not ok:
        raise ConfigError(f"vote weights must be {size} finite numbers > 0, got {weights!r}")
    return [float(v) for v in w]


def save_team(
    path: str | Path,
    members: Sequence[ExportResult],
    names: Sequence[str],
    *,
    vote: str = "soft",
    weights: Sequence[float] | None = None,
    source: Mapping[str, Any] | None = None,
) -> Path:
    """Write exported members and their vote rule to one ``.safetensors`` file (atomically).

    ``source`` is free JSON provenance (the pipeline records the run, the row, the data split and
    the team's accuracies there)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"a team file must end in .safetensors, got {path}")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; a .safetensors file was expected")
    names = [str(n) for n in names]
    if len(names) != len(members) or not members:
        raise ConfigError(f"a team needs one name per member, got {len(names)} for {len(members)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"member names must be distinct, got {names}")
    vote = check_vote(vote)
    w = check_weights(weights, len(members), vote)
    first = members[0]
    for name, m in zip(names, members, strict=True):
        if tuple(m.input_shape) != tuple(first.input_shape) or m.num_classes != first.num_classes:
            raise ConfigError(
                f"member {name!r} takes inputs {tuple(m.input_shape)} and gives {m.num_classes} "
                f"classes, but member {names[0]!r} takes {tuple(first.input_shape)} and gives "
                f"{first.num_classes}: a team's members must share both"
            )
    tensors: dict[str, torch.Tensor] = {}
    for i, m in enumerate(members):
        for key, value in m.module.state_dict().items():
            tensors[f"{_PREFIX}.{i}.{key}"] = value
    record = {
        "format_version": FORMAT_VERSION,
        "names": names,
        "vote": vote,
        "weights": w if vote == "weighted" else None,
        "num_classes": first.num_classes,
        "input_shape": list(first.input_shape),
        "members": [export_architecture(m) for m in members],
        "source": dict(source) if source is not None else None,
        "secateurs_version": _version(),
    }
    try:
        text = json.dumps(record)
    except TypeError as exc:
        raise ConfigError(f"team source metadata is not JSON-serialisable: {exc}") from exc
    return save_tensors(path, tensors, metadata={"format": TEAM_FORMAT, "team": text})


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (a clear DataError for anything else)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found; expected a .safetensors file")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise DataError(f"{path} is not a readable safetensors file: {exc}") from exc


def read_team_record(path: str | Path) -> dict:
    """The validated JSON record of a team file, without building anything."""
    meta = read_metadata(path)
    if meta.get("format") != TEAM_FORMAT or "team" not in meta:
        raise DataError(f"{path} is not a secateurs team file (format {TEAM_FORMAT!r} expected)")
    try:
        rec = json.loads(meta["team"])
    except ValueError as exc:
        raise DataError(f"{path}: the team metadata is not valid JSON: {exc}") from exc
    if not isinstance(rec, dict):
        raise DataError(f"{path}: the team metadata must be a JSON object")
    version = rec.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(
            f"{path} has team format_version {version!r}; this version of secateurs reads "
            f"{FORMAT_VERSION}"
        )
    names, members = rec.get("names"), rec.get("members")
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) for n in names)
        or len(set(names)) != len(names)
    ):
        raise DataError(f"{path}: 'names' must be a non-empty list of distinct strings")
    if not isinstance(members, list) or len(members) != len(names):
        raise DataError(f"{path}: 'members' must hold one architecture per name ({len(names)})")
    try:
        check_vote(rec.get("vote"))
        check_weights(rec.get("weights"), len(names), rec.get("vote"))
    except ConfigError as exc:
        raise DataError(f"{path}: {exc}") from exc
    shape = rec.get("input_shape")
    if not isinstance(shape, list) or not all(isinstance(v, int) and v > 0 for v in shape):
        raise DataError(f"{path}: 'input_shape' must be a list of positive integers")
    if not isinstance(rec.get("num_classes"), int) or rec["num_classes"] < 2:
        raise DataError(f"{path}: 'num_classes' must be an integer >= 2")
    for name, arch in zip(names, members, strict=True):
        if not isinstance(arch, dict):
            raise DataError(f"{path}: member {name!r} has no architecture record")
        if arch.get("input_shape") != shape or arch.get("num_classes") != rec["num_classes"]:
            raise DataError(
                f"{path}: member {name!r} takes inputs {arch.get('input_shape')} with "
                f"{arch.get('num_classes')} classes, not the team's {shape} with "
                f"{rec['num_classes']}"
            )
    return rec


def load_team(path: str | Path, *, models: Mapping[str, nn.Module] | None = None) -> TeamEnsemble:
    """Rebuild a team file as one module (eval mode), without pickle. ``models`` gives, by member
    name, freshly built modules for members that are custom models (no registry spec)."""
    path = Path(path)
    rec = read_team_record(path)
    try:
        tensors = load_tensors(path)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise DataError(f"{path} is not a readable safetensors file: {exc}") from exc
    parts: list[dict[str, torch.Tensor]] = [{} for _ in rec["names"]]
    for key, value in tensors.items():
        head, _, rest = key.partition(".")
        index, _, inner = rest.partition(".")
        if head != _PREFIX or not index.isdigit() or int(index) >= len(parts) or not inner:
            raise DataError(f"{path}: unexpected tensor {key!r} (members.<i>.<name> expected)")
        parts[int(index)][inner] = value
    modules = []
    for i, (name, arch) in enumerate(zip(rec["names"], rec["members"], strict=True)):
        where = f"{path} (member {i}, {name!r})"
        model = (models or {}).get(name)
        modules.append(
            rebuild_exported(arch, lambda part=parts[i]: part, where=where, model=model)
        )
    team = TeamEnsemble(
        modules,
        vote=rec["vote"],
        weights=rec["weights"],
        names=rec["names"],
        num_classes=rec["num_classes"],
        input_shape=rec["input_shape"],
    )
    team.source = rec.get("source")
    return team.eval()
