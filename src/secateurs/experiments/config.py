"""The experiment config: one YAML file, validated completely before any work starts.

Every error names the key path, the bad value and what is allowed. Defaults fill whatever a file
leaves out, and the resolved config (with every default) is written into the run directory.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..io import write_text
from ..models import list_models, parse_model_spec
from ..models.imports import import_models, resolve_sources
from ..pruning.metrics import METRICS
from ..training import TrainConfig

ENSEMBLE_METRICS = ("gd", "kw", "bd", "ck", "qs", "fk", "cc", "en")
METHODS = ("hq", "exhaustive", "mean-threshold", "kmeans")
VOTES = ("soft", "plurality", "majority", "weighted")
EXECUTORS = ("local", "ray")

DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "seed": 0,
    "output": "runs/experiment",
    "imports": [],
    "dataset": {"spec": "digits", "data_dir": None, "val_fraction": 0.1, "test_fraction": 0.2},
    "pool": [],
    "dropnet": {
        "metrics": ["minimum"],
        "fraction": 0.2,
        "levels": [0.0, 0.2, 0.5],
        "reset": "initial",
        "score_samples": None,
        "coupled": "separate",
        "lockstep": True,
    },
    "training": TrainConfig().to_dict(),
    "ensemble": {
        "metrics": ["gd", "kw"],
        "beta": 0.1,
        "max_size": None,
        "method": "hq",
        "vote": "soft",
        "focal": True,
        "mixed_pool": True,
        "mixed_max_size": 4,
        "compare": True,
    },
    "executor": {
        "kind": "local",
        "workers": 1,
        "ray_address": None,
        "threads_per_task": 1,
        "gpus_per_task": None,
    },
    "report": {"html": False},
}


def _fail(path: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config key {path!r}: got {value!r}; expected {allowed}")


def _merge(defaults: dict, given: dict, path: str) -> dict:
    if not isinstance(given, dict):
        raise _fail(path or "<top>", given, "a mapping")
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in defaults:
            raise ConfigError(
                f"unknown config key {where!r}; allowed here: {', '.join(sorted(defaults))}"
            )
        if isinstance(defaults[key], dict) and key not in ("training",):
            out[key] = _merge(defaults[key], {} if value is None else value, where)
        elif key == "training":
            value = {} if value is None else value  # as an empty section, like the others
            if not isinstance(value, dict):
                raise _fail(where, value, "a mapping of training settings")
            unknown = set(value) - set(defaults["training"])
            if unknown:
                raise ConfigError(
                    f"unknown config key '{where}.{sorted(unknown)[0]}'; allowed here: "
                    f"{', '.join(sorted(defaults['training']))}"
                )
            out[key] = {**defaults["training"], **value}
        else:
            out[key] = value
    return out


def _number(
    path: str, value: Any, lo: float, hi: float, *, lo_open=False, hi_open=False, integer=False
) -> None:
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
        raise _fail(path, value, f"{'an integer' if integer else 'a number'} in {lb}{lo}, {hi}{rb}")


def _choices(path: str, values: Any, allowed: tuple | list, *, many: bool) -> None:
    items = values if many else [values]
    if many and (not isinstance(values, list) or not values):
        raise _fail(path, values, f"a non-empty list of {', '.join(allowed)}")
    for i, v in enumerate(items):
        if v not in allowed:
            raise _fail(f"{path}[{i}]" if many else path, v, f"one of {', '.join(allowed)}")
    if many and len(set(items)) != len(items):
        raise _fail(path, values, "no repeated entries")


def _file_safe(name: str) -> bool:
    return (
        bool(name.strip())
        and name == name.strip()
        and not name.startswith(".")
        and not any(ch in name for ch in ("/", "\\", "\0"))
    )


def _check_model_names(cfg: dict) -> None:
    """The pools' model names (``<name>-s<seed>``, and in the mixed pool ``...-p0`` and
    ``...-<metric>-p<level>``) become file names: each must be one, and unique, before training
    starts rather than when the first pool is written."""
    from ..ensembles.pool import RESERVED_NAMES
    from .pipeline import level_tag, member_names

    names = member_names(cfg)
    mixed = [f"{n}-p0" for n in names] + [
        f"{n}-{metric}-{level_tag(level)}"
        for n in names
        for metric in cfg["dropnet"]["metrics"]
        for level in cfg["dropnet"]["levels"]
        if level > 0
    ]
    seen: set[str] = set()
    for name in names + (mixed if cfg["ensemble"]["mixed_pool"] else []):
        if name in seen or name in RESERVED_NAMES:
            raise _fail(
                "pool",
                [m["name"] for m in cfg["pool"]],
                f"member names whose pool model names are unique ({name!r} comes twice or is "
                "reserved); rename a member",
            )
        seen.add(name)


def _imports(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail("imports", value, "a list of Python files (nets.py) or modules (mypkg.nets)")
    return [v.strip() for v in value]


def import_config_models(config: dict, base: str | Path | None = None) -> dict:
    """Import the files and modules the config's ``imports`` names, so that the models they
    register can be named in its pool; files relative to ``base`` (the config file's folder;
    default the working directory) become absolute, for resumes and worker processes. Only
    for a config the user runs: a saved one (a run folder's) is never imported from."""
    if not isinstance(config, dict) or not config.get("imports"):
        return config
    config = {**config, "imports": resolve_sources(_imports(config["imports"]), base)}
    import_models(config["imports"])
    return config


def validate(config: dict) -> dict:
    """Fill defaults and check every value; returns the resolved config. The pool's models must
    be registered: :func:`import_config_models` first for a config that imports its own."""
    cfg = _merge(DEFAULTS, config, "")
    cfg["imports"] = _imports(cfg["imports"])
    if not isinstance(cfg["name"], str) or not cfg["name"]:
        raise _fail("name", cfg["name"], "a non-empty string")
    _number("seed", cfg["seed"], 0, 2**31 - 1, integer=True)
    if not isinstance(cfg["output"], str) or not cfg["output"]:
        raise _fail("output", cfg["output"], "a folder path")
    ds = cfg["dataset"]
    if not isinstance(ds["spec"], str) or not ds["spec"]:
        raise _fail("dataset.spec", ds["spec"], "a dataset spec such as digits or mnist")
    if ds["data_dir"] is not None and not isinstance(ds["data_dir"], str):
        raise _fail("dataset.data_dir", ds["data_dir"], "a folder path or null")
    _number("dataset.val_fraction", ds["val_fraction"], 0, 1, lo_open=True, hi_open=True)
    _number("dataset.test_fraction", ds["test_fraction"], 0, 1, lo_open=True, hi_open=True)

    pool = cfg["pool"]
    if not isinstance(pool, list) or len(pool) == 0:
        raise _fail("pool", pool, "a non-empty list of {model: NAME, seeds: [..]} entries")
    known = {m.name for m in list_models()}
    members = []
    for i, entry in enumerate(pool):
        where = f"pool[{i}]"
        if isinstance(entry, str):
            entry = {"model": entry}
        if not isinstance(entry, dict):
            raise _fail(where, entry, "a mapping {model: NAME, seeds: [..]}")
        extra = set(entry) - {"model", "seeds", "name"}
        if extra:
            raise ConfigError(
                f"unknown config key '{where}.{sorted(extra)[0]}'; allowed here: model, name, seeds"
            )
        model = entry.get("model")
        if not isinstance(model, str) or parse_model_spec(model)[0] not in known:
            raise _fail(
                f"{where}.model",
                model,
                f"one of {', '.join(sorted(known))} (with options), or a model of your own "
                "registered by a file or module the config's imports name",
            )
        seeds = entry.get("seeds", [0])
        if isinstance(seeds, int):
            seeds = [seeds]
        if not isinstance(seeds, list) or not seeds:
            raise _fail(f"{where}.seeds", seeds, "a non-empty list of integers")
        for j, s in enumerate(seeds):
            _number(f"{where}.seeds[{j}]", s, 0, 2**31 - 1, integer=True)
        if len(set(seeds)) != len(seeds):
            raise _fail(
                f"{where}.seeds", seeds, "no repeated seeds (they would train the same model)"
            )
        name = entry.get("name")
        if name is None:
            name = parse_model_spec(model)[0]
        if isinstance(name, bool) or not isinstance(name, (str, int)) or not _file_safe(str(name)):
            raise _fail(
                f"{where}.name",
                name,
                "a short name usable in file names (no '/', '\\', leading dot or surrounding "
                "spaces)",
            )
        members.append({"model": model, "seeds": list(seeds), "name": str(name)})
    cfg["pool"] = members
    runs = [(m["model"], s) for m in members for s in m["seeds"]]
    if len(set(runs)) != len(runs):
        raise _fail("pool", pool, "each (model, seed) once: a repeat trains the same model twice")
    total = len(runs)
    if total < 3:
        raise _fail(
            "pool", pool, "at least 3 models in all (members x seeds): HQ searches teams of 2..M-1"
        )

    dn = cfg["dropnet"]
    _choices("dropnet.metrics", dn["metrics"], [m for m in METRICS if m != "oracle"], many=True)
    _number("dropnet.fraction", dn["fraction"], 0, 1, lo_open=True)
    levels = dn["levels"]
    if not isinstance(levels, list) or not levels:
        raise _fail("dropnet.levels", levels, "a non-empty list of pruned fractions in [0, 1)")
    for j, lv in enumerate(levels):
        _number(f"dropnet.levels[{j}]", lv, 0, 1, hi_open=True)
    if len(set(levels)) != len(levels):
        raise _fail("dropnet.levels", levels, "no repeated levels")
    dn["levels"] = sorted(float(v) for v in levels)
    tags = [f"{v * 100:g}" for v in dn["levels"]]
    if len(set(tags)) != len(tags):
        raise _fail("dropnet.levels", levels, "levels that differ by at least 0.001%")
    _choices("dropnet.reset", dn["reset"], ("initial", "random", "continue"), many=False)
    _choices("dropnet.coupled", dn["coupled"], ("separate", "group"), many=False)
    if dn["score_samples"] is not None:
        _number("dropnet.score_samples", dn["score_samples"], 1, 10**12, integer=True)
    if not isinstance(dn["lockstep"], bool):
        raise _fail("dropnet.lockstep", dn["lockstep"], "true or false")
    try:
        TrainConfig.from_dict(cfg["training"])
    except ConfigError as e:
        field = str(e).split(" ", 1)[0]  # TrainConfig's messages start with the setting
        where = f"training.{field}" if field in cfg["training"] else "training"
        raise ConfigError(f"config key {where!r}: {e}") from None
    if cfg["training"]["device"] not in ("cpu", "auto") and not str(
        cfg["training"]["device"]
    ).startswith("cuda"):
        raise _fail("training.device", cfg["training"]["device"], "cpu, cuda, cuda:N or auto")

    en = cfg["ensemble"]
    _choices("ensemble.metrics", en["metrics"], ENSEMBLE_METRICS, many=True)
    _number("ensemble.beta", en["beta"], 0, 1, hi_open=True)
    if en["max_size"] is not None:
        _number("ensemble.max_size", en["max_size"], 2, total, integer=True)
    _number("ensemble.mixed_max_size", en["mixed_max_size"], 2, 62, integer=True)
    _choices("ensemble.method", en["method"], METHODS, many=False)
    _choices("ensemble.vote", en["vote"], VOTES, many=False)
    for key in ("focal", "mixed_pool", "compare"):
        if not isinstance(en[key], bool):
            raise _fail(f"ensemble.{key}", en[key], "true or false")

    _check_model_names(cfg)

    ex = cfg["executor"]
    _choices("executor.kind", ex["kind"], EXECUTORS, many=False)
    _number("executor.workers", ex["workers"], 1, 1024, integer=True)
    if ex["ray_address"] is not None and not isinstance(ex["ray_address"], str):
        raise _fail(
            "executor.ray_address",
            ex["ray_address"],
            "an address such as ray://host:10001, or null",
        )
    _number("executor.threads_per_task", ex["threads_per_task"], 1, 1024, integer=True)
    if ex["gpus_per_task"] is not None:
        _number("executor.gpus_per_task", ex["gpus_per_task"], 0, 64)
    if not isinstance(cfg["report"]["html"], bool):
        raise _fail("report.html", cfg["report"]["html"], "true or false")
    return cfg


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML with two fixes users expect: ``1e-3`` is a number (YAML 1.1 wants ``1.0e-3``)
    and a key given twice in one mapping is an error (not silently the last one)."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping (lines "
                f"{seen[key]} and {line}); keep one", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node)


_ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_config(path: str | Path, *, imports: bool = True) -> dict:
    """Read and validate a YAML config (safe loader: plain data only). ``imports``: import what
    its ``imports`` key names (relative to the file's folder); False for a saved config, which
    then needs its models registered already."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
            "save it as UTF-8"
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader)
    except yaml.constructor.ConstructorError as e:  # the duplicate-key check: its own words
        raise ConfigError(f"{path}: {e.problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        data = {}
    if imports:
        data = import_config_models(data, path.parent)
    elif isinstance(data, dict) and data.get("imports"):
        _check_registered(data, path)
    return validate(data)


def _check_registered(data: dict, path: Path) -> None:
    """A saved config whose pool needs the user's own models: say what to import (it does not
    import them itself: opening a file must not run code)."""
    known = {m.name for m in list_models()}
    pool = data.get("pool") if isinstance(data.get("pool"), list) else []
    models = [e.get("model") if isinstance(e, dict) else e for e in pool]
    missing = sorted({parse_model_spec(m)[0] for m in models if isinstance(m, str)} - known)
    if missing:
        sources = " ".join(f"--import {s}" for s in _imports(data["imports"]))
        raise ConfigError(
            f"{path} names models of your own ({', '.join(missing)}), registered by its imports; "
            f"a saved config never imports code: import them first ({sources}, or import them "
            "in Python)"
        )


def dump_config(config: dict, path: str | Path) -> Path:
    return write_text(path, yaml.safe_dump(config, sort_keys=False))
