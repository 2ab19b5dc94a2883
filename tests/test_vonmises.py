"""Von Mises emissions: maximum likelihood against scipy, exact missing values, the checked Newton
step on the concentration, HMMs on regime-switching angles (recovery, monotone EM, brute force)."""

import numpy as np
import pytest
from scipy import stats as st
from scipy.optimize import brentq
from sklearn.metrics import adjusted_rand_score

from _family_helpers import assert_monotone, brute_force_loglik, fit_hmm, fit_mixture, hard_init, regime_states
from emkit.emissions import vonmises as vm
from emkit.emissions.vonmises import KAPPA_MAX, VonMises, VonMisesParams, solve_kappa
from emkit.structures import HMMParams, MarkovChain


def family(K):
    return VonMises().with_components(K)


@pytest.mark.parametrize("kappa, loc, n", [(3.0, 1.0, 500), (0.4, -2.5, 300), (40.0, 3.1, 200)])
def test_one_component_matches_scipy_fit(kappa, loc, n):
    rng = np.random.default_rng(int(kappa * 10))
    x = st.vonmises.rvs(kappa, loc=loc, size=n, random_state=rng)
    wrapped = x + 2 * np.pi * rng.integers(-3, 4, size=n)  # any real angle: they wrap
    result = fit_mixture(family(1), wrapped[:, None], np.zeros(n, dtype=int))
    k_sc, loc_sc, _ = st.vonmises.fit(x, fscale=1)
    ll_sc = st.vonmises.logpdf(x, k_sc, loc_sc).sum()
    ll = result.lower_bound * n
    assert ll == pytest.approx(ll_sc, rel=1e-6)
    assert ll >= ll_sc - 1e-9 * abs(ll_sc)  # not worse than scipy's optimiser
    p = result.params.emission
    assert p.kappa[0, 0] == pytest.approx(k_sc, rel=1e-4)
    assert np.cos(p.mu[0, 0] - loc_sc) == pytest.approx(1.0, abs=1e-8)
    assert result.n_iter <= 3  # one component: the first M-step is already the maximum


def test_log_likelihood_is_scipy_logpdf_and_skips_missing_angles():
    rng = np.random.default_rng(1)
    fam = family(3)
    params = VonMisesParams(mu=rng.uniform(-np.pi, np.pi, (3, 4)), kappa=np.array([[0.0, 0.5, 3.0, 700.0]] * 3))
    X = rng.uniform(-10, 10, (50, 4))
    X[rng.random(X.shape) < 0.3] = np.nan
    X[0] = np.nan  # nothing observed: log-likelihood 0
    ll = fam.log_likelihood(params, X)
    obs = ~np.isnan(X)
    expected = np.stack([np.where(obs, st.vonmises.logpdf(np.nan_to_num(X), params.kappa[k], params.mu[k]), 0.0).sum(1)
                         for k in range(3)], axis=1)
    np.testing.assert_allclose(ll, expected, rtol=1e-10, atol=1e-10)
    assert np.all(ll[0] == 0)
    # statistics of the rows with NaN equal those of the observed entries alone (weights per coordinate)
    w = rng.random((50, 3))
    s = fam.statistics(None, X, w)
    for d in range(4):
        keep = obs[:, d]
        one = fam.statistics(None, X[keep][:, [d]], w[keep])
        np.testing.assert_allclose(np.c_[s.n[:, d], s.c[:, d], s.s[:, d]], np.c_[one.n[:, 0], one.c[:, 0], one.s[:, 0]])


def test_statistics_add_and_scale():
    rng = np.random.default_rng(2)
    fam = family(2)
    X = rng.normal(size=(40, 3))
    X[3, 1] = np.nan
    w = rng.random((40, 2))
    whole = fam.statistics(None, X, w)
    parts = fam.statistics(None, X[:15], w[:15]) + fam.statistics(None, X[15:], w[15:])
    for a, b in ((whole.n, parts.n), (whole.c, parts.c), (whole.s, parts.s)):
        np.testing.assert_allclose(a, b)
    np.testing.assert_allclose((whole * 2.5).c, fam.statistics(None, X, 2.5 * w).c)


