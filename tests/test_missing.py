"""Missing values (NaN): exact marginal likelihoods and EM against textbook references."""

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from emkit import GaussianHMM, GaussianMixture
from emkit.exceptions import ConvergenceWarning

COV_TYPES = ["full", "diag", "spherical", "tied"]


def _data(n=60, D=3, frac=0.25, seed=0):
    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal(size=(n // 2, D)) @ np.array([[1.0, 0.4, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.7]])[:D, :D],
              rng.normal(size=(n - n // 2, D)) * 0.8 + 3.0]
    X[rng.random(X.shape) < frac] = np.nan
    X[3] = np.nan  # a row with nothing observed
    X[7, :] = [np.nan] * (D - 1) + [1.0]
    return X


def _full(cov, kind, K, D):
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (K, D, D))
    if kind == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(D)[None]


def _compact(S, kind):
    """(K, D, D) -> diag or spherical compact covariances."""
    if kind == "diag":
        return np.stack([np.diag(s) for s in S])
    return np.array([np.trace(s) / s.shape[0] for s in S])


def _start(kind, K=2, D=3):
    rng = np.random.default_rng(5)
    means = np.array([[0.5, 0.0, -0.2], [2.5, 3.1, 2.8]])[:K, :D]
    if kind == "full":
        A = rng.normal(size=(K, D, D)) * 0.3
        cov = np.einsum("kij,klj->kil", A, A) + np.eye(D)
    elif kind == "tied":
        A = rng.normal(size=(D, D)) * 0.3
        cov = A @ A.T + np.eye(D)
    elif kind == "diag":
        cov = rng.uniform(0.5, 2.0, size=(K, D))
    else:
        cov = rng.uniform(0.5, 2.0, size=K)
    return np.array([0.4, 0.6])[:K], means, cov


def _precisions(cov, kind):
    if kind in ("full",):
        return np.stack([np.linalg.inv(c) for c in cov])
    if kind == "tied":
        return np.linalg.inv(cov)
    return 1.0 / cov


def _marginal_logpdf(x, mean, S):
    """log density of the observed entries of ``x`` (plain numpy); 0 if none is observed."""
    o = ~np.isnan(x)
    if not o.any():
        return 0.0
    return multivariate_normal(mean[o], S[np.ix_(o, o)]).logpdf(x[o])


def reference_em(X, weights, means, cov, kind, n_iter, reg=1e-6):
    """Textbook EM for a Gaussian mixture with missing values (Ghahramani & Jordan 1994), row by row."""
    n, D = X.shape
    K = means.shape[0]
    S = np.array(_full(cov, kind, K, D), dtype=float)
    w, mu = weights.copy(), means.copy()
    lower = []
    for _ in range(n_iter):
        logp = np.array([[np.log(w[k]) + _marginal_logpdf(X[i], mu[k], S[k]) for k in range(K)] for i in range(n)])
        norm = logsumexp(logp, axis=1)
        lower.append(norm.mean())
        R = np.exp(logp - norm[:, None])
        xhat = np.empty((K, n, D))
        C = np.zeros((K, n, D, D))
        for k in range(K):
            for i in range(n):
                o = ~np.isnan(X[i])
                m = ~o
                x = X[i].copy()
                if m.any():
                    if o.any():
                        A = S[k][np.ix_(m, o)] @ np.linalg.inv(S[k][np.ix_(o, o)])
                        x[m] = mu[k][m] + A @ (X[i][o] - mu[k][o])
                        C[k, i][np.ix_(m, m)] = S[k][np.ix_(m, m)] - A @ S[k][np.ix_(o, m)]
                    else:
                        x[m] = mu[k][m]
                        C[k, i] = S[k]
                xhat[k, i] = x
        Nk = R.sum(axis=0)
        w = Nk / Nk.sum()
        mu = np.stack([R[:, k] @ xhat[k] / Nk[k] for k in range(K)])
        scatter = np.stack([sum(R[i, k] * (np.outer(xhat[k, i] - mu[k], xhat[k, i] - mu[k]) + C[k, i])
                                for i in range(n)) for k in range(K)])
        if kind == "tied":
            T = scatter.sum(axis=0) / n + reg * np.eye(D)
            S = np.broadcast_to(T, (K, D, D)).copy()
            cov = T
        elif kind == "full":
            cov = scatter / Nk[:, None, None] + reg * np.eye(D)
            S = cov
        else:
            cov = _compact(scatter / Nk[:, None, None], kind) + reg
            S = np.array(_full(cov, kind, K, D))
    return w, mu, cov, np.array(lower)


@pytest.mark.parametrize("kind", COV_TYPES)
def test_mixture_matches_reference_em_with_missing_values(kind):
    X = _data()
    w0, m0, c0 = _start(kind)
    gm = GaussianMixture(2, covariance_type=kind, weights_init=w0, means_init=m0,
                         precisions_init=_precisions(c0, kind), max_iter=20, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    w, mu, cov, lower = reference_em(X, w0, m0, c0, kind, 20)
    np.testing.assert_allclose(gm.lower_bounds_, lower, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gm.weights_, w, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gm.means_, mu, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(gm.covariances_, cov, rtol=1e-8, atol=1e-8)
    assert np.all(np.diff(gm.lower_bounds_) > -1e-12)  # EM on the observed-data likelihood is monotone
    # the objective is the observed-data log-likelihood per row
    np.testing.assert_allclose(gm.score(X), reference_em(X, w, mu, cov, kind, 1)[3][0], rtol=1e-10)


def _forward_backward(log_start, log_trans, frame):
    """Log-space forward-backward: (log p(X), posteriors (T, K))."""
    T, K = frame.shape
    la = np.empty((T, K))
    lb = np.zeros((T, K))
    la[0] = log_start + frame[0]
    for t in range(1, T):
        la[t] = logsumexp(la[t - 1][:, None] + log_trans, axis=0) + frame[t]
    for t in range(T - 2, -1, -1):
        lb[t] = logsumexp(log_trans + (frame[t + 1] + lb[t + 1])[None, :], axis=1)
    ll = logsumexp(la[-1])
    return ll, np.exp(la + lb - ll)


@pytest.mark.parametrize("kind", COV_TYPES)
def test_hmm_posteriors_match_forward_backward_over_marginal_densities(kind):
    X = _data(n=40, seed=1)
    X[10:13] = np.nan  # a gap: the chain carries the state through it
    _, means, cov = _start(kind)
    startprob = np.array([0.3, 0.7])
    transmat = np.array([[0.9, 0.1], [0.2, 0.8]])
    model = GaussianHMM.from_params(startprob, transmat, covariance_type=kind, means=means, covars=cov)
    S = _full(cov, kind, 2, 3)
    frame = np.array([[_marginal_logpdf(x, means[k], S[k]) for k in range(2)] for x in X])
    ll, post = _forward_backward(np.log(startprob), np.log(transmat), frame)
    np.testing.assert_allclose(model.score(X), ll, rtol=1e-8)
    np.testing.assert_allclose(model.predict_proba(X), post, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", COV_TYPES)
def test_hmm_fit_with_missing_values_is_monotone_and_finite(kind):
    X = _data(n=80, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        h = GaussianHMM(2, covariance_type=kind, random_state=0, max_iter=15, tol=0).fit(X, lengths=[50, 30])
    assert np.all(np.diff(h.lower_bounds_) > -1e-10)
    assert np.all(np.isfinite(h.means_)) and np.all(np.isfinite(h.covars_))


@pytest.mark.parametrize("kind", COV_TYPES)
def test_rows_without_nan_are_scored_bit_identically(kind):
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) + 4]
    gm = GaussianMixture(2, covariance_type=kind, random_state=0).fit(X)
    Xn = X.copy()
    Xn[::7, 1] = np.nan
    Xn[::11] = np.nan
    clean = ~np.isnan(Xn).any(axis=1)
    np.testing.assert_array_equal(gm.score_samples(Xn)[clean], gm.score_samples(X)[clean])
    np.testing.assert_array_equal(gm.predict_proba(Xn)[clean], gm.predict_proba(X)[clean])


@pytest.mark.parametrize("kind", COV_TYPES)
def test_masking_nothing_gives_the_nan_free_fit(kind):
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) + 4]
    a = GaussianMixture(2, covariance_type=kind, random_state=0).fit(X)
    mask = np.zeros(X.shape, dtype=bool)  # the mask of a pose file whose keypoints were all tracked
    b = GaussianMixture(2, covariance_type=kind, random_state=0).fit(np.where(mask, np.nan, X))
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("kind", COV_TYPES)
@pytest.mark.parametrize("seed", range(3))
def test_masking_entries_never_raises_and_gives_finite_parameters(kind, seed):
    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal(size=(60, 4)), rng.normal(size=(60, 4)) + 3]
    X[rng.random(X.shape) < rng.uniform(0.05, 0.6)] = np.nan
    X[rng.integers(0, 120, size=5)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(3, covariance_type=kind, random_state=seed, max_iter=10).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(gm, name))), name
    assert np.all(np.isfinite(gm.score_samples(X)))
    assert np.all(np.diff(gm.lower_bounds_) > -1e-10)


def test_all_missing_row_has_density_one_and_prior_responsibilities():
    X = _data()
    gm = GaussianMixture(2, random_state=0).fit(X)
    row = np.full((1, 3), np.nan)
    assert gm.score_samples(row)[0] == 0.0
    np.testing.assert_allclose(gm.predict_proba(row)[0], gm.weights_, rtol=1e-12)


def test_infinity_is_still_refused():
    X = _data()
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        GaussianMixture(2).fit(X)
    with pytest.raises(ValueError, match="infinity"):
        GaussianHMM(2).fit(X)


def test_a_feature_never_observed_is_a_clear_error():
    X = _data()
    X[:, 1] = np.nan
    with pytest.raises(ValueError, match="feature 1 has no observed value"):
        GaussianMixture(2, random_state=0).fit(X)


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_far_from_origin_tight_clusters(kind):
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1e-3, size=(200, 2)), rng.normal(0, 1e-3, size=(200, 2)) + 1e6]
    gm = GaussianMixture(2, covariance_type=kind, random_state=0).fit(X)
    order = np.argsort(gm.means_[:, 0])
    np.testing.assert_allclose(gm.means_[order], [X[:200].mean(0), X[200:].mean(0)], rtol=1e-12, atol=1e-9)
    if kind == "full":
        ref = np.stack([np.cov(X[:200].T, bias=True), np.cov(X[200:].T, bias=True)]) + 1e-6 * np.eye(2)
        np.testing.assert_allclose(gm.covariances_[order], ref, rtol=1e-6)
    else:
        ref = (np.cov(X[:200].T, bias=True) + np.cov(X[200:].T, bias=True)) / 2 + 1e-6 * np.eye(2)
        np.testing.assert_allclose(gm.covariances_, ref, rtol=1e-6)


