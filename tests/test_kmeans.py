import warnings

import numpy as np
import pytest

from emkit import ConvergenceWarning, KMeans, NotFittedError
from emkit.datasets import load_faithful
from emkit.models.kmeans import kmeans_plusplus

from conftest import make_blobs


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_agrees_with_sklearn_from_same_centres(seed, weighted):
    sk = pytest.importorskip("sklearn.cluster")
    X, _, _ = make_blobs(n=2000, D=4, K=6, seed=seed, spread=3.0)
    rng = np.random.default_rng(seed)
    init = X[rng.choice(len(X), 6, replace=False)]
    sw = rng.uniform(0.5, 2.0, size=len(X)) if weighted else None
    ref = sk.KMeans(6, init=init, n_init=1, algorithm="lloyd", max_iter=300, tol=1e-4).fit(X, sample_weight=sw)
    ours = KMeans(6, init=init, n_init=1, max_iter=300, tol=1e-4).fit(X, sample_weight=sw)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-9)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours.score(X), ref.score(X), rtol=1e-9)


def test_fixed_iterations_match_sklearn():
    sk = pytest.importorskip("sklearn.cluster")
    X, _, _ = make_blobs(n=3000, D=3, K=8, seed=4, spread=1.0)
    init = X[:8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sk.KMeans(8, init=init, n_init=1, max_iter=3, tol=0).fit(X)
        ours = KMeans(8, init=init, n_init=1, max_iter=3, tol=0).fit(X)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-9)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)


def test_recovers_blobs():
    from sklearn.metrics import adjusted_rand_score

    X, labels, _ = make_blobs(n=1500, D=2, K=4, seed=8, spread=12.0)
    km = KMeans(4, random_state=0, n_init=3).fit(X)
    assert adjusted_rand_score(labels, km.labels_) > 0.95
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    np.testing.assert_array_equal(KMeans(4, random_state=0, n_init=3).fit_predict(X), km.labels_)


@pytest.fixture(params=["fused", "bounds", "bounds-ranked"])
def lloyd_path(request, monkeypatch):
    """Run a test with each Lloyd path whatever the number of features and centres: the fused full
    pass, Yinyang bounds with exact reassignments, and with reassignments ranked in float32."""
    from emkit.models import kmeans

    monkeypatch.setattr(kmeans, "BOUNDS_MIN_FEATURES", 10**9 if request.param == "fused" else 1)
    monkeypatch.setattr(kmeans, "RANKED_MIN_WORK", 0 if request.param == "bounds-ranked" else 10**9)
    return request.param


@pytest.mark.parametrize("D, K, weighted, max_iter", [(2, 8, False, 300), (12, 35, True, 300), (6, 64, False, 7),
                                                      (20, 12, False, 4)])
def test_both_lloyd_paths_match_sklearn(lloyd_path, D, K, weighted, max_iter):
    """Labels, centres, inertia and iteration count as scikit-learn's from the same centres, for each
    path (K=35 and 64: several groups of centres), overlapping clusters (bounds often fail)."""
    sk = pytest.importorskip("sklearn.cluster")
    X, _, _ = make_blobs(n=4000, D=D, K=K, seed=D + K, spread=1.5)
    rng = np.random.default_rng(K)
    init = X[rng.choice(len(X), K, replace=False)]
    sw = rng.uniform(0.5, 2.0, size=len(X)) if weighted else None
    kw = dict(init=init, n_init=1, max_iter=max_iter, tol=0 if max_iter < 300 else 1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sk.KMeans(K, algorithm="lloyd", **kw).fit(X, sample_weight=sw)
        ours = KMeans(K, **kw).fit(X, sample_weight=sw)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-9)
    assert ours.n_iter_ == ref.n_iter_


