"""A sequence model for recurrent DropNet: an image read row by row (sequential MNIST by rows)."""

from __future__ import annotations

import math

from torch import nn

from ..errors import ConfigError
from ._blocks import positive_int_option
from .registry import register_model

CELLS: dict[str, tuple[type[nn.Module], dict]] = {
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
    "rnn": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn-relu": (nn.RNN, {"nonlinearity": "relu"}),
}


class RowRNN(nn.Module):
    """Reads a (C, H, W) or (H, W) input as H time steps of C * W features: recurrent module
    (``cell``, ``layers`` layers of ``hidden`` units, batch first) -> its last output -> Linear.
    The recurrent module's hidden units are prunable (``rnn.l0``, ``rnn.l1``, ...); the head is not.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int = 64,
                 cell: str = "lstm", layers: int = 1):
        super().__init__()
        if len(input_shape) not in (2, 3):
            raise ConfigError(
                f"lstm-a reads rows: input shape must be (C, H, W) or (H, W), got "
                f"{tuple(input_shape)}"
            )
        key = str(cell).strip().lower()
        if key not in CELLS:
            raise ConfigError(f"lstm-a: cell must be one of {', '.join(CELLS)}, got {cell!r}")
        kind, extra = CELLS[key]
        self.steps = int(input_shape[-2])
        self.features = math.prod(input_shape) // self.steps
        self.channels_first = len(input_shape) == 3
        self.rnn = kind(self.features, hidden, num_layers=layers, batch_first=True, **extra)
        self.head = nn.Linear(hidden, num_classes)
        self.prunable_layers = tuple(f"rnn.l{k}" for k in range(layers))

    def forward(self, x):
        if self.channels_first:  # (N, C, H, W) -> (N, H, C * W)
            x = x.permute(0, 2, 1, 3).flatten(2)
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


@register_model(
    "lstm-a",
    "Recurrent net over image rows (H steps of C*W pixels): LSTM[64] -> last output -> FC",
    hidden="hidden units per layer (64)",
    cell="lstm (default), gru, rnn (tanh) or rnn-relu",
    layers="recurrent layers (1)",
)
def lstm_a(input_shape, num_classes, hidden=64, cell="lstm", layers=1) -> nn.Module:
    return RowRNN(
        input_shape, num_classes, positive_int_option(hidden, "lstm-a", "hidden"), cell,
        positive_int_option(layers, "lstm-a", "layers"),
    )
