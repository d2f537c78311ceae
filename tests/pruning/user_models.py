"""A zoo of models written the way people write them outside this project (not for secateurs).

Each class exercises one pattern DropNet with physical removal must get right: where its heads
are, what it returns, how it uses ``self.training``, which axis its units are on, which ops its
channels go through. ``tests/pruning/test_user_models.py`` runs a short DropNet and an export on
each. No class declares ``prunable_layers``: discovery must find the layers from the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLASSES = 3


# ----------------------------------------------------------------------------- heads
class HeadFirstMLP(nn.Module):
    """The classifier is defined before the hidden layers."""

    def __init__(self, d_in=12, hidden=10, classes=CLASSES):
        super().__init__()
        self.classifier = nn.Linear(hidden, classes)
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.classifier(x)


class TwoHeadNet(nn.Module):
    """A shared trunk and two heads (multi-task); returns a tuple, the first head is the task."""

    def __init__(self, d_in=12, classes=CLASSES):
        super().__init__()
        self.head_a = nn.Linear(8, classes)
        self.head_b = nn.Linear(8, 2)
        self.trunk = nn.Sequential(nn.Linear(d_in, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())

    def forward(self, x):
        z = self.trunk(x)
        return self.head_a(z), self.head_b(z)


class DictOutputNet(nn.Module):
    """Returns a dict (like HuggingFace-style models); the logits are under "logits"."""

    secateurs_output = "logits"

    def __init__(self, d_in=12, classes=CLASSES):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d_in, 16), nn.Tanh(), nn.Linear(16, 12), nn.ReLU())
        self.proj = nn.Linear(12, 6)
        self.cls = nn.Linear(12, classes)

    def forward(self, x):
        h = self.encoder(x)
        return {"embedding": self.proj(h), "logits": self.cls(h)}


class TupleWithFeatures(nn.Module):
    """Returns (logits, features): the features are the last hidden layer's activations."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        feats = F.adaptive_avg_pool2d(F.relu(self.conv2(x)), 1).flatten(1)
        return self.fc(feats), feats


# ----------------------------------------------------------------------------- modes
class FunctionalDropoutMLP(nn.Module):
    """Dropout written functionally with ``training=self.training``."""

    def __init__(self, d_in=12, classes=CLASSES, p=0.3):
        super().__init__()
        self.p = p
        self.l1 = nn.Linear(d_in, 16)
        self.l2 = nn.Linear(16, 16)
        self.out = nn.Linear(16, classes)

    def forward(self, x):
        x = F.dropout(F.relu(self.l1(x)), self.p, training=self.training)
        x = F.dropout(F.relu(self.l2(x)), self.p, training=self.training)
        return self.out(x)


