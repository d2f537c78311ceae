"""Fixtures of the data tests: an isolated environment (no user data folders, a private download
cache, and a mirror that can never reach the internet), writers of every supported file format
(in datafiles.py), and a local HTTP server."""

from __future__ import annotations

import http.server
import tarfile
import threading
from functools import partial
from pathlib import Path

import pytest
from datafiles import closed_port


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test reads the user's data folders or downloads from the internet: the cache is a fresh
    folder and the default mirror is a closed local port."""
    monkeypatch.delenv("SECATEURS_DATA", raising=False)
    monkeypatch.delenv("SECATEURS_OFFLINE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SECATEURS_MIRROR", f"http://127.0.0.1:{closed_port()}/")
    return tmp_path / "cache" / "secateurs"


# ---- local HTTP server --------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def http_server():
    """``serve(folder) -> base URL`` of a threaded HTTP server on 127.0.0.1 for that folder."""
    servers = []

    def serve(folder: Path) -> str:
        handler = partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def cifar_jpeg_test_tree(tmp_path_factory, shared_datasets) -> Path:
    """The real CIFAR-10 JPEG test set (10,000 images) extracted once per session."""
    archive = shared_datasets / "cifar10-jpeg" / "test.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    dest = tmp_path_factory.mktemp("cifar10-jpeg")
    with tarfile.open(archive) as tar:
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, **kwargs)
    return dest / "test"
