"""Student-t emissions (ECM): maximum likelihood against scipy, densities, monotone EM, HMMs, robustness."""

import itertools

import numpy as np
import pytest
import scipy.stats as ss
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from sklearn.metrics import adjusted_rand_score

from emkit.em import DECREASE_TOLERANCE, run_em
from emkit.emissions.studentt import DF_BOUNDS, StudentT, StudentTParams, df_objective, df_step
from emkit.sources import ArraySource, SequenceSource
from emkit.structures import HMMParams, MarkovChain, Mixture, MixtureParams


def _hard(labels, K):
    resp = np.zeros((len(labels), K))
    resp[np.arange(len(labels)), labels] = 1.0
    return resp


def _init(family, X, labels, K):
    family = family.with_components(K)
    params = family.init_params(family.statistics(None, X, _hard(labels, K)))
    return family, params


def fit_mixture(family, X, labels, K, max_iter=500, tol=1e-12, on_collapse=None):
    family, emission = _init(family, X, labels, K)
    weights = np.bincount(labels, minlength=K) / len(labels)
    model = Mixture(family)
    res = run_em(model, MixtureParams(weights=weights, emission=emission), ArraySource(X), tol=tol,
                 max_iter=max_iter, on_collapse=on_collapse)
    return model, res


def assert_monotone(res):
    """The objective never decreases, except into the first iteration after a collapse recovery."""
    lb = np.asarray(res.lower_bounds)
    restarts = {e.iteration for e in res.collapse_events if e.action == "recovered"}
    for i in range(1, lb.size):
        if i in restarts:
            continue
        assert lb[i] >= lb[i - 1] - DECREASE_TOLERANCE * max(1.0, abs(lb[i - 1])), (i, lb[i - 1], lb[i])


def _full(family, params):
    K, D = params.means.shape
    return np.asarray(family.cov.full_covariances(params.covariances, K, D))


# -- one component against scipy.stats.t.fit -------------------------------------------------------------

def _one_component_loglik(x, family):
    X = x[:, None]
    _, res = fit_mixture(family, X, np.zeros(len(x), dtype=int), 1, max_iter=5000, tol=1e-13)
    e = res.params.emission
    return e, float(ss.t.logpdf(x, e.dfs[0], e.means[0, 0], np.sqrt(e.covariances.ravel()[0])).sum()), res


@pytest.mark.parametrize("seed,df", [(0, 3.5), (1, 1.5), (4, 6.0)])
def test_one_component_matches_scipy_t_fit(seed, df):
    x = ss.t.rvs(df, loc=2.0, scale=1.5, size=400, random_state=np.random.default_rng(seed))
    e, ll, res = _one_component_loglik(x, StudentT(reg_covar=0.0))
    assert_monotone(res)
    best = ss.t.logpdf(x, *ss.t.fit(x)).sum()
    assert ll >= best - 1e-6 * abs(best)  # at least scipy's maximum, to 1e-6 relative
    assert abs(ll - best) <= 1e-6 * abs(best)
    # the objective EM reports is the log-likelihood (of the parameters before the last M-step)
    assert res.lower_bounds[-1] * len(x) == pytest.approx(ll, rel=1e-9)


def test_one_component_with_fixed_df_matches_scipy():
    x = ss.t.rvs(4.0, loc=-1.0, scale=0.3, size=300, random_state=np.random.default_rng(3))
    e, ll, res = _one_component_loglik(x, StudentT(df=2.5, reg_covar=0.0))
    assert e.dfs[0] == 2.5
    df, loc, scale = ss.t.fit(x, f0=2.5)
    best = ss.t.logpdf(x, df, loc, scale).sum()
    assert abs(ll - best) <= 1e-6 * abs(best) and ll >= best - 1e-6 * abs(best)


def test_df_step_is_the_maximiser_of_its_objective():
    rng = np.random.default_rng(0)
    for n, ratio in [(10.0, 0.5), (100.0, 0.01), (3.0, 1e-4), (50.0, 2.0)]:
        sdf = -ratio * n
        nu, iters, halvings = df_step(np.array([n]), np.array([sdf]), np.array([rng.uniform(1, 30)]))
        ref = minimize_scalar(lambda t: -df_objective(np.exp(t), n, sdf), bounds=np.log(DF_BOUNDS),
                              method="bounded", options={"xatol": 1e-10})
        assert df_objective(nu[0], n, sdf) >= -ref.fun - 1e-9 * abs(ref.fun)
        assert 1 <= iters[0] <= 20 and halvings[0] == 0
    # no pull at all (Gaussian data in the limit): the upper bound; no weight: the current value is kept
    nu, _, _ = df_step(np.array([5.0, 0.0]), np.array([0.0, 0.0]), np.array([4.0, 7.0]))
    assert nu[0] == pytest.approx(DF_BOUNDS[1]) and nu[1] == 7.0


