"""Downloads from a local HTTP server (never the internet): checksums, atomic writes, clear errors."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import time

import numpy as np
import pytest
import torch
from datafiles import (
    cifar_batch,
    closed_port,
    make_tar,
    random_images,
    write_cifar_py,
    write_mnist_like,
)

from secateurs.data import download_dataset, load_dataset
from secateurs.data.download import RemoteFile, download_file, extract_tar, fetch, mirror_urls
from secateurs.data.named import NAMED
from secateurs.errors import DataError


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published_sums(folder) -> dict[str, str]:
    """The SHA256SUMS file beside the shared datasets: ``{filename: sha256}``."""
    lines = (folder / "SHA256SUMS").read_text().split("\n")
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


@pytest.fixture
def mnist_test_dir(shared_datasets):
    folder = shared_datasets / "mnist-test"
    if not (folder / "SHA256SUMS").is_file():
        pytest.skip(f"{folder}/SHA256SUMS not found")
    return folder


def test_download_real_files_verified_by_sha256(tmp_path, http_server, mnist_test_dir):
    url = http_server(mnist_test_dir.parent)  # serves ../shared/datasets/
    sums = published_sums(mnist_test_dir)
    files = [RemoteFile(name, digest, "sha256") for name, digest in sorted(sums.items())]
    got = fetch("mnist", files, tmp_path / "dl", [], mirror=url + "{name}-test")
    for path in got:
        assert path.read_bytes() == (mnist_test_dir / path.name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(sums)  # no temp files left


def test_published_md5_mismatch_is_refused_and_nothing_is_kept(
    tmp_path, http_server, mnist_test_dir
):
    # The shared copy of t10k-images was re-compressed: its bytes differ from the file whose md5
    # MNIST's mirrors publish, so the real catalog entry must refuse it.
    url = http_server(mnist_test_dir)
    remote = next(f for f in NAMED["mnist"].files if f.filename.startswith("t10k-images"))
    with pytest.raises(DataError, match=f"checksum mismatch .*expected md5 {remote.checksum}"):
        fetch("mnist", [remote], tmp_path / "dl", [], mirror=url)
    assert list((tmp_path / "dl").iterdir()) == []


def serve_mnist_mirror(tmp_path, shared_mnist=None):
    """A mirror folder with the four MNIST files: real t10k files when given, else synthetic ones;
    the training files are synthetic. Returns (folder, catalog files with their sha256)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mirror"
    x_tr, y_tr = random_images(rng, 300)
    x_te, y_te = random_images(rng, 100)
    write_mnist_like(folder, x_tr, y_tr, x_te, y_te)
    if shared_mnist is not None:
        for f in shared_mnist.glob("t10k-*.gz"):
            shutil.copyfile(f, folder / f.name)
    files = tuple(
        RemoteFile(f.filename, sha256(folder / f.filename), "sha256") for f in NAMED["mnist"].files
    )
    return folder, files


def test_load_dataset_downloads_missing_mnist(
    tmp_path, http_server, monkeypatch, isolated_env, mnist_test_dir
):
    folder, files = serve_mnist_mirror(tmp_path, mnist_test_dir)
    monkeypatch.setitem(NAMED, "mnist", dataclasses.replace(NAMED["mnist"], files=files))
    monkeypatch.setenv("SECATEURS_MIRROR", http_server(folder))
    d = load_dataset("mnist")
    cache = isolated_env / "mnist"
    assert d.name == "mnist" and d.source == str(cache)
    assert (len(d.y_train) + len(d.y_val), len(d.y_test)) == (300, 10000)
    for f in files:
        assert (cache / f.filename).read_bytes() == (folder / f.filename).read_bytes()
    # second load: found in the cache, the mirror is not needed
    monkeypatch.setenv("SECATEURS_MIRROR", f"http://127.0.0.1:{closed_port()}/")
    again = load_dataset("mnist")
    assert torch.equal(again.x_test, d.x_test)