def test_arhmm_incomplete_frames_carry_no_evidence():
    from emkit import ARHMM

    rng = np.random.default_rng(4)
    T, D = 120, 2
    X = np.zeros((T, D))
    for t in range(1, T):
        X[t] = 0.8 * X[t - 1] + rng.normal(size=D) * (0.3 if t < 60 else 1.0)
    X[[20, 21, 70]] = np.nan
    X[40, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = ARHMM(2, random_state=0, max_iter=15, tol=0).fit(X)
    assert np.all(np.diff(m.lower_bounds_) > -1e-10)
    assert np.all(np.isfinite(m.coefs_)) and np.all(np.isfinite(m.covars_))
    # the frame log-likelihoods: the AR density where the frame and its lag are complete, 0 elsewhere
    frame = np.zeros((T, 2))
    for t in range(1, T):
        if np.isnan(X[t]).any() or np.isnan(X[t - 1]).any():
            continue
        for k in range(2):
            mean = m.coefs_[k] @ X[t - 1] + m.intercepts_[k]
            frame[t, k] = multivariate_normal(mean, m.covars_[k]).logpdf(X[t])
    with np.errstate(divide="ignore"):
        ll, post = _forward_backward(np.log(m.startprob_), np.log(m.transmat_), frame)
    np.testing.assert_allclose(m.score(X), ll, rtol=1e-8)
    np.testing.assert_allclose(m.predict_proba(X), post, rtol=1e-8, atol=1e-10)


def test_poisson_hmm_skips_missing_counts():
    from scipy.stats import poisson

    from emkit import PoissonHMM

    rng = np.random.default_rng(6)
    X = rng.poisson([2.0, 5.0, 1.0], size=(90, 3)).astype(float)
    X[30:60] = rng.poisson([8.0, 1.0, 4.0], size=(30, 3))
    X[rng.random(X.shape) < 0.2] = np.nan
    X[12] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = PoissonHMM(2, random_state=0, max_iter=15, tol=0).fit(X)
    assert np.all(np.diff(m.lower_bounds_) > -1e-10)
    assert np.all(np.isfinite(m.lambdas_)) and np.all(m.lambdas_ > 0)
    frame = np.array([[np.nansum(poisson.logpmf(x, m.lambdas_[k])) for k in range(2)] for x in X])
    with np.errstate(divide="ignore"):
        ll, post = _forward_backward(np.log(m.startprob_), np.log(m.transmat_), frame)
    np.testing.assert_allclose(m.score(X), ll, rtol=1e-8)
    np.testing.assert_allclose(m.predict_proba(X), post, rtol=1e-8, atol=1e-10)


def test_categorical_hmm_skips_missing_symbols():
    from emkit import CategoricalHMM

    rng = np.random.default_rng(7)
    X = np.r_[rng.choice(4, size=50, p=[0.7, 0.1, 0.1, 0.1]), rng.choice(4, size=50, p=[0.1, 0.1, 0.1, 0.7])]
    X = X.reshape(-1, 1).astype(float)
    X[rng.random(100) < 0.2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = CategoricalHMM(2, random_state=0, max_iter=15, tol=0).fit(X)
        m_int = CategoricalHMM(2, random_state=0, max_iter=15, tol=0).fit(np.where(np.isnan(X), -1, X).astype(int))
    np.testing.assert_array_equal(m.emissionprob_, m_int.emissionprob_)  # NaN and -1 mean the same
    assert np.all(np.diff(m.lower_bounds_) > -1e-10)
    with np.errstate(divide="ignore"):
        frame = np.array([[0.0 if np.isnan(x[0]) else np.log(m.emissionprob_[k, int(x[0])]) for k in range(2)]
                          for x in X])
        ll, post = _forward_backward(np.log(m.startprob_), np.log(m.transmat_), frame)
    np.testing.assert_allclose(m.score(X), ll, rtol=1e-8)
    np.testing.assert_allclose(m.predict_proba(X), post, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="-1 or NaN marks a missing symbol"):
        m.predict(np.array([[-2], [1]]))


@pytest.mark.parametrize("kind", COV_TYPES)
def test_mixture_impute_is_the_posterior_conditional_mean(kind):
    X = _data()
    w0, m0, c0 = _start(kind)
    gm = GaussianMixture(2, covariance_type=kind, weights_init=w0, means_init=m0,
                         precisions_init=_precisions(c0, kind), max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    S = _full(gm.covariances_, kind, 2, 3)
    out = gm.impute(X)
    resp = gm.predict_proba(X)
    for i in range(X.shape[0]):
        o = ~np.isnan(X[i])
        expected = X[i].copy()
        m = ~o
        if m.any():
            cond = []
            for k in range(2):
                x = gm.means_[k].copy()
                if o.any():
                    x[m] += S[k][np.ix_(m, o)] @ np.linalg.solve(S[k][np.ix_(o, o)], X[i][o] - gm.means_[k][o])
                cond.append(x)
            expected[m] = (resp[i] @ np.array(cond))[m]
        np.testing.assert_allclose(out[i], expected, rtol=1e-10, atol=1e-12)
    assert not np.isnan(out).any()


def test_hmm_impute_uses_smoothed_posteriors():
    from emkit import CategoricalHMM, PoissonHMM

    X = _data(n=40, seed=1)
    _, means, cov = _start("diag")
    model = GaussianHMM.from_params([0.3, 0.7], [[0.9, 0.1], [0.2, 0.8]], covariance_type="diag", means=means,
                                    covars=cov)
    out = model.impute(X)
    post = model.predict_proba(X)
    nan = np.isnan(X)
    np.testing.assert_allclose(out[nan], (post @ means)[nan], rtol=1e-12)  # diag: the state means
    np.testing.assert_array_equal(out[~nan], X[~nan])
    counts = np.array([[1.0], [np.nan], [7.0], [np.nan]])
    p = PoissonHMM.from_params([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], lambdas=[[1.0], [8.0]])
    np.testing.assert_allclose(p.impute(counts)[[1, 3], 0], (p.predict_proba(counts) @ [1.0, 8.0])[[1, 3]])
    c = CategoricalHMM.from_params([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], emissionprob=[[0.8, 0.2], [0.1, 0.9]])
    np.testing.assert_array_equal(c.impute(np.array([[0], [-1], [0], [1], [np.nan], [1]]))[:, 0], [0, 0, 0, 1, 1, 1])
    from emkit import ARHMM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ar = ARHMM(2, random_state=0, max_iter=2).fit(np.random.default_rng(0).normal(size=(30, 2)))
    with pytest.raises(ValueError, match="impute is not available for ARHMM"):
        ar.impute(X[:, :2])


def test_sample_weights_count_rows_with_missing_values_as_copies():
    X = _data()
    w = np.ones(X.shape[0])
    w[[3, 7, 10]] = 2.0
    Xd = np.r_[X, X[[3, 7, 10]]]
    w0, m0, c0 = _start("full")
    kw = dict(weights_init=w0, means_init=m0, precisions_init=_precisions(c0, "full"), max_iter=8, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = GaussianMixture(2, **kw).fit(X, sample_weight=w)
        b = GaussianMixture(2, **kw).fit(Xd)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-10)


def test_partial_fit_and_stochastic_em_with_missing_values():
    X = _data(n=200, seed=9)
    gm = GaussianMixture(2, random_state=0)
    for s in range(0, 200, 50):
        gm.partial_fit(X[s:s + 50])
    assert np.all(np.isfinite(gm.means_)) and np.all(np.isfinite(gm.covariances_))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        st = GaussianMixture(2, random_state=0, max_iter=3).fit(X, algorithm="stochastic", batch_size=40)
    assert np.all(np.isfinite(st.means_))
    h = GaussianHMM(2, random_state=0)
    h.partial_fit(X[:100])
    h.partial_fit(X[100:])
    assert np.all(np.isfinite(h.means_))


def test_cli_predict_impute_and_kmeans_error(tmp_path):
    from emkit.cli import main

    X = _data(n=80, seed=10)
    csv = tmp_path / "d.csv"
    with open(csv, "w") as fh:
        fh.write("a,b,c\n")
        fh.writelines(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n" for row in X)
    out = tmp_path / "fit"
    assert main(["fit", str(csv), "--model", "gmm", "-k", "2", "--seed", "0", "-o", str(out)]) == 0
    pred = tmp_path / "p.csv"
    assert main(["predict", str(out / "model.npz"), "--data", str(csv), "--impute", "-o", str(pred)]) == 0
    table = np.genfromtxt(pred, delimiter=",", names=True)
    filled = np.column_stack([table["a"], table["b"], table["c"]])
    model = __import__("emkit").load(out / "model.npz")
    np.testing.assert_allclose(filled, model.impute(X), rtol=1e-12)
    assert main(["fit", str(csv), "--model", "kmeans", "-k", "2", "-o", str(tmp_path / "km")]) == 2
    with pytest.raises(ValueError, match="GaussianMixture fits data with missing values"):
        __import__("emkit").KMeans(2).fit(X)
