"""Downloads of dataset files from their public mirrors: checksum-verified, atomic, with a progress
bar on a terminal (silent otherwise).

A file is written to a temporary name beside its target, verified against its published checksum,
and only then renamed: an interrupted or corrupted download never leaves a file under the final
name. ``$SECATEURS_MIRROR`` (or the ``mirror`` argument) replaces the public mirrors by one base URL;
``{name}`` in it is replaced by the dataset name.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DataError
from ..io import TMP_SUFFIX, atomic_path

log = logging.getLogger("secateurs.data")

MIRROR_ENV = "SECATEURS_MIRROR"
OFFLINE_ENV = "SECATEURS_OFFLINE"
TIMEOUT_S = 30.0
BLOCK = 1 << 20
# A download or extraction writes its temporary at least once per TIMEOUT_S (a read that waits
# longer fails and removes it), so one untouched this long belongs to a killed process.
ABANDONED_S = 20 * TIMEOUT_S


@dataclass(frozen=True)
class RemoteFile:
    """A published file and its published checksum (``algo`` is "md5" or "sha256")."""

    filename: str
    checksum: str
    algo: str = "md5"


def mirror_urls(name: str, default_mirrors: list[str], mirror: str | None = None) -> list[str]:
    """The base URLs to try: the override (argument, then ``$SECATEURS_MIRROR``) or the defaults."""
    override = mirror or os.environ.get(MIRROR_ENV)
    bases = [override] if override else list(default_mirrors)
    return [b.replace("{name}", name).rstrip("/") + "/" for b in bases]


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def _progress(total: int | None, label: str):
    """A rich progress bar on a terminal, else None (quiet in logs and CI)."""
    from ..progress import on_terminal

    if not on_terminal():
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    return progress, progress.add_task(label, total=total)


def remove_abandoned(folder: Path, name: str, older_than_s: float = ABANDONED_S) -> list[Path]:
    """Remove the temporaries that a killed download or extraction of ``name`` left in ``folder``
    (a SIGKILL runs no clean-up): ours only, and only once untouched for ``older_than_s``, so a
    download still running in another process keeps its file."""
    removed = []
    now = time.time()
    for p in Path(folder).glob(f".{glob.escape(name)}.*{TMP_SUFFIX}"):
        try:
            if p.is_symlink() or now - p.stat().st_mtime < older_than_s:
                continue
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:  # gone already, or not ours to remove: leave it
            continue
        log.info("removed %s, left by an interrupted download", p)
        removed.append(p)
    return removed


def download_file(url: str, dest: Path, remote: RemoteFile, timeout: float = TIMEOUT_S) -> Path:
    """Fetch ``url`` into ``dest``, verifying ``remote``'s checksum before the file gets its name.

    Raises DataError on any network failure or checksum mismatch (leaving nothing at ``dest``).
    """
    dest = Path(dest)
    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (http/https only)
    except urllib.error.HTTPError as e:
        raise DataError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"cannot reach {url} ({reason})") from e
    total = response.headers.get("Content-Length")
    bar = _progress(int(total) if total and total.isdigit() else None, remote.filename)
    h = hashlib.new(remote.algo)
    try:
        with response, atomic_path(dest) as tmp, open(tmp, "wb") as out:
            if bar:
                bar[0].start()
            received = 0
            while block := response.read(BLOCK):
                out.write(block)
                h.update(block)
                received += len(block)
                if bar:
                    bar[0].advance(bar[1], len(block))
            out.flush()
            if total and total.isdigit() and received < int(total):  # read() does not raise
                raise DataError(
                    f"download of {url} failed: the connection closed after {received:,} of "
                    f"{int(total):,} bytes (nothing was saved); try again"
                )
            got = h.hexdigest()
            if got != remote.checksum.lower():
                raise DataError(
                    f"{url}: checksum mismatch for {remote.filename}: expected {remote.algo} "
                    f"{remote.checksum}, got {got}; the download is corrupt or the mirror serves a "
                    "different file (nothing was saved)"
                )
    except (OSError, http.client.HTTPException) as e:  # TimeoutError is an OSError
        raise DataError(f"download of {url} failed ({e})") from e
    finally:
        if bar:
            bar[0].stop()
    return dest


def fetch(
    name: str,
    files: list[RemoteFile],
    dest_dir: Path,
    default_mirrors: list[str],
    mirror: str | None = None,
) -> list[Path]:
    """Download each of ``files`` into ``dest_dir`` (skipping those already there with the right
    checksum), trying the mirrors in order. Raises one DataError listing every failed attempt."""
    dest_dir = Path(dest_dir)
    out = []
    for remote in files:
        dest = dest_dir / remote.filename
        remove_abandoned(dest_dir, remote.filename)
        if dest.is_file() and file_digest(dest, remote.algo) == remote.checksum.lower():
            out.append(dest)
            continue
        errors = []
        bases = mirror_urls(name, default_mirrors, mirror)
        if not bases:
            raise DataError(f"no mirror known for {name}; set ${MIRROR_ENV} to a base URL")
        for base in bases:
            url = base + remote.filename
            log.info("downloading %s to %s", url, dest)
            try:
                out.append(download_file(url, dest, remote))
                break
            except DataError as e:
                errors.append(str(e))
        else:
            raise DataError("; ".join(errors))
    return out


def extract_tar(archive: Path, top: str, dest_dir: Path) -> Path:
    """Safely extract the ``top/`` folder of a tar archive into ``dest_dir/top`` (atomically).

    Only regular files and folders under ``top/`` are admitted: no links, devices, absolute paths or
    ``..`` components.
    """
    final = Path(dest_dir) / top
    remove_abandoned(dest_dir, top)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{top}.", suffix=TMP_SUFFIX, dir=dest_dir))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    parts = PurePosixPath(member.name).parts
                    if (
                        not parts
                        or parts[0] != top
                        or ".." in parts
                        or member.name.startswith("/")
                        or not (member.isfile() or member.isdir())
                    ):
                        raise DataError(
                            f"{archive}: unexpected member {member.name!r}; expected only files "
                            f"under {top}/ (refusing to extract)"
                        )
                    target = tmp_root.joinpath(*parts)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    with src, open(target, "wb") as f:
                        shutil.copyfileobj(src, f, BLOCK)
        except (tarfile.TarError, EOFError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(
                f"{archive} is not a readable tar archive ({first}); download it again"
            ) from e
        if not (tmp_root / top).is_dir():
            raise DataError(f"{archive} holds no {top}/ folder")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp_root / top, final)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return final
