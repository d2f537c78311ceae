"""One plain-SGD training step of K stacked fully connected networks, by hand.

The paper's networks (Model A: Linear, ReLU, Linear, ReLU, Linear, batch 32) are so small that a
step's cost is mostly per-operation overhead: autograd records and replays some sixty small
operations (views, transposes, broadcasts, accumulations) for nine products. For a stack that is
a plain chain of Linear layers, ReLUs and per-unit scales (DropNet's masks), trained by plain SGD,
this module does the forward pass, the cross-entropy gradient and the backward pass itself, with
the same products in the same layouts, so it computes what autograd and ``torch.optim.SGD``
compute, up to rounding: each weight update ``W -= lr * g^T a`` is one ``baddbmm_``, which rounds
once where writing the gradient and then adding it rounds twice (and, at K=30 networks, saves a
tenth of the step: the gradient of Model A's first layer is written and read back otherwise).

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
        # Views a step reads, made once: every call costs a few microseconds, and a Model A step
        # at K=1 is mostly such calls. Parameters are updated in place, so the views stay valid.
        self._views = [
            (s.weight.transpose(1, 2), None if s.bias is None else s.bias.unsqueeze(2))
            if s.kind == "linear" else (s.weight.unsqueeze(1), None) if s.kind == "scale"
            else (None, None)
            for s in self.stages
        ]
        self._first_linear = next(
            (i for i, s in enumerate(self.stages) if s.kind == "linear"), len(self.stages)
        )

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
        for stage, (view, bias) in zip(self.stages, self._views, strict=True):
            kind = stage.kind
            if kind == "linear":
                if shared:
                    t = a.unsqueeze(0) if k == 1 else a.unsqueeze(0).expand(k, *a.shape)
                    shared = False
                else:
                    t = a
                if bias is None:
                    yt = torch.bmm(stage.weight, t.transpose(1, 2))
                else:
                    yt = torch.baddbmm(bias, stage.weight, t.transpose(1, 2))
                saved.append(t)
                a = yt.transpose(1, 2)
            elif kind == "relu":
                a = torch.relu(a)
                saved.append(a)
            elif kind == "scale":
                a = a * view
                saved.append(None)
            else:  # flatten
                a = a.flatten(1) if shared else a.flatten(2)
                saved.append(None)
        logits = a
        # sum over networks of each network's mean cross-entropy: d/dlogits = (softmax - 1_y) / B
        log_p = torch.log_softmax(logits, 2)
        index = target.unsqueeze(2)
        losses = log_p.gather(2, index).squeeze_(2).neg_()
        # autograd's own kernel (the same rounding): d loss / d log_p is -1/B at the labels
        d_log_p = torch.zeros_like(log_p).scatter_(2, index, -1.0 / b)
        g = _LOG_SOFTMAX_BACKWARD(d_log_p, log_p, 2, log_p.dtype)
        # Backward, updating each layer as soon as its input gradient is computed (it is read
        # before the update): the weight update is one ``baddbmm_`` (p += -lr * g^T a), which
        # never writes the gradient out. It rounds once where autograd then SGD round twice.
        first_linear = self._first_linear
        for i in range(len(self.stages) - 1, first_linear - 1, -1):
            stage, keep = self.stages[i], saved[i]
            kind = stage.kind
            if kind == "linear":
                gt = g.transpose(1, 2)  # (K, out, B), as autograd's baddbmm backward sees it
                if i > first_linear:  # autograd's layout: W^T g^T
                    g = torch.bmm(self._views[i][0], gt).transpose(1, 2)
                if stage.bias is not None:
                    stage.bias.add_(gt.sum(2), alpha=-lr)
                stage.weight.baddbmm_(gt, keep, alpha=-lr)
            elif kind == "relu":
                g = _THRESHOLD_BACKWARD(g, keep, 0)
            else:  # scale (``fused_stages`` allows flatten only before the first layer)
                g = g * self._views[i][0]
        return losses, logits


# resolved once: the overload packet looks the overload up on every call
_LOG_SOFTMAX_BACKWARD = torch.ops.aten._log_softmax_backward_data.default
_THRESHOLD_BACKWARD = torch.ops.aten.threshold_backward.default
