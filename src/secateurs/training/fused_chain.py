"""One plain-SGD training step of K stacked fully connected networks, by hand.

The paper's networks (Model A: Linear, ReLU, Linear, ReLU, Linear, batch 32) are so small that a
step's cost is mostly per-operation overhead: autograd records and replays some sixty small
operations (views, transposes, broadcasts, accumulations) for nine products. For a stack that is
a plain chain of Linear layers, ReLUs and per-unit scales (DropNet's masks), trained by plain SGD,
this module does the forward pass, the cross-entropy gradient and the backward pass itself, with
the same products in the same layouts and the same update (``p -= lr * grad``, one multi-tensor
call), so it computes what autograd computes, up to the rounding of a few reassociated sums.

A stack qualifies through ``StackedNetwork.fused_stages()``: every op says what it is
(``StackedOp.fused_stage``) and the program must be a chain. Anything else (convolutions,
BatchNorm, dropout, other activations, residual additions, frozen parameters, momentum, weight
decay, Adam) trains through autograd as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Stage:
    """One link of a chain: ``linear`` (weight (K, out, in), bias (K, out) or None), ``relu``,
    ``scale`` (a (K, units) factor per unit: a mask) or ``flatten``."""

    kind: str
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None


class FusedChain:
    """Forward, loss and SGD update of a stacked chain in one call (``step``)."""

    def __init__(self, stages: Sequence[Stage]):
        self.stages = list(stages)
        self.params = [
            t for s in self.stages if s.kind == "linear" for t in (s.weight, s.bias)
            if t is not None
        ]

    @classmethod
    def of(cls, stages: Sequence[Stage] | None) -> FusedChain | None:
        """A chain for ``stages`` if it starts (after an optional flatten) and ends with a Linear
        layer (whose output is the logits) and every parameter trains, else None."""
        kinds = [s.kind for s in stages or ()]
        if kinds[:1] == ["flatten"]:
            kinds = kinds[1:]
        if not kinds or kinds[0] != "linear" or kinds[-1] != "linear" or "flatten" in kinds:
            return None
        chain = cls(stages)
        if not all(p.requires_grad for p in chain.params):
            return None
        return chain

    @torch.no_grad()
    def step(
        self, x: torch.Tensor, shared: bool, target: torch.Tensor, lr: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Train one step on ``x`` ((B, ...) read by all K networks when ``shared``, else
        (K, B, ...)) with labels ``target`` (K, B); returns the per-sample losses (K, B) and the
        logits (K, B, classes) of the forward pass (before the update)."""
        k, b = target.shape
        a = x
        saved: list[torch.Tensor | None] = []  # per stage: what its backward needs
        for stage in self.stages:
            if stage.kind == "flatten":
                a = a.flatten(1) if shared else a.flatten(2)
                saved.append(None)
            elif stage.kind == "linear":
                t = a.unsqueeze(0).expand(k, *a.shape) if shared else a
                shared = False
                w = stage.weight
                if stage.bias is None:
                    yt = torch.bmm(w, t.transpose(1, 2))
                else:
                    yt = torch.baddbmm(stage.bias.unsqueeze(2), w, t.transpose(1, 2))
                saved.append(t)
                a = yt.transpose(1, 2)
            elif stage.kind == "relu":
                a = torch.relu(a)
                saved.append(a)
            else:  # scale
                a = a * stage.weight.unsqueeze(1)
                saved.append(None)
        logits = a
        # sum over networks of each network's mean cross-entropy: d/dlogits = (softmax - 1_y) / B
        log_p = torch.log_softmax(logits, 2)
        index = target.unsqueeze(2)
        losses = -log_p.gather(2, index).squeeze(2)
        # autograd's own kernel (the same rounding): d loss / d log_p is -1/B at the labels
        d_log_p = torch.zeros_like(log_p).scatter_(2, index, -1.0 / b)
        g = torch.ops.aten._log_softmax_backward_data(d_log_p, log_p, 2, log_p.dtype)
        updates: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parameter, its gradient)
        first_linear = next(i for i, s in enumerate(self.stages) if s.kind == "linear")
        for i in range(len(self.stages) - 1, first_linear - 1, -1):
            stage, keep = self.stages[i], saved[i]
            if stage.kind == "linear":
                gt = g.transpose(1, 2)  # (K, out, B), as autograd's baddbmm backward sees it
                updates.append((stage.weight, torch.bmm(gt, keep)))
                if stage.bias is not None:
                    updates.append((stage.bias, gt.sum(2)))
                if i > first_linear:
                    # (the step's own weights, before the update; autograd's layout: W^T g^T)
                    g = torch.bmm(stage.weight.transpose(1, 2), gt).transpose(1, 2)
            elif stage.kind == "relu":
                g = torch.ops.aten.threshold_backward(g, keep, 0)
            else:  # scale (``fused_stages`` allows flatten only before the first layer)
                g = g * stage.weight.unsqueeze(1)
        torch._foreach_add_([p for p, _ in updates], [d for _, d in updates], alpha=-lr)
        return losses, logits