# -- multivariate: densities and monotone EM ------------------------------------------------------------------

def _two_t_clusters(seed, n=250):
    rng = np.random.default_rng(seed)
    a = ss.multivariate_t.rvs([0, 0, 0], [[1, 0.5, 0], [0.5, 2, 0.3], [0, 0.3, 1]], df=3, size=n, random_state=rng)
    b = ss.multivariate_t.rvs([6, -4, 2], np.diag([0.5, 1, 3]), df=6, size=n, random_state=rng)
    return np.vstack([a, b]), np.repeat([0, 1], n)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_multivariate_density_matches_scipy_and_em_is_monotone(covariance_type):
    X, y = _two_t_clusters(0)
    family = StudentT(covariance_type=covariance_type)
    model, res = fit_mixture(family, X, (X[:, 0] > 3).astype(int), 2, max_iter=200)
    assert_monotone(res)
    p = res.params.emission
    ll = model.emission.log_likelihood(p, X)
    full = _full(model.emission, p)
    for k in range(2):
        ref = ss.multivariate_t.logpdf(X, loc=p.means[k], shape=full[k], df=p.dfs[k])
        np.testing.assert_allclose(ll[:, k], ref, rtol=1e-10, atol=1e-10)
    assert adjusted_rand_score(y, ll.argmax(axis=1)) > 0.95  # a few far tail rows lie nearer the other cluster
    assert np.all(p.dfs > 1) and np.all(p.dfs < 50)


def test_statistics_add_across_chunks_and_scale():
    X, y = _two_t_clusters(1, n=60)
    family, params = _init(StudentT(), X, y, 2)
    W = np.random.default_rng(0).dirichlet([1, 1], size=len(X))
    whole = family.statistics(params, X, W)
    parts = family.statistics(params, X[:50], W[:50]) + family.statistics(params, X[50:], W[50:])
    for a, b in [(whole.n, parts.n), (whole.sdf, parts.sdf)]:
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert (whole * 2.0).sdf == pytest.approx(2.0 * whole.sdf)
    p1, p2 = family.m_step(whole, params), family.m_step(parts, params)
    for f in ("means", "covariances", "dfs"):
        np.testing.assert_allclose(getattr(p1, f), getattr(p2, f), rtol=1e-9)


def test_em_is_monotone_with_repeated_samples_and_a_collapsing_component():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.standard_t(4, (150, 2)), rng.standard_t(4, (150, 2)) + [8, 0],
                        np.tile([[0.5, 0.5]], (20, 1)), np.tile([[8.0, 0.2]], (5, 1))])
    labels = np.zeros(len(X), dtype=int)
    labels[150:300] = 1
    labels[300:320] = 2  # a component started on the repeated point: it collapses onto it
    for on_collapse in ("recover", "warn"):
        model, res = fit_mixture(StudentT(), X, labels, 3, max_iter=300, on_collapse=on_collapse)
        assert res.collapse_events
        if on_collapse == "recover":
            assert_monotone(res)
        else:  # without recovery, EM runs on; it may only descend once a component sits at the floor
            lb = np.asarray(res.lower_bounds)
            first = min(e.iteration for e in res.collapse_events)
            assert np.all(np.diff(lb[:first]) >= -DECREASE_TOLERANCE * np.abs(lb[:first - 1]).clip(1))
    # repeated rows without a collapse (every component keeps a spread): monotone at every iteration
    Xr = np.repeat(X[:300], 3, axis=0)
    for cov in ("full", "diag"):
        _, res = fit_mixture(StudentT(covariance_type=cov), Xr, np.repeat(labels[:300], 3), 2, max_iter=150)
        assert_monotone(res)


