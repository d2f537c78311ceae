"""A CartPole policy pruned by DropNet: REINFORCE trains the masked network each round, and the
units are scored on the states the agent visited (it has no training set).

Needs the ``agent`` extra (``pip install "secateurs[agent]"``: gymnasium). From the repository root:

    python examples/cartpole_agent.py              # 5 seeds, minimum vs random: minutes
    python examples/cartpole_agent.py --quick --out /tmp/cp.md   # seconds, a smoke run

It writes a page (``--out``, default ``docs/results/cartpole-agent.md``) with the return against
units remaining, a figure next to it (same name, ``.png``) and the raw numbers (``.json``).
See docs/agents.md for what it does and why.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from secateurs.data.splits import DatasetSplits
from secateurs.pruning import DropNetConfig, run_dropnet
from secateurs.training import RoundInfo

MAX_STEPS = 500  # CartPole-v1's time limit (applied here: the unwrapped env is stepped)
GAMMA = 0.99
EVAL_SEED = 1_000_000  # greedy evaluation episodes use seeds EVAL_SEED + 1000 x run seed + i
METRICS = ("minimum", "random")


def policy_network(seed: int, hidden: int = 64) -> nn.Module:
    """4 -> hidden -> hidden -> 2, ReLU: a plain module whose two hidden layers DropNet prunes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2),
        )


def rollout(
    policy: nn.Module,
    seeds: list[int],
    *,
    greedy: bool,
    generator: torch.Generator | None = None,
    max_steps: int = MAX_STEPS,
) -> tuple[list[np.ndarray], list[list[int]]]:
    """One episode per seed, all stepped together (one forward pass per time step): the states
    each visited and the actions it took. Sampled actions come from ``generator``."""
    envs = [gym.make("CartPole-v1").unwrapped for _ in seeds]
    current = np.array([env.reset(seed=s)[0] for env, s in zip(envs, seeds, strict=True)], dtype=np.float32)
    states: list[list[np.ndarray]] = [[] for _ in seeds]
    actions: list[list[int]] = [[] for _ in seeds]
    alive = list(range(len(seeds)))
    policy.eval()
    for _ in range(max_steps):
        with torch.no_grad():
            logits = policy(torch.from_numpy(current[alive]))
        if greedy:
            chosen = logits.argmax(1)
        else:
            chosen = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator)[:, 0]
        still = []
        for j, i in enumerate(alive):
            states[i].append(current[i].copy())
            actions[i].append(int(chosen[j]))
            obs, _, terminated, _, _ = envs[i].step(actions[i][-1])
            current[i] = obs
            if not terminated:
                still.append(i)
        alive = still
        if not alive:
            break
    for env in envs:
        env.close()
    return [np.array(s, dtype=np.float32) for s in states], actions


def evaluate(policy: nn.Module, seeds: list[int]) -> float:
    """Mean return (steps balanced, at most MAX_STEPS) of greedy episodes."""
    _, actions = rollout(policy, seeds, greedy=True)
    return float(np.mean([len(a) for a in actions]))


def returns_to_go(length: int, gamma: float = GAMMA) -> np.ndarray:
    """Discounted return from each step of an episode of ``length`` steps, reward 1 a step:
    sum over k < length - t of gamma^k = (1 - gamma^(length - t)) / (1 - gamma)."""
    steps = np.arange(length, 0, -1, dtype=np.float64)
    return (1 - gamma**steps) / (1 - gamma)


