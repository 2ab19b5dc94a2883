"""The GaussianMixture E-step paths: blocked compiled kernels and, for full covariances at larger D,
BLAS-3 distances and moments, each against brute force and scikit-learn; the CLI parser imports no
compiled code."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

from emkit import GaussianMixture
from emkit.emissions import gaussian as G
from emkit.inference import _kernels as K

ROOT = Path(__file__).resolve().parents[1]


def _random_upper(rng, K_, D):
    A = rng.normal(scale=0.3, size=(K_, D, D)) + np.eye(D) * rng.uniform(0.5, 2.0, size=(K_, 1, 1))
    return np.triu(A)


@pytest.mark.parametrize("n", [1, 255, 256, 700])
def test_normalize_log_resp_matches_logsumexp(n):
    rng = np.random.default_rng(n)
    lp = rng.normal(scale=30.0, size=(n, 5)) - 400.0
    lp[::7, 2] = -np.inf  # impossible components
    if n > 3:
        lp[3] = -np.inf  # a row with nothing possible
    expected_norm = logsumexp(lp, axis=1)
    with np.errstate(invalid="ignore"):
        expected = np.exp(lp - expected_norm[:, None])
    out, log_norm = lp.copy(), np.empty(n)
    K.normalize_log_resp(out, log_norm)
    finite = np.isfinite(expected_norm)
    np.testing.assert_allclose(log_norm[finite], expected_norm[finite], rtol=1e-14)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=1e-12, atol=1e-300)
    assert np.all(log_norm[~finite] == -np.inf) and np.all(out[~finite] == 0.0)


@pytest.mark.parametrize("n", [1, 300, 513])
def test_diag_mahalanobis_matches_brute_force(n):
    rng = np.random.default_rng(1)
    X, means, P = rng.normal(size=(n, 7)), rng.normal(size=(4, 7)), rng.uniform(0.1, 3.0, size=(4, 7))
    out = np.empty((n, 4))
    K.diag_mahalanobis(X, means, P, out)
    expected = np.einsum("nkd,kd->nk", (X[:, None, :] - means[None]) ** 2, P)
    np.testing.assert_allclose(out, expected, rtol=1e-13)


@pytest.mark.parametrize("D", [G.BLAS3_DISTANCES_MIN_D - 1, G.BLAS3_DISTANCES_MIN_D + 8])
def test_full_distances_match_brute_force(D):
    rng = np.random.default_rng(D)
    X = rng.normal(size=(300, D)) + 5.0
    means = rng.normal(size=(3, D)) + 5.0
    U = _random_upper(rng, 3, D)
    got = G.COVARIANCE_TYPES["full"].mahalanobis(X, means, U)
    expected = np.stack([np.sum(((X - means[k]) @ U[k]) ** 2, axis=1) for k in range(3)], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # Fortran-ordered factors (as scikit-learn-style flips produce) give the same distances
    got_f = G.COVARIANCE_TYPES["full"].mahalanobis(X, means, np.asfortranarray(U))
    np.testing.assert_allclose(got_f, expected, rtol=1e-12)


@pytest.mark.parametrize("D", [G.BLAS3_MOMENTS_MIN_D - 1, G.BLAS3_MOMENTS_MIN_D, 40])
def test_full_second_moments_match_brute_force(D):
    rng = np.random.default_rng(D)
    Xs = rng.normal(size=(500, D))
    W = rng.random((500, 3))
    W[:50, 1] = 0.0  # rows outside a component
    expected = np.einsum("nk,ni,nj->kij", W, Xs, Xs)
    got = G.COVARIANCE_TYPES["full"].second_moments(Xs, W)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    assert np.array_equal(got, got.transpose(0, 2, 1))
    W[0, 0] = -0.5  # negative weights (no square root): the general product
    expected = np.einsum("nk,ni,nj->kij", W, Xs, Xs)
    got = G.COVARIANCE_TYPES["full"].second_moments(Xs, W)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_full_high_dimension_agrees_with_sklearn():
    """D=40 uses the BLAS-3 distances and moments; scikit-learn from the same start, many iterations."""
    from sklearn.mixture import GaussianMixture as SkGM

    rng = np.random.default_rng(7)
    D, k = 40, 3
    centres = rng.normal(scale=4.0, size=(k, D)) + 100.0  # far from the origin: centring matters
    X = np.concatenate([rng.normal(size=(n, D)) @ (np.eye(D) + 0.2 * rng.normal(size=(D, D))) + c
                        for n, c in zip((900, 600, 60), centres)])
    X = np.concatenate([X, X[:40]])  # repeated samples
    means = X[rng.choice(X.shape[0], k, replace=False)]
    prec = np.tile(np.linalg.inv(np.cov(X.T)), (k, 1, 1))
    w = np.full(k, 1.0 / k)
    ours = GaussianMixture(k, covariance_type="full", tol=0, max_iter=25, weights_init=w, means_init=means,
                           precisions_init=prec, reg_covar=1e-6).fit(X)
    sk = SkGM(k, covariance_type="full", tol=0, max_iter=25, weights_init=w, means_init=means,
              precisions_init=prec, reg_covar=1e-6, init_params="random_from_data").fit(X)
    assert ours.n_iter_ == sk.n_iter_ == 25
    np.testing.assert_allclose(ours.lower_bound_, sk.lower_bound_, rtol=1e-10)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(ours.covariances_, sk.covariances_, rtol=1e-7, atol=1e-9)
    assert np.all(np.diff(ours.lower_bounds_) >= -1e-12 * np.abs(ours.lower_bounds_[1:]))


def test_cli_parser_imports_no_compiled_code():
    from emkit import cli
    from emkit.emissions.gaussian import COVARIANCE_TYPES

    assert sorted(cli.COVARIANCE_TYPE_NAMES) == sorted(COVARIANCE_TYPES)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    code = ("import sys\nfrom emkit.cli import build_parser\nbuild_parser().format_help()\n"
            "print(sorted(m for m in ('numba', 'matplotlib', 'scipy.linalg') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _mixture_case(cov, n, D, K, seed, dtype=np.float64):
    from emkit.emissions.gaussian import GaussianEmission
    from emkit.structures import MixtureParams

    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, D)) * 3.0 + 50.0).astype(dtype)
    em = GaussianEmission(K, cov)
    means = np.asarray(X[rng.choice(n, K, replace=False)], dtype=np.float64)
    if cov == "diag":
        covs = rng.uniform(0.5, 3.0, size=(K, D))
    elif cov == "spherical":
        covs = rng.uniform(0.5, 3.0, size=K)
    else:
        covs = np.stack([np.cov(rng.normal(size=(3 * D, D)).T).reshape(D, D) + 0.1 * np.eye(D) for _ in range(K)])
    return X, em, MixtureParams(weights=rng.dirichlet(np.ones(K)), emission=em.params_from_covariances(means, covs))


def _stepwise(mix, params, X, sw):
    """The E-step taken one step at a time (log-likelihood, responsibilities, statistics)."""
    em = mix.emission
    em.mixture_e_step = lambda *args: None
    try:
        return mix.e_step(params, X, sw)
    finally:
        del em.mixture_e_step


@pytest.mark.parametrize("cov", ["diag", "spherical", "full"])
@pytest.mark.parametrize("n,D,K,weighted,dtype", [(7000, 10, 16, False, np.float64), (1000, 5, 20, True, np.float64),
                                                  (3001, 7, 4, True, np.float32), (2000, 1, 40, False, np.float64),
                                                  (1500, 15, 6, False, np.float64)])
def test_fused_mixture_e_step_matches_steps(cov, n, D, K, weighted, dtype):
    """One compiled pass per chunk (distances, responsibilities, moments) gives the step-by-step sums."""
    from emkit.structures import Mixture

    X, em, params = _mixture_case(cov, n, D, K, n + D, dtype)
    sw = np.random.default_rng(0).uniform(0.0, 2.0, size=n) if weighted else None
    assert em.mixture_e_step(params.emission, params.weights, X, sw) is not None
    mix = Mixture(em)
    got, ref = mix.e_step(params, X, sw), _stepwise(mix, params, X, sw)
    np.testing.assert_allclose(got.log_likelihood, ref.log_likelihood, rtol=1e-13)
    assert got.n_samples == ref.n_samples
    np.testing.assert_allclose(got.resp, ref.resp, rtol=1e-12)
    np.testing.assert_allclose(got.emission.n, ref.emission.n, rtol=1e-12)
    assert np.array_equal(got.emission.center, ref.emission.center)
    for name in ("sx", "sxx"):
        a, b = getattr(got.emission, name), getattr(ref.emission, name)
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12 * np.abs(b).max())
    if cov == "full":
        assert np.array_equal(got.emission.sxx, got.emission.sxx.transpose(0, 2, 1))


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_fused_mixture_e_step_leaves_special_chunks_to_the_steps(cov):
    X, em, params = _mixture_case(cov, 4000, 6, 5, 3)
    w = params.weights
    assert em.mixture_e_step(params.emission, w, X[:100]) is None  # small: the numpy steps
    Xn = X.copy()
    Xn[1234, 2] = np.nan  # a missing value: integrated out by the general steps
    assert em.mixture_e_step(params.emission, w, Xn) is None
    Xi = X.copy()
    Xi[17, 0] = np.inf
    assert em.mixture_e_step(params.emission, w, Xi) is None
    far = params.emission.means.copy()
    far[0] += 1e5  # a mean far from the others: moments about each component's own mean
    p_far = em.params_from_covariances(far, params.emission.covariances)
    assert em.mixture_e_step(p_far, w, X) is None
    zero = w.copy()
    zero[1], zero[0] = 0.0, zero[0] + zero[1]  # a component of weight 0 takes no responsibility
    nk, stats, ll = em.mixture_e_step(params.emission, zero, X)
    assert nk[1] == 0.0 and np.all(stats.sx[1] == 0.0) and np.isfinite(ll)


@pytest.mark.parametrize("cov", ["diag", "spherical", "full"])
def test_fused_e_step_fit_agrees_with_sklearn(cov):
    """Chunks large enough for the fused E-step: scikit-learn's fit from the same start, many iterations."""
    from sklearn.mixture import GaussianMixture as SkGM

    rng = np.random.default_rng(11)
    D, k = 6, 5
    centres = rng.normal(scale=3.0, size=(k, D)) + 20.0
    X = np.concatenate([rng.normal(size=(n, D)) @ (np.eye(D) + 0.3 * rng.normal(size=(D, D))) + c
                        for n, c in zip((6000, 4000, 3000, 2000, 300), centres)])
    means = X[rng.choice(X.shape[0], k, replace=False)]
    var = X.var(axis=0)
    prec = {"diag": np.tile(1.0 / var, (k, 1)), "spherical": np.full(k, 1.0 / var.mean()),
            "full": np.tile(np.linalg.inv(np.cov(X.T)), (k, 1, 1))}[cov]
    kw = dict(n_components=k, covariance_type=cov, tol=0, max_iter=60, weights_init=np.full(k, 1.0 / k),
              means_init=means, precisions_init=prec, reg_covar=1e-6)
    ours = GaussianMixture(**kw).fit(X)
    sk = SkGM(**kw, init_params="random_from_data").fit(X)
    np.testing.assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(ours.lower_bound_, sk.lower_bound_, rtol=1e-10)
    np.testing.assert_allclose(ours.weights_, sk.weights_, rtol=1e-8)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(ours.covariances_, sk.covariances_, rtol=1e-7, atol=1e-9)