def test_shared_and_fixed_df():
    X, y = _two_t_clusters(2, n=150)
    _, res = fit_mixture(StudentT(shared_df=True), X, y, 2, max_iter=150)
    assert_monotone(res)
    dfs = res.params.emission.dfs
    assert dfs[0] == dfs[1]
    _, res = fit_mixture(StudentT(df=4.0, covariance_type="diag"), X, y, 2, max_iter=150)
    assert_monotone(res)
    assert np.all(res.params.emission.dfs == 4.0)
    n = lambda **kw: StudentT(**kw).with_components(2).n_parameters(3)  # noqa: E731
    assert n() == 2 * 3 + 2 * 6 + 2
    assert n(shared_df=True) == 2 * 3 + 2 * 6 + 1
    assert n(df=3.0, covariance_type="diag") == 2 * 3 + 2 * 3


def test_learn_restricts_the_m_step():
    X, y = _two_t_clusters(3, n=80)
    family, params = _init(StudentT(), X, y, 2)
    stats = family.statistics(params, X, _hard(y, 2))
    new = family.m_step(stats, params, learn={"dfs"})
    np.testing.assert_array_equal(new.means, params.means)
    np.testing.assert_array_equal(new.covariances, params.covariances)
    assert not np.array_equal(new.dfs, params.dfs)
    new = family.m_step(stats, params, learn={"means"})
    np.testing.assert_array_equal(new.dfs, params.dfs)
    np.testing.assert_array_equal(new.covariances, params.covariances)


# -- hidden Markov models ---------------------------------------------------------------------------------

def _regimes(seed, n_seq=20, T=100):
    family = StudentT(covariance_type="full").with_components(2)
    params = family.params_from(means=[[0.0, 0.0], [2.5, 2.5]], covariances=[np.eye(2), [[1.0, 0.3], [0.3, 0.5]]],
                                dfs=[2.5, 4.0])
    rng = np.random.default_rng(seed)
    A = np.array([[0.95, 0.05], [0.1, 0.9]])
    z = np.empty(n_seq * T, dtype=int)
    for s in range(n_seq):
        z[s * T] = rng.integers(2)
        for t in range(1, T):
            z[s * T + t] = rng.choice(2, p=A[z[s * T + t - 1]])
    return family.sample(params, z, rng), z, np.full(n_seq, T)


def test_two_state_hmm_recovers_regimes_and_is_monotone():
    X, z, lengths = _regimes(0)
    family, emission = _init(StudentT(), X, (X.sum(axis=1) > 2.5).astype(int), 2)
    params = HMMParams(startprob=np.full(2, 0.5), transmat=np.full((2, 2), 0.5), emission=emission)
    model = MarkovChain(family)
    res = run_em(model, params, SequenceSource(X, lengths, frames=700), tol=1e-10, max_iter=200,
                 on_collapse="recover")
    assert_monotone(res)
    assert not res.collapse_events
    from emkit.inference.hmm import forward_backward

    p = res.params
    post = forward_backward(p.startprob, p.transmat, family.log_likelihood(p.emission, X), lengths)
    assert adjusted_rand_score(z, post.posteriors.argmax(axis=1)) >= 0.9
    assert np.all(np.abs(np.sort(p.emission.dfs) - [2.5, 4.0]) < 2.0)


def test_brute_force_path_enumeration_equals_forward_likelihood():
    rng = np.random.default_rng(5)
    family = StudentT(covariance_type="full").with_components(2)
    params = family.params_from(means=[[0.0, 1.0], [1.0, -1.0]], covariances=[[[1.0, 0.4], [0.4, 2.0]], np.eye(2)],
                                dfs=[1.5, 7.0])
    pi, A = np.array([0.3, 0.7]), np.array([[0.8, 0.2], [0.35, 0.65]])
    hmm = HMMParams(startprob=pi, transmat=A, emission=params)
    model = MarkovChain(family)
    for lengths in ([6], [1, 5], [3, 2, 1]):
        X = rng.standard_t(3, (sum(lengths), 2))
        stats = model.e_step(hmm, X, np.array(lengths))
        oracle = np.stack([ss.multivariate_t.logpdf(X, params.means[k], _full(family, params)[k], df=params.dfs[k])
                           for k in range(2)], axis=1)
        total, start = 0.0, 0
        for L in lengths:
            paths = np.array(list(itertools.product(range(2), repeat=L)))
            lp = np.log(pi[paths[:, 0]]) + oracle[start + np.arange(L), paths].sum(axis=1)
            lp += np.log(A[paths[:, :-1], paths[:, 1:]]).sum(axis=1)
            total += logsumexp(lp)
            start += L
        assert stats.log_likelihood == pytest.approx(total, rel=1e-12)


