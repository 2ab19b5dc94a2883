"""The autoregressive emission's moments are centred: data far from the origin loses no precision."""

import warnings

import numpy as np
import pytest

import emkit
from emkit.emissions.autoregressive import AREmission


def _ar_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    for t in range(1, n):
        X[t] += 0.5 * X[t - 1]
    return X


INIT = dict(startprob_init=[0.5, 0.5], transmat_init=[[0.9, 0.1], [0.2, 0.8]],
            coefs_init=np.array([[[0.5, 0.0], [0.0, 0.5]], [[0.1, 0.0], [0.0, -0.2]]]),
            intercepts_init=np.array([[0.0, 0.0], [1.0, 1.0]]), covars_init=np.array([np.eye(2)] * 2))


@pytest.mark.parametrize("offset", [1e6, 1e8])
def test_arhmm_far_from_the_origin_matches_the_centred_fit(offset):
    X = _ar_data()
    ref = emkit.ARHMM(2, max_iter=15, tol=0, reg_covar=0, **INIT).fit(X)
    shifted = dict(INIT, intercepts_init=INIT["intercepts_init"] + offset * (1 - INIT["coefs_init"].sum(axis=2)))
    far = emkit.ARHMM(2, max_iter=15, tol=0, reg_covar=0, **shifted).fit(X + offset)
    assert np.all(np.diff(far.lower_bounds_) >= -1e-9)  # the objective never decreases
    np.testing.assert_allclose(far.lower_bounds_, ref.lower_bounds_, rtol=0, atol=1e-7)
    np.testing.assert_allclose(far.coefs_, ref.coefs_, atol=1e-7)
    np.testing.assert_allclose(far.covars_, ref.covars_, atol=1e-7)
    np.testing.assert_allclose(far.intercepts_ - offset * (1 - far.coefs_.sum(axis=2)), ref.intercepts_, atol=1e-4)


def test_arhmm_fits_noise_at_1e8():
    X = np.random.default_rng(0).normal(size=(500, 1)) + 1e8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emkit.ConvergenceWarning)
        model = emkit.ARHMM(2, random_state=0, max_iter=20).fit(X)
    assert np.all(np.isfinite(model.lower_bounds_)) and np.all(np.diff(model.lower_bounds_) >= -1e-9)
    assert np.all((model.covars_[:, 0, 0] > 0.3) & (model.covars_[:, 0, 0] < 3))  # unit noise, not 1e16


def test_ar_statistics_about_different_centres_add_exactly():
    X = _ar_data(300, seed=1) + 1e3
    em = AREmission(2, order=2)
    rng = np.random.default_rng(2)
    W = rng.dirichlet([1, 1], size=300)
    whole = em.statistics(None, em.prepare(X, [300]), W)
    a = em.statistics(None, em.prepare(X[:120], [120]), W[:120])
    b = em.statistics(None, em.prepare(X[120:], [180]), W[120:])
    assert not np.array_equal(a.center, b.center)
    total = (a + b).recentered(whole.center)
    # the two chunks lose the first `order` frames of the second chunk as history: compare with those removed
    lost = em.statistics(None, em.prepare(X, [120, 180]), W)
    for field in ("n", "szz", "szy", "syy"):
        np.testing.assert_allclose(getattr(total, field), getattr(lost.recentered(whole.center), field),
                                   rtol=1e-10, atol=1e-7)
    params = em.m_step(lost)
    again = em.m_step(total)
    np.testing.assert_allclose(params.coefs, again.coefs, atol=1e-9)
    np.testing.assert_allclose(params.intercepts, again.intercepts, atol=1e-6)