def test_kappa_solves_the_bessel_ratio_equation_and_edge_cases():
    rho = np.array([1e-9, 0.05, 0.3, 0.6, 0.9, 0.99, 0.9999])
    kappa, info = solve_kappa(rho, np.ones_like(rho))
    root = np.array([brentq(lambda k, r=r: vm.bessel_ratio(k) - r, 0.0, 1e5, xtol=1e-300, rtol=1e-15) for r in rho])
    np.testing.assert_allclose(kappa, root, rtol=1e-6)  # Newton stops when J no longer resolves the step
    J = rho * kappa - vm.log_i0(kappa)
    assert np.all(J >= rho * root - vm.log_i0(root) - 1e-14)
    assert info["newton"] <= 6 and info["halvings"] == 0  # Banerjee's start is close: a few Newton steps
    # no mean direction: kappa = 0 (uniform); identical angles: capped at KAPPA_MAX
    k0, _ = solve_kappa(np.array([0.0, -0.2, 1.0]), np.ones(3))
    np.testing.assert_array_equal(k0, [0.0, 0.0, KAPPA_MAX])
    # no weight: keeps the current value
    k1, _ = solve_kappa(np.array([0.5, 0.5]), np.array([0.0, 1.0]), current=np.array([7.0, 7.0]))
    assert k1[0] == 7.0 and k1[1] != 7.0


def test_state_on_identical_angles_is_capped_and_reported_collapsed():
    fam = family(2)
    X = np.r_[np.full(20, 0.7), np.random.default_rng(3).uniform(-np.pi, np.pi, 30)][:, None]
    params = hard_init(fam, X, np.r_[np.zeros(20, int), np.ones(30, int)])
    assert params.kappa[0, 0] == KAPPA_MAX
    np.testing.assert_array_equal(fam.collapsed(params, np.array([20.0, 30.0])), [True, False])
    assert np.all(np.isfinite(fam.log_likelihood(params, X)))


def test_m_step_never_lowers_the_expected_log_likelihood():
    """From random current parameters and random weighted data, the checked step never lowers J."""
    rng = np.random.default_rng(4)
    for trial in range(30):
        K, D = 3, 2
        fam = family(K)
        X = rng.vonmises(rng.uniform(-3, 3), rng.uniform(0, 5), size=(60, D))
        w = rng.random((60, K)) ** 3
        stats = fam.statistics(None, X, w)
        old = VonMisesParams(mu=rng.uniform(-np.pi, np.pi, (K, D)), kappa=rng.exponential(3.0, (K, D)))
        for learn in (None, {"kappa"}, {"mu"}):
            new = fam.m_step(stats, old, learn)
            J_old = np.sum(w * fam.log_likelihood(old, X))
            J_new = np.sum(w * fam.log_likelihood(new, X))
            assert J_new >= J_old - 1e-9 * abs(J_old), (trial, learn)
            if learn == {"mu"}:
                np.testing.assert_array_equal(new.kappa, old.kappa)


def _regime_angles(rng, n_sequences=20, length=60):
    z, lengths = regime_states(n_sequences, length, rng)
    mu = np.array([[0.0, 2.0], [2.8, -1.0]])
    kappa = np.array([[4.0, 2.0], [6.0, 3.0]])
    X = rng.vonmises(mu[z], kappa[z]) + 2 * np.pi * rng.integers(-2, 3, size=(z.size, 2))
    return X, lengths, z


def test_two_state_hmm_recovers_regimes_and_is_monotone():
    rng = np.random.default_rng(5)
    X, lengths, z = _regime_angles(rng)
    X[rng.random(X.shape) < 0.05] = np.nan  # a few missing angles
    labels = rng.integers(0, 2, size=z.size)  # uninformative start
    labels[:200] = z[:200]
    result = fit_hmm(family(2), X, lengths, labels, max_iter=300, tol=1e-9)
    assert_monotone(result.lower_bounds)
    assert len(result.lower_bounds) > 3
    chain = MarkovChain(family(2))
    frame = chain.frame_loglik(result.params, X)
    from emkit.inference.hmm import forward_backward

    post = forward_backward(result.params.startprob, result.params.transmat, frame, lengths)
    assert adjusted_rand_score(z, post.posteriors.argmax(1)) >= 0.9


def test_mixture_em_is_monotone():
    rng = np.random.default_rng(6)
    X = np.r_[rng.vonmises(0.5, 3.0, (150, 1)), rng.vonmises(-2.5, 8.0, (100, 1))]
    result = fit_mixture(family(2), X, rng.integers(0, 2, 250), max_iter=100, tol=0)
    assert_monotone(result.lower_bounds)
    mu = np.sort(result.params.emission.mu[:, 0])
    np.testing.assert_allclose(mu, [-2.5, 0.5], atol=0.2)


