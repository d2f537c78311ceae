"""examples/cartpole_agent.py: a REINFORCE CartPole policy pruned by DropNet, scored on the states
it visited. Checked: the quick mode runs end to end and writes its page, figure and numbers; the
same seed gives the same numbers; the hook's visited states are what DropNet scores on; the
greedy return equals gymnasium's own time-limited episode; returns-to-go against a loop; a hook
handing back states of the wrong shape is refused naming the shape expected; the library itself
never imports gymnasium."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium", reason="the agent extra: pip install secateurs[agent]")

import gymnasium as gym  # noqa: E402

from secateurs.errors import ConfigError  # noqa: E402
from secateurs.pruning import DropNet, DropNetConfig  # noqa: E402
from secateurs.pruning.importance import unit_scores  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cartpole_agent.py"


@pytest.fixture(scope="module")
def agent():
    spec = importlib.util.spec_from_file_location("cartpole_agent_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_runs_end_to_end_and_repeats_exactly(agent, tmp_path):
    out = tmp_path / "a" / "cp.md"
    rows = agent.main(["--quick", "--seeds", "0", "--out", str(out)])
    again = agent.main(["--quick", "--seeds", "0", "--out", str(tmp_path / "b" / "cp.md")])
    assert rows == again
    assert {r["metric"] for r in rows} == {"minimum", "random"}
    for metric in ("minimum", "random"):
        mine = [r for r in rows if r["metric"] == metric]
        assert [r["round"] for r in mine] == list(range(len(mine)))
        assert mine[0]["units"] == 128 and mine[-1]["remaining"] <= 0.6
        units = [r["units"] for r in mine]
        assert units == sorted(units, reverse=True) and len(set(units)) == len(units)
        for r in mine:
            assert 1 <= r["return"] <= agent.MAX_STEPS
            assert r["units"] == sum(r["widths"].values())
            assert r["score_states"] > 0
    # both metrics start from the same network and episodes: round 0 is the same run
    first = [r for r in rows if r["round"] == 0]
    assert first[0]["return"] == first[1]["return"]
    page = out.read_text()
    assert "| 0 | 128 | 1.00 |" in page and "cp.png" in page and "s wall on" in page
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(out.with_suffix(".json").read_text()) == rows


def test_dropnet_scores_the_states_the_hook_hands_back(agent):
    data = agent.placeholder_splits(0, n=32)
    config = DropNetConfig(metric="minimum", fraction=0.2, max_rounds=2, keep_weights=False)
    run = DropNet(agent.policy_network(0), data, config, seed=0,
                  train_fn=agent.Reinforce(episodes=16, eval_episodes=2))
    result = run.train_round()
    states = run.score_inputs
    assert states is not None and states.shape[1:] == (4,) and len(states) > 0
    assert result.info["score_inputs"] == len(states)
    assert 1 <= result.info["return"] <= agent.MAX_STEPS
    # |cart position| < 2.4 and |pole angle| < 12 degrees: states an episode actually visits
    assert (states[:, 0].abs() <= 2.4).all() and (states[:, 2].abs() <= 0.2095).all()
    run.record(result)
    on_states = unit_scores("activation", run.masked, states)
    on_placeholder = unit_scores("activation", run.masked, data.x_train)
    run.prune_step()
    for layer, values in run.scores[0].items():
        assert torch.allclose(torch.tensor(values), on_states[layer].float(), atol=1e-6)
    assert any(not torch.allclose(on_states[k], on_placeholder[k]) for k in on_states)


def test_greedy_return_is_gymnasiums_own_episode_return(agent):
    policy = agent.policy_network(3, hidden=8)
    seeds = [5, 6, 7]
    env = gym.make("CartPole-v1")  # with its TimeLimit and checks, one episode at a time
    expected = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                action = int(policy(torch.tensor(obs[None], dtype=torch.float32)).argmax())
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        expected.append(total)
    assert agent.evaluate(policy, seeds) == pytest.approx(float(np.mean(expected)))


def test_returns_to_go_against_a_loop(agent):
    for length in (1, 2, 7, 50):
        want = [sum(0.9**k for k in range(length - t)) for t in range(length)]
        assert np.allclose(agent.returns_to_go(length, 0.9), want)


def test_a_hook_handing_back_states_of_the_wrong_shape_is_refused(agent):
    class Cropped(agent.Reinforce):
        def fit(self, network, info):
            out = super().fit(network, info)
            out["score_inputs"] = out["score_inputs"][:, :3]
            return out

    data = agent.placeholder_splits(0, n=16)
    config = DropNetConfig(metric="minimum", fraction=0.2, max_rounds=1, keep_weights=False)
    run = DropNet(agent.policy_network(0), data, config, seed=0,
                  train_fn=Cropped(episodes=8, eval_episodes=1))
    with pytest.raises(ConfigError, match=r"score_inputs of shape \(\d+, 3\); expected \(N, 4\)"):
        run.train_round()


def test_the_library_never_imports_gymnasium():
    code = (
        "import sys, secateurs, secateurs.pruning, secateurs.training, secateurs.experiments, "
        "secateurs.cli.main; assert 'gymnasium' not in sys.modules, 'gymnasium imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    hits = [p for p in (ROOT / "src").rglob("*.py") if "gymnasium" in p.read_text()]
    assert not hits, hits