def test_download_goes_into_data_dir(tmp_path, http_server, monkeypatch):
    folder, files = serve_mnist_mirror(tmp_path)
    monkeypatch.setitem(NAMED, "mnist", dataclasses.replace(NAMED["mnist"], files=files))
    target = download_dataset("mnist", tmp_path / "data", mirror=http_server(folder))
    assert target == tmp_path / "data" / "mnist"
    assert load_dataset("mnist", tmp_path / "data", download=False).source == str(target)


def test_unreachable_mirror_says_where_it_looked_and_how_to_get_files(
    tmp_path, isolated_env, monkeypatch
):
    monkeypatch.setenv("SECATEURS_DATA", str(tmp_path / "shared-root"))
    port = closed_port()
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path / "mine", mirror=f"http://127.0.0.1:{port}/")
    msg = str(e.value)
    assert "mnist: files not found" in msg
    assert str(tmp_path / "mine") in msg and str(tmp_path / "shared-root") in msg
    assert str(isolated_env / "mnist") in msg
    assert f"cannot reach http://127.0.0.1:{port}/train-images-idx3-ubyte.gz" in msg
    assert "To get them: download train-images-idx3-ubyte.gz" in msg
    assert "\n" not in msg  # one line for the CLI
    assert not (tmp_path / "mine" / "mnist").exists() or not any(
        (tmp_path / "mine" / "mnist").iterdir()
    )


def test_missing_file_on_mirror(tmp_path, http_server):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="HTTP 404"):
        load_dataset("cifar10", tmp_path / "data", mirror=http_server(tmp_path / "empty"))


def test_downloads_off(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="downloads are off"):
        load_dataset("cifar10", tmp_path, download=False)
    monkeypatch.setenv("SECATEURS_OFFLINE", "1")
    with pytest.raises(DataError, match="downloads are off.*cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path)


def test_existing_verified_file_is_not_downloaded_again(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"hello")
    remote = RemoteFile("f.bin", hashlib.md5(b"hello").hexdigest())
    port = closed_port()  # would fail if contacted
    assert fetch("x", [remote], tmp_path, [], mirror=f"http://127.0.0.1:{port}/") == [
        tmp_path / "f.bin"
    ]


def serve_cifar_archive(tmp_path, monkeypatch):
    """A small CIFAR-10 archive in ``tmp_path/mirror``, registered as the catalogue's file; the
    mirror folder and the test batch."""
    rng = np.random.default_rng(0)
    train = [cifar_batch(rng, 10, i) for i in range(5)]
    test = cifar_batch(rng, 10)
    src = write_cifar_py(tmp_path / "build" / "cifar-10-batches-py", train, test)
    members = {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in sorted(src.iterdir())}
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = make_tar(mirror / "cifar-10-python.tar.gz", members)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(
        NAMED,
        "cifar10",
        dataclasses.replace(NAMED["cifar10"], files=(RemoteFile("cifar-10-python.tar.gz", md5),)),
    )
    return mirror, test


def test_cifar_archive_is_downloaded_extracted_and_loaded(
    tmp_path, http_server, monkeypatch, isolated_env
):
    mirror, test = serve_cifar_archive(tmp_path, monkeypatch)
    d = load_dataset("cifar10", mirror=http_server(mirror))
    assert d.source == str(isolated_env / "cifar10" / "cifar-10-batches-py")
    assert sorted(p.name for p in (isolated_env / "cifar10").iterdir()) == ["cifar-10-batches-py"]
    torch.testing.assert_close(d.x_test, torch.from_numpy(test[0]).float() / 255)


def test_what_a_killed_download_left_is_removed_once_abandoned(
    tmp_path, http_server, monkeypatch, isolated_env
):
    # SIGKILL runs no clean-up: the temporaries of a killed download and extraction stay behind.
    mirror, _ = serve_cifar_archive(tmp_path, monkeypatch)
    folder = isolated_env / "cifar10"
    old_file = folder / ".cifar-10-python.tar.gz.k1ll3d00.secateurs-tmp"
    old_dir = folder / ".cifar-10-batches-py.k1ll3d00.secateurs-tmp"
    running = folder / ".cifar-10-python.tar.gz.running.secateurs-tmp"  # another process's
    users = folder / ".cifar-10-python.tar.gz.mine.tmp"
    (old_dir / "cifar-10-batches-py").mkdir(parents=True)
    (old_dir / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"partial")
    for p in (old_file, running, users):
        p.write_bytes(b"partial")
    an_hour_ago = time.time() - 3600
    for p in (old_file, old_dir, users):
        os.utime(p, (an_hour_ago, an_hour_ago))
    load_dataset("cifar10", mirror=http_server(mirror))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["cifar-10-batches-py", running.name, users.name]
    )


