"""The Ray executor asks for GPUs for tasks that train on CUDA (or auto on a cluster with GPUs):
Ray hides every GPU from a task that asks for none. Tested with a fake ``ray`` module that records
the requests (no Ray, no GPU needed)."""

from __future__ import annotations

import copy
import sys
import types

import pytest
from pipeline_configs import TINY

from secateurs.errors import ConfigError
from secateurs.experiments import run_experiment, validate
from secateurs.experiments.executors import gpus_per_task, run_ray
from secateurs.experiments.tasks import task_specs


class Ref:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args


class FakeRay(types.ModuleType):
    """Just enough of Ray: remote(f).options(**kw).remote(*args) records kw; get() runs f."""

    def __init__(self, gpus: float, execute: bool = False):
        super().__init__("ray")
        self.gpus, self.execute, self.requests = gpus, execute, []

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return {"CPU": 2.0, **({"GPU": self.gpus} if self.gpus else {})}

    def remote(self, fn):
        fake = self

        class Remote:
            def options(self, **kw):
                fake.requests.append(kw)
                return types.SimpleNamespace(remote=lambda *args: Ref(fn, args))

            def remote(self, *args):  # a task started without options
                fake.requests.append({})
                return Ref(fn, args)

        return Remote()

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref.fn(*ref.args) if self.execute else [{} for _ in ref.args[0]]


def groups_for(device: str) -> list[list[dict]]:
    cfg = validate({**TINY, "training": {**TINY["training"], "device": device}})
    specs = task_specs(cfg)
    return [specs[:2], specs[2:]]


@pytest.mark.parametrize(
    ("device", "cluster_gpus", "requested", "expected"),
    [
        ("cuda", 4, None, 1.0),
        ("cuda:1", 4, None, 1.0),
        ("auto", 4, None, 1.0),
        ("auto", 0, None, 0.0),  # a CPU cluster: asking for a GPU would wait forever
        ("cpu", 4, None, 0.0),
        ("cuda", 4, 0.5, 0.5),  # two tasks share a GPU
        ("auto", 4, 2, 2.0),
    ],
)
def test_ray_tasks_request_gpus(monkeypatch, device, cluster_gpus, requested, expected):
    fake = FakeRay(cluster_gpus)
    monkeypatch.setitem(sys.modules, "ray", fake)
    done = []
    run_ray(groups_for(device), lambda g, p: done.append(len(g)), gpus=requested)
    assert fake.requests == [{"num_gpus": expected}] * 2
    assert sorted(done) == [2, 4]


def test_cuda_on_a_cluster_without_gpus_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", FakeRay(0))
    with pytest.raises(ConfigError, match="the Ray cluster has no GPUs"):
        run_ray(groups_for("cuda"), lambda g, p: None)
    assert gpus_per_task(groups_for("cuda")[0], 0, 0) == 0.0  # an explicit 0 is obeyed


def test_the_pipeline_passes_the_config_to_ray(monkeypatch, tmp_path):
    fake = FakeRay(1, execute=True)
    monkeypatch.setitem(sys.modules, "ray", fake)
    cfg = copy.deepcopy(TINY)
    cfg["pool"] = [{"model": "model-a:widths=6", "seeds": [0, 1, 2]}]
    cfg["dropnet"] = {"metrics": ["minimum"], "levels": [0.0, 0.5]}
    cfg["output"] = str(tmp_path / "run")
    cfg["executor"] = {"kind": "ray", "gpus_per_task": 0.25}
    run_experiment(cfg, progress=False)
    assert fake.requests == [{"num_gpus": 0.25}]  # one lockstep group
    cfg["output"] = str(tmp_path / "run2")
    cfg["executor"] = {"kind": "ray"}
    cfg["training"] = {**cfg["training"], "device": "auto"}
    fake.requests.clear()
    run_experiment(cfg, progress=False)
    assert fake.requests == [{"num_gpus": 1.0}]
