"""Tests for emkit.inference.hmm (pure HMM inference functions)."""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from emkit.inference import hmm

TOL = 1e-10


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _log(x):
    with np.errstate(divide="ignore"):
        return np.log(x)


def random_model(rng, K, zeros=False):
    """Random startprob / transmat; with ``zeros`` some entries are exactly 0."""
    pi = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K), size=K)
    if zeros and K > 1:
        pi_mask = rng.random(K) < 0.4
        pi_mask[rng.integers(K)] = False  # keep at least one
        pi[pi_mask] = 0.0
        A_mask = rng.random((K, K)) < 0.4
        for i in range(K):
            A_mask[i, rng.integers(K)] = False
        A[A_mask] = 0.0
        pi /= pi.sum()
        A /= A.sum(axis=1, keepdims=True)
    return pi, A


def random_loglik(rng, T, K, neg_inf=False):
    ll = rng.normal(scale=2.0, size=(T, K))
    if neg_inf:
        ll[rng.random((T, K)) < 0.2] = -np.inf
    return ll


def enumerate_paths(K, L):
    return np.array(list(itertools.product(range(K), repeat=L)), dtype=np.int64).reshape(-1, L)


def log_joint(pi, A, ll, paths):
    """log p(x, z) of each path (rows of ``paths``) for one sequence ``ll``."""
    logpi, logA = _log(pi), _log(A)
    L = ll.shape[0]
    out = logpi[paths[:, 0]] + ll[0, paths[:, 0]]
    for t in range(1, L):
        out = out + logA[paths[:, t - 1], paths[:, t]] + ll[t, paths[:, t]]
    return out


def brute_force(pi, A, ll, lengths):
    """Exact quantities by enumerating every state path of every sequence."""
    K = pi.shape[0]
    T = ll.shape[0]
    res = dict(
        seq_ll=[],
        post=np.zeros((T, K)),
        xi=np.zeros((K, K)),
        start=np.zeros(K),
        vit_lp=[],
        vit_paths=[],
        filtered=np.zeros((T, K)),
        path_probs=[],
    )
    off = 0
    for L in lengths:
        sl = ll[off:off + L]
        if L == 0:
            res["seq_ll"].append(0.0)
            continue
        paths = enumerate_paths(K, L)
        lj = log_joint(pi, A, sl, paths)
        lz = logsumexp(lj) if np.any(lj > -np.inf) else -np.inf
        res["seq_ll"].append(lz)
        best = int(np.argmax(lj))
        res["vit_lp"].append(lj[best])
        res["vit_paths"].append(paths[best])
        if lz > -np.inf:
            p = np.exp(lj - lz)
            res["path_probs"].append((paths, p))
            for t in range(L):
                for k in range(K):
                    res["post"][off + t, k] = p[paths[:, t] == k].sum()
            res["start"] += res["post"][off]
            for t in range(L - 1):
                for i in range(K):
                    for j in range(K):
                        res["xi"][i, j] += p[(paths[:, t] == i) & (paths[:, t + 1] == j)].sum()
        else:
            res["path_probs"].append((paths, None))
        # filtered marginals: enumerate prefixes
        for t in range(L):
            pp = enumerate_paths(K, t + 1)
            lpj = log_joint(pi, A, sl[: t + 1], pp)
            if np.any(lpj > -np.inf):
                lpz = logsumexp(lpj)
                q = np.exp(lpj - lpz)
                for k in range(K):
                    res["filtered"][off + t, k] = q[pp[:, t] == k].sum()
        off += L
    res["seq_ll"] = np.array(res["seq_ll"])
    res["vit_lp"] = np.array(res["vit_lp"])
    return res


def assert_no_nan(*arrays):
    for a in arrays:
        assert not np.any(np.isnan(a))


# ---------------------------------------------------------------------------
# brute force comparison
# ---------------------------------------------------------------------------

LENGTH_SETS = [
    [1],
    [2],
    [3],
    [5],
    [6],
    [1, 1],
    [3, 1, 2],
    [6, 5, 1, 3],
    [2, 0, 4],  # zero-length sequence
]


# forward-backward paths: all sequences together in numpy, the compiled scaled kernel, exact log space
FB_MODES = {"batched": dict(_method="batched"), "kernel": dict(_method="kernel"),
            "logspace": dict(_force_log=True)}


