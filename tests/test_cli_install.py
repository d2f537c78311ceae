"""The set-up: `make` installs torch through scripts/install_torch.py, which picks the CPU build
(``X+cpu``: no CUDA wheel carries that label) unless an NVIDIA GPU answers, tries PyTorch's CPU
index only when it answers quickly, and falls back to pip's configured sources; `make demo`
installs the runtime only, `make test` the dev extra; torch-pruning is a test tool, not a
runtime dependency."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def it():
    spec = importlib.util.spec_from_file_location("install_torch", ROOT / "scripts" / "install_torch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["install_torch"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["install_torch"]


def _never():
    raise AssertionError("the CPU index was probed although it is not needed")


def _spec(attempt) -> str:
    return next(a for a in attempt.args if a.startswith("torch=="))


def test_linux_without_gpu_takes_the_cpu_build_from_the_cpu_index_first(it):
    attempts = it.plan(system="Linux", gpu=False, cpu_index_reachable=lambda: True)
    first = attempts[0]
    assert _spec(first) == f"torch=={it.TORCH_VERSION}+cpu"
    i = first.args.index("--extra-index-url")
    assert first.args[i + 1] == it.CPU_INDEX == "https://download.pytorch.org/whl/cpu"
    # the fast fallback: the same CPU build from pip's own sources (a local wheel, a mirror)
    assert _spec(attempts[1]) == f"torch=={it.TORCH_VERSION}+cpu"
    assert "--extra-index-url" not in attempts[1].args and "--index-url" not in attempts[1].args
    # only the last resort may be a build without "+cpu", and it says so
    assert all(a.warn is None for a in attempts[:-1])
    assert "+cpu" not in _spec(attempts[-1]) and "CUDA" in attempts[-1].warn


def test_an_unreachable_cpu_index_is_skipped(it):
    attempts = it.plan(system="Linux", gpu=False, cpu_index_reachable=lambda: False)
    assert all("--extra-index-url" not in a.args for a in attempts)
    assert _spec(attempts[0]) == f"torch=={it.TORCH_VERSION}+cpu"


@pytest.mark.parametrize("system, gpu", [("Linux", True), ("Darwin", False), ("Windows", False)])
def test_gpu_machines_and_other_systems_take_pypi_s_build_without_probing(it, system, gpu):
    (attempt,) = it.plan(system=system, gpu=gpu, cpu_index_reachable=_never)
    assert attempt.args == (f"torch=={it.TORCH_VERSION}",)


def test_install_falls_through_failures_and_stops_at_the_first_success(it, capsys):
    attempts = it.plan(system="Linux", gpu=False, cpu_index_reachable=lambda: True)
    calls = []

    def pip(args, extra):
        calls.append(tuple(args))
        return 0 if len(calls) == 2 else 1

    assert it.install(attempts, run=pip) is attempts[1]
    assert calls == [attempts[0].args, attempts[1].args]
    assert "warning" not in capsys.readouterr().err
    with pytest.raises(SystemExit, match="could not install torch"):
        it.install(attempts, run=lambda args, extra: 1)
    assert "warning: the CPU build" in capsys.readouterr().err


def test_main_passes_dry_run_and_report_to_pip(it, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(it, "index_reachable", lambda url, timeout: False)
    monkeypatch.setattr(it, "installed_torch", lambda: None)
    monkeypatch.setattr(it.platform, "system", lambda: "Linux")
    monkeypatch.setattr(it, "install", lambda attempts, extra: calls.append((attempts, extra)))
    monkeypatch.setenv("TORCH_BUILD", "cpu")
    monkeypatch.delenv("TORCH_VERSION", raising=False)
    report = tmp_path / "out.json"
    assert it.main(["--dry-run", "--report", str(report)]) == 0
    ((attempts, extra),) = calls
    assert attempts[0].args == (f"torch=={it.TORCH_VERSION}+cpu",)
    assert "--dry-run" in extra and extra[extra.index("--report") + 1] == str(report)


def test_an_installed_torch_of_the_pinned_version_is_kept(it, monkeypatch, capsys):
    monkeypatch.setattr(it, "installed_torch", lambda: f"{it.TORCH_VERSION}+cpu")
    monkeypatch.delenv("TORCH_VERSION", raising=False)
    monkeypatch.setattr(it, "install", lambda *a, **k: pytest.fail("torch was reinstalled"))
    assert it.main([]) == 0
    assert "already installed" in capsys.readouterr().err


def test_an_unreachable_index_answers_false_quickly(it):
    start = time.perf_counter()
    assert it.index_reachable("http://127.0.0.1:9/whl/cpu", timeout=5) is False  # refused at once
    assert it.index_reachable("not a url", timeout=5) is False
    assert time.perf_counter() - start < 5


def _targets() -> dict[str, str]:
    """Makefile targets -> their rule text (prerequisites and recipe)."""
    text = (ROOT / "Makefile").read_text()
    rules = {}
    for m in re.finditer(r"^([^\s:#=][^:=]*):(?!=)(.*(?:\n\t.*)*)", text, flags=re.M):
        rules[m.group(1).strip()] = m.group(2)
    return rules


def test_make_installs_torch_only_through_the_script(it):
    text = (ROOT / "Makefile").read_text()
    assert "scripts/install_torch.py" in text
    assert not re.search(r"pip install[^\n]*\btorch\b", text), "torch installed outside the script"


def _recipe_extras(rules: dict[str, str], target: str) -> set[str] | None:
    """The extras that the install rules behind ``target`` ask pip for (None: no extras)."""
    seen, todo, extras = set(), [target], None
    text = (ROOT / "Makefile").read_text()
    default = dict(re.findall(r"^(\w+) \?= (.*)$", text, flags=re.M))
    while todo:
        name = todo.pop()
        if name in seen or name not in rules:
            continue
        seen.add(name)
        head, *recipe = rules[name].split("\n\t")
        todo += head.split()
        for line in recipe:
            m = re.search(r"pip install .*-e \"?\.(?:\[([^\]]*)\])?", line)
            if m and m.group(1):
                value = re.sub(r"\$\((\w+)\)", lambda v: default[v.group(1)], m.group(1))
                extras = (extras or set()) | set(value.split(","))
    return extras


def test_demo_installs_the_runtime_only_and_test_the_test_tools():
    rules = _targets()
    assert _recipe_extras(rules, "demo") is None, "make demo installs extras"
    assert {"dev", "ray"} <= _recipe_extras(rules, "test")


def test_runtime_dependencies_hold_only_what_the_library_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[ ]", d)[0].lower() for d in project["dependencies"]}
    assert "ray" not in names and "torch-pruning" not in names
    assert any(d.startswith("torch-pruning") for d in project["optional-dependencies"]["dev"])
    assert project["optional-dependencies"]["ray"]


def _imported_packages() -> dict[str, str]:
    """Third-party top-level packages that src/ imports -> one file that imports each."""
    import ast

    found = {}
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("secateurs", "__future__"):
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_package_the_library_imports_is_declared():
    """A fresh `make demo` venv has the runtime dependencies only: an import that some other
    package happened to bring (click came with typer < 0.20, scipy with scikit-learn) breaks
    there. Ray is the one extra, imported only where the ray executor is chosen."""
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~\[ ]", d)[0].lower() for d in project["dependencies"]}
    extras = {"ray"}
    dists = packages_distributions()
    for package, where in _imported_packages().items():
        names = {d.lower() for d in dists.get(package, [package])}
        assert names & (declared | extras), f"{where} imports {package}, not a declared dependency"
