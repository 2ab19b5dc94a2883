"""Negative-binomial emissions: maximum likelihood against statsmodels, histogram statistics (additive,
any length), the checked Newton step on the dispersion, validation, HMMs on regime-switching
counts (recovery, monotone EM, brute force) and against a Poisson HMM on overdispersed counts."""

import warnings

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import adjusted_rand_score

from _family_helpers import assert_monotone, brute_force_loglik, fit_hmm, fit_mixture, regime_states
from emkit.em import OnlineState, online_update
from emkit.emissions.negbinom import (R_MAX, NegativeBinomial, NegativeBinomialParams, NegativeBinomialStats,
                                      solve_dispersion)
from emkit.emissions.poisson import PoissonEmission
from emkit.inference.hmm import forward_backward
from emkit.structures import HMMParams, MarkovChain


def family(K, **kw):
    return NegativeBinomial(**kw).with_components(K)


def nb_logpmf(x, m, r):
    return st.nbinom.logpmf(x, r, r / (r + m))


@pytest.mark.parametrize("m, r, n", [(4.0, 2.0, 2000), (0.7, 0.3, 800), (30.0, 12.0, 500)])
def test_one_component_matches_statsmodels_nb2(m, r, n):
    from statsmodels.discrete.discrete_model import NegativeBinomial as StatsmodelsNB

    rng = np.random.default_rng(int(m * 10))
    y = rng.negative_binomial(r, r / (r + m), size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = StatsmodelsNB(y, np.ones(n), loglike_method="nb2").fit(disp=0, maxiter=500, method="bfgs", gtol=1e-10)
    result = fit_mixture(family(1), y[:, None].astype(float), np.zeros(n, dtype=int))
    ll = result.lower_bound * n
    assert ll == pytest.approx(ref.llf, rel=1e-6)
    assert ll >= ref.llf - 1e-9 * abs(ref.llf)
    p = result.params.emission
    assert p.means[0, 0] == pytest.approx(np.exp(ref.params[0]), rel=1e-5)
    assert 1.0 / p.dispersions[0, 0] == pytest.approx(ref.params[1], rel=1e-3)
    assert result.n_iter <= 3


def test_log_likelihood_is_scipy_logpmf_and_skips_missing_counts():
    rng = np.random.default_rng(1)
    fam = family(3)
    params = NegativeBinomialParams(means=np.array([[0.0, 2.0, 50.0]] * 3) + rng.random((3, 3)),
                                    dispersions=np.array([[0.05, 3.0, R_MAX]] * 3))
    X = rng.poisson(5.0, (60, 3)).astype(float)
    X[rng.random(X.shape) < 0.3] = np.nan
    X[0] = np.nan
    ll = fam.log_likelihood(params, X)
    obs = ~np.isnan(X)
    expected = np.stack([np.where(obs, nb_logpmf(np.nan_to_num(X), params.means[k], params.dispersions[k]),
                                  0.0).sum(1) for k in range(3)], axis=1)
    np.testing.assert_allclose(ll, expected, rtol=1e-9, atol=1e-9)
    assert np.all(ll[0] == 0)
    # a zero mean: zero counts certain, positive counts impossible (no NaN)
    zero = NegativeBinomialParams(means=np.zeros((1, 1)), dispersions=np.ones((1, 1)))
    np.testing.assert_array_equal(family(1).log_likelihood(zero, np.array([[0.0], [2.0]])), [[0.0], [-np.inf]])


def test_histogram_statistics_add_across_lengths_and_scale():
    rng = np.random.default_rng(2)
    fam = family(2)
    X = rng.negative_binomial(2, 0.2, (50, 3)).astype(float)
    X[:10] = np.minimum(X[:10], 3)  # a chunk with a short histogram
    X[5, 2] = np.nan
    w = rng.random((50, 2))
    whole = fam.statistics(None, X, w)
    parts = fam.statistics(None, X[:10], w[:10]) + fam.statistics(None, X[10:], w[10:])
    assert fam.statistics(None, X[:10], w[:10]).hist.shape[-1] == 4
    np.testing.assert_allclose(parts.hist, whole.hist)
    np.testing.assert_allclose((whole * 0.5).hist, fam.statistics(None, X, 0.5 * w).hist)
    n, sx, _ = whole.moments()
    obs = ~np.isnan(X)
    np.testing.assert_allclose(n, w.T @ obs)
    np.testing.assert_allclose(sx, w.T @ np.nan_to_num(X))
    # online EM mixes scaled statistics of different lengths
    running = OnlineState(stats=whole * 0.5)
    assert (running.stats * 0.3 + fam.statistics(None, X[:10], w[:10]) * 0.7).hist.shape == whole.hist.shape


def test_dispersion_step_edge_cases():
    fam = family(3)
    X = np.r_[np.full(20, 3.0), np.random.default_rng(3).poisson(4.0, 200), np.zeros(10)][:, None]
    labels = np.r_[np.zeros(20, int), np.ones(200, int), np.full(10, 2)]
    resp = np.eye(3)[labels]
    stats = fam.statistics(None, X, resp)
    params = fam.init_params(stats)
    # identical or underdispersed counts: the Poisson limit; all zeros: still finite, positive counts possible
    assert params.dispersions[0, 0] == R_MAX
    assert np.all(np.isfinite(fam.log_likelihood(params, X)))
    assert params.means[2, 0] > 0
    assert not fam.collapsed(params, np.array([20.0, 200.0, 10.0])).any()
    # the moment start is close: few Newton steps, and no weight keeps the current dispersion
    y = np.random.default_rng(4).negative_binomial(1.5, 0.2, 3000).astype(float)[:, None]
    s = fam.statistics(None, y, np.c_[np.ones(3000), np.ones(3000), np.zeros(3000)])
    r, info = solve_dispersion(s, s.moments()[1] / np.maximum(s.moments()[0], 1), current=np.full((3, 1), 9.0))
    assert info["newton"] <= 8 and r[2, 0] == 9.0 and r[0, 0] == r[1, 0] != 9.0


def test_m_step_never_lowers_the_expected_log_likelihood():
    rng = np.random.default_rng(5)
    for trial in range(30):
        K, D = 3, 2
        fam = family(K)
        X = rng.negative_binomial(rng.uniform(0.2, 5), rng.uniform(0.05, 0.9), size=(80, D)).astype(float)
        w = rng.random((80, K)) ** 3
        stats = fam.statistics(None, X, w)
        old = NegativeBinomialParams(means=rng.uniform(0.1, 20, (K, D)), dispersions=rng.exponential(3.0, (K, D)) + 1e-3)
        for learn in (None, {"dispersions"}, {"means"}):
            new = fam.m_step(stats, old, learn)
            J_old = np.sum(w * fam.log_likelihood(old, X))
            J_new = np.sum(w * fam.log_likelihood(new, X))
            assert J_new >= J_old - 1e-9 * abs(J_old), (trial, learn)


def test_validation_names_x():
    fam = family(2)
    with pytest.raises(ValueError, match="X must hold non-negative counts"):
        fam.check_data(np.array([[1.0], [-1.0]]))
    with pytest.raises(ValueError, match="X must hold integer counts"):
        fam.check_data(np.array([[1.5]]))
    with pytest.raises(ValueError, match="X contains infinity"):
        fam.check_data(np.array([[np.inf]]))
    with pytest.raises(ValueError, match="max_count=100"):
        family(2, max_count=100).statistics(None, np.array([[101.0]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="max_count"):
        NegativeBinomial(max_count=0)
    with pytest.raises(ValueError, match="dispersions"):
        fam.params_from(means=[[1.0]] * 2, dispersions=[[0.0]] * 2)
    with pytest.raises(ValueError, match="means"):
        fam.params_from(means=[[-1.0]] * 2, dispersions=[[1.0]] * 2)


def _regime_counts(rng, n_sequences=20, length=60):
    z, lengths = regime_states(n_sequences, length, rng)
    m = np.array([[2.0, 10.0], [9.0, 3.0]])
    r = np.array([[1.5, 3.0], [4.0, 1.0]])
    X = rng.negative_binomial(r[z], r[z] / (r[z] + m[z])).astype(float)
    return X, lengths, z


def test_two_state_hmm_recovers_regimes_and_is_monotone():
    rng = np.random.default_rng(6)
    X, lengths, z = _regime_counts(rng)
    X[rng.random(X.shape) < 0.05] = np.nan
    labels = rng.integers(0, 2, size=z.size)
    labels[:200] = z[:200]
    result = fit_hmm(family(2), X, lengths, labels, max_iter=300, tol=1e-9)
    assert_monotone(result.lower_bounds)
    assert len(result.lower_bounds) > 3
    frame = MarkovChain(family(2)).frame_loglik(result.params, X)
    post = forward_backward(result.params.startprob, result.params.transmat, frame, lengths)
    assert adjusted_rand_score(z, post.posteriors.argmax(1)) >= 0.9


def test_negative_binomial_hmm_beats_poisson_hmm_by_bic_on_overdispersed_counts():
    rng = np.random.default_rng(7)
    X, lengths, z = _regime_counts(rng)
    labels = z.copy()
    nb = fit_hmm(family(2), X, lengths, labels, max_iter=200, tol=1e-8)
    po = fit_hmm(PoissonEmission(2), X, lengths, labels, max_iter=200, tol=1e-8)
    N, K, D = X.shape[0], 2, X.shape[1]

    def bic(result, n_emission):
        return -2 * result.lower_bound * N + (K - 1 + K * (K - 1) + n_emission) * np.log(N)

    assert bic(nb, family(2).n_parameters(D)) < bic(po, PoissonEmission(2).n_parameters(D)) - 100


@pytest.mark.parametrize("T", [1, 4, 6])
def test_forward_likelihood_equals_brute_force_paths(T):
    rng = np.random.default_rng(T)
    params = HMMParams(startprob=np.array([0.6, 0.4]), transmat=np.array([[0.7, 0.3], [0.2, 0.8]]),
                       emission=NegativeBinomialParams(means=np.array([[1.0, 6.0], [4.0, 0.5]]),
                                                       dispersions=np.array([[0.8, 5.0], [2.0, 30.0]])))
    X = rng.poisson(3.0, (T, 2)).astype(float)
    if T > 1:
        X[1, 1] = np.nan
    stats = MarkovChain(family(2)).e_step(params, X, np.array([T]))
    obs = ~np.isnan(X)
    frame = np.stack([np.where(obs, nb_logpmf(np.nan_to_num(X), params.emission.means[k],
                                              params.emission.dispersions[k]), 0.0).sum(1) for k in range(2)], 1)
    assert stats.log_likelihood == pytest.approx(brute_force_loglik(params.startprob, params.transmat, frame),
                                                 rel=1e-12)


def test_online_update_and_sampling():
    rng = np.random.default_rng(8)
    fam = family(2)
    params = fam.params_from(means=[[2.0, 8.0], [5.0, 1.0]], dispersions=[[1.0, 4.0], [2.0, 50.0]])
    fam.check_params(params, 2)
    z = rng.integers(0, 2, 4000)
    X = fam.sample(params, z, rng)
    assert X.dtype == np.int64 and X.shape == (4000, 2)
    for k in range(2):
        np.testing.assert_allclose(X[z == k].mean(0), params.means[k], rtol=0.1)
    from emkit.structures import Mixture, MixtureParams

    model = Mixture(fam)
    mp = MixtureParams(weights=np.array([0.5, 0.5]), emission=params)
    state = None
    for batch in np.array_split(np.arange(4000), 4):
        stats = model.e_step(mp, X[batch].astype(float))
        mp, state = online_update(model, mp, state, stats)
    np.testing.assert_allclose(np.sort(mp.emission.means[:, 0]), [2.0, 5.0], rtol=0.15)
    assert fam.n_parameters(2) == 8
    split = fam.split(params, 0, 1)
    assert split.means[1, 0] > split.means[0, 0] and split.dispersions[1, 0] == params.dispersions[0, 0]


def test_overshooting_newton_steps_are_halved_not_taken(monkeypatch):
    """With the Newton step made 50 times too long, every step is checked: g never decreases, the
    halvings are counted, and the maximum is still reached."""
    from emkit.emissions import negbinom as nbm

    rng = np.random.default_rng(9)
    fam = family(3)
    X = rng.negative_binomial(2.0, 0.25, (600, 1)).astype(float)
    stats = fam.statistics(None, X, rng.random((600, 3)))
    m = stats.moments()[1] / stats.moments()[0]
    exact, _ = solve_dispersion(stats, m)
    real = nbm._dispersion_derivatives

    def overshoot(*args):
        d1, d2 = real(*args)
        return d1, d2 / 50.0

    monkeypatch.setattr(nbm, "_dispersion_derivatives", overshoot)
    current = np.full((3, 1), 0.05)
    r, info = solve_dispersion(stats, m, current=current)
    assert info["halvings"] > 0
    tails, (n, sx, _) = stats.tails().reshape(3, -1), stats.moments()
    g = nbm.dispersion_objective
    assert np.all(g(r.ravel(), tails, n.ravel(), sx.ravel(), m.ravel())
                  >= g(current.ravel(), tails, n.ravel(), sx.ravel(), m.ravel()))
    np.testing.assert_allclose(r, exact, rtol=1e-4)


def test_chunked_and_dask_statistics_equal_one_pass():
    """Chunks whose largest counts differ (histograms of different lengths) add up to the one-pass
    statistics, in memory and on Dask."""
    da = pytest.importorskip("dask.array")
    from emkit.sources import DaskSequenceSource, SequenceSource

    rng = np.random.default_rng(10)
    X, lengths, z = _regime_counts(rng, n_sequences=12, length=50)
    X[:100] = np.minimum(X[:100], 2)
    X[rng.random(X.shape) < 0.05] = np.nan
    params = HMMParams(startprob=np.array([0.5, 0.5]), transmat=np.array([[0.9, 0.1], [0.1, 0.9]]),
                       emission=NegativeBinomialParams(means=np.array([[2.0, 10.0], [9.0, 3.0]]),
                                                       dispersions=np.array([[1.5, 3.0], [4.0, 1.0]])))
    model = MarkovChain(family(2))
    whole = model.e_step(params, X, lengths)
    for source in (SequenceSource(X, lengths, frames=100), DaskSequenceSource(da.from_array(X), lengths, frames=100)):
        stats = source.expectation(model, params)
        assert stats.log_likelihood == pytest.approx(whole.log_likelihood, rel=1e-12)
        np.testing.assert_allclose(stats.emission.hist, whole.emission.hist, rtol=1e-10, atol=1e-12)



def test_all_zero_counts():
    fam = family(2)
    X = np.zeros((10, 3))
    params = fam.init_params(fam.statistics(None, X, np.full((10, 2), 0.5)))
    assert np.all(params.means > 0) and np.all(params.dispersions == R_MAX)
    assert np.all(np.isfinite(fam.log_likelihood(params, X + 1)))
    refit = fam.m_step(fam.statistics(params, X, np.full((10, 2), 0.5)), params)
    np.testing.assert_array_equal(refit.means, 0.0)
    np.testing.assert_array_equal(fam.log_likelihood(refit, X), 0.0)



def test_generic_estimators_cli_save_and_load(tmp_path, capsys):
    import json

    import emkit
    from emkit.cli import main

    rng = np.random.default_rng(12)
    X, lengths, z = _regime_counts(rng)
    hmm = emkit.HMM(2, emission=NegativeBinomial(), random_state=0).fit(X, lengths=lengths)
    assert adjusted_rand_score(z, hmm.predict(X, lengths=lengths)) >= 0.9
    assert_monotone(hmm.lower_bounds_)
    poisson = emkit.PoissonHMM(2, random_state=0).fit(X, lengths=lengths)
    assert hmm.bic(X, lengths=lengths) < poisson.bic(X, lengths=lengths)
    with pytest.raises(ValueError, match="X must hold integer counts"):
        emkit.HMM(2, emission="negbinom").fit(X + 0.5, lengths=lengths)
    data = tmp_path / "counts.csv"
    np.savetxt(data, X[:600], delimiter=",", header="a,b", comments="", fmt="%d")
    out = tmp_path / "fit"
    assert main(["fit", str(data), "--model", "hmm", "--emission", "negbinom", "--emission-param", "max_count=500",
                 "-k", "2", "--seed", "0", "-o", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["emission"] == "negbinom" and np.shape(info["dispersions"]) == (2, 2)
    model = emkit.load(out / "model.npz")
    assert isinstance(model.emission, NegativeBinomial) and model.emission.max_count == 500
    mix = emkit.MixtureModel(2, emission="negbinom", random_state=0).fit(X)
    assert_monotone(mix.lower_bounds_)
