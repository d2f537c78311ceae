"""K recurrent networks (``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``) and K embeddings as batched ops.

PyTorch's recurrent kernels take one set of weights, so K modules cannot share one call (K
networks as one block-diagonal module would cost K times the arithmetic). ``StackedRecurrent``
runs the recurrence itself, batched over networks: per layer and direction, one batched product
projects every time step's input (``W_ih x_t + b_ih + b_hh``), then each step is one batched
product ``W_hh h_{t-1}`` and the cell's pointwise gates, in PyTorch's formulas and gate order
(LSTM i, f, g, o; GRU r, z, n), from the zero initial state. On CPU this is what PyTorch's own
kernels do (it also projects the inputs first), so one network's results equal ``nn.LSTM``'s up
to the order of floating-point sums.

Hidden-unit masks (DropNet's, ``pruning.lockstep``): ``unit_mask`` (K, layers x directions, H)
zeroes a dropped unit's rows in every gate of its layer and its columns in ``W_hh`` and in the
next layer's ``W_ih``, as ``pruning.recurrent.RecurrentUnits`` does for one network: its h_t is
then exactly 0 and its weights get zero gradients.

Dropout between layers draws each network's masks from that network's generator (as
``StackedDropout``), so they are not those of PyTorch's kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .recurrence import GRUSequence, LSTMSequence, RNNSequence
from .stacked_ops import LockstepUnsupported, Stacked, StackedOp, register_stacker

_FORWARDS = (nn.LSTM.forward, nn.GRU.forward, nn.RNN.forward)


def _gates(rnn: nn.Module) -> int:
    return 4 if isinstance(rnn, nn.LSTM) else 3 if isinstance(rnn, nn.GRU) else 1


def recurrent_refusal(rnn: nn.Module) -> str | None:
    """Why K copies of ``rnn`` cannot be stacked (None if they can)."""
    kind = type(rnn).__name__
    if type(rnn).forward not in _FORWARDS:
        return f"{kind} overrides forward; lockstep runs nn.LSTM / nn.GRU / nn.RNN's own forward"
    if getattr(rnn, "proj_size", 0):
        return f"lockstep does not batch {kind} with proj_size={rnn.proj_size}"
    return None


class StackedRecurrent(StackedOp):
    """K recurrent modules of one configuration; ``run`` returns what the module returns,
    ``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``), each as a ``kb`` stack of the networks'
    own tensors (``h_n`` is (K, layers x directions, B, H))."""

    uses_dropout_generators = True

    def __init__(self, rnns: Sequence[nn.Module], masks: Sequence[Sequence[torch.Tensor]] | None = None,
                 scores: Sequence[str] = ()):
        """``masks[i][j]``: network i's 0/1 unit mask of layer-and-direction j (PyTorch's h_n
        order), or None for unmasked modules; ``scores[j]``: how activation taps on mask j want
        the output (``"abs_mean"``: |h|, else h)."""
        rnn = rnns[0]
        reason = recurrent_refusal(rnn)
        if reason is not None:
            raise LockstepUnsupported(reason)
        for i, other in enumerate(rnns[1:], 1):
            if type(other) is not type(rnn) or other.extra_repr() != rnn.extra_repr():
                raise LockstepUnsupported(
                    f"recurrent module of model {i} is {other} against {rnn} in model 0"
                )
        super().__init__(rnns, tuple(rnn._flat_weights_names))
        self.mode = "LSTM" if isinstance(rnn, nn.LSTM) else "GRU" if isinstance(rnn, nn.GRU) \
            else rnn.nonlinearity
        self.layers, self.directions = rnn.num_layers, 2 if rnn.bidirectional else 1
        self.hidden, self.batch_first = rnn.hidden_size, rnn.batch_first
        self.has_bias, self.p = rnn.bias, float(rnn.dropout)
        self.gates = _gates(rnn)
        if masks is not None:
            self.register_buffer(
                "unit_mask", torch.stack([torch.stack([m.detach().float() for m in net])
                                          for net in masks]).contiguous()
            )
            self.tensor_names.append("unit_mask")
        else:
            self.unit_mask = None
        self.scores = list(scores)
        self.generators = None  # per-network dropout generators, set by StackedNetwork
        self.tap_callbacks: dict[int, Callable[[torch.Tensor], None]] = {}

    # -- tensors -------------------------------------------------------------------------
    def _weights(self, j: int):
        """Layer-and-direction ``j``'s (W_ih, W_hh, b_ih, b_hh), masked."""
        k, reverse = divmod(j, self.directions)
        suffix = f"_l{k}{'_reverse' if reverse else ''}"
        w_ih, w_hh = getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix)
        b_ih = getattr(self, "bias_ih" + suffix) if self.has_bias else None
        b_hh = getattr(self, "bias_hh" + suffix) if self.has_bias else None
        if self.unit_mask is not None:
            mask = self.unit_mask[:, j].to(w_ih.dtype)  # (K, H)
            rows = mask.repeat(1, self.gates)  # (K, G*H), gate-major as the weights
            w_ih = w_ih * rows[:, :, None]
            if k > 0:  # the previous layer's output: [forward units, backward units]
                below = self.unit_mask[:, (k - 1) * self.directions: k * self.directions]
                w_ih = w_ih * below.flatten(1).to(w_ih.dtype)[:, None, :]
            w_hh = w_hh * rows[:, :, None] * mask[:, None, :]
            if b_ih is not None:
                b_ih, b_hh = b_ih * rows, b_hh * rows
        return w_ih, w_hh, b_ih, b_hh

    # -- running -------------------------------------------------------------------------
    def run(self, x: Stacked):
        k = self.weight_ih_l0.shape[0]
        if not isinstance(x, Stacked):
            raise LockstepUnsupported("a recurrent module's input must be one tensor")
        t = x.t.unsqueeze(0) if x.layout == "shared" else x.kb(k)  # (K or 1, *network's own)
        if t.dim() != 4:
            raise LockstepUnsupported(
                f"lockstep recurrent layers take batched 3-d inputs, got {t.dim() - 1}-d"
            )
        seq = t.transpose(1, 2) if self.batch_first else t  # time-major: (K|1, T, B, F)
        seq = seq.expand(k, *seq.shape[1:])
        finals_h, finals_c = [], []
        for layer in range(self.layers):
            outs = []
            for d in range(self.directions):
                j = layer * self.directions + d
                out, h, c = self._direction(seq, *self._weights(j), reverse=bool(d))
                outs.append(out)
                finals_h.append(h)
                finals_c.append(c)
                tap = self.tap_callbacks.get(j)
                if tap is not None:  # (K, B, H, T): units on dim 2, time as positions
                    units = out.permute(0, 2, 3, 1)
                    tap(units.abs() if self.scores[j] == "abs_mean" else units)
            seq = torch.cat(outs, -1) if len(outs) > 1 else outs[0]
            if self.p > 0 and self.training and layer < self.layers - 1:
                seq = self._dropout(seq)
        out = seq.transpose(1, 2) if self.batch_first else seq
        h_n = Stacked(torch.stack(finals_h, 1), "kb")
        if self.mode == "LSTM":
            return Stacked(out, "kb"), (h_n, Stacked(torch.stack(finals_c, 1), "kb"))
        return Stacked(out, "kb"), h_n

    def _dropout(self, seq: torch.Tensor) -> torch.Tensor:
        """Each network's own dropout mask, drawn at its own (batch-first or not) output shape."""
        own = seq.transpose(1, 2) if self.batch_first else seq
        masks = [
            torch.empty(own.shape[1:], dtype=seq.dtype, device=seq.device)
            .bernoulli_(1 - self.p, generator=g)
            for g in self.generators.for_device(seq.device)
        ]
        noise = torch.stack(masks).div_(1 - self.p)
        return seq * (noise.transpose(1, 2) if self.batch_first else noise)

    def _direction(self, seq, w_ih, w_hh, b_ih, b_hh, reverse: bool):
        """One layer and direction over a time-major (K, T, B, F) sequence: (K, T, B, H)
        outputs, the last h and (LSTM) c."""
        k, steps, batch, features = seq.shape
        flat = seq.reshape(k, steps * batch, features)
        if b_ih is None:
            xw = torch.bmm(flat, w_ih.transpose(1, 2))
        else:  # b_hh joins the projection except for GRU, whose new gate scales W_hh h + b_hn
            bias = b_ih if self.mode == "GRU" else b_ih + b_hh
            xw = torch.baddbmm(bias.unsqueeze(1), flat, w_ih.transpose(1, 2))
        xw = xw.view(k, steps, batch, -1).transpose(0, 1).contiguous()  # (T, K, B, G*H)
        if self.mode == "LSTM":
            out, h, c = LSTMSequence.apply(xw, w_hh, reverse)
        elif self.mode == "GRU":
            (out, h), c = GRUSequence.apply(xw, w_hh, b_hh, reverse), None
        else:
            (out, h), c = RNNSequence.apply(xw, w_hh, self.mode == "relu", reverse), None
        return out.transpose(0, 1), h, c

    @torch.no_grad()
    def write_back(self, module: nn.Module, position: int) -> None:
        for name in self.tensor_names:
            if name != "unit_mask":
                getattr(module, name).copy_(getattr(self, name)[position])


