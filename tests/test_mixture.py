import warnings

import numpy as np
import pytest

import emkit
from emkit import ConvergenceWarning, GaussianMixture, NotFittedError
from emkit.datasets import load_faithful

from conftest import make_blobs

COV_TYPES = ["full", "diag", "spherical", "tied"]


def _initial(X, K, cov_type, seed=1):
    rng = np.random.default_rng(seed)
    D = X.shape[1]
    weights = rng.dirichlet(np.ones(K) * 5)
    means = X[rng.choice(len(X), K, replace=False)] + rng.normal(scale=0.1, size=(K, D))
    var = X.var(axis=0)
    if cov_type == "full":
        prec = np.stack([np.diag(1 / (var * (0.5 + k))) for k in range(K)])
    elif cov_type == "tied":
        prec = np.diag(1 / var)
    elif cov_type == "diag":
        prec = np.stack([1 / (var * (0.5 + k)) for k in range(K)])
    else:
        prec = 1 / (var.mean() * (0.5 + np.arange(K)))
    return weights, means, prec


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dataset", ["faithful", "blobs"])
def test_agrees_with_sklearn(cov_type, dataset):
    sk = pytest.importorskip("sklearn.mixture")
    X = load_faithful().data if dataset == "faithful" else make_blobs(n=500, D=3, K=3, seed=3)[0]
    K = 2 if dataset == "faithful" else 3
    w, m, p = _initial(X, K, cov_type)
    kw = dict(n_components=K, covariance_type=cov_type, tol=0, max_iter=25, weights_init=w, means_init=m,
              precisions_init=p, reg_covar=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sk.GaussianMixture(**kw, random_state=0).fit(X)
        ours = GaussianMixture(**kw, random_state=0).fit(X)
    assert ours.n_iter_ == ref.n_iter_ == 25
    np.testing.assert_allclose(ours.weights_, ref.weights_, rtol=1e-6)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.precisions_, ref.precisions_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-6)
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-6)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-6)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_allclose(ours.bic(X), ref.bic(X), rtol=1e-6)
    np.testing.assert_allclose(ours.aic(X), ref.aic(X), rtol=1e-6)


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_em_never_lowers_likelihood(cov_type, init):
    X, _, _ = make_blobs(n=400, D=3, K=4, seed=5, spread=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(4, covariance_type=cov_type, init_params=init, tol=0, max_iter=60, random_state=2).fit(X)
    lb = np.array(gm.lower_bounds_)
    assert len(lb) == 60 and np.all(np.isfinite(lb))
    steps = np.diff(lb)
    assert np.all(steps >= -1e-10 * np.abs(lb[1:])), steps.min()


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_recovers_clusters(cov_type):
    from sklearn.metrics import adjusted_rand_score

    X, labels, _ = make_blobs(n=1500, D=2, K=3, seed=11, spread=10.0)
    gm = GaussianMixture(3, covariance_type=cov_type, n_init=3, random_state=0).fit(X)
    assert adjusted_rand_score(labels, gm.predict(X)) > 0.95


def test_fit_predict_equals_fit_then_predict(blobs):
    X = blobs[0]
    a = GaussianMixture(3, random_state=4, max_iter=5, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = a.fit_predict(X)
    np.testing.assert_array_equal(labels, a.predict(X))


def test_n_init_keeps_best_run():
    X, _, _ = make_blobs(n=500, D=2, K=5, seed=2, spread=4.0)
    single = [GaussianMixture(5, init_params="random", random_state=s, max_iter=200).fit(X).lower_bound_
              for s in range(3)]
    gm = GaussianMixture(5, init_params="random", n_init=6, random_state=0, max_iter=200).fit(X)
    assert gm.lower_bound_ == pytest.approx(max(gm.init_lower_bounds_))
    assert gm.lower_bound_ == gm.lower_bounds_[-1]
    assert len(gm.init_lower_bounds_) == 6 and len(set(np.round(gm.init_lower_bounds_, 8))) > 1
    assert gm.lower_bound_ >= min(single)


def test_convergence_warning_and_tol_zero(blobs):
    with pytest.warns(ConvergenceWarning):
        gm = GaussianMixture(3, max_iter=2, tol=1e-12, random_state=0).fit(blobs[0])
    assert gm.n_iter_ == 2 and not gm.converged_
    with warnings.catch_warnings():  # tol=0 asks for exactly max_iter iterations: nothing to warn about
        warnings.simplefilter("error", ConvergenceWarning)
        gm = GaussianMixture(3, max_iter=2, tol=0, random_state=0).fit(blobs[0])
    assert gm.n_iter_ == 2 and not gm.converged_
    gm = GaussianMixture(3, random_state=0, tol=1e-3).fit(blobs[0])
    assert gm.converged_ and gm.n_iter_ < 100
    assert abs(gm.lower_bounds_[-1] - gm.lower_bounds_[-2]) < 1e-3


def test_float32_kept_and_close_to_float64(blobs):
    X = blobs[0]
    kw = dict(n_components=3, random_state=0, tol=0, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = GaussianMixture(**kw).fit(X)
        b = GaussianMixture(**kw, means_init=a.means_, weights_init=a.weights_, precisions_init=a.precisions_)
        a2 = GaussianMixture(**kw, means_init=a.means_, weights_init=a.weights_, precisions_init=a.precisions_)
        b.fit(X.astype(np.float32))
        a2.fit(X)
    np.testing.assert_allclose(b.means_, a2.means_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b.covariances_, a2.covariances_, rtol=1e-4, atol=1e-4)
    assert abs(b.lower_bound_ - a2.lower_bound_) < 1e-4


def test_sample_weight_equals_repetition(blobs):
    X = blobs[0][:200]
    w = np.random.default_rng(0).integers(1, 4, size=len(X))
    Xrep = np.repeat(X, w, axis=0)
    init = GaussianMixture(3, random_state=0).fit(X)
    kw = dict(n_components=3, tol=0, max_iter=10, weights_init=init.weights_, means_init=init.means_,
              precisions_init=init.precisions_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = GaussianMixture(**kw).fit(X, sample_weight=w)
        b = GaussianMixture(**kw).fit(Xrep)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-9)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-9)


def test_input_types():
    pd = pytest.importorskip("pandas")
    X = load_faithful().data
    ref = GaussianMixture(2, random_state=0).fit(X)
    df = pd.DataFrame(X, columns=["a", "b"])
    np.testing.assert_allclose(GaussianMixture(2, random_state=0).fit(df).means_, ref.means_)
    np.testing.assert_allclose(GaussianMixture(2, random_state=0).fit(X.tolist()).means_, ref.means_)
    Xi = np.round(X * 1000).astype(np.int64)
    gi = GaussianMixture(2, random_state=0).fit(Xi)
    assert gi.means_.dtype == np.float64


def test_chunking_does_not_change_the_answer(blobs):
    X = blobs[0]
    kw = dict(n_components=3, random_state=0, tol=0, max_iter=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = GaussianMixture(**kw).fit(X)
        b = GaussianMixture(**kw, chunk_size=37).fit(X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-10)


def test_far_from_origin_data_is_handled():
    X, _, _ = make_blobs(n=400, D=2, K=2, seed=1)
    a = GaussianMixture(2, random_state=0, covariance_type="full").fit(X)
    b = GaussianMixture(2, random_state=0, covariance_type="full").fit(X + 1e8)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-4)


def test_warm_start(blobs):
    X = blobs[0]
    gm = GaussianMixture(3, random_state=0, warm_start=True, max_iter=3, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
        first = gm.lower_bound_
        gm.fit(X)
    assert gm.lower_bound_ >= first - 1e-12


def test_sample_and_callback(blobs):
    X = blobs[0]
    seen = []
    gm = GaussianMixture(3, random_state=0).fit(X, callback=lambda info: seen.append(info["lower_bound"]))
    assert seen == gm.lower_bounds_
    Xs, z = gm.sample(500)
    assert Xs.shape == (500, 2) and z.shape == (500,)
    assert np.all(np.diff(z) >= 0)
    with pytest.raises(ValueError, match="n_samples"):
        gm.sample(0)


def test_verbose_prints(blobs, capsys):
    GaussianMixture(3, random_state=0, verbose=2).fit(blobs[0])
    out = capsys.readouterr().out
    assert "iteration 1" in out and "converged" in out


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("X, match", [
    (np.array([[1.0, np.nan], [2, np.nan], [4, np.nan]]), "feature 1 has no observed value"),
    (np.array([[1.0, np.inf], [2, 3], [4, 5]]), "infinity"),
    (np.arange(5.0), "2-D"),
    (np.zeros((3, 2, 2)), "2-D"),
    (np.zeros((0, 2)), "at least 1 sample"),
    (np.zeros((3, 0)), "0 feature"),
    (np.array([[1.0, 2.0]]), "n_samples >= n_components"),
])
def test_bad_X(X, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2).fit(X)


@pytest.mark.parametrize("kw, match", [
    (dict(n_components=0), "n_components"),
    (dict(tol=-1), "tol"),
    (dict(reg_covar=-1e-3), "reg_covar"),
    (dict(covariance_type="banana"), "covariance_type"),
    (dict(init_params="banana"), "init_params"),
    (dict(max_iter=0), "max_iter"),
    (dict(n_init=0), "n_init"),
    (dict(weights_init=[0.5, 0.2]), "weights_init must sum to 1"),
    (dict(weights_init=[0.5, 0.5, 0.0]), r"weights_init must have shape \(2,\)"),
    (dict(weights_init=[1.5, -0.5]), r"weights_init must be in \[0, 1\]"),
    (dict(means_init=np.zeros((3, 2))), r"means_init must have shape \(2, 2\)"),
    (dict(precisions_init=np.ones((2, 3, 3))), r"precisions_init must have shape \(2, 2, 2\)"),
    (dict(precisions_init=np.array([[[1.0, 2], [2, 1]], [[1, 0], [0, 1]]])), "positive definite"),
    (dict(precisions_init=np.array([[[1.0, 0.5], [0, 1]], [[1, 0], [0, 1]]])), "symmetric"),
    (dict(covariance_type="diag", precisions_init=-np.ones((2, 2))), "positive"),
    (dict(covariance_type="spherical", precisions_init=np.ones(3)), r"shape \(2,\)"),
    (dict(covariance_type="tied", precisions_init=np.ones((2, 2, 2))), r"shape \(2, 2\)"),
])
def test_bad_hyperparameters(kw, match):
    X = load_faithful().data
    kw = {"n_components": 2, **kw}
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kw).fit(X)


def test_singular_covariance_names_reg_covar():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]] * 5)  # on a line: singular
    with pytest.raises(ValueError, match="reg_covar"):
        GaussianMixture(1, reg_covar=0).fit(X)


