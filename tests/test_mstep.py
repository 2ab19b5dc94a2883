"""M-steps from fixed statistics against their closed forms; Dirichlet priors; structural zeros."""

import warnings

import numpy as np
import pytest

from emkit import CategoricalHMM, GaussianHMM, PoissonHMM
from emkit.emissions.categorical import CategoricalEmission, CategoricalParams, CategoricalStats
from emkit.emissions.poisson import PoissonEmission, PoissonParams, PoissonStats
from emkit.structures import dirichlet_log_density, map_probabilities


def test_tiny_counts_do_not_round_to_zero():
    p = map_probabilities(np.array([10.0, 1e-17]), 1.0, np.array([0.5, 0.5]))
    assert p[1] > 0
    np.testing.assert_allclose(p, [10 / (10 + 1e-17), 1e-18], rtol=1e-12)
    # with a prior above 1 the offset is added exactly too
    np.testing.assert_allclose(map_probabilities(np.array([1e-20, 0.0]), 2.0, np.array([.5, .5])), [.5, .5])


def test_map_probabilities_closed_form_and_masks():
    rng = np.random.default_rng(0)
    counts = rng.uniform(0, 5, size=(3, 4))
    alpha = rng.uniform(1, 3, size=(3, 4))
    expected = (counts + alpha - 1) / (counts + alpha - 1).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(map_probabilities(counts, alpha, np.full((3, 4), .25)), expected, rtol=1e-12)
    allowed = np.ones((3, 4), dtype=bool)
    allowed[0, 1] = allowed[2, 3] = False
    p = map_probabilities(counts, alpha, np.full((3, 4), .25), allowed)
    assert p[0, 1] == 0 and p[2, 3] == 0
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # a row with no mass keeps the old probabilities
    old = np.array([[.2, .8], [.6, .4]])
    np.testing.assert_array_equal(map_probabilities(np.array([[0., 0.], [1., 3.]]), 1.0, old)[0], old[0])


def test_dirichlet_log_density_skips_structural_zeros():
    p = np.array([0.0, 0.25, 0.75])
    assert dirichlet_log_density(p, 1.0) == 0.0
    assert dirichlet_log_density(p, 2.0, np.array([False, True, True])) == pytest.approx(np.log(.25) + np.log(.75))


def test_categorical_m_step_uses_its_prior():
    rng = np.random.default_rng(1)
    counts = rng.uniform(0, 4, size=(2, 5))
    alpha = rng.uniform(1, 4, size=(2, 5))
    em = CategoricalEmission(2, 5, alpha)
    got = em.m_step(CategoricalStats(counts=counts), CategoricalParams(np.full((2, 5), .2))).emissionprob
    c = counts + alpha - 1
    np.testing.assert_allclose(got, c / c.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(em.log_prior(CategoricalParams(got)), np.sum((alpha - 1) * np.log(got)), rtol=1e-12)


def test_poisson_m_step_uses_its_prior_and_weight():
    rng = np.random.default_rng(2)
    n, sx = rng.uniform(0, 10, size=3), rng.uniform(0, 30, size=(3, 2))
    em = PoissonEmission(3, lambdas_prior=2.5, lambdas_weight=0.75)
    got = em.m_step(PoissonStats(n=n, sx=sx), PoissonParams(np.ones((3, 2)))).lambdas
    np.testing.assert_allclose(got, (2.5 + sx) / (0.75 + n[:, None]), rtol=1e-12)
    # a state without weight keeps its rates instead of dividing by ~0
    em0 = PoissonEmission(2)
    got = em0.m_step(PoissonStats(n=np.array([0.0, 2.0]), sx=np.array([[0.0], [6.0]])),
                     PoissonParams(np.array([[1.5], [1.0]]))).lambdas
    np.testing.assert_allclose(got, [[1.5], [3.0]])


def _short_sequences(rng, n_seq=30):
    lengths = rng.integers(5, 15, size=n_seq)
    return lengths


def test_categorical_prior_agrees_with_hmmlearn():
    hmm = pytest.importorskip("hmmlearn.hmm")
    rng = np.random.default_rng(3)
    lengths = _short_sequences(rng)
    X = rng.integers(0, 4, size=(lengths.sum(), 1))
    K = 3
    start, trans = rng.dirichlet(np.ones(K) * 3), rng.dirichlet(np.ones(K) * 3, size=K)
    emis = rng.dirichlet(np.ones(4) * 3, size=K)
    prior = rng.uniform(1.0, 3.0, size=(K, 4))
    ref = hmm.CategoricalHMM(K, n_features=4, n_iter=15, tol=-np.inf, init_params="", params="ste",
                             emissionprob_prior=prior, transmat_prior=2.0, startprob_prior=1.5)
    ref.startprob_, ref.transmat_, ref.emissionprob_ = start, trans, emis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X, lengths)
    ours = CategoricalHMM(K, n_features=4, tol=0, max_iter=15, startprob_init=start, transmat_init=trans,
                          emissionprob_init=emis, emissionprob_prior=prior, transmat_prior=2.0,
                          startprob_prior=1.5).fit(X, lengths)
    np.testing.assert_allclose(ours.emissionprob_, ref.emissionprob_, rtol=1e-7)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=1e-7)
    np.testing.assert_allclose(ours.score(X, lengths), ref.score(X, lengths), rtol=1e-9)


