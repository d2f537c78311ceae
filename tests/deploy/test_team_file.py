"""Team files: the vote of TeamEnsemble against a slow reference and the selection code, a
save / load round trip of physically pruned members, and one-line errors for bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from secateurs.cli.main import main
from secateurs.deploy import TeamEnsemble, evaluate_on, load_deployed, load_team, save_team
from secateurs.ensembles import PredictionPool
from secateurs.ensembles.voting import predict as ensemble_predict
from secateurs.errors import ConfigError, DataError
from secateurs.models import build_model
from secateurs.pruning import MaskedNetwork, export_pruned, save_exported

pytestmark = pytest.mark.usefixtures("one_thread")
SHAPE = (1, 8, 8)  # the digits images


class Fixed(nn.Module):
    """Returns fixed logits per sample index (x holds the indices), to hand-craft votes."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x.long().flatten()]


def slow_vote(probs: np.ndarray, vote: str, weights=None) -> list[int]:
    """Reference: loops over samples and members, ties to the lowest class (a single member's
    equal logits give exactly equal probabilities)."""
    m, n, c = probs.shape
    out = []
    for s in range(n):
        totals = [0.0] * c
        for i in range(m):
            if vote == "soft":
                for k in range(c):
                    totals[k] += float(probs[i, s, k])
            elif vote == "weighted":
                for k in range(c):
                    totals[k] += weights[i] * float(probs[i, s, k])
            else:
                best = max(range(c), key=lambda k: (probs[i, s, k], -k))
                totals[best] += 1
        # soft and weighted totals within 4 float32 ulps per unit of vote weight are a tie
        weight = sum(weights) if vote == "weighted" else m
        tol = 4 * np.finfo(np.float32).eps * weight if vote in ("soft", "weighted") else 0
        top = min(k for k in range(c) if totals[k] >= max(totals) - tol)
        if vote == "majority" and not 2 * totals[top] > m:
            top = -1
        out.append(top)
    return out


@pytest.mark.parametrize("vote", ["soft", "weighted", "plurality", "majority"])
@pytest.mark.parametrize("seed", [0, 1])
def test_vote_equals_a_slow_reference_and_the_selection_code(vote, seed):
    rng = np.random.default_rng(seed)
    m, n, c = 4, 300, 5
    # coarse logits make exact ties between classes and between vote counts common
    logits = torch.tensor(rng.integers(0, 3, size=(m, n, c)), dtype=torch.float32)
    weights = [0.5, 0.9, 0.7, 0.2] if vote == "weighted" else None
    team = TeamEnsemble([Fixed(logits[i]) for i in range(m)], vote=vote, weights=weights)
    x = torch.arange(n)
    got = team.predict(x).tolist()
    probs = torch.softmax(logits, dim=2).numpy()
    assert got == slow_vote(probs, vote, weights)
    split = PredictionPool.from_arrays(
        [f"m{i}" for i in range(m)], probs, rng.integers(0, c, n)
    ).selection
    assert got == ensemble_predict(split, range(m), vote, weights).tolist()
    # forward: class probabilities of the vote, rows summing to 1, argmax = predict (no -1)
    p = team(x)
    assert torch.allclose(p.sum(dim=1), torch.ones(n), atol=1e-6)
    if vote != "majority":
        assert p.argmax(dim=1).tolist() == got


def test_hand_computed_votes():
    # 3 members, 2 samples, 3 classes; sample 0: votes 0, 1, 2 (a three-way tie); sample 1: 2, 2, 0
    big = 10.0
    rows = [[[big, 0, 0], [0, 0, big]], [[0, big, 0], [0, 0, big]], [[0, 0, big], [big, 0, 0]]]
    members = [Fixed(torch.tensor(r)) for r in rows]
    x = torch.arange(2)
    assert TeamEnsemble(members, vote="plurality").predict(x).tolist() == [0, 2]
    assert TeamEnsemble(members, vote="majority").predict(x).tolist() == [-1, 2]
    frac = TeamEnsemble(members, vote="plurality")(x)
    assert torch.allclose(frac, torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1 / 3, 0, 2 / 3]]))