# -- robustness ---------------------------------------------------------------------------------------------

def test_t_mixture_is_not_pulled_by_outliers_where_a_gaussian_mixture_is():
    from emkit.emissions import GaussianEmission

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 0.0]])
    X = np.vstack([rng.normal(centres[0], 1.0, (300, 2)), rng.normal(centres[1], 1.0, (300, 2)),
                   rng.uniform([-10, 20], [16, 60], (30, 2))])  # 5% gross outliers far on one side
    labels = np.r_[np.zeros(300, int), np.ones(300, int), rng.integers(2, size=30)]

    def error(params):
        means = params.emission.means
        return max(np.linalg.norm(means[np.argmin(np.linalg.norm(means - c, axis=1))] - c) for c in centres)

    _, t_res = fit_mixture(StudentT(), X, labels, 2, max_iter=300)
    g_family = GaussianEmission(2, "full")
    g_stats = g_family.statistics(None, X, _hard(labels, 2))
    g_params = MixtureParams(weights=np.full(2, 0.5), emission=g_family.init_params(g_stats))
    g_res = run_em(Mixture(g_family), g_params, ArraySource(X), tol=1e-10, max_iter=300)
    assert error(t_res.params) < 0.25
    assert error(g_res.params) > 1.0  # the Gaussian means are dragged towards the outliers


# -- sampling, parameters, bad input ----------------------------------------------------------------------

def test_sample_follows_the_distribution():
    family = StudentT(covariance_type="diag").with_components(2)
    params = family.params_from(means=[[0.0, 5.0], [-3.0, 1.0]], covariances=[[1.0, 4.0], [0.25, 1.0]],
                                dfs=[5.0, 3.0])
    X = family.sample(params, np.zeros(4000, dtype=int), np.random.default_rng(0))
    assert ss.kstest(X[:, 1], ss.t(5.0, loc=5.0, scale=2.0).cdf).pvalue > 1e-3


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="covariance_type"):
        StudentT(covariance_type="banded")
    with pytest.raises(ValueError, match="df"):
        StudentT(df=0.0)
    with pytest.raises(ValueError, match="df"):
        StudentT(df=np.inf)
    with pytest.raises(ValueError, match="shared_df"):
        StudentT(shared_df="yes")
    with pytest.raises(ValueError, match="reg_covar"):
        StudentT(reg_covar=-1.0)
    family = StudentT().with_components(2)
    with pytest.raises(ValueError, match="dfs"):
        family.params_from(means=np.zeros((2, 2)), covariances=np.stack([np.eye(2)] * 2), dfs=[1.0, -1.0])
    with pytest.raises(ValueError, match="dfs"):
        family.params_from(means=np.zeros((2, 2)), covariances=np.stack([np.eye(2)] * 2), dfs=[1.0])
    with pytest.raises(ValueError, match="covariances"):
        family.params_from(means=np.zeros((2, 2)), covariances=np.ones((2, 2, 2)), dfs=[1.0, 1.0])
    with pytest.raises(ValueError, match="means"):
        family.params_from(means=np.zeros((3, 2)), covariances=np.stack([np.eye(2)] * 3), dfs=[1.0] * 3)
    params = family.params_from(means=np.zeros((2, 2)), covariances=np.stack([np.eye(2)] * 2), dfs=[1.0, 2.0])
    assert isinstance(params, StudentTParams)


# -- missing values ------------------------------------------------------------------------------------------

def _with_nan(X, fraction, seed):
    X = X.copy()
    X[np.random.default_rng(seed).random(X.shape) < fraction] = np.nan
    X[3] = np.nan  # a row with nothing observed
    return X


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_missing_values_are_integrated_out_exactly(covariance_type):
    X, y = _two_t_clusters(4, n=60)
    Xm = _with_nan(X, 0.3, 0)
    family, params = _init(StudentT(covariance_type=covariance_type), X, y, 2)
    ll = family.log_likelihood(params, Xm)
    full = _full(family, params)
    for i in range(len(Xm)):
        o = ~np.isnan(Xm[i])
        for k in range(2):
            ref = 0.0 if not o.any() else ss.multivariate_t.logpdf(Xm[i, o], params.means[k, o],
                                                                   full[k][np.ix_(o, o)], df=params.dfs[k])
            assert ll[i, k] == pytest.approx(ref, rel=1e-10, abs=1e-10)
    # rows without NaN give what they give in data without NaN
    complete = ~np.isnan(Xm).any(axis=1)
    np.testing.assert_allclose(ll[complete], family.log_likelihood(params, X[complete]), rtol=1e-12)
    # EM with missing values is monotone at every iteration
    _, res = fit_mixture(StudentT(covariance_type=covariance_type), Xm, y, 2, max_iter=60, tol=0)
    assert_monotone(res)


