"""Exports carry a digest of their tensors, verified on load; malformed architecture fields give
one-line errors naming the field."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from secateurs.errors import ConfigError, DataError
from secateurs.io import load_tensors, tensor_digest
from secateurs.models import build_model
from secateurs.pruning import MaskedNetwork, export_pruned, load_exported, save_exported


@pytest.fixture
def export(tmp_path):
    torch.manual_seed(0)
    model = build_model("model-a:widths=8-6", (64,), 10)
    x = torch.randn(4, 64)
    masked = MaskedNetwork(model, x)
    masks = {k: torch.ones(w, dtype=torch.bool) for k, w in masked.widths.items()}
    masks["net.1"][[1, 4]] = False
    result = export_pruned(masked, x, masks=masks)
    return result, x


def _data_start(path) -> int:
    raw = path.read_bytes()
    return 8 + int.from_bytes(raw[:8], "little")


def test_tensor_digest_sees_every_byte_name_dtype_and_shape():
    a = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(3)}
    same = {"b": torch.zeros(3), "w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    assert tensor_digest(a) == tensor_digest(same)  # order of insertion does not matter
    assert tensor_digest(a).startswith("sha256:")
    changed = {**a, "w": a["w"].clone()}
    changed["w"][1, 2] = torch.nextafter(changed["w"][1, 2], torch.tensor(100.0))  # one ulp
    variants = [
        changed,
        {**a, "w": a["w"].reshape(3, 2)},
        {**a, "w": a["w"].double()},
        {"v": a["w"], "b": a["b"]},
        {"w": a["w"]},
    ]
    digests = {tensor_digest(v) for v in variants}
    assert len(digests) == len(variants) and tensor_digest(a) not in digests


@pytest.mark.parametrize("single", [True, False])
def test_a_flipped_byte_in_the_tensors_is_refused(tmp_path, export, single):
    result, x = export
    path = tmp_path / ("m.safetensors" if single else "m")
    save_exported(path, result)
    weights = path if single else path / "model.safetensors"
    torch.testing.assert_close(load_exported(path)(x), result.module(x))
    raw = bytearray(weights.read_bytes())
    start = _data_start(weights)
    raw[start + (len(raw) - start) // 2] ^= 0x40  # inside the tensor data, past the header
    weights.write_bytes(bytes(raw))
    load_tensors(weights)  # safetensors itself does not notice
    with pytest.raises(DataError, match="do not match the checksum"):
        load_exported(path)


def _rewrite_architecture(path, **changes):
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_tensors(path)
    arch = json.loads(meta["architecture"])
    arch.update(changes)
    meta["architecture"] = json.dumps(arch)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"input_shape": [-1]}, "input_shape must be"),
        ({"input_shape": [1, 1, 1, 1, 2]}, "input_shape must be"),
        ({"input_shape": [100000, 100000, 100000]}, "input_shape must be"),
        ({"input_shape": "64"}, "input_shape must be a list of integers"),
        ({"model": {"name": "model-a", "options": [1]}}, "model options must be a mapping"),
        ({"model": "model-a"}, "model must be"),
        ({"num_classes": "ten"}, "num_classes must be an integer >= 2"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2"),
        ({"prunable_layers": ["nope"]}, "'removed' must map each prunable layer"),
        ({"removed": {"net.1": "abc", "net.3": []}}, "must be a list of integers"),
        ({"tensor_digest": 5}, "tensor_digest must be"),
        ({"model": {"name": "model-a", "options": {"widths": "x-y"}}}, "widths"),
    ],
)
def test_malformed_architecture_fields_are_one_line_errors(tmp_path, export, change, says):
    result, _ = export
    path = tmp_path / "m.safetensors"
    save_exported(path, result)
    _rewrite_architecture(path, **change)
    with pytest.raises((DataError, ConfigError)) as e:
        load_exported(path)
    assert says in str(e.value) and "\n" not in str(e.value)
