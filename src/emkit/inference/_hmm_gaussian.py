"""Fused E-step of hidden Markov models with diagonal Gaussian emissions (numba, private).

One kernel computes, sequence by sequence, the frame log-densities, the scaled
forward-backward recursion of :mod:`._hmm_kernels` and the emission statistics
(weighted counts, first and second moments about a centre), so that the (T, K)
frame log-likelihoods and posteriors of the whole data are never materialised: a
sequence's working arrays stay in cache and the data is read once.  The
log-densities are computed with the operations of :func:`._kernels.diag_mahalanobis`
followed by ``-0.5 * d + log_norm`` (the same values as the emission's own
log-likelihood), and the recursion is the one of
:func:`._hmm_kernels.forward_backward_kernel`, with its fallback to exact
log-space recursions for unsafe sequences: the results are those of the unfused
steps, up to the order of the sums in the statistics.

Sequences are processed one per thread, by blocks of sequences.  A long sequence
(at least ``long_min`` frames) instead has its log-densities and its statistics
computed over blocks of rows in parallel around its (sequential) recursion.
Which sequences are long and where the blocks lie depend only on the lengths,
and per-block statistics are summed in a fixed order, so results do not depend
on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._hmm_kernels import _CHUNK, _NEG_INF, _fb_seq_log, _fb_seq_scaled
from ._kernels import diag_mahalanobis_rows


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _gauss_stats_rows(G, g0, n, X, x0, center, XC, GT, nk, sx, sxx):
    """Add the moments of rows X[x0:x0 + n] weighted by G[g0:g0 + n] (n <= _CHUNK).

    ``nk[k] += sum_i G[g0 + i, k]``, ``sx[k, d] += sum_i G (x_id - c_d)`` and
    ``sxx[k, d] += sum_i G (x_id - c_d)^2``.
    """
    D = X.shape[1]
    K = G.shape[1]
    for d in range(D):
        c = center[d]
        for j in range(n):
            XC[d, j] = X[x0 + j, d] - c
    for k in range(K):
        for j in range(n):
            GT[k, j] = G[g0 + j, k]
    for k in range(K):
        s0 = 0.0
        for j in range(n):
            s0 += GT[k, j]
        nk[k] += s0
        for d in range(D):
            s1 = 0.0
            s2 = 0.0
            for j in range(n):
                v = XC[d, j]
                g = GT[k, j]
                s1 += g * v
                s2 += g * (v * v)
            sx[k, d] += s1
            sxx[k, d] += s2


@njit(cache=True, nogil=True)
def _loglik_rows(X, a, lo, hi, means, P, cst, XT, acc, ll):
    """ll[r] = log-densities of row X[a + r] for lo <= r < hi."""
    for c0 in range(lo, hi, _CHUNK):
        diag_mahalanobis_rows(X, a + c0, min(_CHUNK, hi - c0), means, P, XT, acc, ll, c0, -0.5, cst)


@njit(cache=True, nogil=True)
def _stats_rows(post, lo, hi, X, a, center, XC, GT, nk, sx, sxx):
    """Moments of rows X[a + r] weighted by post[r] for lo <= r < hi, added to nk, sx, sxx."""
    for c0 in range(lo, hi, _CHUNK):
        _gauss_stats_rows(post, c0, min(_CHUNK, hi - c0), X, a + c0, center, XC, GT, nk, sx, sxx)


@njit(cache=True, nogil=True)
def _recursion(pi, A, AT, logpi, logA, ll, n, post, mx, cs, S, Xc, st, K):
    """Forward-backward of the sequence in ll[:n] (posteriors into post[:n]); transition terms
    added to S (scaled) or Xc (log space), first posterior to st.  Returns the log-likelihood."""
    u = np.empty(K, dtype=np.float64)
    bu = np.empty(K, dtype=np.float64)
    w = np.empty(K, dtype=np.float64)
    Sseq = np.zeros((K, K), dtype=np.float64)
    ok, lp = _fb_seq_scaled(pi, A, AT, ll, 0, n, post, mx, cs, Sseq, np.empty(_CHUNK * K), np.empty(_CHUNK * K),
                            np.empty(_CHUNK * K, dtype=np.int64), np.empty((K, _CHUNK)), np.empty((K, _CHUNK)),
                            u, bu, w)
    if ok:
        S += Sseq
    else:
        lp = _fb_seq_log(logpi, logA, ll, 0, n, post, Xc, u, bu, w)
    if lp > _NEG_INF:
        st += post[0]
    return lp


@njit(cache=True, nogil=True, parallel=True)
def gaussian_e_step_kernel(pi, A, AT, logpi, logA, X, means, P, cst, center, seq_starts, block_starts, long_min,
                           work):
    """Fused E-step over all sequences of ``X`` (T, D) float64.

    ``means`` (K, D), ``P`` (K, D) diagonal precisions, ``cst`` (K,) the log normalisers,
    ``center`` (D,) the centre of the moments.  Sequences of at least ``long_min`` frames are
    processed with parallel phases (see the module docstring), in the memory ``work``
    (float64, at least ``long_work_size(K, n)`` for the longest of them, n); the others one
    per thread, by blocks of sequences (``block_starts``).

    Returns
    -------
    seq_ll : (n_seq,), xi : (K, K), start : (K,), nk : (K,), sx : (K, D), sxx : (K, D)
    """
    K = A.shape[0]
    D = X.shape[1]
    n_seq = seq_starts.shape[0] - 1
    nb = block_starts.shape[0] - 1
    seq_ll = np.zeros(n_seq, dtype=np.float64)
    # statistics per block of sequences, then per long sequence
    n_long = 0
    for s in range(n_seq):
        if seq_starts[s + 1] - seq_starts[s] >= long_min:
            n_long += 1
    nacc = nb + n_long
    S_blk = np.zeros((nacc, K, K), dtype=np.float64)
    X_blk = np.zeros((nacc, K, K), dtype=np.float64)
    st_blk = np.zeros((nacc, K), dtype=np.float64)
    nk_blk = np.zeros((nacc, K), dtype=np.float64)
    sx_blk = np.zeros((nacc, K, D), dtype=np.float64)
    sxx_blk = np.zeros((nacc, K, D), dtype=np.float64)
    for blk in prange(nb):
        L = 0
        for s in range(block_starts[blk], block_starts[blk + 1]):
            n = seq_starts[s + 1] - seq_starts[s]
            if n < long_min:
                L = max(L, n)
        ll = np.empty((L, K), dtype=np.float64)
        post = np.empty((L, K), dtype=np.float64)
        mx = np.empty(L, dtype=np.float64)
        cs = np.empty(L, dtype=np.float64)
        XT = np.empty((D, _CHUNK), dtype=np.float64)
        XC = np.empty((D, _CHUNK), dtype=np.float64)
        GT = np.empty((K, _CHUNK), dtype=np.float64)
        acc = np.empty(_CHUNK, dtype=np.float64)
        for s in range(block_starts[blk], block_starts[blk + 1]):
            a = seq_starts[s]
            n = seq_starts[s + 1] - a
            if n <= 0 or n >= long_min:
                continue
            _loglik_rows(X, a, 0, n, means, P, cst, XT, acc, ll)
            seq_ll[s] = _recursion(pi, A, AT, logpi, logA, ll, n, post, mx, cs, S_blk[blk], X_blk[blk], st_blk[blk], K)
            if seq_ll[s] > _NEG_INF:
                _stats_rows(post, 0, n, X, a, center, XC, GT, nk_blk[blk], sx_blk[blk], sxx_blk[blk])
    i = nb
    for s in range(n_seq):
        a = seq_starts[s]
        n = seq_starts[s + 1] - a
        if n >= long_min and n > 0:
            seq_ll[s] = _long_sequence(pi, A, AT, logpi, logA, X, a, n, means, P, cst, center, S_blk[i], X_blk[i],
                                       st_blk[i], nk_blk[i], sx_blk[i], sxx_blk[i], work)
            i += 1
    # ordered reduction (thread-count independent)
    S_tot = np.zeros((K, K), dtype=np.float64)
    X_tot = np.zeros((K, K), dtype=np.float64)
    start = np.zeros(K, dtype=np.float64)
    nk = np.zeros(K, dtype=np.float64)
    sx = np.zeros((K, D), dtype=np.float64)
    sxx = np.zeros((K, D), dtype=np.float64)
    for b in range(nacc):
        S_tot += S_blk[b]
        X_tot += X_blk[b]
        start += st_blk[b]
        nk += nk_blk[b]
        sx += sx_blk[b]
        sxx += sxx_blk[b]
    return seq_ll, A * S_tot + X_tot, start, nk, sx, sxx


# rows per block of the parallel phases of a long sequence
_LONG_ROWS = 16 * _CHUNK


def long_work_size(K, n):
    """Elements of the work memory of a long sequence of ``n`` frames and ``K`` states."""
    return (2 * K + 2) * n


@njit(cache=True, nogil=True)
def empty(size):
    """Uninitialised float64 memory from numba's allocator (numpy asks large allocations for
    transparent huge pages, whose first faults can stall for 100 ms on compaction)."""
    return np.empty(size, dtype=np.float64)


@njit(cache=True, nogil=True, parallel=True)
def _long_sequence(pi, A, AT, logpi, logA, X, a, n, means, P, cst, center, S, Xc, st, nk, sx, sxx, work):
    """One long sequence: log-densities over blocks of rows in parallel, the recursion, then the
    statistics over blocks of rows in parallel (summed in order).  Returns its log-likelihood."""
    K = A.shape[0]
    D = X.shape[1]
    nrb = (n + _LONG_ROWS - 1) // _LONG_ROWS
    nK = n * K
    ll = work[:nK].reshape((n, K))
    post = work[nK:2 * nK].reshape((n, K))
    mx = work[2 * nK:2 * nK + n]
    cs = work[2 * nK + n:2 * nK + 2 * n]
    for rb in prange(nrb):
        lo = rb * _LONG_ROWS
        _loglik_rows(X, a, lo, min(lo + _LONG_ROWS, n), means, P, cst, np.empty((D, _CHUNK)), np.empty(_CHUNK), ll)
    lp = _recursion(pi, A, AT, logpi, logA, ll, n, post, mx, cs, S, Xc, st, K)
    if lp > _NEG_INF:
        nk_rb = np.zeros((nrb, K), dtype=np.float64)
        sx_rb = np.zeros((nrb, K, D), dtype=np.float64)
        sxx_rb = np.zeros((nrb, K, D), dtype=np.float64)
        for rb in prange(nrb):
            lo = rb * _LONG_ROWS
            _stats_rows(post, lo, min(lo + _LONG_ROWS, n), X, a, center, np.empty((D, _CHUNK)), np.empty((K, _CHUNK)),
                        nk_rb[rb], sx_rb[rb], sxx_rb[rb])
        for rb in range(nrb):
            nk += nk_rb[rb]
            sx += sx_rb[rb]
            sxx += sxx_rb[rb]
    return lp
