import math

import numpy as np
import pytest
import torch

from workbench.eval import knn_accuracy, knn_predict, nearest_neighbors, std_of_l2_normalized
from workbench.eval.knn import knn_report


def test_std_healthy_is_about_one_over_sqrt_d():
    z = torch.randn(4096, 128, generator=torch.Generator().manual_seed(0))
    assert std_of_l2_normalized(z) == pytest.approx(1 / math.sqrt(128), rel=0.03)


def test_std_collapsed_is_zero_and_accepts_numpy():
    z = np.tile(np.random.default_rng(0).normal(size=(1, 64)), (100, 1)) * 3.0
    z += 1e-6 * np.random.default_rng(1).normal(size=z.shape)
    assert std_of_l2_normalized(z) < 1e-5


def test_std_rejects_single_row():
    with pytest.raises(ValueError, match="at least 2 rows"):
        std_of_l2_normalized(torch.randn(1, 8))


def _reference_knn(train, ytr, test, k, t, c):
    """Independent loop implementation of the InstDisc/Lightly weighted vote."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    out = np.zeros((len(test), c))
    for i, q in enumerate(test):
        sims = train @ q
        order = np.argsort(-sims, kind="stable")[:k]
        for j in order:
            out[i, ytr[j]] += math.exp(sims[j] / t)
    return out


@pytest.mark.parametrize("k,t", [(1, 0.1), (5, 0.07), (20, 0.5), (500, 0.1)])
def test_knn_matches_independent_recomputation(k, t):
    rng = np.random.default_rng(k)
    centers = rng.normal(size=(4, 16))
    ytr = rng.integers(0, 4, size=120)
    yte = rng.integers(0, 4, size=50)
    train = centers[ytr] + 1.2 * rng.normal(size=(120, 16))
    test = centers[yte] + 1.2 * rng.normal(size=(50, 16))
    ref = _reference_knn(train, ytr, test, min(k, 120), t, 4)
    scores = knn_predict(train, ytr, test, k=k, temperature=t).numpy()
    assert scores.shape == (50, 4)
    np.testing.assert_allclose(scores, ref, rtol=1e-4)
    acc = knn_accuracy(torch.tensor(train), torch.tensor(ytr), test, yte, k=k, temperature=t)
    assert acc == pytest.approx(float((ref.argmax(1) == yte).mean()))
    assert 0.3 < acc <= 1.0  # clustered data: well above chance (0.25)


def test_knn_report_top5_per_class_and_confusion():
    rng = np.random.default_rng(0)
    ytr = np.repeat(np.arange(8), 20)
    train = np.eye(8)[ytr] + 0.3 * rng.normal(size=(160, 8))
    yte = np.arange(8)
    test = np.eye(8)
    test[7] = np.eye(8)[6]  # class 7's query sits on class 6: a known confusion
    rep = knn_report(train, ytr, test, yte, k=10)
    assert rep["top1"] == pytest.approx(7 / 8)
    assert rep["top5"] >= rep["top1"]
    assert rep["confusion"].shape == (8, 8) and rep["confusion"][7, 6] == 1
    assert rep["confusion"].sum() == 8
    np.testing.assert_allclose(rep["per_class"], [1, 1, 1, 1, 1, 1, 1, 0])
    assert list(rep["predictions"][:7]) == list(range(7))


def test_knn_chunking_large_query_set_is_consistent():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(300, 8, generator=g), torch.randn(2500, 8, generator=g)
    ytr = torch.randint(0, 3, (300,), generator=g)
    full = knn_predict(train, ytr, test, k=7)
    part = knn_predict(train, ytr, test[2000:], k=7)
    torch.testing.assert_close(full[2000:], part)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(k=0), "k must be >= 1"),
        (dict(temperature=0.0), "temperature"),
        (dict(train_labels=np.array([0, 1, -1])), "negative labels"),
        (dict(train_labels=np.array([0, 1])), "2 entries but the features have 3"),
        (dict(test_feats=np.ones((2, 5))), "5 dims"),
        (dict(train_feats=np.ones((0, 4))), "empty"),
    ],
)
def test_knn_bad_inputs(kwargs, match):
    args = dict(
        train_feats=np.ones((3, 4)), train_labels=np.array([0, 1, 1]), test_feats=np.ones((2, 4))
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        knn_predict(**args)


def test_nearest_neighbors_indexed_query_comes_first_even_with_duplicates():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(50, 6)).astype(np.float32)
    f[10] = f[3]  # exact duplicate of the query
    idx, dist = nearest_neighbors(f, 3, k=4)
    assert idx.shape == (4,) and idx[0] == 3 and dist[0] == 0
    assert idx[1] == 10 and dist[1] == pytest.approx(0, abs=1e-6)
    assert np.all(np.diff(dist) >= -1e-6)
    fn = f / np.linalg.norm(f, axis=1, keepdims=True)
    ref = [i for i in np.argsort(-(fn @ fn[3]), kind="stable") if i not in (3, 10)]
    assert list(idx[2:]) == ref[:2]
    np.testing.assert_allclose(dist[1:], 1 - fn[idx[1:]] @ fn[3], atol=1e-5)


def test_nearest_neighbors_multiple_indices_and_vectors():
    f = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], dtype=np.float32)
    idx, dist = nearest_neighbors(f, [0, 2], k=2)
    assert idx.tolist() == [[0, 1], [2, 1]]
    assert dist.shape == (2, 2) and np.all(dist[:, 0] == 0)
    idx, dist = nearest_neighbors(f, np.array([0.0, -1.0]), k=10)  # k clipped to N
    assert idx.shape == (4,) and idx[-1] == 2 and dist[-1] == pytest.approx(2.0)
    idx, _ = nearest_neighbors(torch.tensor(f), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), k=1)
    assert idx.tolist() == [[3], [0]]
    assert nearest_neighbors(f, -1, k=1)[0].tolist() == [3]


@pytest.mark.parametrize(
    "query,match", [(7, "out of range for 4"), (np.ones(3), "3 dims"), ([], "empty")]
)
def test_nearest_neighbors_bad_query(query, match):
    with pytest.raises(ValueError, match=match):
        nearest_neighbors(np.eye(4), query, k=2)


def test_knn_leave_one_out_matches_reference_without_self():
    from workbench.eval.knn import knn_leave_one_out

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 40)
    x = np.eye(3)[y] * 2 + rng.normal(size=(40, 3))
    rep = knn_leave_one_out(x, y, k=5, temperature=0.2)
    ref_pred = [
        _reference_knn(np.delete(x, i, 0), np.delete(y, i), x[i : i + 1], 5, 0.2, 3)[0].argmax()
        for i in range(40)
    ]
    np.testing.assert_array_equal(rep["predictions"], ref_pred)
    assert rep["top1"] == pytest.approx(np.mean(np.array(ref_pred) == y))
    assert rep["confusion"].sum() == 40
    # with self allowed to vote, every point would trivially find itself: LOO must not
    dup = knn_leave_one_out(np.eye(4), [0, 1, 2, 3], k=1)
    assert dup["top1"] == 0.0