for _cls in (nn.LSTM, nn.GRU, nn.RNN):
    register_stacker(_cls)(StackedRecurrent)


@register_stacker(nn.Embedding)
class StackedEmbedding(StackedOp):
    """K embeddings (K, V, E): network j looks up its own tokens in its own table. A
    ``padding_idx`` row gets no gradient, as in ``nn.Embedding``."""

    def __init__(self, modules: Sequence[nn.Module]):
        m = modules[0]
        if m.max_norm is not None or m.scale_grad_by_freq or m.sparse:
            raise LockstepUnsupported(
                "lockstep batches nn.Embedding without max_norm, scale_grad_by_freq or sparse"
            )
        super().__init__(modules, ("weight",))
        self.padding_idx = m.padding_idx

    def run(self, x: Stacked) -> Stacked:
        w = self.weight
        k = w.shape[0]
        if self.padding_idx is not None:  # the padding row: forward the same, no gradient
            keep = torch.zeros(w.shape[1], 1, dtype=torch.bool, device=w.device)
            keep[self.padding_idx] = True
            w = torch.where(keep, w.detach(), w)
        if x.layout == "shared":
            out = w[:, x.t]  # (K, *tokens, E)
        else:
            tokens = x.kb(k)
            index = torch.arange(k, device=w.device).view(k, *(1,) * (tokens.dim() - 1))
            out = w[index, tokens]
        return Stacked(out, "kb")