def test_lloyd_paths_agree_with_brute_force_each_iteration(lloyd_path):
    """Every iteration's labels are the nearest centres by brute force (with empty clusters
    relocated and repeated rows: exact ties between centres)."""
    from emkit.models.kmeans import lloyd

    X, _, _ = make_blobs(n=1500, D=11, K=5, seed=3, spread=2.0)
    X = np.concatenate([X, X[:300], np.full((5, 11), 40.0)])  # repeated rows, a far group
    init = np.concatenate([X[:9], np.full((1, 11), 1e3)])  # the last centre attracts nothing at first
    for it in range(1, 8):
        labels, inertia, new, n_iter, _ = lloyd(X, init, max_iter=it, tol=0.0)
        assert n_iter == it
        d2 = ((X[:, None, :] - new[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(labels, d2.argmin(axis=1))
        np.testing.assert_allclose(inertia, d2.min(axis=1).sum(), rtol=1e-12)
    assert np.bincount(labels, minlength=10).min() > 0


@pytest.mark.parametrize("far", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bounds_first_pass_labels_are_exact_nearest_with_ties(dtype, far):
    """The Yinyang pass ranks centres by a float32 BLAS product and keeps a label only when it wins
    by more than the rounding of that ranking; near ties go to exact distances.  Integer data with
    duplicated centres and rows equidistant from several centres (exact ties, lowest index wins),
    and (``far``) rows far from the origin (the ranking loses all digits there): the labels are
    the nearest centres by exact distances, the bounds hold."""
    from emkit.inference._kernels import yinyang_step
    from emkit.models.kmeans import _centre_groups, _half_separation

    rng = np.random.default_rng(5)
    D, K = 12, 40
    C = rng.integers(-3, 4, size=(K, D)).astype(np.float64)
    C[7] = C[3]  # a duplicated centre
    if far:  # half the centres far out: float32 products of the ranking round by more than unit distances
        C[20:] = C[:20] + 1e7
        C[25, 0] += 1.0  # a centre one unit from another, far out
    X = np.concatenate([rng.integers(-4, 5, size=(3000, D)), rng.integers(-4, 5, size=(2000, D)) + (1e7 if far else 2),
                        (C[:20:2] + C[1:20:2]) / 2, (C[20::2] + C[21::2]) / 2, C]).astype(dtype)
    n = X.shape[0]
    group_of = _centre_groups(C)
    G = int(group_of.max()) + 1
    labels, upper, glower = np.zeros(n, dtype=np.int64), np.full(n, np.inf), np.zeros((n, G), dtype=np.float32)
    sums, counts = np.zeros((K, D)), np.zeros(K)
    yinyang_step(X, C, group_of, np.zeros(K), np.zeros(G), _half_separation(C), np.empty(0), labels, upper, glower,
                 sums, counts, False)
    Xd = X.astype(np.float64)
    d2 = ((Xd[:, None, :] - C[None]) ** 2).sum(-1)  # integers up to 2^53 here: exact in any order
    np.testing.assert_array_equal(labels, d2.argmin(axis=1))
    d = np.sqrt(d2)
    np.testing.assert_allclose(upper, d[np.arange(n), labels], rtol=1e-15)
    other = d.copy()
    other[np.arange(n), labels] = np.inf
    for g in range(G):
        assert np.all(glower[:, g] <= other[:, group_of == g].min(axis=1) * (1 + 1e-15))
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=K))


def test_kmeans_plusplus_spreads_centres():
    X, _, means = make_blobs(n=3000, D=2, K=5, seed=3, spread=30.0)
    centers, idx = kmeans_plusplus(X, 5, np.random.default_rng(0))
    np.testing.assert_array_equal(centers, X[idx])
    nearest_true = np.argmin(((centers[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert len(set(nearest_true)) == 5


def test_inertia_never_increases_during_lloyd():
    X, _, _ = make_blobs(n=1000, D=2, K=6, seed=2, spread=2.0)
    prev = np.inf
    centers = X[:6]
    for it in range(1, 15):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            km = KMeans(6, init=centers, max_iter=it, tol=0).fit(X)
        assert km.inertia_ <= prev + 1e-9
        prev = km.inertia_


def test_empty_cluster_is_relocated():
    X = np.concatenate([np.random.default_rng(0).normal(size=(50, 2)), np.random.default_rng(1).normal(size=(50, 2)) + 10])
    init = np.array([[0.0, 0.0], [10.0, 10.0], [1000.0, 1000.0]])  # third centre attracts nothing
    km = KMeans(3, init=init).fit(X)
    assert np.bincount(km.labels_, minlength=3).min() > 0


def test_sample_weight_equals_repetition():
    X, _, _ = make_blobs(n=300, D=2, K=3, seed=1)
    w = np.random.default_rng(0).integers(1, 4, size=len(X))
    a = KMeans(3, init=X[:3]).fit(X, sample_weight=w)
    b = KMeans(3, init=X[:3]).fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-10)
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=1e-10)


def test_float32_kept():
    X = load_faithful().data
    a = KMeans(2, init=X[:2]).fit(X)
    b = KMeans(2, init=X[:2]).fit(X.astype(np.float32))
    assert b.cluster_centers_.dtype == np.float32
    np.testing.assert_allclose(b.cluster_centers_, a.cluster_centers_, rtol=1e-4)


def test_fewer_distinct_points_warns_and_terminates():
    X = np.array([[0.0, 0.0], [1.0, 1.0]] * 20)
    with pytest.warns(ConvergenceWarning, match="distinct clusters"):
        km = KMeans(4, random_state=0).fit(X)
    assert km.n_iter_ < 300


@pytest.mark.parametrize("kw, match", [
    (dict(n_clusters=0), "n_clusters"),
    (dict(tol=-1.0), "tol"),
    (dict(max_iter=0), "max_iter"),
    (dict(init="banana"), "init"),
    (dict(init=np.zeros((3, 5))), r"init must have shape \(2, 2\)"),
    (dict(n_init=0), "n_init"),
])
def test_bad_hyperparameters(kw, match):
    kw = {"n_clusters": 2, **kw}
    with pytest.raises(ValueError, match=match):
        KMeans(**kw).fit(load_faithful().data)


def test_bad_input_and_not_fitted():
    with pytest.raises(ValueError, match="NaN"):
        KMeans(2).fit(np.array([[np.nan, 1.0], [1, 2], [3, 4]]))
    with pytest.raises(ValueError, match="n_samples=1 should be >= n_clusters=2"):
        KMeans(2).fit(np.array([[1.0, 2.0]]))
    with pytest.raises(NotFittedError):
        KMeans(2).predict(np.zeros((3, 2)))
    km = KMeans(2, random_state=0).fit(load_faithful().data)
    with pytest.raises(ValueError, match="features"):
        km.predict(np.zeros((3, 3)))