@pytest.mark.parametrize("bad", ["../evil.txt", "cifar-10-batches-py/../../evil.txt", "other/x"])
def test_tar_members_outside_the_folder_are_refused(tmp_path, bad):
    archive = make_tar(tmp_path / "a.tar.gz", {"cifar-10-batches-py/ok": b"1", bad: b"2"})
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match="refusing to extract"):
        extract_tar(archive, "cifar-10-batches-py", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_mirror_override(monkeypatch):
    defaults = ["https://a.example/x/", "https://b.example/y"]
    monkeypatch.delenv("SECATEURS_MIRROR")
    assert mirror_urls("mnist", defaults) == ["https://a.example/x/", "https://b.example/y/"]
    monkeypatch.setenv("SECATEURS_MIRROR", "http://local/{name}")
    assert mirror_urls("mnist", defaults) == ["http://local/mnist/"]
    assert mirror_urls("mnist", defaults, "http://arg/") == ["http://arg/"]


@pytest.mark.parametrize("served", [0, 2])  # none of the files, or the first two only
def test_a_failed_download_leaves_nothing_behind(tmp_path, http_server, monkeypatch, served,
                                                  isolated_env):
    folder, files = serve_mnist_mirror(tmp_path)
    for f in files[served:]:
        (folder / f.filename).unlink()
    monkeypatch.setitem(NAMED, "mnist", dataclasses.replace(NAMED["mnist"], files=files))
    url = http_server(folder)
    target = tmp_path / "not" / "yet" / "there"
    with pytest.raises(DataError, match="HTTP 404"):
        load_dataset("mnist", target, mirror=url)
    assert not (tmp_path / "not").exists()
    with pytest.raises(DataError, match="HTTP 404"):  # into the download cache
        load_dataset("mnist", mirror=url)
    assert not isolated_env.exists() and not isolated_env.parent.exists()
    monkeypatch.setenv("SECATEURS_DATA", str(tmp_path / "root"))
    with pytest.raises(DataError, match="HTTP 404"):
        load_dataset("mnist", mirror=url)
    assert not (tmp_path / "root").exists()


def test_a_failed_download_keeps_what_was_there(tmp_path, http_server, monkeypatch):
    folder, files = serve_mnist_mirror(tmp_path)
    (folder / files[1].filename).unlink()
    monkeypatch.setitem(NAMED, "mnist", dataclasses.replace(NAMED["mnist"], files=files))
    target = tmp_path / "data" / "mnist"
    target.mkdir(parents=True)
    (target / "README").write_text("mine")
    with pytest.raises(DataError):
        download_dataset("mnist", tmp_path / "data", mirror=http_server(folder))
    assert sorted(p.name for p in target.iterdir()) == ["README"]


def test_a_connection_closed_mid_file_is_reported_as_such(tmp_path):
    import http.server
    import threading

    body = bytes(range(256)) * 4  # 1,024 bytes sent of the 100,000 promised

    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Short)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/f.bin"
        remote = RemoteFile("f.bin", hashlib.sha256(body).hexdigest(), "sha256")
        with pytest.raises(DataError, match="closed after 1,024 of 100,000 bytes"):
            download_file(url, tmp_path / "f.bin", remote)
    finally:
        server.shutdown()
        server.server_close()
    assert list(tmp_path.iterdir()) == []  # nothing half-written
