"""The fused E-step of Gaussian HMMs (diagonal and spherical covariances) equals forward-backward on
the emission's log-likelihoods followed by its statistics: long sequences in parallel phases,
sequences sent to the exact log-space path, and any number of threads."""

import numba
import numpy as np
import pytest

from emkit import GaussianHMM
from emkit.emissions.gaussian import GaussianEmission
from emkit.inference import hmm

LONG = [10**9, 700]  # no long sequence / every sequence of 700 frames or more long


def _problem(rng, K, D, cov, lengths, scale=3.0):
    T = int(np.sum(lengths))
    means = rng.normal(scale=scale, size=(K, D))
    X = means[rng.integers(K, size=T)] + rng.normal(size=(T, D))
    emission = GaussianEmission(K, cov, 1e-6)
    covars = rng.uniform(0.5, 2.0, size=(K, D) if cov == "diag" else K)
    params = emission.params_from_covariances(means, covars)
    return emission, params, X


def _unfused(emission, params, X, lengths, pi, A):
    post = hmm.forward_backward(pi, A, emission.log_likelihood(params, X), lengths)
    return post, emission.statistics(params, X, post.posteriors)


def _fused(emission, params, X, lengths, pi, A, long_min, monkeypatch):
    monkeypatch.setattr(hmm, "_LONG_STEPS", long_min)
    out = emission.hmm_statistics(params, X, lengths, pi, A)
    assert out is not None
    return out


def _assert_same(out, post, stats, rtol=1e-11):
    seq_ll, start, trans, fstats = out
    np.testing.assert_allclose(seq_ll, post.seq_log_likelihood, rtol=rtol)
    np.testing.assert_allclose(start, post.expected_start, rtol=rtol, atol=1e-14)
    np.testing.assert_allclose(trans, post.expected_transitions, rtol=rtol, atol=1e-9)
    for name in ("n", "sx", "sxx"):
        a, b = getattr(fstats, name), getattr(stats, name)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-9 * np.abs(b).max())
    np.testing.assert_array_equal(fstats.center, stats.center)
    assert fstats.kind == stats.kind


@pytest.mark.parametrize("long_min", LONG)
@pytest.mark.parametrize("cov", ["diag", "spherical"])
@pytest.mark.parametrize("K,D", [(1, 1), (3, 2), (13, 4), (50, 8)])
def test_fused_equals_forward_backward_and_statistics(K, D, cov, long_min, monkeypatch):
    rng = np.random.default_rng(K * 100 + D)
    lengths = np.array([1, 2, 1500, 800, 333, 2500])
    emission, params, X = _problem(rng, K, D, cov, lengths)
    pi = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.full(K, 3.0), size=K)
    if K > 2:
        A[0, 1] = A[2, 0] = 0.0  # structural zeros stay exact zeros
        A /= A.sum(axis=1, keepdims=True)
    out = _fused(emission, params, X, lengths, pi, A, long_min, monkeypatch)
    post, stats = _unfused(emission, params, X, lengths, pi, A)
    _assert_same(out, post, stats)
    if K > 2:
        assert out[2][0, 1] == 0.0 and out[2][2, 0] == 0.0


@pytest.mark.parametrize("long_min", LONG)
def test_fused_unsafe_sequence_takes_the_log_space_path(long_min, monkeypatch):
    # the chain sits in state 1 (near 100) and can hardly leave it; at the frame at 60 state 1's density is
    # flushed to zero relative to state 0's, whose predicted probability is 1e-40: the scaled recursion
    # is unsafe there and the sequence is redone with exact log-space recursions
    rng = np.random.default_rng(5)
    emission = GaussianEmission(2, "diag", 1e-6)
    params = emission.params_from_covariances(np.array([[0.0], [100.0]]), np.array([[1.0], [0.01]]))
    X = np.concatenate([100.0 + 0.1 * rng.normal(size=(3000, 1)), [[60.0]], rng.normal(size=(3000, 1))])
    lengths = np.array([1200, X.shape[0] - 1200])
    pi, A = np.array([0.5, 0.5]), np.array([[0.5, 0.5], [1e-40, 1.0 - 1e-40]])
    out = _fused(emission, params, X, lengths, pi, A, long_min, monkeypatch)
    post, stats = _unfused(emission, params, X, lengths, pi, A)
    exact = hmm.forward_backward(pi, A, emission.log_likelihood(params, X), lengths, _force_log=True)
    np.testing.assert_allclose(post.seq_log_likelihood, exact.seq_log_likelihood, rtol=1e-12)
    _assert_same(out, post, stats, rtol=1e-9)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs >= 2 numba threads")
