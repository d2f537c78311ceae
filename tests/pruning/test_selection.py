"""Which units go: hand-computed budgets and choices for every rule, seeded ties, and properties
over random scores and masks (hypothesis). Also the metric table: each named metric ranks and
scopes exactly as the DropNet reference says."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from secateurs.errors import ConfigError
from secateurs.pruning import (
    METRICS,
    PAPER_METRICS,
    MaskedNetwork,
    activation_stats,
    get_metric,
    select_units,
    unit_scores,
    weight_magnitude,
)


def T(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


def B(values):
    return torch.tensor(values, dtype=torch.bool)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


SCORES = {"a": T([5.0, 1.0, 3.0, 9.0]), "b": T([2.0, 8.0, 0.5])}
ALL = {"a": B([1, 1, 1, 1]), "b": B([1, 1, 1])}


# -- budgets and choices, by hand -------------------------------------------------------------
def test_global_budget_is_floor_p_of_all_remaining_lowest_first():
    # 7 alive, p = 0.3 -> floor(2.1) = 2: the two lowest over both layers, b[2]=0.5 and a[1]=1
    assert select_units(SCORES, ALL, 0.3, generator=gen()) == {"a": [1], "b": [2]}
    # p = 0.5 -> floor(3.5) = 3: 0.5, 1, 2
    assert select_units(SCORES, ALL, 0.5, generator=gen()) == {"a": [1], "b": [0, 2]}
    # p = 0.6 -> floor(4.2) = 4: 0.5, 1, 2, 3
    assert select_units(SCORES, ALL, 0.6, generator=gen()) == {"a": [1, 2], "b": [0, 2]}


def test_global_budget_is_at_least_one():
    # floor(0.1 * 7) = 0 -> 1 unit, the lowest
    assert select_units(SCORES, ALL, 0.1, generator=gen()) == {"a": [], "b": [2]}


def test_global_counts_only_remaining_units_and_never_reselects_dropped_ones():
    alive = {"a": B([1, 0, 1, 1]), "b": B([1, 1, 1])}  # a[1] (score 1) is already gone
    # 6 alive, p = 0.5 -> 3: b[2]=0.5, b[0]=2, a[2]=3 (not the dead a[1] with score 1)
    assert select_units(SCORES, alive, 0.5, generator=gen()) == {"a": [2], "b": [0, 2]}
    # 6 alive, p = 0.34 -> floor(2.04) = 2
    assert select_units(SCORES, alive, 0.34, generator=gen()) == {"a": [], "b": [0, 2]}


def test_layer_budget_is_floor_p_of_each_layers_remaining():
    # a: floor(0.5 * 4) = 2 -> a[1], a[2]; b: floor(0.5 * 3) = 1 -> b[2]
    got = select_units(SCORES, ALL, 0.5, scope="layer", generator=gen())
    assert got == {"a": [1, 2], "b": [2]}
    # p = 0.2: a: max(1, floor(0.8)) = 1; b: max(1, floor(0.6)) = 1
    assert select_units(SCORES, ALL, 0.2, scope="layer", generator=gen()) == {"a": [1], "b": [2]}
    # p = 0.75: a: floor(3) = 3; b: floor(2.25) = 2
    got = select_units(SCORES, ALL, 0.75, scope="layer", generator=gen())
    assert got == {"a": [0, 1, 2], "b": [0, 2]}
    # with a dead unit: a has 3 alive (0, 2, 3): floor(0.67 * 3) = 2 -> a[2]=3, a[0]=5
    alive = {"a": B([1, 0, 1, 1]), "b": B([1, 1, 1])}
    got = select_units(SCORES, alive, 0.67, scope="layer", generator=gen())
    assert got == {"a": [0, 2], "b": [0, 2]}


def test_negated_scores_drop_the_highest_first():
    neg = {k: -v for k, v in SCORES.items()}
    # global, 2 units: the highest, a[3]=9 and b[1]=8
    assert select_units(neg, ALL, 0.3, generator=gen()) == {"a": [3], "b": [1]}
    # per layer at p=0.5: a drops 2 highest (9, 5), b drops 1 highest (8)
    assert select_units(neg, ALL, 0.5, scope="layer", generator=gen()) == {"a": [0, 3], "b": [1]}


def test_a_layer_never_loses_its_last_unit():
    scores = {"a": T([-5.0, 0.0]), "b": T([1.0, 2.0, 3.0])}
    alive = {"a": B([1, 0]), "b": B([1, 1, 1])}
    # p = 1: budget 4, but a's only unit (the lowest score) stays, and b keeps one (its highest)
    assert select_units(scores, alive, 1.0, generator=gen()) == {"a": [], "b": [0, 1]}
    assert select_units(scores, alive, 1.0, scope="layer", generator=gen()) == {"a": [], "b": [0, 1]}
    # global: the lowest-scored units live in a layer at its last unit -> the budget passes on
    scores = {"a": T([0.0, 0.1, 9.0]), "b": T([1.0, 2.0, 3.0])}
    alive = {"a": B([1, 1, 0]), "b": B([1, 1, 1])}
    # 5 alive, p = 0.6 -> 3: a[0] (0.0); a[1] would empty a, skipped; then b[0], b[1]
    assert select_units(scores, alive, 0.6, generator=gen()) == {"a": [0], "b": [0, 1]}
    # nothing left to drop anywhere
    one = {"a": B([0, 1, 0]), "b": B([0, 0, 1])}
    assert select_units(scores, one, 0.5, generator=gen()) == {"a": [], "b": []}
    assert select_units(scores, one, 0.5, scope="layer", generator=gen()) == {"a": [], "b": []}
    assert select_units(scores, one, 0.5, one_per_round=True, generator=gen()) == {"a": [], "b": []}


def test_one_per_round_drops_exactly_the_single_lowest():
    for p in (0.1, 0.5, 1.0):
        assert select_units(SCORES, ALL, p, one_per_round=True, generator=gen()) == {
            "a": [], "b": [2]}
    # per-layer scope: one unit from the layer with the largest remaining fraction
    alive = {"a": B([1, 0, 1, 1]), "b": B([1, 1, 1])}  # a 3/4, b 3/3 -> b
    got = select_units(SCORES, alive, 0.5, scope="layer", one_per_round=True, generator=gen())
    assert got == {"a": [], "b": [2]}
    alive = {"a": B([1, 1, 1, 1]), "b": B([1, 1, 0])}  # a 4/4, b 2/3 -> a, its lowest a[1]
    got = select_units(SCORES, alive, 0.5, scope="layer", one_per_round=True, generator=gen())
    assert got == {"a": [1], "b": []}


def test_bad_fraction_or_scope_raise():
    for p in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            select_units(SCORES, ALL, p)
    with pytest.raises(ValueError, match="scope"):
        select_units(SCORES, ALL, 0.2, scope="network")


# -- ties --------------------------------------------------------------------------------------
def test_ties_same_seed_same_choice_different_seeds_differ():
    zeros = {"a": torch.zeros(10), "b": torch.zeros(10)}
    alive = {"a": torch.ones(10, dtype=torch.bool), "b": torch.ones(10, dtype=torch.bool)}
    for scope in ("global", "layer"):
        picks = [select_units(zeros, alive, 0.2, scope=scope, generator=gen(s)) for s in range(20)]
        again = [select_units(zeros, alive, 0.2, scope=scope, generator=gen(s)) for s in range(20)]
        assert picks == again
        assert len({str(p) for p in picks}) >= 15  # C(20, 4) choices: seeds almost never collide


def test_ties_only_among_the_tied_units():
    scores = {"a": T([0.0, 1.0, 1.0, 1.0, 5.0])}
    alive = {"a": torch.ones(5, dtype=torch.bool)}
    g = gen(3)
    seen = Counter()
    for _ in range(600):
        got = select_units(scores, alive, 0.4, generator=g)["a"]  # budget 2
        assert len(got) == 2 and 0 in got and 4 not in got
        seen.update(u for u in got if u != 0)
    assert set(seen) == {1, 2, 3}
    for unit in (1, 2, 3):  # 200 expected each; a 6-sigma band is about +-70
        assert 130 < seen[unit] < 270, seen


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_every_tied_unit_is_chosen_about_equally_often(scope):
    zeros = {"a": torch.zeros(4), "b": torch.zeros(4)}
    alive = {"a": torch.ones(4, dtype=torch.bool), "b": torch.ones(4, dtype=torch.bool)}
    g = gen(11)
    counts = Counter()
    trials = 1600
    for _ in range(trials):
        got = select_units(zeros, alive, 0.2, scope=scope, one_per_round=True, generator=g)
        (pick,) = [(k, u) for k, v in got.items() for u in v]
        counts[pick] += 1
    if scope == "global":  # 8 tied units over both layers: 200 expected each
        assert len(counts) == 8
        assert all(200 - 80 < c < 200 + 80 for c in counts.values()), counts
    else:  # per layer, one per round: the first layer of equal remaining, 4 units, 400 each
        assert {k for k, _ in counts} == {"a"}
        assert all(400 - 100 < c < 400 + 100 for c in counts.values()), counts


# -- properties over random inputs ------------------------------------------------------------
@st.composite
def cases(draw):
    n_layers = draw(st.integers(1, 4))
    widths = [draw(st.integers(1, 9)) for _ in range(n_layers)]
    tied = draw(st.booleans())
    scores, alive = {}, {}
    for i, w in enumerate(widths):
        if tied:
            vals = draw(st.lists(st.integers(0, 3), min_size=w, max_size=w))
        else:
            vals = draw(st.lists(st.floats(-100, 100, allow_nan=False, width=32), min_size=w,
                                 max_size=w))
        mask = draw(st.lists(st.booleans(), min_size=w, max_size=w))
        if not any(mask):
            mask[draw(st.integers(0, w - 1))] = True
        scores[f"l{i}"] = T(vals)
        alive[f"l{i}"] = B(mask)
    fraction = draw(st.floats(0.01, 1.0))
    scope = draw(st.sampled_from(["global", "layer"]))
    one = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return scores, alive, fraction, scope, one, seed


@settings(max_examples=300, deadline=None)
@given(cases())
def test_selection_properties(case):
    scores, alive, fraction, scope, one, seed = case
    drop = select_units(scores, alive, fraction, scope=scope, one_per_round=one,
                        generator=gen(seed))
    assert set(drop) == set(alive)
    n_alive = {k: int(v.sum()) for k, v in alive.items()}
    spare = {k: n - 1 for k, n in n_alive.items()}  # what a layer can give without emptying
    for k, units in drop.items():
        assert len(set(units)) == len(units)
        assert all(bool(alive[k][u]) for u in units)  # each dropped unit was alive
        assert len(units) <= spare[k]  # a layer keeps at least one unit
    size = sum(len(v) for v in drop.values())
    if one:
        expected = 1 if any(spare.values()) else 0
        assert size == expected
    elif scope == "global":
        budget = max(1, math.floor(fraction * sum(n_alive.values())))
        assert size == min(budget, sum(spare.values()))
    else:
        for k, n in n_alive.items():
            assert len(drop[k]) == min(max(1, math.floor(fraction * n)), spare[k])
    # who goes: the lowest-scored among the eligible units
    left = {k: n_alive[k] - len(drop[k]) for k in alive}
    if scope == "global":
        dropped_scores = [float(scores[k][u]) for k, v in drop.items() for u in v]
        if dropped_scores:
            worst = max(dropped_scores)
            for k in alive:
                if left[k] <= 1:
                    continue  # this layer may have been protected by the last-unit rule
                kept = [float(scores[k][u]) for u in alive[k].nonzero().flatten().tolist()
                        if u not in drop[k]]
                assert all(worst <= s for s in kept)
    else:
        for k, units in drop.items():
            if units:
                kept = [float(scores[k][u]) for u in alive[k].nonzero().flatten().tolist()
                        if u not in units]
                assert max(float(scores[k][u]) for u in units) <= min(kept)


@settings(max_examples=100, deadline=None)
@given(cases())
def test_selection_is_a_function_of_the_generator_seed(case):
    scores, alive, fraction, scope, one, seed = case
    a = select_units(scores, alive, fraction, scope=scope, one_per_round=one, generator=gen(seed))
    b = select_units(scores, alive, fraction, scope=scope, one_per_round=one, generator=gen(seed))
    assert a == b


# -- the metric table -------------------------------------------------------------------------
def test_metric_table_matches_the_reference():
    want = {
        "minimum": ("activation", "global"),
        "maximum": ("negative_activation", "global"),
        "random": ("random", "global"),
        "minimum_layer": ("activation", "layer"),
        "maximum_layer": ("negative_activation", "layer"),
        "random_layer": ("random", "layer"),
        "apoz": ("apoz", "global"),
        "apoz_layer": ("apoz", "layer"),
        "magnitude": ("magnitude", "global"),
        "magnitude_layer": ("magnitude", "layer"),
        "oracle": ("oracle", "global"),
    }
    assert {k: (m.criterion, m.scope) for k, m in METRICS.items()} == want
    assert tuple(want)[:6] == PAPER_METRICS
    assert get_metric("minimum_layer") is METRICS["minimum_layer"]
    with pytest.raises(ConfigError, match="unknown metric 'nope'"):
        get_metric("nope")


class _Relu(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(5, 6)
        self.fc2 = torch.nn.Linear(6, 5)
        self.out = torch.nn.Linear(5, 3)

    def forward(self, x):
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _ranked_by(values: dict[str, torch.Tensor], k_global: int, p: float, highest: bool):
    """Expected choice from reference scores: sort and take, computed without select_units."""
    sign = -1.0 if highest else 1.0
    flat = sorted((sign * float(v[u]), k, u) for k, v in values.items() for u in range(len(v)))
    glob = {k: sorted(u for _, kk, u in flat[:k_global] if kk == k) for k in values}
    per = {}
    for k, v in values.items():
        order = sorted(range(len(v)), key=lambda u: sign * float(v[u]))
        per[k] = sorted(order[: max(1, math.floor(p * len(v)))])
    return glob, per


def test_each_metric_drops_the_units_the_reference_says():
    torch.manual_seed(0)
    model = _Relu()
    x = torch.randn(200, 5)
    masked = MaskedNetwork(model, x[:2])
    alive = {k: torch.ones(w, dtype=torch.bool) for k, w in masked.widths.items()}
    p = 0.3
    k_global = math.floor(p * 11)  # 3
    with torch.no_grad():  # reference E(|a|) and APoZ for a ReLU MLP, computed directly
        a1 = torch.relu(model.fc1(x))
        a2 = torch.relu(model.fc2(a1))
    E = {"fc1": a1.abs().mean(0), "fc2": a2.abs().mean(0)}
    apoz = {"fc1": (a1 == 0).float().mean(0), "fc2": (a2 == 0).float().mean(0)}
    l1 = {"fc1": model.fc1.weight.abs().sum(1).detach(), "fc2": model.fc2.weight.abs().sum(1).detach()}
    assert torch.allclose(activation_stats(masked, x).mean_abs["fc1"], E["fc1"], atol=1e-6)
    assert torch.allclose(weight_magnitude(masked)["fc2"], l1["fc2"], atol=1e-6)
    expectations = {
        "minimum": _ranked_by(E, k_global, p, highest=False)[0],
        "maximum": _ranked_by(E, k_global, p, highest=True)[0],
        "minimum_layer": _ranked_by(E, k_global, p, highest=False)[1],
        "maximum_layer": _ranked_by(E, k_global, p, highest=True)[1],
        "apoz": _ranked_by(apoz, k_global, p, highest=True)[0],
        "apoz_layer": _ranked_by(apoz, k_global, p, highest=True)[1],
        "magnitude": _ranked_by(l1, k_global, p, highest=False)[0],
        "magnitude_layer": _ranked_by(l1, k_global, p, highest=False)[1],
    }
    for name, want in expectations.items():
        metric = get_metric(name)
        scores = unit_scores(metric.criterion, masked, x)
        got = select_units(scores, alive, p, scope=metric.scope, generator=gen())
        if name == "apoz":  # ties are likely in APoZ: compare the dropped values instead
            values = sorted(float(apoz[k][u]) for k in got for u in got[k])
            assert values == sorted(float(apoz[k][u]) for k in want for u in want[k]), name
        elif name == "apoz_layer":
            for k in got:
                assert sorted(float(apoz[k][u]) for u in got[k]) == sorted(
                    float(apoz[k][u]) for u in want[k]), name
        else:
            assert got == want, name
    for name in ("random", "random_layer"):
        metric = get_metric(name)
        scores = unit_scores(metric.criterion, masked, x)
        got = select_units(scores, alive, p, scope=metric.scope, generator=gen())
        sizes = {k: len(v) for k, v in got.items()}
        if metric.scope == "global":
            assert sum(sizes.values()) == k_global
        else:
            assert sizes == {"fc1": 1, "fc2": 1}
