"""Users' own models by name: --import / imports: register them, in this process and in workers;
files written by a run never import code."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
import yaml

from secateurs import register_model
from secateurs.cli.main import main
from secateurs.errors import ConfigError
from secateurs.experiments import load_config
from secateurs.experiments.tasks import task_specs
from secateurs.models import build_model, list_models
from secateurs.models import registry as registry_module
from secateurs.models.imports import import_models

NETS = textwrap.dedent(
    '''
    import torch.nn.functional as F
    from torch import nn

    import secateurs

    IMPORTED = globals().get("IMPORTED", 0) + 1  # how many times this file ran


    @secateurs.register_model("My-Probe-Net", "written the way users write them", hidden="width")
    class ProbeNet(nn.Module):
        def __init__(self, input_shape, num_classes, hidden=12):
            super().__init__()
            self.head = nn.Linear(hidden, num_classes)  # the head first
            features = 1
            for d in input_shape:
                features *= d
            self.body = nn.Linear(features, hidden)

        def forward(self, x):
            x = F.dropout(F.relu(self.body(x.flatten(1))), 0.1, training=self.training)
            return self.head(x)
    '''
)


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch, tmp_path):
    """Each test starts with the zoo alone and leaves it so; the users' modules it imports (from
    tmp_path) are forgotten."""
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    import secateurs.models.imports as imports_module

    monkeypatch.setattr(imports_module, "_REGISTRY", registry_module._REGISTRY)
    path = list(sys.path)
    yield
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    sys.path[:] = path


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "usercode" / "probe_nets.py"
    path.parent.mkdir()
    path.write_text(NETS)
    return path


def test_a_file_registers_its_models_once_by_lower_case_name(nets):
    assert "my-probe-net" not in {m.name for m in list_models()}
    assert import_models([str(nets)]) == ["my-probe-net"]
    assert import_models([str(nets)]) == []  # the second import is the first one's module
    assert sys.modules["probe_nets"].IMPORTED == 1
    model = build_model("MY-PROBE-NET:hidden=5", (1, 8, 8), 10)
    assert model.body.out_features == 5 and model.head.out_features == 10
    assert model.secateurs_spec == {"name": "my-probe-net", "options": {"hidden": 5}}


def test_a_module_name_is_found_beside_the_user(nets, monkeypatch):
    monkeypatch.chdir(nets.parent)  # console scripts do not search the working directory
    assert "" not in sys.path or sys.path.remove("") is None
    assert import_models(["probe_nets"]) == ["my-probe-net"]


@pytest.mark.parametrize("source, says", [
    ("missing.py", "no such Python file"),
    ("no_such_module_xyz", "no module named 'no_such_module_xyz'"),
    ("broken.py", "importing {path} failed: NameError: name 'undefined_name' is not defined at "
                  "{path}:3"),
    ("needs_dep.py", "importing {path} failed: ModuleNotFoundError: No module named "
                     "'a_dependency_xyz' at {path}:1"),
])
def test_an_import_that_fails_says_what_and_where_in_one_line(tmp_path, monkeypatch, source, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.py").write_text("import os\n\nx = undefined_name + 1\n")
    (tmp_path / "needs_dep.py").write_text("import a_dependency_xyz\n")
    with pytest.raises(ConfigError) as e:
        import_models([source])
    message = str(e.value)
    assert says.format(path=tmp_path / source) in message and "\n" not in message


SIGNATURES = textwrap.dedent(
    '''
    from torch import nn

    import secateurs


    @secateurs.register_model("probe-no-classes", "forgets num_classes")
    class NoClasses(nn.Module):
        def __init__(self, input_shape):
            super().__init__()


    @secateurs.register_model("probe-returns-none", "returns nothing")
    def returns_none(input_shape, num_classes):
        return None


    @secateurs.register_model("probe-raises", "refuses its option", hidden="width")
    def raises(input_shape, num_classes, hidden=4):
        return nn.Linear(int(input_shape[-1]), hidden)


    @secateurs.register_model("probe-flags", "takes a bool", flag="a switch", name="a label")
    def flags(input_shape, num_classes, flag=True, name="x"):
        model = nn.Linear(1, 1)
        model.flag, model.label = flag, name
        return model
    '''
)


def test_builders_that_fail_or_return_no_module_say_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sigs.py").write_text(SIGNATURES)
    for model, says in (("probe-no-classes", "cannot be built for inputs (1, 8, 8) and 10 classes "
                         "(TypeError"),
                        ("probe-returns-none", "its builder returned NoneType, not an nn.Module"),
                        ("probe-raises:hidden=-3", "with {'hidden': -3} (RuntimeError")):
        argv = ["train", "--import", "sigs.py", "--model", model, "--epochs", "1", "--json"]
        assert main(argv) == 1
        captured = capsys.readouterr()
        assert says in captured.err and captured.err.count("\n") == 1, captured.err
        assert json.loads(captured.out)["error"]["exit_code"] == 1
    import_models(["sigs.py"])
    model = build_model("probe-flags:flag=False,name=y", (1,), 2)
    assert model.flag is False and model.label == "y"  # "False" would be truthy


def test_a_name_taken_by_the_zoo_or_another_file_is_refused(tmp_path):
    (tmp_path / "clash.py").write_text(
        "import secateurs\nsecateurs.register_model('model-a', 'mine')(lambda s, n: None)\n"
    )
    with pytest.raises(ConfigError, match="model name 'model-a' is taken .by the secateurs zoo"):
        import_models([str(tmp_path / "clash.py")])
    assert build_model("model-a", (1, 8, 8), 10).__class__.__module__.startswith("secateurs")


def test_a_syntax_error_points_at_the_user_s_line(tmp_path):
    (tmp_path / "broken_syntax.py").write_text("import torch\nx = (\n")
    with pytest.raises(ConfigError, match=rf"SyntaxError: .* at {tmp_path}/broken_syntax.py:2"):
        import_models([str(tmp_path / "broken_syntax.py")])


@pytest.mark.parametrize("name", ["", "a:b", "a,b", "with space", "k=v", "a/b"])
def test_a_name_the_command_line_cannot_spell_is_refused(name):
    with pytest.raises(ConfigError, match="model name"):
        register_model(name, "x")


def test_cli_prune_export_and_predict_a_user_model(nets, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(nets.parent)
    study, export = tmp_path / "study", tmp_path / "export"
    base = ["--model", "my-probe-net:hidden=10", "--seeds", "1", "--until", "0.6",
            "--epochs", "1", "--out", str(study)]
    assert main(["prune", *base]) == 1  # not imported: the error says how
    assert "--import nets.py" in capsys.readouterr().err
    assert main(["prune", "--import", "probe_nets.py", *base, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"][0]["metric"] == "minimum"
    registry_module._REGISTRY.pop("my-probe-net")  # as in the next process
    del sys.modules["probe_nets"]
    monkeypatch.chdir(tmp_path)  # the study names the model; it never imports the file itself
    args = ["export", str(study), "--remaining", "0.6", "--out", str(export), "--json"]
    assert main(args) == 1
    assert "unknown model 'my-probe-net'" in capsys.readouterr().err
    assert main([args[0], "--import", str(nets), *args[1:]]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["params"] < exported["params_before"]
    assert main(["predict", str(export), "--dataset", "digits", "--import", str(nets),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(exported["test_acc"])


def config_with_user_model(tmp_path, nets, **executor) -> dict:
    return {
        "name": "user-model",
        "output": str(tmp_path / "run"),
        "imports": [f"usercode/{nets.name}"],  # relative to the config file's folder
        "dataset": {"spec": "digits"},
        "pool": [  # two architectures: two groups of tasks, so two workers
            {"model": "my-probe-net:hidden=8", "seeds": [0, 1], "name": "probe"},
            {"model": "my-probe-net:hidden=6", "seeds": [2], "name": "narrow"},
        ],
        "dropnet": {"metrics": ["minimum"], "levels": [0.0, 0.5]},
        "training": {"max_epochs": 1},
        "ensemble": {"metrics": ["gd"], "mixed_pool": False, "compare": False},
        "executor": executor,
    }


def test_a_config_imports_relative_to_its_file_and_keeps_its_task_keys(tmp_path, nets):
    path = tmp_path / "cfg.yaml"
    cfg = config_with_user_model(tmp_path, nets)
    path.write_text(yaml.safe_dump(cfg))
    loaded = load_config(path)
    assert loaded["imports"] == [str(nets)]  # absolute, for resumes and workers
    specs = task_specs(loaded)
    assert all(s["imports"] == [str(nets)] for s in specs)
    moved = task_specs({**loaded, "imports": ["/elsewhere/probe_nets.py"]})
    assert [s["key"] for s in moved] == [s["key"] for s in specs]  # where the code is: not a key


def test_a_saved_config_names_what_to_import_and_imports_nothing(tmp_path, nets):
    path = tmp_path / "saved.yaml"
    path.write_text(yaml.safe_dump({**config_with_user_model(tmp_path, nets),
                                    "imports": [str(nets)]}))
    with pytest.raises(ConfigError, match=f"models of your own .my-probe-net.*--import {nets}"):
        load_config(path, imports=False)
    assert "probe_nets" not in sys.modules


def test_worker_processes_import_the_config_s_models(tmp_path, nets):
    """Spawned workers start with the zoo alone: without the config's imports they could not
    build the model the driver checked."""
    from secateurs.experiments import run_experiment

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config_with_user_model(tmp_path, nets, workers=2)))
    results = run_experiment(load_config(path), progress=False)
    assert results["pools"]["minimum/p50"]["models"] == ["probe-s0", "probe-s1", "narrow-s2"]


TOKEN_NET = textwrap.dedent(
    '''
    from torch import nn

    import secateurs


    @secateurs.register_model("probe-token-lstm", "an embedding and an LSTM over token ids")
    class TokenLSTM(nn.Module):
        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.emb = nn.Embedding(100, 8)
            self.lstm = nn.LSTM(8, 12, batch_first=True)
            self.fc = nn.Linear(12, 10)
            self.head = nn.Linear(10, num_classes)

        def forward(self, x):
            out, _ = self.lstm(self.emb(x))
            return self.head(self.fc(out[:, -1]).relu())
    '''
)


def test_cli_prunes_a_user_sequence_model_on_token_ids_from_an_npz(tmp_path, monkeypatch, capsys):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    (tmp_path / "token_nets.py").write_text(TOKEN_NET)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tokens.npz", x=rng.integers(0, 100, (120, 6)), y=np.arange(120) % 3)
    argv = ["prune", "--import", "token_nets.py", "--model", "probe-token-lstm", "--dataset",
            "npz:tokens.npz", "--epochs", "1", "--seeds", "1", "--until", "0.7", "--out", "s",
            "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)["summary"][0]
    assert summary["final"]["remaining"] <= 0.7 and summary["rounds"] >= 2
    assert main(["export", "s", "--import", "token_nets.py", "--remaining", "0.7", "--out",
                 "small", "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["params"] < exported["params_before"]
    np.savez(tmp_path / "floats.npz", x=rng.normal(size=(30, 6)), y=np.arange(30) % 3)
    argv = ["predict", "small", "--import", "token_nets.py", "--dataset", "npz:floats.npz"]
    assert main(argv) == 1  # token ids expected: one line, not a traceback from the Embedding
    assert "the model fails on the inputs of dataset 'npz:floats.npz' (float32" in capsys.readouterr().err
    argv = ["train", "--model", "model-a", "--dataset", "npz:tokens.npz", "--epochs", "1",
            "--out", "t"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "the model fails on a batch of the data, shape (32, 6) int64" in err
    assert err.strip().splitlines()[-1].startswith("error:") and "Traceback" not in err


def test_a_user_model_takes_samples_of_any_rank_the_zoo_three_at_most():
    from torch import nn

    @register_model("probe-video", "clips of (C, T, H, W)")
    def video(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), 3))

    assert build_model("probe-video", (2, 3, 4, 5), 3)[1].in_features == 120
    with pytest.raises(ConfigError, match=r"input shape must be \(C, H, W\)"):
        build_model("model-a", (2, 3, 4, 5), 3)
