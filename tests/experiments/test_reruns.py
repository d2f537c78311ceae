"""Exact and safe reruns of the pipeline: results independent of executor and thread count,
workers that die with the driver, damaged files found and redone, changed configs rerun only what
changed, temporary files and locks."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from pipeline_configs import TINY, strip_timing

import secateurs.experiments.tasks as tasks
from secateurs.experiments import run_experiment, validate
from secateurs.io import TMP_SUFFIX

SRC = Path(__file__).resolve().parents[2] / "src"




@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """One uninterrupted in-process run of the tiny config (the caller's torch has 2 threads)."""
    cfg = copy.deepcopy(TINY)
    cfg["output"] = str(tmp_path_factory.mktemp("base") / "run")
    return cfg, json.loads(json.dumps(run_experiment(cfg, progress=False)))


def copy_of_base(base_run, tmp_path) -> dict:
    cfg, _ = base_run
    cfg = copy.deepcopy(cfg)
    out = tmp_path / "run"
    shutil.copytree(cfg["output"], out)
    cfg["output"] = str(out)
    return cfg


class Ran:
    """Counts the DropNet runs a rerun does (the real functions still run)."""

    def __init__(self, monkeypatch):
        self.models: list[str] = []
        real = tasks._execute_group

        def counted(specs, *args, **kw):
            self.models.extend(s["model"] for s in specs)
            return real(specs, *args, **kw)

        monkeypatch.setattr(tasks, "_execute_group", counted)


# -- thread count ----------------------------------------------------------------------------------
def test_tasks_run_with_their_own_thread_count_whatever_the_caller_has(monkeypatch):
    seen = []

    class Stop(Exception):
        pass

    def record(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise Stop

    monkeypatch.setattr(tasks, "run_dropnets", record)
    before = torch.get_num_threads()
    try:
        for caller, per_task in ((2, 1), (1, 1), (2, 3)):
            torch.set_num_threads(caller)
            cfg = validate({**TINY, "executor": {"threads_per_task": per_task}})
            spec = tasks.task_specs(cfg)[0]
            with pytest.raises(Stop):
                tasks.execute_group([spec], lockstep=False)
            assert seen[-1] == per_task
            assert torch.get_num_threads() == caller  # restored
    finally:
        torch.set_num_threads(before)
    # the thread count is part of a task's identity (float sums depend on it); 1 keeps old keys
    keys = {
        n: tasks.task_specs(validate({**TINY, "executor": {"threads_per_task": n}}))[0]["key"]
        for n in (1, 2)
    }
    assert keys[1] != keys[2]
    assert keys[1] == tasks.task_specs(validate(TINY))[0]["key"]


def test_a_lockstep_tasks_key_names_its_companions_and_the_engine():
    """Lockstep results may round differently with other companions (BatchNorm and convolution
    kernels), so a task trained with other companions, or separately, is another task."""
    def keys(change):
        cfg = copy.deepcopy(TINY)
        for section, values in change.items():
            cfg[section] = {**cfg.get(section, {}), **values} if isinstance(values, dict) \
                else values
        return {(s["model"], s["seed"], s["metric"]): s["key"] for s in tasks.task_specs(validate(cfg))}

    base = keys({})
    fewer = keys({"dropnet": {"metrics": ["minimum"]}})
    separate = keys({"dropnet": {"lockstep": False}})
    other_member = keys({"pool": [TINY["pool"][0], {"model": "model-a:widths=5", "seeds": [3],
                                                    "name": "fc5"}]})  # fc8's batch unchanged
    run = ("model-a:widths=8-8", 0, "minimum")
    assert fewer[run] != base[run]  # random_layer no longer trains beside it
    assert separate[run] != base[run]
    assert other_member[run] == base[run]
    assert len(set(base.values())) == len(base)


# -- kill and resume -----------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _worker_pids(pid: int) -> list[int]:
    """The pool's worker processes (not multiprocessing's resource tracker)."""
    pids = []
    for child in _children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            pids.append(child)
    return pids


def _cli(config_path: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.Popen(
        [sys.executable, "-m", "secateurs", "run", str(config_path), "--json", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_kill_a_two_worker_run_then_resume_with_one_worker_equals_an_uninterrupted_run(
    base_run, tmp_path
):
    """SIGKILL of a --workers 2 run: its workers die within seconds; resumed at --workers 1, the
    results equal those of an uninterrupted in-process run."""
    cfg = copy.deepcopy(base_run[0])
    out = tmp_path / "run"
    cfg["output"] = str(out)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = _cli(path, "--workers", "2")
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(out.glob("tasks/*/task.json")):
            workers = sorted(set(workers) | set(_worker_pids(proc.pid)))
            time.sleep(0.05)
        assert len(workers) == 2, f"expected two worker processes, saw {workers}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left = _wait_gone(workers, 5.0)
        assert not left, f"worker processes {left} outlived the killed driver"
    finally:
        for p in workers:  # never leave them running, even when the test fails
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        proc.kill()
        proc.wait()
    done_before = len(list(out.glob("tasks/*/task.json")))
    assert 1 <= done_before < 6, "the kill should land mid-way"
    resumed = _cli(path, "--workers", "1")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert not list(out.rglob(f"*{TMP_SUFFIX}")), "temporary files left behind"
    got = json.loads((out / "results.json").read_text())
    assert strip_timing(got) == strip_timing(base_run[1])


DRIVER = textwrap.dedent(
    """
    import sys, time
    from secateurs.experiments import validate
    from secateurs.experiments.executors import run_local
    from secateurs.experiments.tasks import task_specs
    cfg = validate({"pool": [{"model": "model-a:widths=64-64", "seeds": [0, 1, 2]}],
                    "dropnet": {"levels": [0.0, 0.9]},
                    "training": {"max_epochs": 100000, "patience": None}})
    specs = task_specs(cfg)
    print("ready", flush=True)
    run_local([[specs[0]], [specs[1]]], lambda g, p: None, workers=2, lockstep=False)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_workers_die_with_the_driver(sig, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # Ctrl-C's default action even where the suite itself was started with SIGINT ignored
        # (in the background by a non-interactive shell), which children would inherit
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    workers: list[int] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(workers) < 2:
            workers = _worker_pids(proc.pid)
            time.sleep(0.05)
        assert len(workers) == 2, proc.stderr.read().decode() if proc.poll() is not None else ""
        time.sleep(2.0)  # let them start
        os.kill(proc.pid, sig)
        proc.wait(timeout=10)
        left = _wait_gone(workers, 5.0)
        assert not left, f"{signal.Signals(sig).name}: workers {left} outlived the driver"
    finally:
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        proc.kill()
        proc.wait()


# -- changed configs -------------------------------------------------------------------------------
def test_changing_the_pool_reruns_only_new_tasks_and_rewrites_the_pools(
    base_run, tmp_path, monkeypatch
):
    cfg = copy_of_base(base_run, tmp_path)
    cfg["pool"] = [cfg["pool"][0], {"model": "model-a:widths=10-5", "seeds": [3], "name": "fc10"}]
    ran = Ran(monkeypatch)
    results = run_experiment(cfg, progress=False)
    assert ran.models == ["model-a:widths=10-5"] * 2  # one member x two metrics, nothing else
    pool_dir = Path(cfg["output"]) / "pools" / "minimum" / "p50"
    names = sorted(p.stem for p in pool_dir.glob("*.npy"))
    assert names == ["fc10-s3", "fc8-s0", "fc8-s1", "labels"]
    assert sorted(results["pool"]) == ["fc10-s3", "fc8-s0", "fc8-s1"]


def test_changing_the_levels_replaces_the_old_level_pools(base_run, tmp_path, monkeypatch):
    cfg = copy_of_base(base_run, tmp_path)
    cfg["dropnet"] = {**cfg["dropnet"], "levels": [0.0, 0.3]}
    cfg["ensemble"] = {**cfg["ensemble"], "mixed_pool": False}
    run_experiment(cfg, progress=False)
    levels = sorted(p.name for p in (Path(cfg["output"]) / "pools" / "minimum").iterdir())
    assert levels == ["p0", "p30"]


# -- damaged files ---------------------------------------------------------------------------------
def _fc12_task(out: Path) -> Path:
    for task in sorted((out / "tasks").iterdir()):
        meta = json.loads((task / "task.json").read_text())
        if meta["spec"]["model"] == "model-a:widths=12-6":
            return task
    raise AssertionError("no fc12 task")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda t: _truncate(t / "task.json"), "task.json is unreadable"),
        (lambda t: _truncate(t / "val_probs.npy"), "val_probs.npy is truncated or altered"),
        (lambda t: (t / "test_probs.npy").unlink(), "test_probs.npy is missing"),
        (lambda t: _flip(t / "round-000.safetensors"), "round-000.safetensors is truncated"),
    ],
)
def test_a_damaged_task_is_found_said_and_redone(base_run, tmp_path, monkeypatch, damage, said):
    cfg = copy_of_base(base_run, tmp_path)
    damage(_fc12_task(Path(cfg["output"])))
    ran = Ran(monkeypatch)
    messages: list[str] = []
    results = run_experiment(cfg, progress=False, log=messages.append)
    assert ran.models == ["model-a:widths=12-6"] * 2  # its lockstep group only
    assert any(said in m and "running it again" in m for m in messages), messages
    assert strip_timing(json.loads(json.dumps(results))) == strip_timing(base_run[1])


# -- temporary files -------------------------------------------------------------------------------
def test_run_removes_only_its_own_temporary_files(base_run, tmp_path):
    cfg = copy_of_base(base_run, tmp_path)
    out = Path(cfg["output"])
    mine = [out / ".notes.tmp", out / "tasks" / ".draft.tmp", out / "pools" / ".x.tmp"]
    for p in mine:
        p.write_text("user's file")
    stale = out / "tasks" / f".val_probs.npy.abcd1234{TMP_SUFFIX}"
    stale.write_text("half")
    run_experiment(cfg, progress=False)
    assert all(p.read_text() == "user's file" for p in mine)
    assert not stale.exists()


def test_tasks_written_before_checksums_are_kept_unless_unreadable(base_run, tmp_path, monkeypatch):
    cfg = copy_of_base(base_run, tmp_path)
    out = Path(cfg["output"])
    for task in (out / "tasks").iterdir():  # as an older version wrote them
        meta = json.loads((task / "task.json").read_text())
        del meta["files"]
        (task / "task.json").write_text(json.dumps(meta))
    _truncate(_fc12_task(out) / "val_probs.npy")
    ran = Ran(monkeypatch)
    messages: list[str] = []
    results = run_experiment(cfg, progress=False, log=messages.append)
    assert ran.models == ["model-a:widths=12-6"] * 2
    assert any("val_probs.npy is unreadable" in m for m in messages), messages
    assert strip_timing(json.loads(json.dumps(results))) == strip_timing(base_run[1])