@pytest.mark.parametrize("mode", list(FB_MODES))
@pytest.mark.parametrize("neg_inf", [False, True], ids=["finite", "neginf"])
@pytest.mark.parametrize("zeros", [False, True], ids=["dense", "zeros"])
@pytest.mark.parametrize("lengths", LENGTH_SETS, ids=lambda l: "L" + "-".join(map(str, l)))
@pytest.mark.parametrize("K", [1, 2, 3])
def test_brute_force(K, lengths, zeros, neg_inf, mode):
    force_log = mode == "logspace"
    seed = hash((K, tuple(lengths), zeros, neg_inf)) % (2**32)
    rng = np.random.default_rng(seed)
    pi, A = random_model(rng, K, zeros)
    T = sum(lengths)
    ll = random_loglik(rng, T, K, neg_inf)
    lengths = np.array(lengths)
    bf = brute_force(pi, A, ll, lengths)

    r = hmm.forward_backward(pi, A, ll, lengths, **FB_MODES[mode])
    assert_no_nan(r.posteriors, r.expected_transitions, r.expected_start, r.seq_log_likelihood)
    assert r.posteriors.shape == (T, K) and r.posteriors.dtype == np.float64
    assert r.seq_log_likelihood.shape == (len(lengths),)
    impossible = bf["seq_ll"] == -np.inf
    np.testing.assert_array_equal(r.seq_log_likelihood == -np.inf, impossible)
    np.testing.assert_allclose(
        r.seq_log_likelihood[~impossible], bf["seq_ll"][~impossible], rtol=0, atol=TOL
    )
    if impossible.any():
        assert r.log_likelihood == -np.inf
    else:
        assert abs(r.log_likelihood - bf["seq_ll"].sum()) < TOL
    np.testing.assert_allclose(r.posteriors, bf["post"], rtol=0, atol=TOL)
    np.testing.assert_allclose(r.expected_transitions, bf["xi"], rtol=0, atol=TOL)
    np.testing.assert_allclose(r.expected_start, bf["start"], rtol=0, atol=TOL)
    # exact zeros
    assert np.all(r.expected_transitions[A == 0] == 0.0)
    assert np.all(r.expected_start[pi == 0] == 0.0)
    assert np.all(r.posteriors[ll == -np.inf] == 0.0)

    # filter
    lf, filt = hmm.filter(pi, A, ll, lengths, _force_log=force_log)
    assert_no_nan(filt)
    if impossible.any():
        assert lf == -np.inf
    else:
        assert abs(lf - bf["seq_ll"].sum()) < TOL
    np.testing.assert_allclose(filt, bf["filtered"], rtol=0, atol=TOL)

    # viterbi
    lp, path = hmm.viterbi(pi, A, ll, lengths, _method="batched" if mode == "batched" else "kernel")
    assert path.dtype == np.int64 and path.shape == (T,)
    nonempty = [L for L in lengths if L > 0]
    if impossible.any():
        assert lp == -np.inf
    else:
        assert abs(lp - bf["vit_lp"].sum()) < TOL
        off = 0
        i = 0
        for L in lengths:
            if L == 0:
                continue
            # the returned path attains the maximum (ties are possible only
            # in degenerate cases; check the value, then the path itself)
            seg = path[off:off + L]
            lj = log_joint(pi, A, ll[off:off + L], seg[None, :])[0]
            assert abs(lj - bf["vit_lp"][i]) < TOL
            np.testing.assert_array_equal(seg, bf["vit_paths"][i])
            off += L
            i += 1
        assert i == len(nonempty)


# ---------------------------------------------------------------------------
# exact zeros, impossible data, no NaN
# ---------------------------------------------------------------------------


