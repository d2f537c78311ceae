"""The pipeline's unit of work: one DropNet run of one pool member with one metric, plus its
snapshots' predictions. A task is a JSON-able spec; its key is a hash of everything that
determines its outputs, so a rerun finds finished work by key and skips it."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import DatasetSplits, load_dataset
from ..io import atomic_path, file_sha256, read_json, save_tensors, write_json
from ..models import build_model
from ..models.imports import import_models
from ..pruning.driver import run_dropnets
from ..pruning.dropnet import DropNet, DropNetConfig, DropNetResult
from ..pruning.masks import MaskedNetwork
from ..training import TrainConfig, predict_proba

TASK_FORMAT = 1
DEFAULT_THREADS = 1  # torch threads per task, unless executor.threads_per_task says otherwise


def task_specs(config: dict) -> list[dict]:
    """Every (member, seed, metric) run the config asks for, in a stable order."""
    dn = config["dropnet"]
    deepest = max(dn["levels"])
    specs = []
    for index, member in enumerate(config["pool"]):
        for seed in member["seeds"]:
            for metric in dn["metrics"]:
                spec = {
                    "format": TASK_FORMAT,
                    "dataset": config["dataset"],
                    "split_seed": config["seed"],
                    "model": member["model"],
                    "seed": seed,
                    "metric": metric,
                    "fraction": dn["fraction"],
                    **stop_at_level(deepest, dn["fraction"]),
                    "levels": dn["levels"],
                    "reset": dn["reset"],
                    "score_samples": dn["score_samples"],
                    "training": config["training"],
                }
                if dn["coupled"] != "separate":  # only then, so that existing keys stay valid
                    spec["coupled"] = dn["coupled"]
                threads = config["executor"].get("threads_per_task", DEFAULT_THREADS)
                if threads != DEFAULT_THREADS:  # float sums depend on it: part of the identity
                    spec["threads"] = threads
                if config.get("imports"):  # where the workers find users' models; not a key
                    spec["imports"] = config["imports"]
                spec["member"] = index
                specs.append(spec)
    if dn["lockstep"]:
        # A run trained in lockstep can round differently with other companions (BatchNorm and
        # convolution kernels pick their algorithm by the stacked width), and DropNet's choices
        # can turn that into other drops: the companions are part of its identity, so that a
        # folder never mixes runs from batches its config would not form.
        together: dict[str, list[str]] = {}
        for spec in specs:
            together.setdefault(spec["model"], []).append(f"{spec['seed']}/{spec['metric']}")
        for spec in specs:
            spec["lockstep_with"] = sorted(together[spec["model"]])
    for spec in specs:
        spec["key"] = task_key(spec)
    return specs


def stop_at_level(level: float, fraction: float) -> dict:
    """A stop rule that ends on the round whose pruned fraction is nearest ``level``.

    With t = 1 - level remaining, going on from r remaining to about r(1 - p) brings it nearer
    to t only while r > 2t / (2 - p); stopping at that threshold saves the round after it."""
    if level <= 0.0:
        return {"until": None, "max_rounds": 0}
    target = 1.0 - level
    return {"until": round(min(2 * target / (2 - fraction), 0.999999), 12), "max_rounds": None}


def task_key(spec: dict) -> str:
    body = {k: v for k, v in spec.items() if k not in ("key", "member", "imports")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@lru_cache(maxsize=2)
def _dataset(dataset_json: str, split_seed: int) -> DatasetSplits:
    ds = json.loads(dataset_json)
    return load_dataset(
        ds["spec"],
        ds["data_dir"],
        val_fraction=ds["val_fraction"],
        test_fraction=ds["test_fraction"],
        seed=split_seed,
    )


def dataset_of(spec: dict) -> DatasetSplits:
    return _dataset(json.dumps(spec["dataset"], sort_keys=True), spec["split_seed"])


def check_models(config: dict, data: DatasetSplits) -> None:
    """Build every member's model on the data's shape once, so that a bad model option fails in
    one line before any task runs (not in the middle of the run)."""
    from ..errors import ConfigError

    for i, member in enumerate(config["pool"]):
        try:
            with torch.random.fork_rng(devices=[]):
                build_model(member["model"], data.input_shape, data.num_classes)
        except ConfigError as e:
            raise ConfigError(f"config key 'pool[{i}].model' ({member['model']!r}): {e}") from None
        except Exception as e:  # a builder's own failure on these options
            raise ConfigError(
                f"config key 'pool[{i}].model': {member['model']!r} cannot be built for inputs "
                f"{tuple(data.input_shape)} ({type(e).__name__}: {e})"
            ) from None


def dropnet_config(spec: dict) -> DropNetConfig:
    train = TrainConfig.from_dict(spec["training"])
    return DropNetConfig(
        metric=spec["metric"],
        fraction=spec["fraction"],
        until=spec["until"],
        max_rounds=spec["max_rounds"],
        reset=spec["reset"],
        score_samples=spec["score_samples"],
        coupled=spec.get("coupled", "separate"),
        train=train,
    )


def snapshot_network(
    spec: dict, data: DatasetSplits, result: DropNetResult, round_: int
) -> MaskedNetwork:
    """The trained masked network of one round, rebuilt from the run's record and weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = build_model(spec["model"], data.input_shape, data.num_classes)
    masked = MaskedNetwork(model, data.x_train[:2])
    masked.load_weight_state_dict(result.weights[round_])
    masked.set_masks(result.masks_at(round_))
    return masked


