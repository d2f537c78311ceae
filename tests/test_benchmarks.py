"""The sweep benchmark and the device script run (quick mode, CPU) and their tables add up."""

from __future__ import annotations

import re

import pytest
from benchmarks import bench_sweep, gpu_check


def _seconds(table: str, label: str) -> float:
    row = next(line for line in table.splitlines() if line.startswith(f"| {label}"))
    return float(row.split("|")[2].strip().strip("*").replace(",", ""))


@pytest.fixture(scope="module")
def sweep_section() -> str:
    return bench_sweep.run(quick=True)


def test_sweep_phases_add_up_to_the_wall_time_and_round_0_is_forked(sweep_section):
    wall = _seconds(sweep_section, "**this sweep")
    phases = sweep_section.split("Where the time went:")[1]
    total = sum(float(line.split("|")[2].replace(",", "")) for line in phases.splitlines()
                if line.startswith("| ") and not line.startswith("| phase"))
    assert total == pytest.approx(wall, abs=0.5 + 0.05 * wall)
    recorded, trained, forked = map(int, re.search(
        r"([\d,]+) epochs recorded \(([\d,]+) trained: .* forked to (\d+) runs", sweep_section
    ).groups())
    assert forked == 2 and trained < recorded  # 2 metrics x 2 seeds: one copy per seed


def test_gpu_script_refuses_cuda_without_a_device_and_runs_its_checks_on_cpu(capsys):
    import torch

    if not torch.cuda.is_available():
        assert gpu_check.main(["--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert gpu_check.main(["--device", "cpu", "--quick"]) == 0
    out = capsys.readouterr().out
    assert out.count("| yes |") == 4 and "| NO |" not in out  # 3 lockstep checks, export
