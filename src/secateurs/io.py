"""Atomic file writes: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


_UMASK = os.umask(0)
os.umask(_UMASK)

# Temporary files get this suffix, so that a clean-up removes only ours, never a user's ``.x.tmp``.
TMP_SUFFIX = ".secateurs-tmp"
_TMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}" + re.escape(TMP_SUFFIX) + "$")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes it 0600; results are ordinary files
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_path`."""
    return bool(_TMP_NAME.match(Path(path).name))


def remove_stale_temporaries(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Remove the temporary files that a process killed mid-write left in ``folder``; only
    files named by :func:`atomic_path` (call it while holding the folder's lock)."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    pattern = f".*{TMP_SUFFIX}"
    for p in folder.rglob(pattern) if recursive else folder.glob(pattern):
        if p.is_file() and not p.is_symlink() and is_temporary(p):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def check_writable_dir(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail now, with one line, when folder ``path`` could not be created or written; creates
    nothing (so a refused command leaves nothing behind)."""
    from .errors import ConfigError

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} folder {path} exists and is not a folder")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{what} folder {path} cannot be created: {probe} is not a folder")
    where = "" if probe == path else f" ({probe} is not writable)"
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} folder {path} is not writable{where}")
    try:  # access() says yes to root on read-only file systems: try it
        fd, tmp = tempfile.mkstemp(prefix=".secateurs-probe.", suffix=TMP_SUFFIX, dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ConfigError(f"{what} folder {path} is not writable{where}: {e.strerror or e}") from None
    return path


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and raw bytes (in name order): detects
    flipped bytes that a file format's own header checks miss. ``"sha256:<hex>"``."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        head = json.dumps([name, str(t.dtype).removeprefix("torch."), list(t.shape)])
        h.update(head.encode() + b"\0")
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def _write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return _write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    )


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_tensors(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> Path:
    """Save tensors as safetensors (never pickle), atomically. Tied weights (one tensor under
    two names, as a decoder that shares its embedding's weight) are stored once and the other
    name recorded as an alias, which ``load_tensors`` restores; safetensors refuses to store
    shared memory twice."""
    from safetensors.torch import save_file  # torch is imported only where tensors are saved

    flat: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    owners: dict[tuple, tuple[str, tuple]] = {}  # memory -> (first name, its view)
    for k, v in tensors.items():
        v = v.detach()
        if v.numel():
            memory = (v.device, v.untyped_storage().data_ptr())
            view = (v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype)
            first = owners.setdefault(memory, (k, view))
            if first[0] != k and first[1] == view:  # the same tensor under another name
                aliases[k] = first[0]
                continue
            if first[0] != k:  # another view of that memory: stored as a copy
                v = v.clone()
        flat[k] = v.to("cpu").contiguous()
    meta = dict(metadata or {})
    if aliases:
        meta[ALIASES_KEY] = json.dumps(aliases)
    return _write_with(path, lambda tmp: save_file(flat, str(tmp), metadata=meta or None))


ALIASES_KEY = "secateurs_aliases"  # safetensors metadata: {name: name of the tensor it shares}


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    out = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        aliases = json.loads((f.metadata() or {}).get(ALIASES_KEY, "{}"))
    for name, source in aliases.items():
        out[name] = out[source]
    return out


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