def test_zero_transitions_stay_exact_zero_large():
    rng = np.random.default_rng(1)
    K = 10
    pi, A = random_model(rng, K, zeros=True)
    assert (A == 0).sum() > 10
    lengths = rng.integers(1, 300, size=50)
    ll = random_loglik(rng, lengths.sum(), K)
    r = hmm.forward_backward(pi, A, ll, lengths)
    assert np.isfinite(r.log_likelihood)
    assert np.all(r.expected_transitions[A == 0] == 0.0)
    assert np.all(r.expected_transitions[A > 0] > 0.0)
    assert np.all(r.expected_start[pi == 0] == 0.0)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    assert np.all(r.posteriors[starts][:, pi == 0] == 0.0)
    np.testing.assert_allclose(r.posteriors.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(r.expected_transitions.sum(), lengths.sum() - len(lengths), rtol=1e-12)
    np.testing.assert_allclose(r.expected_start.sum(), len(lengths), rtol=1e-12)
    assert_no_nan(r.posteriors, r.expected_transitions)


def _impossible_case():
    # state 0 forever (pi and A forbid state 1); sequence 1 forces state 1
    pi = np.array([1.0, 0.0])
    A = np.array([[1.0, 0.0], [0.5, 0.5]])
    ll = np.zeros((7, 2))
    ll[4, 0] = -np.inf  # seq 1 = rows 2..4: state 0 impossible at its last step
    lengths = np.array([2, 3, 2])
    return pi, A, ll, lengths


@pytest.mark.parametrize("force_log", [False, True])
def test_impossible_sequence(force_log):
    pi, A, ll, lengths = _impossible_case()
    r = hmm.forward_backward(pi, A, ll, lengths, _force_log=force_log)
    assert r.seq_log_likelihood[1] == -np.inf
    assert np.isfinite(r.seq_log_likelihood[[0, 2]]).all()
    assert r.log_likelihood == -np.inf
    assert np.all(r.posteriors[2:5] == 0.0)
    np.testing.assert_allclose(r.posteriors[[0, 1, 5, 6]], [[1, 0]] * 4, atol=0)
    # the two possible sequences contribute 1 transition each (0 -> 0)
    np.testing.assert_array_equal(r.expected_transitions, [[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(r.expected_start, [2.0, 0.0])
    assert_no_nan(r.posteriors, r.expected_transitions, r.expected_start)

    lp, path = hmm.viterbi(pi, A, ll, lengths)
    assert lp == -np.inf
    assert path.min() >= 0 and path.max() < 2

    lf, filt = hmm.filter(pi, A, ll, lengths, _force_log=force_log)
    assert lf == -np.inf
    assert_no_nan(filt)
    # causal: the impossible sequence's prefix before step 2 is still fine
    np.testing.assert_array_equal(filt[2:4], [[1, 0], [1, 0]])
    np.testing.assert_array_equal(filt[4], [0, 0])

    with pytest.raises(ValueError, match="probability zero"):
        hmm.sample_posterior_path(pi, A, ll, lengths, np.random.default_rng(0), _force_log=force_log)


def test_all_states_impossible_at_a_step():
    pi = np.array([0.5, 0.5])
    A = np.full((2, 2), 0.5)
    ll = np.zeros((4, 2))
    ll[2] = -np.inf
    r = hmm.forward_backward(pi, A, ll)
    assert r.log_likelihood == -np.inf
    assert np.all(r.posteriors == 0) and np.all(r.expected_transitions == 0)
    lf, filt = hmm.filter(pi, A, ll)
    assert lf == -np.inf
    np.testing.assert_allclose(filt[:2], 0.5)
    assert np.all(filt[2:] == 0)
    assert hmm.viterbi(pi, A, ll)[0] == -np.inf


@pytest.mark.parametrize("method", ["batched", "kernel"])
def test_underflow_falls_back_to_log_space(method):
    # the only possible path takes a 1e-300 transition: the scaled normaliser
    # is below the safe range, the log-space path must give the exact answer
    pi = np.array([1.0, 0.0])
    A = np.array([[1.0, 1e-300], [0.0, 1.0]])
    ll = np.array([[0.0, -1000.0], [-np.inf, 0.0], [-3.0, -1.0]])
    bf = brute_force(pi, A, ll, [3])
    r = hmm.forward_backward(pi, A, ll, _method=method)
    assert np.isfinite(r.log_likelihood)
    assert abs(r.log_likelihood - bf["seq_ll"][0]) < TOL
    np.testing.assert_allclose(r.posteriors, bf["post"], atol=TOL)
    np.testing.assert_allclose(r.expected_transitions, bf["xi"], atol=TOL)
    assert r.expected_transitions[1, 0] == 0.0
    lf, filt = hmm.filter(pi, A, ll)
    assert abs(lf - bf["seq_ll"][0]) < TOL
    np.testing.assert_allclose(filt, bf["filtered"], atol=TOL)
    path = hmm.sample_posterior_path(pi, A, ll, None, np.random.default_rng(0))
    np.testing.assert_array_equal(path, [0, 1, 1])


@pytest.mark.parametrize("method", ["batched", "kernel"])
def test_flushed_state_that_dominates_the_posterior(method):
    # At t=0 the state that explains x_0 best has prior 1e-200; the other
    # state's frame probability is exp(-720) times smaller (below the scaled
    # path's range) but the future (x_1) makes it the posterior winner by a
    # factor ~1e148.  The scaled recursion must notice and use log space.
    pi = np.array([1e-200, 1.0])
    A = np.eye(2)
    ll = np.array([[0.0, -720.0], [-600.0, 0.0]])
    bf = brute_force(pi, A, ll, [2])
    r = hmm.forward_backward(pi, A, ll, _method=method)
    assert abs(r.log_likelihood - bf["seq_ll"][0]) < TOL
    np.testing.assert_allclose(r.posteriors, bf["post"], atol=TOL)
    np.testing.assert_allclose(r.posteriors, [[0, 1], [0, 1]], atol=1e-100)
    lf, filt = hmm.filter(pi, A, ll)
    assert abs(lf - bf["seq_ll"][0]) < TOL
    np.testing.assert_allclose(filt, bf["filtered"], atol=TOL)
    path = hmm.sample_posterior_path(pi, A, ll, None, np.random.default_rng(0))
    np.testing.assert_array_equal(path, [1, 1])


def test_extreme_loglik_range():
    # frame log-likelihood differences far beyond exp's range
    rng = np.random.default_rng(5)
    K, T = 3, 400
    pi, A = random_model(rng, K)
    ll = rng.normal(scale=800.0, size=(T, K))
    r = hmm.forward_backward(pi, A, ll, [100, 300])
    r2 = hmm.forward_backward(pi, A, ll, [100, 300], _force_log=True)
    assert np.isfinite(r.log_likelihood)
    assert_no_nan(r.posteriors, r.expected_transitions)
    np.testing.assert_allclose(r.log_likelihood, r2.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(r.posteriors, r2.posteriors, atol=1e-10)
    np.testing.assert_allclose(r.expected_transitions, r2.expected_transitions, atol=1e-9)


def _fb_close(r, ref, rtol=1e-12):
    np.testing.assert_allclose(r.seq_log_likelihood, ref.seq_log_likelihood, rtol=rtol, atol=0)
    np.testing.assert_allclose(r.posteriors, ref.posteriors, rtol=0, atol=rtol)
    np.testing.assert_allclose(r.expected_transitions, ref.expected_transitions, rtol=rtol,
                               atol=rtol * ref.expected_transitions.max())
    np.testing.assert_allclose(r.expected_start, ref.expected_start, rtol=0, atol=rtol * len(ref.seq_log_likelihood))


@pytest.mark.parametrize("K", [2, 7, 30])
def test_batched_matches_kernel(K):
    # many sequences of unequal lengths (some empty, some of length 1), exact zeros, -inf frames,
    # float32 input, and a few sequences that the scaled recursion must hand to the log-space path
    rng = np.random.default_rng(40 + K)
    lengths = rng.integers(0, 90, size=60)
    lengths[[3, 17]] = 0
    lengths[[5, 9]] = 1
    T = int(lengths.sum())
    pi, A = random_model(rng, K, zeros=True)
    ll = random_loglik(rng, T, K, neg_inf=True) * 3.0
    seq = np.repeat(np.arange(lengths.size), lengths)
    ll[seq == 20] = rng.normal(scale=900.0, size=((seq == 20).sum(), K))  # beyond exp's range
    ll[seq == 21] -= 1e5  # tiny likelihoods: still finite in log
    for dtype in (np.float64, np.float32):
        x = ll.astype(dtype)
        a = hmm.forward_backward(pi, A, x, lengths, _method="batched")
        b = hmm.forward_backward(pi, A, x, lengths, _method="kernel")
        assert_no_nan(a.posteriors, a.expected_transitions, a.expected_start)
        ok = np.isfinite(b.seq_log_likelihood)
        np.testing.assert_array_equal(np.isfinite(a.seq_log_likelihood), ok)
        assert not ok.all() or np.isfinite(a.log_likelihood)
        a.seq_log_likelihood[~ok] = b.seq_log_likelihood[~ok] = 0.0
        _fb_close(a, b)


@pytest.mark.parametrize("K", [2, 7])
def test_batched_viterbi_matches_kernel(K):
    rng = np.random.default_rng(60 + K)
    lengths = rng.integers(0, 70, size=50)
    lengths[[2, 11]] = 0
    lengths[[4, 8]] = 1
    T = int(lengths.sum())
    pi, A = random_model(rng, K, zeros=True)
    ll = random_loglik(rng, T, K, neg_inf=True)
    ll[rng.random(ll.shape) < 0.2] = 0.0  # ties
    for x in (ll, ll.astype(np.float32)):
        a = hmm.viterbi(pi, A, x, lengths, _method="batched")
        b = hmm.viterbi(pi, A, x, lengths, _method="kernel")
        assert a[0] == b[0] or (np.isnan(a[0]) and np.isnan(b[0]))
        np.testing.assert_array_equal(a[1], b[1])


def test_batched_is_chosen_for_small_problems():
    starts = lambda lengths: hmm._offsets(np.array(lengths), int(np.sum(lengths)))[0]  # noqa: E731
    assert hmm._batched_pays(3, starts([200] * 10))  # a small first fit compiles nothing
    assert hmm._batched_pays(3, starts([]))
    assert not hmm._batched_pays(3, starts([1_000_000]))  # one long sequence: compiled kernel
    assert not hmm._batched_pays(10, starts([2000] * 100))
    assert not hmm._batched_pays(2, starts([5000]))
    # whichever path auto picks, results agree with the other one
    rng = np.random.default_rng(9)
    pi, A = random_model(rng, 4)
    ll = random_loglik(rng, 600, 4)
    _fb_close(hmm.forward_backward(pi, A, ll, [200, 400]),
              hmm.forward_backward(pi, A, ll, [200, 400], _method="kernel"))


# ---------------------------------------------------------------------------
# long sequences
# ---------------------------------------------------------------------------


def test_million_steps():
    rng = np.random.default_rng(2)
    K, T = 4, 1_000_000
    pi, A = random_model(rng, K)
    ll = random_loglik(rng, T, K) - 10.0
    r = hmm.forward_backward(pi, A, ll)
    assert np.isfinite(r.log_likelihood)
    assert r.log_likelihood < -1e6  # likelihood ~ exp(-1e7): still finite in log
    np.testing.assert_allclose(r.posteriors.sum(axis=1), 1.0, atol=1e-12)
    assert r.posteriors.min() >= 0.0
    np.testing.assert_allclose(r.expected_transitions.sum(), T - 1, rtol=1e-10)
    np.testing.assert_allclose(r.expected_transitions.sum(axis=1), r.posteriors[:-1].sum(axis=0), rtol=1e-9)
    lf, filt = hmm.filter(pi, A, ll)
    np.testing.assert_allclose(lf, r.log_likelihood, rtol=1e-13)
    np.testing.assert_allclose(filt.sum(axis=1), 1.0, atol=1e-12)
    lp, path = hmm.viterbi(pi, A, ll)
    assert np.isfinite(lp) and lp <= r.log_likelihood
    # compare with exact log-space recursions on a prefix
    r2 = hmm.forward_backward(pi, A, ll[:20000], _force_log=True)
    r3 = hmm.forward_backward(pi, A, ll[:20000])
    np.testing.assert_allclose(r3.log_likelihood, r2.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(r3.posteriors, r2.posteriors, atol=1e-10)


# ---------------------------------------------------------------------------
# float32 input
# ---------------------------------------------------------------------------


def test_float32_input_is_computed_in_float64():
    rng = np.random.default_rng(3)
    K = 5
    pi, A = random_model(rng, K, zeros=True)
    lengths = np.array([30, 1, 70])
    ll32 = random_loglik(rng, lengths.sum(), K).astype(np.float32)
    r32 = hmm.forward_backward(pi, A, ll32, lengths)
    r64 = hmm.forward_backward(pi, A, ll32.astype(np.float64), lengths)
    assert r32.posteriors.dtype == np.float64
    np.testing.assert_array_equal(r32.posteriors, r64.posteriors)
    np.testing.assert_array_equal(r32.expected_transitions, r64.expected_transitions)
    assert r32.log_likelihood == r64.log_likelihood
    v32 = hmm.viterbi(pi, A, ll32, lengths)
    v64 = hmm.viterbi(pi, A, ll32.astype(np.float64), lengths)
    assert v32[0] == v64[0]
    np.testing.assert_array_equal(v32[1], v64[1])
    f32 = hmm.filter(pi, A, ll32, lengths)
    f64 = hmm.filter(pi, A, ll32.astype(np.float64), lengths)
    np.testing.assert_array_equal(f32[1], f64[1])


# ---------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("force_log", [False, True], ids=["scaled", "logspace"])
@pytest.mark.parametrize("zeros", [False, True], ids=["dense", "zeros"])
def test_posterior_path_samples_match_enumeration(zeros, force_log):
    rng = np.random.default_rng(11 + zeros)
    K = 3
    pi, A = random_model(rng, K, zeros)
    base_lengths = [3, 1, 2]
    ll_one = random_loglik(rng, sum(base_lengths), K)
    bf = brute_force(pi, A, ll_one, base_lengths)
    n_rep = 20000
    ll = np.tile(ll_one, (n_rep, 1))
    lengths = np.tile(base_lengths, n_rep)
    path = hmm.sample_posterior_path(pi, A, ll, lengths, np.random.default_rng(123), _force_log=force_log)
    assert path.dtype == np.int64 and path.shape == (ll.shape[0],)
    draws = path.reshape(n_rep, -1)
    off = 0
    for s, L in enumerate(base_lengths):
        paths, p = bf["path_probs"][s]
        seg = draws[:, off:off + L]
        codes = seg @ (K ** np.arange(L)[::-1])
        counts = np.bincount(codes, minlength=K**L)
        # enumerate_paths is in lexicographic order == base-K codes
        assert np.all(counts[p == 0] == 0), "sampled an impossible path"
        keep = p > 0
        expected = p[keep] * n_rep
        chi2 = ((counts[keep] - expected) ** 2 / expected).sum()
        dof = max(keep.sum() - 1, 1)
        assert stats.chi2.sf(chi2, dof) > 1e-4, (chi2, dof)
        off += L


def test_posterior_path_reproducible():
    rng = np.random.default_rng(4)
    pi, A = random_model(rng, 4)
    ll = random_loglik(rng, 500, 4)
    p1 = hmm.sample_posterior_path(pi, A, ll, [200, 300], np.random.default_rng(9))
    p2 = hmm.sample_posterior_path(pi, A, ll, [200, 300], np.random.default_rng(9))
    np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize("zeros", [False, True])
def test_sample_states(zeros):
    rng = np.random.default_rng(6)
    K = 4
    pi, A = random_model(rng, K, zeros)
    n = 200_000
    z = hmm.sample_states(pi, A, n, np.random.default_rng(0))
    assert z.dtype == np.int64 and z.shape == (n,)
    assert z.min() >= 0 and z.max() < K
    counts = np.zeros((K, K))
    np.add.at(counts, (z[:-1], z[1:]), 1)
    assert np.all(counts[A == 0] == 0)
    freq = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    visited = counts.sum(axis=1) > 5000
    np.testing.assert_allclose(freq[visited], A[visited], atol=0.02)
    starts = np.array([hmm.sample_states(pi, A, 1, np.random.default_rng(s))[0] for s in range(3000)])
    assert np.all(pi[starts] > 0)
    np.testing.assert_allclose(np.bincount(starts, minlength=K) / 3000, pi, atol=0.04)
    assert hmm.sample_states(pi, A, 0, rng).shape == (0,)


# ---------------------------------------------------------------------------
# agreement with hmmlearn
# ---------------------------------------------------------------------------


def test_agrees_with_hmmlearn():
    _hmmc = pytest.importorskip("hmmlearn._hmmc")
    rng = np.random.default_rng(7)
    K = 6
    pi, A = random_model(rng, K)
    lengths = np.array([1, 50, 400, 2, 1000])
    ll = random_loglik(rng, lengths.sum(), K) * 2
    r = hmm.forward_backward(pi, A, ll, lengths)
    lp, path = hmm.viterbi(pi, A, ll, lengths)
    lf, filt = hmm.filter(pi, A, ll, lengths)
    off = 0
    xi = np.zeros((K, K))
    for s, L in enumerate(lengths):
        sub = np.ascontiguousarray(ll[off:off + L])
        logprob, fwd = _hmmc.forward_log(pi, A, sub)
        bwd = _hmmc.backward_log(pi, A, sub)
        post = np.exp(fwd + bwd - logprob)
        np.testing.assert_allclose(r.seq_log_likelihood[s], logprob, rtol=1e-12, atol=TOL)
        np.testing.assert_allclose(r.posteriors[off:off + L], post, rtol=0, atol=TOL)
        np.testing.assert_allclose(
            filt[off:off + L], np.exp(fwd - logsumexp(fwd, axis=1, keepdims=True)), atol=TOL
        )
        if L > 1:
            xi += np.exp(_hmmc.compute_log_xi_sum(fwd, A, bwd, sub))
        vlp, vpath = _hmmc.viterbi(pi, A, sub)
        np.testing.assert_array_equal(path[off:off + L], vpath)
        off += L
    np.testing.assert_allclose(r.expected_transitions, xi, rtol=1e-10, atol=TOL)
    np.testing.assert_allclose(r.log_likelihood, r.seq_log_likelihood.sum(), rtol=1e-15)
    np.testing.assert_allclose(lf, r.log_likelihood, rtol=1e-12)


# ---------------------------------------------------------------------------
# thread-count independence
# ---------------------------------------------------------------------------


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs >= 2 numba threads")
def test_bit_identical_across_thread_counts():
    rng = np.random.default_rng(8)
    K = 7
    pi, A = random_model(rng, K, zeros=True)
    lengths = rng.integers(1, 400, size=300)
    ll = random_loglik(rng, lengths.sum(), K)
    ll[5, :] = -1e4  # a few extreme rows
    old = numba.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            numba.set_num_threads(n)
            r = hmm.forward_backward(pi, A, ll, lengths)
            v = hmm.viterbi(pi, A, ll, lengths)
            f = hmm.filter(pi, A, ll, lengths)
            s = hmm.sample_posterior_path(pi, A, ll, lengths, np.random.default_rng(0))
            results.append((r, v, f, s))
    finally:
        numba.set_num_threads(old)
    (r1, v1, f1, s1), (r2, v2, f2, s2) = results
    assert r1.log_likelihood == r2.log_likelihood
    for name in ("seq_log_likelihood", "posteriors", "expected_transitions", "expected_start"):
        np.testing.assert_array_equal(getattr(r1, name), getattr(r2, name))
    assert v1[0] == v2[0]
    np.testing.assert_array_equal(v1[1], v2[1])
    assert f1[0] == f2[0]
    np.testing.assert_array_equal(f1[1], f2[1])
    np.testing.assert_array_equal(s1, s2)


# ---------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------


def test_lengths_none_equals_single_sequence():
    rng = np.random.default_rng(10)
    pi, A = random_model(rng, 3)
    ll = random_loglik(rng, 40, 3)
    a = hmm.forward_backward(pi, A, ll)
    b = hmm.forward_backward(pi, A, ll, np.array([40]))
    np.testing.assert_array_equal(a.posteriors, b.posteriors)
    assert a.seq_log_likelihood.shape == (1,)


def test_bad_lengths_raise():
    pi, A = random_model(np.random.default_rng(0), 2)
    ll = np.zeros((5, 2))
    with pytest.raises(ValueError):
        hmm.forward_backward(pi, A, ll, [2, 2])
    with pytest.raises(ValueError):
        hmm.viterbi(pi, A, ll, [6, -1])
    with pytest.raises(ValueError):
        hmm.filter(pi, A, np.zeros((5, 3)))


def test_posterior_is_frozen():
    pi, A = random_model(np.random.default_rng(0), 2)
    r = hmm.forward_backward(pi, A, np.zeros((3, 2)))
    with pytest.raises(AttributeError):
        r.log_likelihood = 0.0