def pruned_member(seed: int, widths: str = "8-8", drop: int = 3):
    torch.manual_seed(seed)
    model = build_model(f"model-a:widths={widths}", SHAPE, 10)
    masked = MaskedNetwork(model, torch.zeros(2, *SHAPE))
    masks = {k: torch.ones(w, dtype=torch.bool) for k, w in masked.widths.items()}
    for k in masks:
        masks[k][torch.randperm(len(masks[k]), generator=torch.Generator().manual_seed(seed))[:drop]] = False
    masked.set_masks(masks)
    return masked, export_pruned(masked, torch.zeros(1, *SHAPE))


@pytest.mark.parametrize("vote", ["soft", "weighted", "plurality", "majority"])
def test_round_trip_gives_the_masked_networks_vote(tmp_path, vote):
    members = [pruned_member(s, w) for s, w in ((0, "8-8"), (1, "12-6"), (2, "8-8"))]
    weights = [0.3, 0.5, 0.2] if vote == "weighted" else None
    path = save_team(
        tmp_path / "team.safetensors",
        [e for _, e in members],
        ["a", "b", "c"],
        vote=vote,
        weights=weights,
        source={"note": "test"},
    )
    team = load_team(path)
    assert isinstance(team, nn.Module) and team.names == ["a", "b", "c"] and team.vote == vote
    assert team.source == {"note": "test"}
    # members are physically smaller: 3 of each layer's units are gone
    assert sum(p.numel() for p in team.parameters()) == sum(e.params for _, e in members)
    x = torch.randn(50, *SHAPE)
    reference = TeamEnsemble([m for m, _ in members], vote=vote, weights=weights)
    assert team.predict(x).tolist() == reference.predict(x).tolist()
    assert torch.allclose(team(x), reference(x), atol=1e-5)
    # nothing was pickled: the file is plain safetensors with prefixed keys
    keys = load_file(str(path))
    assert all(k.startswith(("members.0.", "members.1.", "members.2.")) for k in keys)


def test_save_refuses_mismatched_members_and_bad_votes(tmp_path):
    _, a = pruned_member(0)
    torch.manual_seed(0)
    other = build_model("model-a:widths=8-8", (32,), 10)
    b = export_pruned(MaskedNetwork(other, torch.zeros(2, 32)), torch.zeros(1, 32))
    with pytest.raises(ConfigError, match=r"member 'b' takes inputs \(32,\).*share both"):
        save_team(tmp_path / "t.safetensors", [a, b], ["a", "b"])
    with pytest.raises(ConfigError, match="unknown vote rule 'mean'"):
        save_team(tmp_path / "t.safetensors", [a], ["a"], vote="mean")
    with pytest.raises(ConfigError, match="needs one weight per member"):
        save_team(tmp_path / "t.safetensors", [a], ["a"], vote="weighted")
    with pytest.raises(ConfigError, match="distinct"):
        save_team(tmp_path / "t.safetensors", [a, a], ["a", "a"])
    with pytest.raises(ConfigError, match="must end in .safetensors"):
        save_team(tmp_path / "t.bin", [a], ["a"])
    assert not list(tmp_path.iterdir())  # nothing half-written


def rewrite(path, out, *, record=None, tensors=None, fmt="secateurs-team"):
    meta = load_file_meta(path)
    rec = json.loads(meta["team"])
    if record:
        record(rec)
    t = load_file(str(path))
    if tensors:
        tensors(t)
    save_file(t, str(out), metadata={"format": fmt, "team": json.dumps(rec)})
    return out