class TrainingBranchCNN(nn.Module):
    """An ``if self.training:`` branch (dropout only while training) and BatchNorm."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.training:
            x = F.dropout2d(x, 0.2)
        x = F.relu(self.conv2(F.max_pool2d(x, 2)))
        x = x.mean(dim=(2, 3))
        return self.fc(x)


class ScaledTrainingBranch(nn.Module):
    """A deterministic ``if self.training:`` branch (an inverted-dropout-like scaling while
    training), so train-mode outputs can be compared exactly."""

    def __init__(self, d_in=12, classes=CLASSES):
        super().__init__()
        self.a = nn.Linear(d_in, 14)
        self.b = nn.Linear(14, 10)
        self.head = nn.Linear(10, classes)

    def forward(self, x):
        h = torch.relu(self.a(x))
        if self.training:
            h = h * 0.5
        return self.head(torch.relu(self.b(h)))


# ----------------------------------------------------------------------------- axes and inputs
class PerTokenMLP(nn.Module):
    """Linear layers applied to every time step of (N, T, F), then mean over time (T == hidden)."""

    def __init__(self, features=6, steps=8, hidden=8, classes=CLASSES):
        super().__init__()
        self.steps = steps
        self.inp = nn.Linear(features, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):  # (N, T, F)
        h = F.gelu(self.inp(x))
        h = F.relu(self.mid(h))
        return self.out(h.mean(dim=1))


class BagOfEmbeddings(nn.Module):
    """Integer token ids in, an Embedding, a per-token Linear, mean pooling, a head."""

    def __init__(self, vocab=20, dim=8, classes=CLASSES):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.fc = nn.Linear(dim, 12)
        self.head = nn.Linear(12, classes)

    def forward(self, tokens):  # (N, T) int64
        h = torch.relu(self.fc(self.emb(tokens)))
        return self.head(h.mean(1))


class LayerNormMLP(nn.Module):
    """Linear -> LayerNorm -> GELU blocks (LayerNorm mixes the units: they cannot be removed)."""

    def __init__(self, d_in=12, classes=CLASSES):
        super().__init__()
        self.fc1, self.ln1 = nn.Linear(d_in, 16), nn.LayerNorm(16)
        self.fc2 = nn.Linear(16, 12)
        self.head = nn.Linear(12, classes)

    def forward(self, x):
        x = F.gelu(self.ln1(self.fc1(x)))
        x = F.relu(self.fc2(x))
        return self.head(x)


class TinyTransformer(nn.Module):
    """Token embedding by a per-token Linear, self-attention, LayerNorm, a feed-forward block."""

    def __init__(self, features=6, dim=8, classes=CLASSES):
        super().__init__()
        self.embed = nn.Linear(features, dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff1, self.ff2 = nn.Linear(dim, 16), nn.Linear(16, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        h = self.embed(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        h = self.norm1(h + a)
        h = self.norm2(h + self.ff2(F.gelu(self.ff1(h))))
        return self.head(h[:, 0])


# ----------------------------------------------------------------------------- convnets
class DenseNetLike(nn.Module):
    """Dense connectivity: each layer's output is concatenated to its input (``torch.cat``)."""

    def __init__(self, growth=4, classes=CLASSES):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.layers = nn.ModuleList()
        channels = 6
        for _ in range(3):
            self.layers.append(nn.Sequential(
                nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, growth, 3, padding=1)
            ))
            channels += growth
        self.transition = nn.Conv2d(channels, 8, 1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        x = F.avg_pool2d(F.relu(self.transition(x)), 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ConcatChannelsNet(nn.Module):
    """Two branches concatenated on channels with ReLU after the concatenation (Inception-like)."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.b1 = nn.Conv2d(3, 4, 1)
        self.b3 = nn.Conv2d(3, 6, 3, padding=1)
        self.mix = nn.Conv2d(10, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, classes)

    def forward(self, x):
        x = F.relu(torch.cat([self.b1(x), self.b3(x)], 1))
        x = F.max_pool2d(F.relu(self.mix(x)), 4)
        return self.fc(x.flatten(1))


class TinyUNet(nn.Module):
    """Encoder / decoder with a ConvTranspose2d up-sampling, an interpolate up-sampling and skip
    connections by concatenation; pooled to class logits."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(8, 12, 3, padding=1), nn.ReLU())
        self.bottleneck = nn.Sequential(nn.Conv2d(12, 16, 3, padding=1), nn.ReLU())
        self.up2 = nn.ConvTranspose2d(16, 12, 2, stride=2)
        self.dec2 = nn.Sequential(nn.Conv2d(24, 12, 3, padding=1), nn.ReLU())
        self.reduce = nn.Conv2d(12, 8, 1)
        self.dec1 = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.seg = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)                          # 16x16
        e2 = self.enc2(F.max_pool2d(e1, 2))        # 8x8
        b = self.bottleneck(F.max_pool2d(e2, 2))   # 4x4
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        up = F.interpolate(self.reduce(d2), scale_factor=2, mode="nearest")
        d1 = self.dec1(torch.cat([up, e1], dim=1))
        return self.seg(d1).mean((2, 3))


class InvertedResidual(nn.Module):
    def __init__(self, inp, out, stride, expand):
        super().__init__()
        hidden = inp * expand
        self.use_res = stride == 1 and inp == out
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out),
        )

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MiniMobileNetV2(nn.Module):
    """MobileNetV2: inverted residuals with depthwise convolutions, ReLU6, BatchNorm."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6()),
            InvertedResidual(8, 8, 1, 2),
            InvertedResidual(8, 12, 2, 2),
            InvertedResidual(12, 12, 1, 2),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(12, classes))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


class BasicBlock(nn.Module):
    def __init__(self, inp, out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.shortcut = nn.Sequential()
        if stride != 1 or inp != out:
            self.shortcut = nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False),
                                          nn.BatchNorm2d(out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class SmallResNet(nn.Module):
    """ResNet with identity and projection (1x1 conv + BN) shortcuts, in-place ``+=``."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 12, 2), BasicBlock(12, 12))
        self.linear = nn.Linear(12, classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer2(self.layer1(out))
        out = F.avg_pool2d(out, out.size(3))
        out = out.view(out.size(0), -1)
        return self.linear(out)


class NestedContainers(nn.Module):
    """Blocks in a ModuleList of ModuleDicts, heads in a ModuleDict."""

    def __init__(self, d_in=12, classes=CLASSES):
        super().__init__()
        self.blocks = nn.ModuleList([
            nn.ModuleDict({"lin": nn.Linear(d_in, 10), "act": nn.SiLU()}),
            nn.ModuleDict({"lin": nn.Linear(10, 10), "act": nn.SiLU()}),
        ])
        self.heads = nn.ModuleDict({"main": nn.Linear(10, classes)})

    def forward(self, x):
        for block in self.blocks:
            x = block["act"](block["lin"](x))
        return self.heads["main"](x)


class Conv1dNet(nn.Module):
    """A 1-D signal classifier: Conv1d, BatchNorm1d, max pooling, global average."""

    def __init__(self, channels=2, classes=CLASSES):
        super().__init__()
        self.c1 = nn.Conv1d(channels, 8, 5, padding=2)
        self.b1 = nn.BatchNorm1d(8)
        self.c2 = nn.Conv1d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):  # (N, C, L)
        x = F.max_pool1d(F.relu(self.b1(self.c1(x))), 2)
        x = F.relu(self.c2(x))
        return self.fc(x.mean(-1))


