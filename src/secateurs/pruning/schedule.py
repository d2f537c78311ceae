"""When to stop pruning: by remaining fraction (the authors' code) or by accuracy (the paper's κ)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class StopRule:
    """Stop after the round whose record satisfies the rule; that round is the final training.

    ``until``: stop once the remaining fraction is at or below it (0.1 in the authors' code).
    ``kappa``: stop once validation accuracy falls below kappa x the unpruned network's.
    ``max_rounds``: a safety limit on pruning rounds (round 0 is the unpruned network).
    """

    until: float | None = 0.1
    kappa: float | None = None
    max_rounds: int | None = None

    def __post_init__(self) -> None:
        if self.until is None and self.kappa is None and self.max_rounds is None:
            raise ConfigError("a stop rule needs --until, --kappa or a maximum number of rounds")
        if self.until is not None and not 0.0 <= self.until < 1.0:
            raise ConfigError(f"--until must be in [0, 1), got {self.until}")
        if self.kappa is not None and not 0.0 < self.kappa <= 1.0:
            raise ConfigError(f"--kappa must be in (0, 1], got {self.kappa}")
        if self.max_rounds is not None and self.max_rounds < 0:
            raise ConfigError(f"max_rounds must be >= 0, got {self.max_rounds}")

    def reason_to_stop(self, rounds: list[dict]) -> str | None:
        """Why to stop after the last recorded round, or None to go on."""
        last = rounds[-1]
        if self.until is not None and last["remaining"] <= self.until + 1e-12:
            return f"remaining fraction {last['remaining']:.3f} <= {self.until}"
        if self.kappa is not None and len(rounds) > 1:
            floor = self.kappa * rounds[0]["val_acc"]
            if last["val_acc"] < floor:
                return f"validation accuracy {last['val_acc']:.4f} < kappa x unpruned = {floor:.4f}"
        if self.max_rounds is not None and last["round"] >= self.max_rounds:
            return f"reached {self.max_rounds} rounds"
        return None