def load_file_meta(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


@pytest.fixture
def team_file(tmp_path):
    return save_team(
        tmp_path / "team.safetensors", [pruned_member(0)[1], pruned_member(1)[1]], ["a", "b"]
    )


def test_corrupt_and_foreign_files_give_one_clear_error(tmp_path, team_file):
    data = team_file.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable safetensors file"):
        load_team(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file at all")
    with pytest.raises(DataError, match="not a readable safetensors file"):
        load_team(tmp_path / "junk.safetensors")
    with pytest.raises(DataError, match="not found"):
        load_team(tmp_path / "missing.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(DataError, match="not a secateurs team file"):
        load_team(tmp_path / "plain.safetensors")
    with pytest.raises(DataError, match="neither a secateurs team file nor an export"):
        load_deployed(tmp_path / "plain.safetensors")
    future = rewrite(team_file, tmp_path / "v9.safetensors",
                     record=lambda r: r.update(format_version=9))
    with pytest.raises(DataError, match="format_version 9; this version of secateurs reads 1"):
        load_team(future)
    renamed = rewrite(team_file, tmp_path / "names.safetensors",
                      record=lambda r: r.update(names=["a"]))
    with pytest.raises(DataError, match="one architecture per name"):
        load_team(renamed)
    badvote = rewrite(team_file, tmp_path / "vote.safetensors",
                      record=lambda r: r.update(vote="best"))
    with pytest.raises(DataError, match="unknown vote rule 'best'"):
        load_team(badvote)
    classes = rewrite(team_file, tmp_path / "classes.safetensors",
                      record=lambda r: r["members"][1].update(num_classes=3))
    with pytest.raises(DataError, match="member 'b' takes inputs"):
        load_team(classes)
    missing = rewrite(team_file, tmp_path / "missing-t.safetensors",
                      tensors=lambda t: t.pop(next(k for k in t if k.startswith("members.1."))))
    with pytest.raises(DataError, match=r"member 1, 'b'.*checksum saved with them"):
        load_team(missing)
    extra = rewrite(team_file, tmp_path / "extra.safetensors",
                    tensors=lambda t: t.update({"members.7.w": torch.zeros(1)}))
    with pytest.raises(DataError, match="unexpected tensor 'members.7.w'"):
        load_team(extra)
    meta = load_file_meta(team_file)
    save_file(load_file(str(team_file)), str(tmp_path / "json.safetensors"),
              metadata={**meta, "team": "{not json"})
    with pytest.raises(DataError, match="team metadata is not valid JSON"):
        load_team(tmp_path / "json.safetensors")


def test_cli_errors_are_one_line(tmp_path, team_file, capsys):
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    cases = [
        (["predict", str(tmp_path / "junk.safetensors"), "--dataset", "digits"],
         "not a readable safetensors file"),
        (["predict", str(team_file), "--dataset", "synthetic:shape=32"],
         "takes inputs of shape (1, 8, 8) but dataset 'synthetic:shape=32' gives (32,)"),
        (["predict", str(team_file), "--dataset", "synthetic:classes=4"],
         "predicts 10 classes but dataset 'synthetic:classes=4' has 4"),
        (["predict", str(team_file), "--dataset", "digits", "--split", "dev"],
         "--split 'dev': expected one of train, val, test"),
    ]
    for argv, message in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_predict_runs_a_single_export_and_a_team(tmp_path, team_file, digits):
    masked, exported = pruned_member(3)
    save_exported(tmp_path / "one.safetensors", exported)
    single = evaluate_on(load_deployed(tmp_path / "one.safetensors"), "digits")
    with torch.no_grad():
        expected = float((masked(digits.x_test).argmax(1) == digits.y_test).double().mean())
    assert single["kind"] == "model" and single["accuracy"] == expected
    assert single["samples"] == len(digits.y_test)
    save_exported(tmp_path / "folder", exported)  # the folder form of an export too
    assert evaluate_on(load_deployed(tmp_path / "folder"), "digits")["accuracy"] == expected
    team = evaluate_on(load_deployed(team_file), "digits", split="val")
    assert team["kind"] == "team" and team["members"] == ["a", "b"]
    assert set(team["member_accuracy"]) == {"a", "b"} and team["recorded"] is None
    with torch.no_grad():
        want = load_team(team_file).predict(digits.x_val)
    assert team["accuracy"] == float((want == digits.y_val).double().mean())