def payload_of(spec: dict, data: DatasetSplits, result: DropNetResult) -> dict[str, Any]:
    """Snapshots at the configured levels (the round whose pruned fraction is nearest) with their
    validation and test probabilities."""
    snapshots, val, test, weights = [], [], [], {}
    for level in spec["levels"]:
        r = result.round_nearest(pruned=level)
        rec = result.rounds[r]
        masked = snapshot_network(spec, data, result, r)
        val.append(predict_proba(masked, data.x_val).numpy())
        test.append(predict_proba(masked, data.x_test).numpy())
        weights[r] = result.weights[r]
        snapshots.append(
            {
                "level": level,
                "round": r,
                "pruned": 1.0 - rec["remaining"],
                "remaining": rec["remaining"],
                "params": rec["params"],
                "macs": rec["macs"],
                "val_acc": rec["val_acc"],
                "test_acc": rec["test_acc"],
            }
        )
    return {
        "key": spec["key"],
        "rounds": result.rounds,
        "dropped": result.dropped,
        "snapshots": snapshots,
        "val_probs": np.stack(val).astype(np.float32),
        "test_probs": np.stack(test).astype(np.float32),
        "weights": weights,
    }


def task_threads(spec: dict) -> int:
    return int(spec.get("threads", DEFAULT_THREADS))


def execute_group(
    specs: list[dict], lockstep: bool = True, log_rounds: bool = False
) -> list[dict[str, Any]]:
    """Run a group of tasks of one architecture (in lockstep when available and worthwhile), with
    the tasks' own torch thread count: float reductions split over another number of threads sum
    in another order, so results would otherwise depend on the executor and worker count.
    ``log_rounds``: one stderr line per finished round of each task (a lockstep group finishes
    all its runs at once, so this is the only sign of progress before it ends)."""
    import_models(specs[0].get("imports", ()))  # a fresh worker process knows the zoo only
    before = torch.get_num_threads()
    torch.set_num_threads(task_threads(specs[0]))
    try:
        return _execute_group(specs, lockstep, round_logger(specs) if log_rounds else None)
    finally:
        torch.set_num_threads(before)


def round_logger(specs: list[dict]):
    """A DropNet ``on_round`` callback writing one line per round to stderr (workers inherit the
    driver's stderr): elapsed time, the task, its round, units left and test accuracy."""
    start = time.perf_counter()
    model = specs[0]["model"]  # a group holds the tasks of one architecture

    def log(net, row: dict) -> None:
        seconds = int(time.perf_counter() - start)
        print(
            f"[{seconds // 60:2d}m{seconds % 60:02d}s] {model} {net.config.metric} seed "
            f"{net.seed}: round {row['round']} done, {row['remaining']:.0%} of units left, "
            f"test acc {row['test_acc']:.3f}",
            file=sys.stderr,
            flush=True,
        )

    return log