@pytest.mark.parametrize("T", [1, 4, 6])
def test_forward_likelihood_equals_brute_force_paths(T):
    rng = np.random.default_rng(T)
    params = HMMParams(startprob=np.array([0.3, 0.7]), transmat=np.array([[0.8, 0.2], [0.35, 0.65]]),
                       emission=VonMisesParams(mu=np.array([[0.5, -1.0], [2.0, 3.0]]),
                                               kappa=np.array([[2.0, 0.0], [5.0, 1.5]])))
    X = rng.uniform(-7, 7, (T, 2))
    if T > 1:
        X[1, 0] = np.nan
    chain = MarkovChain(family(2))
    stats = chain.e_step(params, X, np.array([T]))
    obs = ~np.isnan(X)
    frame = np.stack([np.where(obs, st.vonmises.logpdf(np.nan_to_num(X), params.emission.kappa[k],
                                                       params.emission.mu[k]), 0.0).sum(1) for k in range(2)], 1)
    assert stats.log_likelihood == pytest.approx(brute_force_loglik(params.startprob, params.transmat, frame),
                                                 rel=1e-12)


def test_sample_split_parameters_and_validation():
    fam = family(2)
    params = fam.params_from(mu=[[0.1, 7.0], [-1.0, 2.0]], kappa=[[1.0, 2.0], [3.0, 0.0]])
    assert np.all(np.abs(params.mu) <= np.pi) and params.mu[0, 1] == pytest.approx(7.0 - 2 * np.pi)
    fam.check_params(params, 2)
    X = fam.sample(params, np.array([0, 1, 1, 0]), np.random.default_rng(0))
    assert X.shape == (4, 2) and np.all(np.isfinite(X))
    assert fam.n_parameters(2) == 8
    split = fam.split(params, 0, 1)
    assert split.kappa[1, 0] == params.kappa[0, 0] and split.mu[1, 0] != split.mu[0, 0]
    with pytest.raises(ValueError, match="kappa"):
        fam.params_from(mu=[[0.0]] * 2, kappa=[[-1.0]] * 2)
    with pytest.raises(ValueError, match="same shape"):
        fam.params_from(mu=[[0.0, 1.0]] * 2, kappa=[[1.0]] * 2)
    with pytest.raises(ValueError, match="X contains infinity"):
        fam.check_data(np.array([[0.0], [np.inf]]))
    assert fam.seeding_view(np.array([[0.0], [np.pi]])).shape == (2, 2)


def test_overshooting_newton_steps_are_halved_not_taken(monkeypatch):
    """With the Newton step made 50 times too long, every step is checked: J never decreases, the
    halvings are counted, and the maximum is still reached."""
    rho = np.array([0.2, 0.5, 0.8, 0.95])
    exact, _ = solve_kappa(rho, np.full(4, 10.0))
    real = vm.bessel_ratio_derivative
    monkeypatch.setattr(vm, "bessel_ratio_derivative", lambda k, A=None: real(k, A) / 50.0)
    current = np.array([0.5, 0.5, 0.5, 0.5])
    monkeypatch.setattr(vm, "MAX_NEWTON", 500)
    kappa, info = solve_kappa(rho, np.full(4, 10.0), current=current)
    assert info["halvings"] > 0
    J = 10.0 * (kappa * rho - vm.log_i0(kappa))
    assert np.all(J >= 10.0 * (current * rho - vm.log_i0(current)))
    np.testing.assert_allclose(kappa, exact, rtol=1e-4)



def test_generic_estimators_by_name_save_load_and_partial_fit(tmp_path):
    import emkit

    rng = np.random.default_rng(11)
    X, lengths, z = _regime_angles(rng)
    hmm = emkit.HMM(2, emission="vonmises", random_state=0).fit(X, lengths=lengths)
    assert adjusted_rand_score(z, hmm.predict(X, lengths=lengths)) >= 0.9
    assert_monotone(hmm.lower_bounds_)
    assert hmm.mu_.shape == hmm.kappa_.shape == (2, 2)
    hmm.save(tmp_path / "m.npz")
    back = emkit.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.kappa_, hmm.kappa_)
    assert back.score(X, lengths=lengths) == pytest.approx(hmm.score(X, lengths=lengths), rel=1e-12)
    mix = emkit.MixtureModel(2, emission=emkit.emissions.VonMises(), random_state=0).fit(X)
    assert_monotone(mix.lower_bounds_)
    online = emkit.HMM(2, emission="vonmises", random_state=0)
    for i in range(0, len(lengths), 5):
        a, b = lengths[:i].sum(), lengths[:i + 5].sum()
        online.partial_fit(X[a:b], lengths=lengths[i:i + 5])
    assert adjusted_rand_score(z, online.predict(X, lengths=lengths)) >= 0.8