class Reinforce:
    """The training hook: REINFORCE with a baseline (returns-to-go standardised over each batch
    of episodes), Adam, a fixed budget of episodes per round. It hands DropNet the states of the
    round's last quarter of episodes as ``score_inputs``, and the greedy return in ``info``."""

    def __init__(self, episodes: int = 240, batch: int = 8, lr: float = 0.01,
                 eval_episodes: int = 20):
        self.episodes, self.batch, self.lr, self.eval_episodes = episodes, batch, lr, eval_episodes

    def fit(self, network: nn.Module, info: RoundInfo) -> dict:
        updates = max(1, self.episodes // self.batch)
        optimizer = torch.optim.Adam(network.parameters(), lr=self.lr)
        kept: list[np.ndarray] = []
        lengths: list[int] = []
        for u in range(updates):
            seeds = [(info.seed * 7919 + u * self.batch + i) % 2**31 for i in range(self.batch)]
            states, actions = rollout(network, seeds, greedy=False, generator=info.generator)
            returns = [returns_to_go(len(acts)) for acts in actions]
            x = torch.from_numpy(np.concatenate(states))
            a = torch.tensor([act for acts in actions for act in acts])
            g = torch.from_numpy(np.concatenate(returns)).float()
            advantage = (g - g.mean()) / (g.std() + 1e-8) if len(g) > 1 else g - g
            network.train()
            log_p = torch.log_softmax(network(x), 1)[torch.arange(len(a)), a]
            loss = -(log_p * advantage).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if u >= updates - max(1, updates // 4):  # the round's last quarter
                kept.extend(states)
                lengths.extend(len(acts) for acts in actions)
        eval_seeds = [EVAL_SEED + 1000 * info.run_seed + i for i in range(self.eval_episodes)]
        return {
            "epochs": updates,
            "return": evaluate(network, eval_seeds),
            "train_return": float(np.mean(lengths)),
            "score_inputs": torch.from_numpy(np.concatenate(kept)),
        }


def placeholder_splits(seed: int, n: int = 256) -> DatasetSplits:
    """DropNet's DatasetSplits for an agent: states of a random policy with label 0 everywhere.
    They trace the network and fill the records' split metrics, which mean nothing here (the
    agent is measured by its return); the units are scored on the hook's visited states."""
    rng = np.random.default_rng(seed)
    env = gym.make("CartPole-v1").unwrapped
    states: list[np.ndarray] = []
    while len(states) < 3 * n:
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        for _ in range(MAX_STEPS):
            states.append(obs.astype(np.float32))
            obs, _, terminated, _, _ = env.step(int(rng.integers(2)))
            if terminated:
                break
    env.close()
    x = torch.from_numpy(np.stack(states[: 3 * n]))
    y = torch.zeros(3 * n, dtype=torch.int64)
    return DatasetSplits(
        name="cartpole-random-policy-states", x_train=x[:n], y_train=y[:n],
        x_val=x[n : 2 * n], y_val=y[n : 2 * n], x_test=x[2 * n :], y_test=y[2 * n :],
        num_classes=2, classes=["left", "right"],
        note="placeholder labels: split accuracies are meaningless, the metric is the return",
    )


def run_study(seeds: list[int], *, episodes: int, fraction: float, until: float,
              eval_episodes: int, hidden: int = 64) -> list[dict]:
    """Every (metric, seed) DropNet run; one row per round with the return and units left."""
    rows = []
    for seed in seeds:
        data = placeholder_splits(seed)
        for metric in METRICS:
            config = DropNetConfig(metric=metric, fraction=fraction, until=until,
                                   keep_weights=False)
            hook = Reinforce(episodes=episodes, eval_episodes=eval_episodes)
            result = run_dropnet(policy_network(seed, hidden), data, config, seed=seed,
                                 train_fn=hook)
            for r in result.rounds:
                rows.append({
                    "metric": metric, "seed": seed, "round": r["round"], "units": r["units"],
                    "remaining": round(r["remaining"], 4), "widths": r["widths"],
                    "return": r["train_info"]["return"],
                    "train_return": round(r["train_info"]["train_return"], 2),
                    "score_states": r["train_info"]["score_inputs"],
                })
            print(f"{metric:8s} seed {seed}: " + " ".join(
                f"{r['units']}:{r['train_info']['return']:.0f}" for r in result.rounds),
                flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per round: units left and, per metric, the mean and std of the return over seeds."""
    out = []
    for rnd in sorted({r["round"] for r in rows}):
        here = [r for r in rows if r["round"] == rnd]
        line = {"round": rnd, "units": sorted({r["units"] for r in here}),
                "remaining": here[0]["remaining"]}
        for metric in METRICS:
            values = [r["return"] for r in here if r["metric"] == metric]
            if values:
                line[metric] = (float(np.mean(values)), float(np.std(values)), len(values))
        out.append(line)
    return out


def write_figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for metric, colour in zip(METRICS, ("tab:blue", "tab:orange"), strict=True):
        mine = [r for r in rows if r["metric"] == metric]
        for seed in sorted({r["seed"] for r in mine}):
            run = [r for r in mine if r["seed"] == seed]
            ax.plot([r["units"] for r in run], [r["return"] for r in run], color=colour,
                    alpha=0.25, lw=1)
        table = summarise(mine)
        ax.plot([t["units"][0] for t in table], [t[metric][0] for t in table], "o-",
                color=colour, label=f"{metric} (mean of {table[0][metric][2]} seeds)")
    ax.set_xscale("log", base=2)
    ticks = [t for t in (128, 64, 32, 16, 8, 4, 2) if t >= min(r["units"] for r in rows)]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("hidden units remaining (of the two pruned layers)")
    ax.set_ylabel(f"greedy return (max {MAX_STEPS})")
    ax.set_title("CartPole REINFORCE policy pruned by DropNet")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from secateurs.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def paired(rows: list[dict], at_most: float) -> tuple[float, float, int, int]:
    """Over the rounds with at most ``at_most`` of the units left: each metric's mean return, and
    in how many (seed, round) pairs minimum's return beats random's (same seed, same size)."""
    small = [r for r in rows if r["remaining"] <= at_most]
    by = {(r["metric"], r["seed"], r["round"]): r["return"] for r in small}
    pairs = [(v, by[("random", s, n)]) for (m, s, n), v in by.items()
             if m == "minimum" and ("random", s, n) in by]
    if not pairs:
        return float("nan"), float("nan"), 0, 0
    mins, rands = zip(*pairs, strict=True)
    return float(np.mean(mins)), float(np.mean(rands)), sum(a > b for a, b in pairs), len(pairs)


def write_page(rows: list[dict], out: Path, *, seconds: float, load: tuple, args, argv) -> None:
    """The result page (table, figure, how it was run), written whole or not at all."""
    from secateurs.io import write_json, write_text

    table = summarise(rows)
    at_most = 0.3
    mean_min, mean_rand, wins, n_pairs = paired(rows, at_most)
    png, raw = out.with_suffix(".png"), out.with_suffix(".json")
    write_figure(rows, png)
    write_json(raw, rows)
    head = "| round | units remaining | fraction | " + " | ".join(
        f"{m} return (mean ± std)" for m in METRICS) + " |"
    lines = [head, "|" + "---|" * (3 + len(METRICS))]
    for t in table:
        cells = [f"{t[m][0]:.1f} ± {t[m][1]:.1f}" if m in t else "" for m in METRICS]
        units = "/".join(str(u) for u in t["units"])
        lines.append(f"| {t['round']} | {units} | {t['remaining']:.2f} | " + " | ".join(cells)
                     + " |")
    command = "python examples/cartpole_agent.py " + " ".join(argv)
    page = f"""# CartPole agent pruned by DropNet: return against units remaining

Generated by `{command.strip()}` (see [../agents.md](../agents.md)). A 4-{args.hidden}-{args.hidden}-2
ReLU policy trained by REINFORCE with a baseline, {args.episodes} episodes a round (batches of 8,
Adam 0.01), reset to its initial weights every round; DropNet `minimum` (units scored on the
states the agent visited in the round's last quarter of episodes) against `random`, p =
{args.fraction} of the remaining units a round until {args.until:.0%} remain. The return is the
mean over {args.eval_episodes} greedy episodes (at most {MAX_STEPS} steps), the same episode
seeds for both metrics. Seeds {", ".join(str(s) for s in args.seeds)}: a seed fixes the initial
weights, the training episodes and the action samples of both metrics' runs.

{chr(10).join(lines)}

![return against units remaining]({png.name})

Over the rounds with at most {at_most:.0%} of the units left, the mean return is
{mean_min:.1f} for `minimum` and {mean_rand:.1f} for `random`; `minimum` is ahead in {wins} of the
{n_pairs} (seed, round) pairs (same seed, same number of units), behind or level in the others.

Raw per-seed rows (widths per layer, the training episodes' mean return, how many visited states
were scored): [{raw.name}]({raw.name}). The records' split accuracies are not used: the
`DatasetSplits` holds placeholder labels (see the docs).

Measured: {seconds:.0f} s wall on {os.cpu_count()} CPU cores ({platform.machine()}, torch
{torch.__version__}, gymnasium {gym.__version__}, {torch.get_num_threads()} torch thread),
load average before / after {load[0]:.2f} / {load[1]:.2f} (the machine was shared).
"""
    write_text(out, page)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2,3,4",
                   help="comma-separated run seeds (default 0,1,2,3,4)")
    p.add_argument("--out", type=Path, default=None,
                   help="result page (default docs/results/cartpole-agent.md; --quick: "
                        "cartpole-agent-quick.md)")
    p.add_argument("--episodes", type=int, default=None,
                   help="training episodes per round (default 240; --quick 24)")
    p.add_argument("--fraction", type=float, default=0.2, help="p, dropped per round")
    p.add_argument("--until", type=float, default=None,
                   help="stop once this fraction remains (default 0.03; --quick 0.6)")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help="greedy episodes per evaluation (default 20; --quick 4)")
    p.add_argument("--hidden", type=int, default=64, help="width of both hidden layers")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = p.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated whole numbers, got {args.seeds!r}")
    if not args.seeds:
        p.error("--seeds names no seed")
    quick = args.quick
    args.episodes = args.episodes or (24 if quick else 240)
    args.until = args.until if args.until is not None else (0.6 if quick else 0.03)
    args.eval_episodes = args.eval_episodes or (4 if quick else 20)
    args.out = args.out or Path("cartpole-agent-quick.md" if quick else
                                "docs/results/cartpole-agent.md")
    if args.episodes < 1 or args.eval_episodes < 1:
        p.error("--episodes and --eval-episodes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    torch.set_num_threads(1)
    before = os.getloadavg()[0]
    start = time.perf_counter()
    rows = run_study(args.seeds, episodes=args.episodes, fraction=args.fraction,
                     until=args.until, eval_episodes=args.eval_episodes, hidden=args.hidden)
    seconds = time.perf_counter() - start
    write_page(rows, args.out, seconds=seconds, load=(before, os.getloadavg()[0]), args=args,
               argv=argv)
    print(f"wrote {args.out} ({seconds:.0f} s)")
    return rows


if __name__ == "__main__":
    main()