def _execute_group(specs: list[dict], lockstep: bool, on_round=None) -> list[dict[str, Any]]:
    data = dataset_of(specs[0])
    nets = [DropNet(s["model"], data, dropnet_config(s), seed=s["seed"]) for s in specs]
    results = run_dropnets(nets, lockstep=lockstep, on_round=on_round)
    return [payload_of(s, data, r) for s, r in zip(specs, results, strict=True)]


# -- on disk -------------------------------------------------------------------------------------
def task_dir(out: Path, key: str) -> Path:
    return Path(out) / "tasks" / key


def is_done(out: Path, key: str) -> bool:
    """Whether the task's folder holds a complete, intact result (see :func:`check_task`)."""
    return check_task(out, key) is None


def check_task(out: Path, key: str) -> str | None:
    """None when task ``key`` is finished and every file it lists is intact; else what is wrong
    ("not run" when it never finished). ``task.json`` lists each file's size and SHA-256, so a
    truncated or altered file is found before anything reads it."""
    folder = task_dir(out, key)
    path = folder / "task.json"
    if not path.exists():
        return "not run"
    try:
        meta = read_json(path)
    except (OSError, ValueError) as e:
        return f"task.json is unreadable ({type(e).__name__})"
    if not isinstance(meta, dict) or meta.get("key") != key or not isinstance(
        meta.get("snapshots"), list
    ):
        return "task.json is not this task's record"
    expected = {"val_probs.npy", "test_probs.npy"} | {
        f"round-{int(s['round']):03d}.safetensors" for s in meta["snapshots"]
    }
    files = meta.get("files")
    if not isinstance(files, dict):  # written before checksums: every file must at least load
        return _check_unlisted(folder, expected, len(meta["snapshots"]))
    if not expected <= set(files):
        return "task.json does not list all its files"
    for name, info in sorted(files.items()):
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != info.get("bytes") or file_sha256(p) != info.get("sha256"):
            return f"{name} is truncated or altered (size or checksum differs)"
    return None


def _check_unlisted(folder: Path, names: set[str], snapshots: int) -> str | None:
    from safetensors import safe_open

    for name in sorted(names):
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        try:
            if name.endswith(".npy"):
                if len(np.load(p, allow_pickle=False)) != snapshots:
                    return f"{name} does not hold one row per snapshot"
            else:
                with safe_open(str(p), framework="pt") as f:
                    for k in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                        f.get_tensor(k)
        except Exception as e:  # numpy and safetensors raise their own types on bad files
            return f"{name} is unreadable ({type(e).__name__})"
    return None


def write_payload(out: Path, spec: dict, payload: dict) -> None:
    """Write one finished task; ``task.json`` goes last, with each file's size and checksum, and
    marks it complete."""
    folder = task_dir(out, spec["key"])
    (folder / "task.json").unlink(missing_ok=True)  # the old record is invalid from here on
    names = []
    for name in ("val_probs", "test_probs"):
        with atomic_path(folder / f"{name}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, payload[name], allow_pickle=False)
        names.append(f"{name}.npy")
    for r, state in payload["weights"].items():
        save_tensors(folder / f"round-{int(r):03d}.safetensors", state)
        names.append(f"round-{int(r):03d}.safetensors")
    files = {n: {"bytes": (folder / n).stat().st_size, "sha256": file_sha256(folder / n)} for n in names}
    meta = {k: payload[k] for k in ("key", "rounds", "dropped", "snapshots")}
    write_json(folder / "task.json", {"spec": spec, **meta, "files": files})


def read_task(out: Path, key: str) -> dict:
    folder = task_dir(out, key)
    meta = read_json(folder / "task.json")
    meta["val_probs"] = np.load(folder / "val_probs.npy", allow_pickle=False)
    meta["test_probs"] = np.load(folder / "test_probs.npy", allow_pickle=False)
    return meta