def test_fused_is_bit_identical_across_thread_counts(monkeypatch):
    rng = np.random.default_rng(7)
    lengths = np.array([20000, 300, 9000, 1])
    emission, params, X = _problem(rng, 3, 2, "diag", lengths)
    pi, A = np.full(3, 1 / 3), rng.dirichlet(np.full(3, 3.0), size=3)
    monkeypatch.setattr(hmm, "_LONG_STEPS", 5000)
    old = numba.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            numba.set_num_threads(n)
            outs.append(emission.hmm_statistics(params, X, lengths, pi, A))
    finally:
        numba.set_num_threads(old)
    for a, b in zip(outs[0][:3], outs[1][:3]):
        np.testing.assert_array_equal(a, b)
    for name in ("n", "sx", "sxx"):
        np.testing.assert_array_equal(getattr(outs[0][3], name), getattr(outs[1][3], name))


def test_fused_steps_aside():
    rng = np.random.default_rng(8)
    lengths = np.array([3000, 3000])
    emission, params, X = _problem(rng, 3, 2, "diag", lengths)
    pi, A = np.full(3, 1 / 3), np.full((3, 3), 1 / 3)
    assert emission.hmm_statistics(params, X, lengths, pi, A) is not None
    assert emission.hmm_statistics(params, X[:300], [300], pi, A) is None  # small: numpy, nothing compiled
    Xn = X.copy()
    Xn[5, 1] = np.nan
    assert emission.hmm_statistics(params, Xn, lengths, pi, A) is None  # missing values: integrated out
    far = emission.params_from_covariances(params.means + np.array([[0.0, 0.0], [0.0, 0.0], [1e5, 0.0]]),
                                           params.covariances)
    assert emission.hmm_statistics(far, X, lengths, pi, A) is None  # moments about each mean
    full = GaussianEmission(3, "full", 1e-6)
    fparams = full.params_from_covariances(params.means, np.stack([np.diag(c) for c in params.covariances]))
    assert full.hmm_statistics(fparams, X, lengths, pi, A) is None


def test_gaussian_hmm_fit_unchanged_by_the_fused_step(monkeypatch):
    rng = np.random.default_rng(9)
    lengths = [4000, 2500, 6000]
    emission, params, X = _problem(rng, 4, 3, "diag", lengths)
    kw = dict(covariance_type="diag", max_iter=8, tol=0, random_state=0)
    fused = GaussianHMM(4, **kw).fit(X, lengths)
    monkeypatch.setattr(GaussianEmission, "hmm_statistics", lambda *args: None)
    plain = GaussianHMM(4, **kw).fit(X, lengths)
    np.testing.assert_allclose(fused.lower_bounds_, plain.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(fused.means_, plain.means_, rtol=1e-10)
    np.testing.assert_allclose(fused.covars_, plain.covars_, rtol=1e-10)
    np.testing.assert_allclose(fused.transmat_, plain.transmat_, rtol=1e-10, atol=1e-14)


def test_long_sequence_fit_reuses_its_memory_with_the_same_results(monkeypatch):
    # a fit keeps the long sequences' work memory from one iteration to the next (emkit._workspace);
    # the results equal E-steps on fresh memory, and the unfused path's
    rng = np.random.default_rng(10)
    lengths = [3000, 700, 5000]
    emission, params, X = _problem(rng, 3, 2, "diag", lengths)
    monkeypatch.setattr(hmm, "_LONG_STEPS", 2000)
    allocations = []
    real_buffer = hmm._workspace.buffer

    def counting_buffer(key, size, allocate):
        def counted(n):
            allocations.append(n)
            return allocate(n)
        return real_buffer(key, size, counted)

    monkeypatch.setattr(hmm._workspace, "buffer", counting_buffer)
    kw = dict(covariance_type="diag", max_iter=6, tol=0, random_state=0)
    fused = GaussianHMM(3, **kw).fit(X, lengths)
    assert len(allocations) == 1  # one allocation for the whole fit (every iteration after the first reuses it)
    monkeypatch.setattr(GaussianEmission, "hmm_statistics", lambda *args: None)
    plain = GaussianHMM(3, **kw).fit(X, lengths)
    np.testing.assert_allclose(fused.lower_bounds_, plain.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(fused.means_, plain.means_, rtol=1e-10)
    np.testing.assert_allclose(fused.transmat_, plain.transmat_, rtol=1e-10, atol=1e-14)
