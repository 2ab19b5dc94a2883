"""Long runs from identical starting parameters agree with hmmlearn and scikit-learn.

Hundreds of EM iterations on small data shaped like real recordings: many short sequences,
standardised channels, runs of repeated samples (a sensor holding its value) and a state that
is almost never visited.  Short runs on clean blobs do not reach the regime where a probability
underflows or a component thins out, so these tests run ``N_ITER`` iterations.

Run as a script to print the final log-likelihoods of both libraries for every case::

    python tests/test_longrun.py
"""

import warnings

import numpy as np
import pytest

from emkit import CategoricalHMM, GaussianHMM, GaussianMixture, PoissonHMM

N_ITER = 300
K = 4
pytestmark = pytest.mark.usefixtures("one_compiled_thread")


def recordings(seed, kind="gaussian", n_seq=25, D=3):
    """Sequences of an HMM with one rare state, runs of repeated samples, standardised.

    Returns ``(X (n, D), lengths (n_seq,))``; ``kind`` "categorical" gives one integer column
    of 5 symbols, "poisson" ``D`` count columns.
    """
    rng = np.random.default_rng(seed)
    trans = np.array([[.90, .06, .035, .005], [.05, .90, .045, .005], [.05, .05, .895, .005],
                      [.30, .30, .30, .10]])
    start = np.array([.4, .3, .29, .01])
    lengths = rng.integers(8, 30, size=n_seq)
    means = rng.normal(scale=2.0, size=(K, D))
    rates = rng.uniform(0.5, 6.0, size=(K, D))
    emis = rng.dirichlet(np.ones(5), size=K)
    rows = []
    for L in lengths:
        z = rng.choice(K, p=start)
        for t in range(L):
            if t:
                z = rng.choice(K, p=trans[z])
            if t and rng.uniform() < 0.25:  # the sensor repeats its last sample
                rows.append(rows[-1].copy())
                continue
            if kind == "gaussian":
                rows.append(means[z] + rng.normal(scale=0.5 + 0.2 * z, size=D))
            elif kind == "poisson":
                rows.append(rng.poisson(rates[z]).astype(np.float64))
            else:
                rows.append(np.array([rng.choice(5, p=emis[z])], dtype=np.float64))
    X = np.array(rows)
    if kind == "gaussian":
        X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X, lengths


def _start(X, seed):
    """hmmlearn-like starting values: uniform start and transitions, means at random rows."""
    rng = np.random.default_rng(seed)
    startprob = np.full(K, 1.0 / K)
    transmat = rng.dirichlet(np.full(K, 5.0), size=K)
    means = X[rng.choice(len(X), K, replace=False)]
    return startprob, transmat, means