def test_poisson_prior_in_a_fit_is_the_closed_form_per_state():
    # hmmlearn's PoissonHMM divides by the total weight of all states, not the state's own, so
    # the check is against the closed form from the same E-step statistics
    rng = np.random.default_rng(4)
    lengths = _short_sequences(rng)
    X = rng.poisson(3.0, size=(lengths.sum(), 2))
    K = 2
    start, trans = rng.dirichlet(np.ones(K) * 3), rng.dirichlet(np.ones(K) * 3, size=K)
    lam = rng.uniform(1, 5, size=(K, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = PoissonHMM(K, tol=0, max_iter=1, startprob_init=start, transmat_init=trans, lambdas_init=lam,
                          lambdas_prior=2.0, lambdas_weight=3.0).fit(X, lengths)
    first = PoissonHMM.from_params(start, trans, lambdas=lam)
    post = first.predict_proba(X, lengths)
    np.testing.assert_allclose(ours.lambdas_, (2.0 + post.T @ X) / (3.0 + post.sum(axis=0)[:, None]), rtol=1e-9)


@pytest.mark.parametrize("kwargs,name", [
    (dict(transmat_prior=0.5), "transmat_prior"),
    (dict(startprob_prior=0.0), "startprob_prior"),
    (dict(transmat_prior=np.full((2, 2), 0.99)), "transmat_prior"),
    (dict(startprob_prior=np.nan), "startprob_prior"),
])
def test_dirichlet_priors_below_one_are_refused(kwargs, name):
    X = np.random.default_rng(0).normal(size=(40, 1))
    with pytest.raises(ValueError, match=name + ".*>= 1"):
        GaussianHMM(2, **kwargs).fit(X)


@pytest.mark.parametrize("prior", [-1.0, 0.0, 0.5])
def test_categorical_emission_prior_below_one_is_refused(prior):
    X = np.random.default_rng(0).integers(0, 3, size=(40, 1))
    with pytest.raises(ValueError, match="emissionprob_prior.*>= 1"):
        CategoricalHMM(2, emissionprob_prior=prior).fit(X)


def test_dirichlet_priors_of_one_and_above_give_finite_objectives():
    X = np.random.default_rng(0).normal(size=(60, 1))
    m = GaussianHMM(2, transmat_prior=1.0, startprob_prior=3.0, random_state=0, max_iter=20).fit(X)
    assert np.all(np.isfinite(m.lower_bounds_))


def test_structural_zeros_stay_zero_and_em_zeros_do_not_stick():
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(0, 1, 50), rng.normal(6, 1, 50), rng.normal(0, 1, 50)])[:, None]
    trans = np.array([[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.1, 0.0, 0.9]])
    m = GaussianHMM(3, startprob_init=np.array([1.0, 0.0, 0.0]), transmat_init=trans, random_state=0,
                    max_iter=30, transmat_prior=2.0, startprob_prior=2.0).fit(X)
    # user zeros are structural: a prior above 1 does not fill them
    assert m.startprob_[1] == 0 and m.startprob_[2] == 0
    np.testing.assert_array_equal(m.transmat_ == 0, trans == 0)
    # without user zeros, the prior above 1 keeps every probability positive
    m2 = GaussianHMM(3, random_state=0, max_iter=30, transmat_prior=2.0, startprob_prior=2.0).fit(X)
    assert np.all(m2.transmat_ > 0) and np.all(m2.startprob_ > 0)


def test_structural_zeros_of_hand_set_emissions_stay_zero_in_partial_fit():
    rng = np.random.default_rng(6)
    X = rng.integers(0, 3, size=(60, 1))
    m = CategoricalHMM.from_params(np.array([.5, .5]), np.full((2, 2), .5),
                                   emissionprob=np.array([[.5, .5, 0.0], [1 / 3, 1 / 3, 1 / 3]]),
                                   emissionprob_prior=2.0)
    m.partial_fit(X)
    assert m.emissionprob_[0, 2] == 0 and np.all(m.emissionprob_[1] > 0)
