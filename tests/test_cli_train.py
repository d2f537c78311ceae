import json

from secateurs.cli.main import main
from secateurs.io import load_tensors


def test_train_writes_identical_weights_for_the_same_seed(tmp_path, capsys):
    for name in ("a", "b"):
        assert (
            main(
                [
                    "train",
                    "--model",
                    "model-a",
                    "--dataset",
                    "digits",
                    "--out",
                    str(tmp_path / name),
                    "--json",
                    "--epochs",
                    "3",
                ]
            )
            == 0
        )
    summary = json.loads(capsys.readouterr().out.split("}\n")[0] + "}")
    assert summary["epochs"] == 3 and 0 <= summary["test_acc"] <= 1
    a = load_tensors(tmp_path / "a" / "model.safetensors")
    b = load_tensors(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert len(metrics["history"]) == 3


def test_user_errors_exit_non_zero_with_one_line(tmp_path, capsys):
    assert main(["train", "--model", "nope", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'nope'") and err.count("\n") == 1
    assert main(["train", "--model", "model-a", "--lr", "-1", "--out", str(tmp_path)]) == 1
    assert "lr must be positive" in capsys.readouterr().err
    assert main(["train", "--model", "model-a", "--dataset", "nope:x", "--out", str(tmp_path)]) == 1
    assert "unknown dataset spec" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