def _quiet(fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit()


def gaussian_hmm_pair(cov_type, seed):
    """Final log-likelihood ``(emkit, hmmlearn)`` of a Gaussian HMM after ``N_ITER`` iterations."""
    hmm = pytest.importorskip("hmmlearn.hmm")
    X, lengths = recordings(seed)
    D = X.shape[1]
    startprob, transmat, means = _start(X, seed)
    cov = np.cov(X.T) + 1e-3 * np.eye(D)
    covars = {"diag": np.tile(np.diag(cov), (K, 1)), "full": np.tile(cov, (K, 1, 1)),
              "spherical": np.full(K, np.diag(cov).mean()), "tied": cov}[cov_type]
    ref = hmm.GaussianHMM(K, covariance_type=cov_type, n_iter=N_ITER, tol=-np.inf, init_params="",
                          params="stmc", covars_prior=0.0, covars_weight=1.0, means_prior=0.0, means_weight=0.0)
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = startprob, transmat, means, covars
    ref = _quiet(lambda: ref.fit(X, lengths))
    ours = _quiet(lambda: GaussianHMM(K, covariance_type=cov_type, reg_covar=0.0, tol=0, max_iter=N_ITER,
                                      startprob_init=startprob, transmat_init=transmat, means_init=means,
                                      covars_init=covars).fit(X, lengths))
    return ours, ref, X, lengths


def _discrete_pair(kind, seed, ours_cls, ref_name, ref_params, emission_name, emission):
    """Discrete HMMs (categorical, Poisson) from the same start; ``emission(rng, X)`` draws its parameters."""
    hmm = pytest.importorskip("hmmlearn.hmm")
    X, lengths = recordings(seed, kind)
    X = X.astype(int)
    rng = np.random.default_rng(seed)
    startprob, transmat = np.full(K, 1.0 / K), rng.dirichlet(np.full(K, 5.0), size=K)
    values = emission(rng, X)
    ref = getattr(hmm, ref_name)(K, n_iter=N_ITER, tol=-np.inf, init_params="", params=ref_params)
    ref.startprob_, ref.transmat_ = startprob, transmat
    setattr(ref, emission_name + "_", values)
    ref = _quiet(lambda: ref.fit(X, lengths))
    ours = _quiet(lambda: ours_cls(K, tol=0, max_iter=N_ITER, startprob_init=startprob, transmat_init=transmat,
                                   **{emission_name + "_init": values}).fit(X, lengths))
    return ours, ref, X, lengths


def categorical_hmm_pair(seed):
    return _discrete_pair("categorical", seed, CategoricalHMM, "CategoricalHMM", "ste", "emissionprob",
                          lambda rng, X: rng.dirichlet(np.full(5, 5.0), size=K))


def poisson_hmm_pair(seed):
    return _discrete_pair("poisson", seed, PoissonHMM, "PoissonHMM", "stl", "lambdas",
                          lambda rng, X: rng.uniform(0.5, 6.0, size=(K, X.shape[1])))


def gmm_pair(cov_type, seed):
    """``(emkit, scikit-learn, X)`` Gaussian mixtures after ``N_ITER`` iterations from the same start."""
    mixture = pytest.importorskip("sklearn.mixture")
    X, _ = recordings(seed, n_seq=20)
    rng = np.random.default_rng(seed)
    weights = np.full(K, 1.0 / K)
    means = X[rng.choice(len(X), K, replace=False)]
    D = X.shape[1]
    prec = np.linalg.inv(np.cov(X.T))
    precisions = {"full": np.tile(prec, (K, 1, 1)), "tied": prec, "diag": np.tile(np.diag(prec), (K, 1)),
                  "spherical": np.full(K, np.diag(prec).mean())}[cov_type]
    kw = dict(covariance_type=cov_type, tol=0, max_iter=N_ITER, weights_init=weights, means_init=means,
              precisions_init=precisions, reg_covar=1e-6)
    ref = _quiet(lambda: mixture.GaussianMixture(K, **kw).fit(X))
    ours = _quiet(lambda: GaussianMixture(K, **kw).fit(X))
    assert D == ours.means_.shape[1]
    return ours, ref, X


def _hmm_final(ours, ref, X, lengths):
    return ours.score(X, lengths), ref.score(X, lengths)


@pytest.mark.parametrize("cov_type,seed", [("diag", 0), ("full", 1)])
def test_gaussian_hmm_long_run_agrees_with_hmmlearn(cov_type, seed):
    ours, ref, X, lengths = gaussian_hmm_pair(cov_type, seed)
    assert ours.n_iter_ == N_ITER
    np.testing.assert_allclose(ours.lower_bounds_[-1] * X.shape[0], ref.monitor_.history[-1], rtol=1e-6)
    np.testing.assert_allclose(*_hmm_final(ours, ref, X, lengths), rtol=1e-6)
    np.testing.assert_allclose(ours.startprob_, ref.startprob_, rtol=1e-4, atol=1e-8)


def test_categorical_hmm_long_run_agrees_with_hmmlearn():
    ours, ref, X, lengths = categorical_hmm_pair(5)
    np.testing.assert_allclose(ours.lower_bounds_[-1] * X.shape[0], ref.monitor_.history[-1], rtol=1e-6)
    np.testing.assert_allclose(*_hmm_final(ours, ref, X, lengths), rtol=1e-6)


def test_poisson_hmm_long_run_agrees_with_hmmlearn():
    ours, ref, X, lengths = poisson_hmm_pair(6)
    np.testing.assert_allclose(ours.lower_bounds_[-1] * X.shape[0], ref.monitor_.history[-1], rtol=1e-6)
    np.testing.assert_allclose(*_hmm_final(ours, ref, X, lengths), rtol=1e-6)


@pytest.mark.parametrize("cov_type", ["full", "tied", "diag", "spherical"])
def test_gaussian_mixture_long_run_agrees_with_sklearn(cov_type):
    ours, ref, X = gmm_pair(cov_type, 7)
    assert ours.n_iter_ == ref.n_iter_ == N_ITER
    np.testing.assert_allclose(ours.score(X), ref.score(X), rtol=1e-6)
    np.testing.assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-6)


def main():
    print(f"final log-likelihood after {N_ITER} iterations from identical starts (emkit vs reference)")
    rows = []
    for cov_type, seed in [("diag", 0), ("full", 1), ("full", 2)]:
        ours, ref, X, lengths = gaussian_hmm_pair(cov_type, seed)
        rows.append((f"GaussianHMM {cov_type} seed {seed}", *_hmm_final(ours, ref, X, lengths)))
    ours, ref, X, lengths = categorical_hmm_pair(5)
    rows.append(("CategoricalHMM seed 5", *_hmm_final(ours, ref, X, lengths)))
    ours, ref, X, lengths = poisson_hmm_pair(6)
    rows.append(("PoissonHMM seed 6", *_hmm_final(ours, ref, X, lengths)))
    for cov_type in ["full", "tied", "diag", "spherical"]:
        ours, ref, X = gmm_pair(cov_type, 7)
        rows.append((f"GaussianMixture {cov_type} seed 7", ours.score(X) * len(X), ref.score(X) * len(X)))
    for name, a, b in rows:
        print(f"{name:32s} emkit {a:14.6f}  reference {b:14.6f}  rel diff {abs(a - b) / abs(b):.2e}")


if __name__ == "__main__":
    main()