def test_not_fitted_and_feature_mismatch(blobs):
    gm = GaussianMixture(2)
    for method in (gm.predict, gm.score, gm.predict_proba, gm.score_samples):
        with pytest.raises(NotFittedError, match="not fitted"):
            method(blobs[0])
    with pytest.raises(NotFittedError):
        gm.sample(3)
    gm.fit(blobs[0])
    with pytest.raises(ValueError, match="3 features, but GaussianMixture is expecting 2 features"):
        gm.predict(np.zeros((4, 3)))


def test_fewer_distinct_points_warns_and_terminates():
    X = np.array([[0.0, 0.0], [1.0, 1.0]] * 10)
    with pytest.warns(ConvergenceWarning, match="distinct"):
        gm = GaussianMixture(3, random_state=0, max_iter=50).fit(X)
    assert np.all(np.isfinite(gm.means_))


def test_sample_weight_validation(blobs):
    X = blobs[0]
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        GaussianMixture(2).fit(X, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        GaussianMixture(2).fit(X, sample_weight=-np.ones(len(X)))


def test_public_api_names():
    for name in ("GaussianMixture", "KMeans", "ConvergenceWarning", "NotFittedError"):
        assert hasattr(emkit, name)
    gm = GaussianMixture(3, covariance_type="diag")
    assert gm.get_params()["covariance_type"] == "diag"
    gm.set_params(n_components=4)
    assert gm.n_components == 4
    with pytest.raises(ValueError, match="(?i)invalid parameter"):
        gm.set_params(bogus=1)
