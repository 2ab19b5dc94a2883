"""Numerical kernels and counts that whole-fit tests do not pin down: extreme log-densities,
parameter counts of the information criteria, Viterbi ties, the k-means++ seeding distribution,
and precision matrices that are symmetric only to rounding."""

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp

from emkit import ARHMM, CategoricalHMM, GaussianHMM, GaussianMixture, PoissonHMM
from emkit.inference import hmm as inference
from emkit.inference._kernels import normalize_log_resp
from emkit.models.kmeans import kmeans_plusplus


def test_normalisation_kernel_matches_logsumexp_on_extreme_rows():
    lp = np.array([[-800.0, -801.0, -900.0],   # below exp's range under every component
                   [-1e5, -1e5 + 3.0, -np.inf],
                   [0.0, -1000.0, -2.0],
                   [-np.inf, -np.inf, -np.inf]])
    expected_norm = logsumexp(lp, axis=1)
    with np.errstate(invalid="ignore"):
        expected = np.exp(lp - expected_norm[:, None])
    out, norm = lp.copy(), np.empty(lp.shape[0])
    normalize_log_resp(out, norm)
    np.testing.assert_allclose(norm[:3], expected_norm[:3], rtol=1e-14)
    np.testing.assert_allclose(out[:3], expected[:3], rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(out[:3].sum(axis=1), 1.0, rtol=1e-14)
    assert norm[3] == -np.inf and np.all(out[3] == 0)


def test_fit_with_a_far_outlier_stays_finite():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(6, 1, (100, 2)), [[400.0, -400.0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = GaussianMixture(2, covariance_type="diag", random_state=0, on_collapse="warn").fit(X)
    assert np.all(np.isfinite(m.lower_bounds_))
    proba = m.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.isfinite(m.score_samples(X[-1:])[0])


@pytest.mark.parametrize("cov_type,n_cov", [("full", 3 * 3), ("diag", 3 * 2), ("spherical", 3), ("tied", 3)])
def test_gaussian_hmm_parameter_count(cov_type, n_cov):
    K, D = 3, 2
    m = _fitted(GaussianHMM(K, covariance_type=cov_type, max_iter=3, random_state=0), D)
    assert m._n_parameters() == (K - 1) + K * (K - 1) + K * D + n_cov


def _fitted(model, D, kind="gaussian"):
    rng = np.random.default_rng(1)
    if kind == "categorical":
        X = rng.integers(0, 4, size=(80, 1))
    elif kind == "poisson":
        X = rng.poisson(3.0, size=(80, D))
    else:
        X = rng.normal(size=(80, D))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, [40, 40])


def test_other_hmm_parameter_counts():
    K = 3
    assert _fitted(CategoricalHMM(K, max_iter=2, random_state=0), 1, "categorical")._n_parameters() == \
        (K - 1) + K * (K - 1) + K * (4 - 1)
    assert _fitted(PoissonHMM(K, max_iter=2, random_state=0), 2, "poisson")._n_parameters() == \
        (K - 1) + K * (K - 1) + K * 2
    # AR(2), D = 2: coefficients D x 2D, intercepts D, full noise covariance
    assert _fitted(ARHMM(K, order=2, max_iter=2, random_state=0), 2)._n_parameters() == \
        (K - 1) + K * (K - 1) + K * (2 * 4 + 2 + 3)


@pytest.mark.parametrize("cov_type", ["full", "diag", "spherical", "tied"])
def test_bic_and_aic_agree_with_hmmlearn(cov_type):
    hmm = pytest.importorskip("hmmlearn.hmm")
    ours = _fitted(GaussianHMM(3, covariance_type=cov_type, max_iter=3, random_state=0), 2)
    X = np.random.default_rng(2).normal(size=(60, 2))
    ref = hmm.GaussianHMM(3, covariance_type=cov_type, init_params="")
    ref.n_features = 2
    ref.startprob_, ref.transmat_, ref.means_ = ours.startprob_, ours.transmat_, ours.means_
    ref.covars_ = ours.covars_
    np.testing.assert_allclose(ours.bic(X), ref.bic(X), rtol=1e-9)
    np.testing.assert_allclose(ours.aic(X), ref.aic(X), rtol=1e-9)


def test_viterbi_breaks_ties_towards_the_lowest_state():
    K, n = 2, 7
    frame = np.zeros((n, K))  # two identical states
    log_prob, path = inference.viterbi(np.full(K, 0.5), np.full((K, K), 0.5), frame)
    np.testing.assert_array_equal(path, np.zeros(n, dtype=int))
    np.testing.assert_allclose(log_prob, n * np.log(0.5))
    m = GaussianHMM.from_params(np.full(3, 1 / 3), np.full((3, 3), 1 / 3), means=np.zeros((3, 1)),
                                covars=np.ones((3, 1)))
    np.testing.assert_array_equal(m.predict(np.zeros((5, 1))), np.zeros(5, dtype=int))


def test_kmeans_plusplus_draws_proportionally_to_squared_distance():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    rng = np.random.default_rng(0)
    second = []
    for _ in range(6000):
        _, idx = kmeans_plusplus(X, 2, rng, n_local_trials=1)
        if idx[0] == 0:
            second.append(idx[1])
    freq = np.bincount(second, minlength=4)[1:] / len(second)
    # distances 1, 2, 3 from the first centre: probabilities 1/14, 4/14, 9/14 (not 1/6, 2/6, 3/6)
    np.testing.assert_allclose(freq, np.array([1, 4, 9]) / 14, atol=0.035)


def test_precisions_symmetric_to_rounding_are_accepted():
    # the inverse of a real 64 x 64 covariance (digits) is symmetric only to about 1e-10 of its scale
    rng = np.random.default_rng(3)
    D = 64
    A = rng.normal(size=(D, D)) / np.sqrt(D)
    X = rng.normal(size=(500, D)) @ A + rng.normal(size=D) * 10
    prec = np.linalg.inv(np.cov(X.T))
    noise = rng.normal(size=(D, D))
    prec = prec + 1e-10 * np.abs(prec).max() * (noise - noise.T)
    means = X[:2]
    for cov_type, p in (("full", np.stack([prec, prec])), ("tied", prec)):
        m = GaussianMixture(2, covariance_type=cov_type, precisions_init=p, means_init=means, max_iter=2,
                            random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(X)
        assert np.all(np.isfinite(m.means_))
    # a matrix that is not symmetric beyond rounding is still refused, naming the parameter
    bad = prec.copy()
    bad[0, 1] += 1e-3 * np.abs(prec).max()
    with pytest.raises(ValueError, match=r"precisions_init\[0\] must be symmetric"):
        GaussianMixture(2, precisions_init=np.stack([bad, prec]), means_init=means).fit(X)
