"""The .npy interchange format: round trip, and a clear DataError for each kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ens_slow import random_pool

from secateurs.ensembles import (
    PROB_SUM_TOLERANCE,
    PredictionPool,
    load_predictions,
    save_predictions,
    softmax,
)
from secateurs.errors import DataError


def _arrays(m=3, n=20, c=4, seed=0):
    probs, labels = random_pool(seed, m, n, c, copies=False)
    tp, tl = random_pool(seed + 1, m, 10, c, copies=False)
    return [f"net-{i}" for i in range(m)], probs, labels, tp, tl


def test_round_trip_with_test_split_and_costs(tmp_path):
    names, probs, labels, tp, tl = _arrays()
    costs = {n: {"params": 10 * (i + 1), "macs": 7.5 * (i + 1)} for i, n in enumerate(names)}
    save_predictions(tmp_path / "pool", names, probs, labels, tp, tl, costs=costs)
    assert sorted(p.name for p in (tmp_path / "pool").iterdir()) == sorted(
        [f"{n}.npy" for n in names] + ["labels.npy", "costs.json", "pool.json", "test"])
    pool = load_predictions(tmp_path / "pool")
    assert pool.names == tuple(names)
    np.testing.assert_array_equal(pool.selection.probs, probs)
    np.testing.assert_array_equal(pool.selection.labels, labels)
    np.testing.assert_array_equal(pool.test.probs, tp)
    np.testing.assert_array_equal(pool.test.labels, tl)
    np.testing.assert_array_equal(pool.costs["params"], [10, 20, 30])
    np.testing.assert_array_equal(pool.costs["macs"], [7.5, 15, 22.5])
    # no temporary files left behind by the atomic writes
    assert not [p for p in (tmp_path / "pool").rglob(".*")]
    # rewriting the same pool over itself works; PredictionPool.save is the same writer
    pool.save(tmp_path / "pool")
    assert PredictionPool.from_directory(tmp_path / "pool").names == tuple(names)


def test_files_written_by_numpy_alone_load_in_name_order(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 8)
    np.save(tmp_path / "labels.npy", labels)
    for name in ("zeta", "alpha", "Mid model"):
        np.save(tmp_path / f"{name}.npy", rng.dirichlet(np.ones(3), size=8).astype(np.float32))
    pool = load_predictions(tmp_path)
    assert pool.names == ("Mid model", "alpha", "zeta")
    assert pool.selection.probs.dtype == np.float32 and pool.test is None


def test_logits_are_softmaxed(tmp_path):
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=30, size=(2, 6, 3))
    labels = rng.integers(0, 3, 6)
    np.save(tmp_path / "labels.npy", labels)
    for i in range(2):
        np.save(tmp_path / f"m{i}.npy", logits[i])
    with pytest.raises(DataError, match="--logits"):
        load_predictions(tmp_path)
    pool = load_predictions(tmp_path, logits=True)
    ex = np.exp(logits - logits.max(axis=2, keepdims=True))
    np.testing.assert_allclose(pool.selection.probs, ex / ex.sum(axis=2, keepdims=True))
    np.testing.assert_allclose(softmax(np.array([[1000.0, 1000.0]])), [[0.5, 0.5]])


def _write(tmp_path, arrays, labels, test=None):
    np.save(tmp_path / "labels.npy", labels)
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
    if test is not None:
        (tmp_path / "test").mkdir()
        t_arrays, t_labels = test
        np.save(tmp_path / "test" / "labels.npy", t_labels)
        for name, a in t_arrays.items():
            np.save(tmp_path / "test" / f"{name}.npy", a)


def _p(n=5, c=3, seed=0):
    return np.random.default_rng(seed).dirichlet(np.ones(c), size=n)


def test_shapes_that_differ_between_models(tmp_path):
    _write(tmp_path, {"a": _p(5), "b": _p(6)}, np.zeros(5, dtype=int))
    with pytest.raises(DataError, match=r"'b' has shape \(6, 3\) but model 'a' has \(5, 3\)"):
        load_predictions(tmp_path)


def test_probabilities_that_do_not_sum_to_one_state_the_tolerance(tmp_path):
    bad = _p()
    bad[2] *= 1.01
    _write(tmp_path, {"a": _p(), "b": bad}, np.zeros(5, dtype=int))
    with pytest.raises(DataError, match=f"sample 2 sum to .* within {PROB_SUM_TOLERANCE:g}"):
        load_predictions(tmp_path)


def test_labels_out_of_range(tmp_path):
    _write(tmp_path, {"a": _p(), "b": _p()}, np.array([0, 1, 2, 3, 0]))
    with pytest.raises(DataError, match="label 3 is out of range.*0..2"):
        load_predictions(tmp_path)


def test_nan_values(tmp_path):
    bad = _p()
    bad[1, 0] = np.nan
    _write(tmp_path, {"a": _p(), "b": bad}, np.zeros(5, dtype=int))
    with pytest.raises(DataError, match="'b' has a non-finite value .* sample 1"):
        load_predictions(tmp_path)


def test_test_split_with_other_model_names(tmp_path):
    _write(tmp_path, {"a": _p(), "b": _p()}, np.zeros(5, dtype=int),
           test=({"a": _p(4), "c": _p(4)}, np.zeros(4, dtype=int)))
    with pytest.raises(DataError, match=r"test split .* has models \['a', 'c'\].*\['a', 'b'\]"):
        load_predictions(tmp_path)


def test_fewer_than_two_models(tmp_path):
    _write(tmp_path, {"only": _p()}, np.zeros(5, dtype=int))
    with pytest.raises(DataError, match="at least 2"):
        load_predictions(tmp_path)
    with pytest.raises(DataError, match="at least 2"):
        PredictionPool.from_arrays(["a"], [_p()], np.zeros(5, dtype=int))


def test_missing_folder_labels_and_pickles(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_predictions(tmp_path / "nope")
    np.save(tmp_path / "a.npy", _p())
    np.save(tmp_path / "b.npy", _p())
    with pytest.raises(DataError, match="labels.npy is missing"):
        load_predictions(tmp_path)
    np.save(tmp_path / "labels.npy", np.array([{"x": 1}] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a plain numeric"):
        load_predictions(tmp_path)
    (tmp_path / "labels.npy").write_text("0,1,2,0,1\n")  # a text file named .npy
    with pytest.raises(DataError, match="labels.npy: not a .npy file .*np.save"):
        load_predictions(tmp_path)
    np.save(tmp_path / "labels.npy", np.zeros(5, dtype=np.float32))
    with pytest.raises(DataError, match="labels must be integers"):
        load_predictions(tmp_path)


def test_bad_costs(tmp_path):
    _write(tmp_path, {"a": _p(), "b": _p()}, np.zeros(5, dtype=int))
    (tmp_path / "costs.json").write_text(json.dumps({"a": {"params": 1}, "c": {"params": 2}}))
    with pytest.raises(DataError, match=r"not in the pool: \['c'\]"):
        load_predictions(tmp_path)
    (tmp_path / "costs.json").write_text(json.dumps({"a": {"params": 1}, "b": {"flops": 2}}))
    with pytest.raises(DataError, match="unknown keys"):
        load_predictions(tmp_path)
    (tmp_path / "costs.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_predictions(tmp_path)
    # JSON integers have no size limit; one too large for a float is refused, not a traceback
    (tmp_path / "costs.json").write_text('{"a": {"params": 1}, "b": {"params": 1%s}}' % ("0" * 400))
    with pytest.raises(DataError, match=r"cost 'params' of model 'b' is 1000.*401 digits"):
        load_predictions(tmp_path)


def test_writer_validates_and_refuses_foreign_files(tmp_path):
    names, probs, labels, tp, tl = _arrays()
    with pytest.raises(DataError, match="cannot be used as a file name"):
        save_predictions(tmp_path / "x", ["a/b", "c", "d"], probs, labels)
    with pytest.raises(DataError, match="cannot be used as a file name"):
        save_predictions(tmp_path / "x", ["labels", "c", "d"], probs, labels)
    with pytest.raises(DataError, match="unique"):
        save_predictions(tmp_path / "x", ["a", "a", "d"], probs, labels)
    with pytest.raises(DataError, match="sum to"):
        save_predictions(tmp_path / "x", names, probs * 0.9, labels)
    assert not (tmp_path / "x").exists()  # nothing written for invalid input
    save_predictions(tmp_path / "y", names, probs, labels, tp, tl)
    with pytest.raises(DataError, match="another pool"):
        save_predictions(tmp_path / "y", ["p", "q", "r"], probs, labels)
    with pytest.raises(DataError, match="another pool"):  # would leave a stale test split
        save_predictions(tmp_path / "y", names, probs, labels)


def test_manifest_orders_models_and_must_match_the_files(tmp_path):
    names, probs, labels, tp, tl = _arrays(m=3)
    order = [names[2], names[0], names[1]]
    save_predictions(tmp_path / "p", order, probs, labels, tp, tl)
    pool = load_predictions(tmp_path / "p")
    assert pool.names == tuple(order)
    np.testing.assert_array_equal(pool.selection.probs, probs)
    np.testing.assert_array_equal(pool.test.probs, tp)  # test split follows the same order
    manifest = tmp_path / "p" / "pool.json"
    assert json.loads(manifest.read_text()) == {"models": order}
    manifest.write_text(json.dumps({"models": order[:2]}))
    with pytest.raises(DataError, match=r"files not in the manifest: \['net-1.npy'\]"):
        load_predictions(tmp_path / "p")
    manifest.write_text(json.dumps({"models": [*order, "ghost"]}))
    with pytest.raises(DataError, match=r"missing files: \['ghost.npy'\]"):
        load_predictions(tmp_path / "p")
    manifest.write_text(json.dumps({"models": [order[0], order[0], order[1], order[2]]}))
    with pytest.raises(DataError, match="lists a model twice"):
        load_predictions(tmp_path / "p")
    manifest.write_text(json.dumps(["a", "b"]))
    with pytest.raises(DataError, match='must be {"models"'):
        load_predictions(tmp_path / "p")
    manifest.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_predictions(tmp_path / "p")


def test_more_than_62_models_load(tmp_path):
    probs, labels = random_pool(3, 65, 12, 3, copies=False)
    names = [f"m{i:02d}" for i in range(65)]
    pool = PredictionPool.from_arrays(names, probs, labels)
    assert pool.num_models == 65
    save_predictions(tmp_path / "big", names, probs, labels)
    assert load_predictions(tmp_path / "big").names == tuple(names)


def test_files_that_look_like_models_are_said_not_silently_dropped(tmp_path):
    import os
    import warnings

    from secateurs.errors import DataWarning

    _write(tmp_path, {"a": _p(), "b": _p()}, np.zeros(5, dtype=int))
    np.save(tmp_path / "c.npy", _p())
    os.rename(tmp_path / "c.npy", tmp_path / "C.NPY")
    with pytest.warns(DataWarning, match=r"C\.NPY ignored; .* lower-case \.npy"):
        assert load_predictions(tmp_path).names == ("a", "b")
    os.remove(tmp_path / "C.NPY")
    os.symlink(tmp_path / "gone.npy", tmp_path / "d.npy")
    with pytest.raises(DataError, match=r"d\.npy is a link to a file that does not exist"):
        load_predictions(tmp_path)
    os.remove(tmp_path / "d.npy")
    np.save(tmp_path / "caf\u00e9.npy", _p())  # composed
    np.save(tmp_path / "cafe\u0301.npy", _p())  # decomposed: prints the same
    with pytest.raises(DataError, match="two Unicode forms"):
        load_predictions(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="two Unicode forms"):
            save_predictions(tmp_path / "out", ["caf\u00e9", "cafe\u0301"], np.stack([_p(), _p()]),
                             np.zeros(5, dtype=int))