def test_missing_values_one_component_reaches_a_maximum_of_the_observed_likelihood():
    """The EM fixed point with NaN is a maximum of the observed-data likelihood: no direction improves it."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(7)
    X = ss.multivariate_t.rvs([1.0, -1.0], [[2.0, 0.8], [0.8, 1.0]], df=3, size=300, random_state=rng)
    Xm = _with_nan(X, 0.25, 1)
    family = StudentT(reg_covar=0.0)
    fam, res = fit_mixture(family, Xm, np.zeros(len(X), dtype=int), 1, max_iter=3000, tol=1e-14)
    assert_monotone(res)
    fam = fam.emission
    p = res.params.emission

    def nll(theta):
        m, (a, b, c), lognu = theta[:2], theta[2:5], theta[5]
        L = np.array([[np.exp(a), 0.0], [b, np.exp(c)]])
        try:
            q = fam.params_from(means=m[None], covariances=(L @ L.T)[None], dfs=[np.exp(lognu)])
        except ValueError:
            return np.inf
        return -fam.log_likelihood(q, Xm).sum()

    L = np.linalg.cholesky(p.covariances[0])
    theta = np.r_[p.means[0], np.log(L[0, 0]), L[1, 0], np.log(L[1, 1]), np.log(p.dfs[0])]
    best = minimize(nll, theta, method="BFGS", options={"gtol": 1e-9})
    assert nll(theta) <= best.fun + 1e-6 * abs(best.fun)


def test_hmm_with_missing_values_is_monotone_and_recovers_regimes():
    X, z, lengths = _regimes(1, n_seq=10)
    Xm = _with_nan(X, 0.1, 2)
    family, emission = _init(StudentT(covariance_type="diag"), X, (X.sum(axis=1) > 2.5).astype(int), 2)
    params = HMMParams(startprob=np.full(2, 0.5), transmat=np.full((2, 2), 0.5), emission=emission)
    res = run_em(MarkovChain(family), params, SequenceSource(Xm, lengths), tol=1e-9, max_iter=150)
    assert_monotone(res)
    from emkit.inference.hmm import forward_backward

    p = res.params
    post = forward_backward(p.startprob, p.transmat, family.log_likelihood(p.emission, Xm), lengths)
    assert adjusted_rand_score(z, post.posteriors.argmax(axis=1)) >= 0.85  # 10% of the entries missing


def test_studentt_through_the_generic_estimators_with_model_files(tmp_path):
    """StudentT is a registered family: MixtureModel and HMM fit it, and model files round-trip it."""
    from sklearn.metrics import adjusted_rand_score

    import emkit

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.standard_t(3, size=(300, 2)), rng.standard_t(3, size=(300, 2)) + 8.0])
    mix = emkit.MixtureModel(2, emission=emkit.emissions.StudentT(), random_state=0, max_iter=200).fit(X)
    assert np.diff(mix.lower_bounds_).min() >= -1e-10
    mix.save(tmp_path / "mix.npz")
    assert emkit.load(tmp_path / "mix.npz").score(X) == mix.score(X)

    z = np.repeat(np.tile([0, 1], 10), 50)
    Y = rng.standard_t(4, size=(z.size, 1)) * 0.5 + 3.0 * z[:, None]
    lengths = [100] * 10
    hmm = emkit.HMM(2, emission="studentt", random_state=0, max_iter=100).fit(Y, lengths)
    assert adjusted_rand_score(z, hmm.predict(Y, lengths)) >= 0.9
    assert np.diff(hmm.lower_bounds_).min() >= -1e-10
    hmm.save(tmp_path / "hmm.npz")
    assert emkit.load(tmp_path / "hmm.npz").score(Y, lengths) == hmm.score(Y, lengths)