class SharedWeightsNet(nn.Module):
    """One Linear applied twice (weight tying across two steps)."""

    def __init__(self, d_in=12, classes=CLASSES):
        super().__init__()
        self.inp = nn.Linear(d_in, 10)
        self.shared = nn.Linear(10, 10)
        self.out = nn.Linear(10, classes)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = torch.relu(self.shared(h))
        h = torch.relu(self.shared(h))
        return self.out(h)


class DataDependentNet(nn.Module):
    """Python control flow on tensor values: not traceable."""

    def __init__(self, d_in=12, classes=CLASSES):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, 8), nn.Linear(8, classes)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        if h.mean() > 0.5:
            h = h * 2
        return self.fc2(h)


class LSTMClassifier(nn.Module):
    """Per-step Linear, an LSTM, a head on the last step."""

    def __init__(self, features=6, hidden=10, classes=CLASSES):
        super().__init__()
        self.proj = nn.Linear(features, 8)
        self.lstm = nn.LSTM(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        h = torch.tanh(self.proj(x))
        out, _ = self.lstm(h)
        return self.head(out[:, -1, :])


class EmbeddingLSTM(nn.Module):
    """Token ids, Embedding, a bidirectional two-layer LSTM, a hidden Linear and a head."""

    def __init__(self, vocab=20, dim=8, hidden=6, classes=CLASSES):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, hidden, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, 10)
        self.out = nn.Linear(10, classes)

    def forward(self, tokens):  # (N, T)
        out, (h, c) = self.rnn(self.emb(tokens).transpose(0, 1))
        return self.out(F.relu(self.fc(out.mean(0))))


class OptionalLayerNet(nn.Module):
    """An optional layer built but not used by this configuration."""

    def __init__(self, d_in=12, classes=CLASSES, use_extra=False):
        super().__init__()
        self.use_extra = use_extra
        self.fc1 = nn.Linear(d_in, 10)
        self.extra = nn.Linear(10, 10)
        self.fc2 = nn.Linear(10, classes)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        if self.use_extra:
            x = F.relu(self.extra(x))
        return self.fc2(x)


class ScalarOpsNet(nn.Module):
    """Scalars on either side of ``*`` and ``/``, a residual scaled by a number, interpolation."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 6, 3, padding=1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x):
        h = 0.5 * F.relu(self.conv1(x))
        h = h + F.relu(self.conv2(h)) / 2
        h = F.interpolate(F.max_pool2d(h, 4), scale_factor=2.0, mode="bilinear")
        h = 2 * F.leaky_relu(self.conv3(h), 0.1)
        return self.fc(F.adaptive_max_pool2d(h, 1).squeeze(-1).squeeze(-1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduction=2):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x):
        s = x.mean((2, 3))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s[:, :, None, None]


class SECNN(nn.Module):
    """A squeeze-and-excitation block: channels gated by a learnt per-channel scale."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.se = SqueezeExcite(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = self.se(F.relu(self.conv1(x)))
        x = F.relu(self.conv2(F.max_pool2d(x, 2)))
        return self.fc(x.amax((2, 3)))


class GroupedConvNet(nn.Module):
    """A ResNeXt-style grouped convolution (groups=2) between two pointwise convolutions."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.reduce = nn.Conv2d(3, 8, 1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.expand = nn.Conv2d(8, 12, 1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        x = F.relu(self.reduce(x))
        x = F.relu(self.grouped(x))
        x = F.relu(self.expand(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class DepthwiseSeparable(nn.Module):
    """Xception-style depthwise separable convolutions without BatchNorm, and Conv + Hardswish."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 12, 1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        x = F.hardswish(self.stem(x))
        x = F.relu(self.dw(x))
        x = F.relu(self.pw(x))
        return self.fc(x.mean((-2, -1)))


