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
(at least ``long_min`` frames) is processed in parallel phases instead: its
log-densities over blocks of rows; its forward and backward recursions at the
same time (the backward messages do not involve the forward ones, so one thread
runs each, and the backward messages are kept); its posteriors, transition terms
and statistics over blocks of rows.  Which sequences are long and where the
blocks lie depend only on the lengths, and per-block statistics are summed in a
fixed order, so results do not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._hmm_kernels import (_AXPY_MIN_K, _CHUNK, _FLAG_MIN_CZ, _NEG_INF, _TINY, _acc_outer_chunk, _chunk_frameprob,
                           _fb_seq_log, _fb_seq_scaled, _forward_scaled, _matvec_axpy, _matvec_dot, _row_flushed)
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
    processed with parallel phases (see the module docstring), in ``work`` (2 n K elements for
    the longest); the others one per thread, by blocks of sequences (``block_starts``).

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


# rows per block of the parallel phases of a long sequence (a multiple of _CHUNK)
_LONG_ROWS = 16 * _CHUNK


@njit(cache=True, nogil=True, fastmath={"contract"})
def _backward_messages(A, AT, ll, n, BU, SC, mx, XS, E, EB, w):
    """Backward messages of the scaled recursion over ll[:n], kept for the posteriors.

    The operations of the backward pass of :func:`._hmm_kernels._fb_seq_scaled`, which do not
    involve the forward messages: ``BU[t * K:(t + 1) * K]`` <- ``bu_t`` for t < n - 1 and
    ``SC[t]`` <- 1 / max(bu_t) (``SC[n - 1] = 1``), so that ``w_{t+1} * SC[t + 1]`` with
    ``w_{t+1} = E_{t+1} * bu_{t+1}`` (``E_{n-1}`` for the last row) is what that pass pairs
    with row t.  ``mx`` receives the row maxima.  Returns False when some row is impossible for
    every state or some max(bu_t) is below _TINY (the posterior normaliser would be too).
    """
    K = A.shape[0]
    scale = 1.0
    SC[n - 1] = 1.0
    for c0 in range(((n - 1) // _CHUNK) * _CHUNK, -1, -_CHUNK):
        c1 = min(c0 + _CHUNK, n)
        if not _chunk_frameprob(ll, c0, c1, mx, XS, E, EB, True):
            return False
        for t in range(c1 - 1, c0 - 1, -1):
            base = (t - c0) * K
            if t == n - 1:
                for k in range(K):
                    w[k] = E[base + k]
                continue
            if K >= _AXPY_MIN_K:  # bu = A w_{t+1}
                _matvec_axpy(AT, w, scale, BU, t * K)
            else:
                _matvec_dot(A, w, scale, BU, t * K)
            bmax = 0.0
            for i in range(K):
                bmax = max(bmax, BU[t * K + i])
            if not (bmax >= _TINY):
                return False
            for i in range(K):
                w[i] = E[base + i] * BU[t * K + i]
            scale = 1.0 / bmax
            SC[t] = scale
    return True


@njit(cache=True, nogil=True, fastmath={"contract"})
def _posteriors(ll, n, lo, hi, post, mx, cs, BU, SC, S, XS, E, EB, P, Q):
    """Posteriors of rows [lo, hi) (``lo`` a multiple of _CHUNK) from the forward messages in
    ``post`` and the backward messages of _backward_messages, in place, with their transition
    terms added to S: the values of :func:`._hmm_kernels._fb_seq_scaled`.  ``XS``, ``E`` and
    ``EB`` hold _CHUNK + 1 rows.  Returns False when the scaled recursion is unsafe."""
    K = post.shape[1]
    for c0 in range(lo, hi, _CHUNK):
        c1 = min(c0 + _CHUNK, hi)
        pairs = min(c1, n - 1) - c0  # rows with a successor
        _chunk_frameprob(ll, c0, c0 + pairs + 1, mx, XS, E, EB, False)
        for col in range(pairs):
            t = c0 + col
            Z = 0.0
            for i in range(K):
                Z += post[t, i] * BU[t * K + i]
            if not (Z >= _TINY):
                return False
            if cs[t] * Z < _FLAG_MIN_CZ and _row_flushed(XS, col * K, K):
                return False
            invZ = 1.0 / Z
            s1 = SC[t + 1]
            for j in range(K):
                w1 = E[(col + 1) * K + j] if t + 1 == n - 1 else E[(col + 1) * K + j] * BU[(t + 1) * K + j]
                Q[j, col] = w1 * s1
            for i in range(K):
                at = post[t, i]
                P[i, col] = at * invZ
                post[t, i] = at * BU[t * K + i] * invZ
        _acc_outer_chunk(S, P, Q, 0, pairs)
    return True


@njit(cache=True, nogil=True, parallel=True)
def _long_sequence(pi, A, AT, logpi, logA, X, a, n, means, P, cst, center, S, Xc, st, nk, sx, sxx, work):
    """One long sequence in parallel phases: log-densities over blocks of rows; the forward and
    the backward recursions at the same time (the backward messages do not involve the forward
    ones); posteriors, transition terms and statistics over blocks of rows (summed in order).
    ``work`` holds at least 3 n K + 4 n elements.  Returns the log-likelihood."""
    K = A.shape[0]
    D = X.shape[1]
    nrb = (n + _LONG_ROWS - 1) // _LONG_ROWS
    ll = work[:n * K].reshape((n, K))
    post = work[n * K:2 * n * K].reshape((n, K))
    BU = work[2 * n * K:3 * n * K]
    rest = work[3 * n * K:]
    mxf = rest[:n]
    mxb = rest[n:2 * n]
    cs = rest[2 * n:3 * n]
    SC = rest[3 * n:4 * n]
    for rb in prange(nrb):
        lo = rb * _LONG_ROWS
        _loglik_rows(X, a, lo, min(lo + _LONG_ROWS, n), means, P, cst, np.empty((D, _CHUNK)), np.empty(_CHUNK), ll)
    ok2 = np.zeros(2, dtype=np.bool_)
    lp2 = np.zeros(2, dtype=np.float64)
    for d in prange(2):
        XS = np.empty(_CHUNK * K)
        E = np.empty(_CHUNK * K)
        EB = np.empty(_CHUNK * K, dtype=np.int64)
        w = np.empty(K)
        if d == 0:
            okf, lpf = _forward_scaled(pi, AT, A, ll, 0, n, post, mxf, cs, XS, E, EB, np.empty(K), w)
            ok2[0] = okf
            lp2[0] = lpf
        else:
            ok2[1] = _backward_messages(A, AT, ll, n, BU, SC, mxb, XS, E, EB, w)
    ok = ok2[0] and ok2[1]
    S_rb = np.zeros((nrb, K, K), dtype=np.float64)
    nk_rb = np.zeros((nrb, K), dtype=np.float64)
    sx_rb = np.zeros((nrb, K, D), dtype=np.float64)
    sxx_rb = np.zeros((nrb, K, D), dtype=np.float64)
    if ok:
        ok_rb = np.zeros(nrb, dtype=np.bool_)
        for rb in prange(nrb):
            lo = rb * _LONG_ROWS
            hi = min(lo + _LONG_ROWS, n)
            ok_rb[rb] = _posteriors(ll, n, lo, hi, post, mxf, cs, BU, SC, S_rb[rb], np.empty((_CHUNK + 1) * K),
                                    np.empty((_CHUNK + 1) * K), np.empty((_CHUNK + 1) * K, dtype=np.int64),
                                    np.empty((K, _CHUNK)), np.empty((K, _CHUNK)))
        for rb in range(nrb):
            ok = ok and ok_rb[rb]
    lp = lp2[0]
    if ok:
        for rb in range(nrb):
            S += S_rb[rb]
        st += post[0]
    else:  # exact log-space recursions
        lp = _fb_seq_log(logpi, logA, ll, 0, n, post, Xc, np.empty(K), np.empty(K), np.empty(K))
        if lp > _NEG_INF:
            st += post[0]
    if lp > _NEG_INF:
        for rb in prange(nrb):
            lo = rb * _LONG_ROWS
            _stats_rows(post, lo, min(lo + _LONG_ROWS, n), X, a, center, np.empty((D, _CHUNK)), np.empty((K, _CHUNK)),
                        nk_rb[rb], sx_rb[rb], sxx_rb[rb])
        for rb in range(nrb):
            nk += nk_rb[rb]
            sx += sx_rb[rb]
            sxx += sxx_rb[rb]
    return lp
