"""A pipeline run's teams as deployable files: results.json links snapshots to weights, pool
folders list their models in the pool's order, and an exported team reproduces the reported
team test accuracy exactly."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from pipeline_configs import TINY

from secateurs.cli.main import main
from secateurs.deploy import evaluate_on, export_team_from_run, load_deployed, load_team, team_rows
from secateurs.errors import ConfigError, DataError
from secateurs.experiments import run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    cfg = copy.deepcopy(TINY)
    cfg["output"] = str(tmp_path_factory.mktemp("team") / "run")
    return Path(cfg["output"]), run_experiment(cfg, progress=False)


def test_results_link_every_snapshot_to_its_weights_and_pools_list_models_in_order(run):
    out, results = run
    snaps = results["snapshots"]
    # 3 models unpruned once, plus 2 metrics x 1 level > 0 each
    assert len(snaps) == 3 + 3 * 2
    for name, link in snaps.items():
        assert (out / link["weights"]).is_file(), name
        probs = np.load(out / "tasks" / link["task"] / "test_probs.npy")[link["probs_index"]]
        assert np.isclose(link["test_acc"], np.mean(probs.argmax(1) == _labels(out, "test")))
    assert set(results["pools"]["mixed"]["snapshots"]) == set(snaps)
    for tag, pool in results["pools"].items():
        manifest = json.loads((out / pool["folder"] / "pool.json").read_text())
        assert manifest == {"models": pool["models"]}, tag
    # config order, not name order: fc8-s0, fc8-s1, fc12-s2 (sorted, fc12 would come first)
    assert results["pools"]["minimum/p50"]["models"] == ["fc8-s0", "fc8-s1", "fc12-s2"]
    for row in results["table"]:
        indices = row["team"]
        pool = results["pools"][row["row"].rsplit("/", 1)[0]]
        assert [pool["models"][i] for i in indices] == row["team_names"]
        assert [pool["snapshots"][i] for i in indices] == row["team_snapshots"]


def _labels(out: Path, split: str) -> np.ndarray:
    folder = out / "pools" / "mixed"
    return np.load(folder / ("test" if split == "test" else "") / "labels.npy")


@pytest.mark.parametrize("row_id", ["minimum/p50/gd", "random_layer/p50/kw", "mixed/gd"])
def test_exported_team_reproduces_the_reported_test_accuracy_exactly(run, tmp_path, row_id):
    out, results = run
    rows = team_rows(results)
    path = tmp_path / "team.safetensors"
    summary = export_team_from_run(out, path, row=row_id)
    assert summary["members"] == rows[row_id]["members"]
    reported = rows[row_id]["test_acc"]
    assert summary["test_acc"] == reported
    deployed = load_deployed(path)
    got = evaluate_on(deployed, "digits")  # the run's split: seed 0, fractions 0.1 / 0.2
    assert got["accuracy"] == reported
    assert got["recorded"]["accuracy"] == reported and got["recorded"]["row"] == row_id
    # each member is the pruned snapshot itself: same test accuracy as its stored predictions
    for name, acc in got["member_accuracy"].items():
        assert acc == pytest.approx(results["snapshots"][name]["test_acc"], abs=1e-12)
    # and physically smaller: parameters as counted by the run
    team = load_team(path)
    for name, member in zip(team.names, team.members, strict=True):
        assert sum(p.numel() for p in member.parameters()) == results["snapshots"][name]["params"]


def test_members_by_name_any_vote_and_the_cli(run, tmp_path, capsys):
    out, results = run
    names = ["fc8-s0-p0", "fc12-s2-minimum-p50", "fc8-s1-random_layer-p50"]
    path = tmp_path / "t.safetensors"
    argv = ["export-team", str(out), "--members", ",".join(names), "--vote", "plurality",
            "--out", str(path), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["members"] == names and summary["vote"] == "plurality"
    assert isinstance(summary["test_acc"], float) and isinstance(summary["params"], int)
    assert main(["predict", str(path), "--dataset", "digits", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["accuracy"] == summary["test_acc"] and got["vote"] == "plurality"
    assert got["samples"] == 360 and got["recorded"]["accuracy"] == summary["test_acc"]
    # a different split than the run's is not compared with the run's figure
    assert main(["predict", str(path), "--dataset", "digits", "--seed", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recorded"] is None
    weighted = export_team_from_run(out, tmp_path / "w.safetensors", members=names, vote="weighted")
    team = load_team(tmp_path / "w.safetensors")
    want = [max(results["snapshots"][n]["val_acc"], 1e-6) for n in names]
    assert team.vote_weights.tolist() == pytest.approx(want)
    assert evaluate_on(load_deployed(tmp_path / "w.safetensors"), "digits")["accuracy"] == (
        weighted["test_acc"]
    )


def test_export_team_errors(run, tmp_path, capsys):
    out, _ = run
    target = tmp_path / "t.safetensors"
    with pytest.raises(ConfigError, match=r"no team row 'minimum/p30/gd'.*rows: minimum/p0/consensus, minimum/p0/gd, "
                       r".*mixed/consensus.*and 55 baseline rows"):  # 5 pools x 11 baselines
        export_team_from_run(out, target, row="minimum/p30/gd")
    with pytest.raises(ConfigError, match=r"unknown snapshot 'fc8-s9-p0'.*snapshots: fc8-s0-p0"):
        export_team_from_run(out, target, members=["fc8-s0-p0", "fc8-s9-p0"])
    with pytest.raises(ConfigError, match="exactly one of --row"):
        export_team_from_run(out, target)
    with pytest.raises(DataError, match="not a finished pipeline run"):
        export_team_from_run(tmp_path, target, row="mixed/gd")
    with pytest.raises(ConfigError, match="unknown vote rule 'mean'"):
        export_team_from_run(out, target, row="mixed/gd", vote="mean")
    assert not target.exists()
    for argv, message in [
        (["export-team", str(out), "--row", "nope", "--out", str(target)], "no team row 'nope'"),
        (["export-team", str(out), "--row", "mixed/gd", "--out", str(tmp_path / "t.pt")],
         "expected a file name ending in .safetensors"),
        (["export-team", str(out), "--members", "a,b", "--out", str(target)],
         "unknown snapshot 'a'"),
    ]:
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_a_corrupt_snapshot_weights_file_is_named(run, tmp_path):
    import shutil

    out, results = run
    copy_dir = tmp_path / "copy"
    shutil.copytree(out, copy_dir)
    link = results["snapshots"]["fc8-s0-p0"]
    (copy_dir / link["weights"]).write_bytes(b"broken")
    with pytest.raises(DataError, match=r"snapshot 'fc8-s0-p0': cannot read its weights"):
        export_team_from_run(copy_dir, tmp_path / "t.safetensors", members=["fc8-s0-p0"])


def test_consensus_rows_and_the_comparison_at_equal_team_size(run, tmp_path):
    from secateurs.ensembles import load_predictions, select_consensus, team_accuracy
    from secateurs.experiments.comparison import flat_rows

    out, results = run
    consensus_rows = [r for r in results["table"] if r["focal_metric"] == "consensus"]
    assert len(consensus_rows) == 4  # one per metric x level
    pools = {p["pool"]: p for p in results["comparison"]["pools"]}
    assert set(pools) == set(results["pools"])  # every pool, the mixed one too
    for tag, p in pools.items():
        pool = load_predictions(out / results["pools"][tag]["folder"])  # read in manifest order
        assert list(pool.names) == results["pools"][tag]["models"]
        want = select_consensus(pool, metrics=["gd", "kw"], beta=0.1,
                                max_size=3 if tag == "mixed" else None)
        rows = {r["row"]: r for g in p["groups"] for r in g["rows"]}
        assert tuple(rows[f"{tag}/consensus"]["team"]) == want.recommended.indices
        for g in p["groups"]:
            assert g["references"] and all(r["size"] == g["size"] for r in g["rows"])
            methods = [r["method"] for r in g["rows"][len(g["references"]):]]
            assert {"random", "rank", "greedy", "cluster"} <= set(methods)
            for r in g["rows"]:  # accuracies and costs recomputed from the pool folder
                assert r["val_acc"] == team_accuracy(pool, r["team"], "soft", "selection")
                assert r["test_acc"] == team_accuracy(pool, r["team"], "soft", "test")
                assert r["cost"] == r["size"] / pool.num_models
                macs = sum(results["snapshots"][m]["macs"] for m in r["members"])
                assert r["mac_fraction"] == pytest.approx(macs / results["unpruned_pool_macs"])
                assert [pool.names[i] for i in r["team"]] == r["names"]
    # the table's HQ rows are the comparison's reference rows
    for row in results["table"]:
        if row["team_snapshots"]:
            ref = next(r for r in flat_rows(results["comparison"]) if r["row"] == row["row"])
            assert ref["members"] == row["team_snapshots"]
            assert ref["test_acc"] == row["team_test_acc"]
    report = (out / "report.md").read_text()
    assert "HQ against the baselines" in report and "`mixed/consensus`" in report
    assert (out / "comparison.csv").is_file()
    # any comparison row deploys, and reproduces its test accuracy
    baseline = next(r for r in flat_rows(results["comparison"]) if r["method"] == "greedy")
    export_team_from_run(out, tmp_path / "b.safetensors", row=baseline["row"])
    got = evaluate_on(load_deployed(tmp_path / "b.safetensors"), "digits")
    assert got["accuracy"] == baseline["test_acc"]