class ConvTransposeAutoencoder(nn.Module):
    """Strided encoder, ConvTranspose decoder, nearest upsampling module, classifier on top."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.enc = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.dec = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.refine = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x):
        z = F.relu(self.enc(x))
        y = F.relu(self.dec(z))
        y = F.relu(self.refine(F.max_pool2d(self.up(y), 4)))
        return self.fc(y.mean((2, 3)))


class LeNet(nn.Module):
    """The classic LeNet with a hard-coded flatten width (``x.view(-1, 16 * 2 * 2)``)."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(16 * 2 * 2, 20)
        self.fc2 = nn.Linear(20, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 16 * 2 * 2)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class SequentialBNDropout(nn.Sequential):
    """A plain ``nn.Sequential`` MLP with BatchNorm1d and Dropout modules."""

    def __init__(self, d_in=12, classes=CLASSES):
        super().__init__(
            nn.Linear(d_in, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(16, 12), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(12, classes),
        )


class Conv3dNet(nn.Module):
    """A tiny video / volume model: Conv3d, BatchNorm3d, a per-frame pooling and a head."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.c1 = nn.Conv3d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.c2 = nn.Conv3d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x):  # (N, 1, D, H, W)
        x = F.relu(self.bn(self.c1(x)))
        x = F.relu(self.c2(F.max_pool3d(x, 2)))
        return self.fc(x.mean(dim=(2, 3, 4)))


class PermutedConv1dTokens(nn.Module):
    """Conv1d over time on a (N, T, F) input (``transpose`` in and out), a per-token Linear,
    then max over time."""

    def __init__(self, features=6, classes=CLASSES):
        super().__init__()
        self.conv = nn.Conv1d(features, 10, 3, padding=1)
        self.tok = nn.Linear(10, 8)
        self.head = nn.Linear(8, classes)

    def forward(self, x):  # (N, T, F)
        h = F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (N, T, 10)
        h = F.relu(self.tok(h))
        return self.head(h.amax(1))


class GroupNormPReLU(nn.Module):
    """GroupNorm (mixes channels within groups), per-channel PReLU, max over positions."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3)
        self.gn = nn.GroupNorm(2, 8)
        self.act1 = nn.PReLU()
        self.c2 = nn.Conv2d(8, 8, 3)
        self.act2 = nn.PReLU(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = self.act1(self.gn(self.c1(x)))
        x = self.act2(self.c2(x))
        return self.fc(torch.max(x.flatten(2), dim=2)[0])


class TextCNN(nn.Module):
    """Kim-style text CNN: Embedding, Conv1d over time, max over time (``.values``), dropout."""

    def __init__(self, vocab=20, dim=8, classes=CLASSES):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, 12, 3, padding=1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(12, classes)

    def forward(self, tokens):
        x = self.embedding(tokens).permute(0, 2, 1)  # (N, dim, T)
        x = F.relu(self.conv(x)).max(dim=2).values
        return self.fc(self.dropout(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class BottleneckResNet(nn.Module):
    """torchvision-style ResNet-50 stem and bottleneck blocks with a ``downsample`` shortcut."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        down = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.layer1 = nn.Sequential(Bottleneck(8, 4, 1, down), Bottleneck(16, 4))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class SiameseEncoder(nn.Module):
    """One encoder applied to both halves of a pair: every hidden layer is shared."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
        self.head = nn.Linear(8, classes)

    def forward(self, pair):  # (N, 2, 6)
        return self.head(torch.cat([self.enc(pair[:, 0]), self.enc(pair[:, 1])], 1))


class WeightReuseMLP(nn.Module):
    """A layer's weight used a second time, functionally (weight sharing across depth)."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 10)
        self.out = nn.Linear(10, classes)

    def forward(self, x):
        h = F.relu(self.fc2(F.relu(self.fc1(x))))
        h = F.relu(F.linear(h, self.fc2.weight, self.fc2.bias))  # fc2 again, by its weight
        return self.out(F.relu(self.fc3(h)))


class PositionalTokens(nn.Module):
    """A learned positional embedding as a bare Parameter, added to the tokens."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 8, 6) * 0.1)
        self.fc1 = nn.Linear(6, 10)
        self.head = nn.Linear(10, classes)

    def forward(self, x):  # (N, 8, 6)
        return self.head(F.relu(self.fc1(x + self.pos)).mean(1))
