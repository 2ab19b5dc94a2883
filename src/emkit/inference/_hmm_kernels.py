"""Numba kernels for hidden Markov model inference.

These are private; see :mod:`emkit.inference.hmm` for the public API.

Conventions shared by all kernels
---------------------------------
* ``ll`` is the (T, K) frame log-likelihood array (float64 or float32, C
  contiguous); every internal quantity is float64.
* ``seq_starts`` (n_seq + 1,) int64 holds the offsets of the sequences in
  ``ll`` (``seq_starts[0] == 0``, ``seq_starts[-1] == T``).
* ``block_starts`` (n_blocks + 1,) int64 groups consecutive sequences into
  blocks.  ``prange`` runs over blocks; every block accumulates its own
  statistics and blocks are summed in order afterwards, so results do not
  depend on the number of threads.

Forward-backward uses per-step scaling in probability space (fast).  When a
scaled recursion would leave the safe floating point range (a normaliser below
``_TINY``, or a step where every state has log-likelihood ``-inf``) the
sequence is recomputed with exact log-space recursions, which also decide
whether the sequence is truly impossible (likelihood exactly 0).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Normalisers smaller than this send the sequence to the log-space path; it
# keeps every reciprocal finite (1 / _TINY < 1.8e308) and avoids subnormals.
_TINY = 1e-290

_NEG_INF = -np.inf

# Frame probabilities below exp(_EXP_FLOOR) relative to the step's best state
# are flushed to zero in the scaled recursions ("flagged" rows).  The dropped
# mass is at most exp(_EXP_FLOOR) / c_t of the filtered distribution at that
# step (c_t: the step's normaliser), and at most that divided by Z_t of the
# posterior (Z_t: the backward normaliser).  Sequences where this bound is not
# negligible are recomputed in log space:
_FLAG_MIN_C = 1e-30  # forward: flagged row with c_t below this
_FLAG_MIN_CZ = 1e-288  # forward-backward: flagged row with c_t * Z_t below this


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _row_max(ll, t):
    K = ll.shape[1]
    m = _NEG_INF
    for k in range(K):
        v = np.float64(ll[t, k])
        if v > m:
            m = v
    return m


@njit(cache=True, nogil=True)
def _logsumexp_vec(x):
    K = x.shape[0]
    m = _NEG_INF
    for k in range(K):
        if x[k] > m:
            m = x[k]
    if m == _NEG_INF:
        return _NEG_INF
    s = 0.0
    for k in range(K):
        s += math.exp(x[k] - m)
    return m + math.log(s)


@njit(cache=True, nogil=True)
def _log_forward_step(logA, prev, ll, t, out):
    """out[j] = logsumexp_i(prev[i] + logA[i, j]) + ll[t, j]."""
    K = logA.shape[0]
    for j in range(K):
        m = _NEG_INF
        for i in range(K):
            v = prev[i] + logA[i, j]
            if v > m:
                m = v
        if m == _NEG_INF:
            out[j] = _NEG_INF
        else:
            s = 0.0
            for i in range(K):
                s += math.exp(prev[i] + logA[i, j] - m)
            out[j] = m + math.log(s) + np.float64(ll[t, j])


@njit(cache=True, nogil=True)
def _pick(weights, total, u):
    """Index i with cumsum(weights)[i - 1] <= u * total < cumsum(weights)[i].

    Never returns an index with a zero weight (falls back to the last positive
    weight if rounding puts ``u * total`` at or above the computed total).
    Returns -1 if every weight is zero.
    """
    K = weights.shape[0]
    target = u * total
    acc = 0.0
    last = -1
    for k in range(K):
        w = weights[k]
        if w > 0.0:
            acc += w
            last = k
            if acc > target:
                return k
    return last


# ---------------------------------------------------------------------------
# vectorisable exp
# ---------------------------------------------------------------------------

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# below this, exp(x) is flushed to zero (exp(-708) ~ 3.3e-307); harmless
# because scaled recursions fall back to log space below _TINY anyway.
_EXP_FLOOR = -708.0


@njit(cache=True, nogil=True, fastmath={"contract"})
def _vexp(x, out, ebits, n):
    """out[:n] = exp(x[:n]) for x <= 0 (or -inf), to ~1 ulp.

    Written so that LLVM vectorises it (libm exp is not vectorised by numba
    without SVML): Cody-Waite reduction, degree-13 Taylor polynomial, and the
    power of two built from its bits.  exp(0) == 1 and exp(-inf) == 0 exactly.
    """
    for q in range(n):
        v = x[q]
        xc = max(v, _EXP_FLOOR)
        fn = math.floor(xc * _LOG2E + 0.5)
        r = (xc - fn * _LN2_HI) - fn * _LN2_LO
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        out[q] = p
        ebits[q] = (np.int64(fn) + 1023) << 52 if v >= _EXP_FLOOR else 0
    scale = ebits.view(np.float64)
    for q in range(n):
        out[q] = out[q] * scale[q]


@njit(cache=True, nogil=True)
def _row_flushed(X, base, K):
    """True if some finite x in X[base:base + K] was flushed to 0 by _vexp."""
    for k in range(K):
        v = X[base + k]
        if v < _EXP_FLOOR and v > _NEG_INF:
            return True
    return False


# rows per chunk for the batched exponentials (keeps the buffers in L1/L2)
_CHUNK = 128

# From this many states on, the products of the recursions run as axpy updates vectorised across
# the output states (_matvec_axpy); below, as dot products four outputs at a time (_matvec_dot:
# the vectors are too short to vectorise).  Both make the same FMAs in the same order, so they give
# the same values.  (One step at K = 50: 0.8 us against 1.3 us; at K = 10: 46 ns against 30 ns.)
# The recursions branch to one or the other: an inlined function that itself calls _matvec_axpy
# made the K = 3 forward pass four times slower.
_AXPY_MIN_K = 16


@njit(cache=True, nogil=True, fastmath={"contract"})
def _matvec_axpy(MT, x, scale, out, o):
    """out[o + j] = (sum_i MT[i, j] * x[i]) * scale as axpy updates over the rows of MT (for
    large K).  The same FMAs in the same order as _matvec_dot(MT.T, ...): the same values."""
    K = MT.shape[0]
    y = out[o:o + K]
    for j in range(K):
        y[j] = 0.0
    for i in range(K):
        xi = x[i]
        row = MT[i]
        for j in range(K):
            y[j] += row[j] * xi
    for j in range(K):
        y[j] *= scale


@njit(cache=True, nogil=True, fastmath={"contract"}, inline="always")
def _matvec_dot(M, x, scale, out, o):
    """out[o + j] = (sum_i M[j, i] * x[i]) * scale as dot products (for small K; inlined)."""
    K = M.shape[0]
    # four outputs per pass, so that every x[i] load feeds four FMAs (the loop is load-bound)
    j = 0
    while j + 3 < K:
        acc0 = 0.0
        acc1 = 0.0
        acc2 = 0.0
        acc3 = 0.0
        for i in range(K):
            xi = x[i]
            acc0 += M[j, i] * xi
            acc1 += M[j + 1, i] * xi
            acc2 += M[j + 2, i] * xi
            acc3 += M[j + 3, i] * xi
        out[o + j] = acc0 * scale
        out[o + j + 1] = acc1 * scale
        out[o + j + 2] = acc2 * scale
        out[o + j + 3] = acc3 * scale
        j += 4
    while j < K:
        acc0 = 0.0
        for i in range(K):
            acc0 += M[j, i] * x[i]
        out[o + j] = acc0 * scale
        j += 1


@njit(cache=True, nogil=True)
def _chunk_frameprob(ll, c0, c1, mx, X, E, EB, compute_max):
    """E[(t - c0) * K + k] = exp(ll[t, k] - mx[t]) for t in [c0, c1).

    X[(t - c0) * K + k] keeps ll[t, k] - mx[t] (see _row_flushed).  With
    ``compute_max`` the row maxima are computed and stored in ``mx``; returns
    False if some row is entirely -inf.
    """
    K = ll.shape[1]
    n = 0
    for t in range(c0, c1):
        if compute_max:
            m = _row_max(ll, t)
            if m == _NEG_INF:
                return False
            mx[t] = m
        else:
            m = mx[t]
        for k in range(K):
            X[n] = np.float64(ll[t, k]) - m
            n += 1
    _vexp(X, E, EB, n)
    return True


# ---------------------------------------------------------------------------
# scaled forward pass (shared by forward-backward, filter and FFBS)
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True, fastmath={"contract"})
def _forward_scaled(pi, AT, A, ll, a, b, out, mx, cs, X, E, EB, u, vp):
    """Scaled forward pass over ll[a:b].

    out[t] <- alpha_hat_t = p(z_t | x_a..x_t), mx[t] <- max_k ll[t, k],
    cs[t] <- c_t (the normaliser of step t).
    Returns (ok, log_likelihood).  ``ok`` is False when some normaliser is
    below _TINY (or a step is impossible for every state): the caller must
    then use the exact log-space path.

    The recursion runs on the unnormalised vector ``vp`` and applies the
    previous step's 1 / c_t lazily, which takes the normaliser's sum and
    division off the loop-carried dependency chain.
    """
    K = AT.shape[0]
    sum_m = 0.0
    log_acc = 0.0
    prod = 1.0
    inv = 1.0
    for c0 in range(a, b, _CHUNK):
        c1 = min(c0 + _CHUNK, b)
        if not _chunk_frameprob(ll, c0, c1, mx, X, E, EB, True):
            return False, 0.0
        for t in range(c0, c1):
            base = (t - c0) * K
            if t == a:
                for k in range(K):
                    u[k] = pi[k]
            elif K >= _AXPY_MIN_K:  # u = (vp @ A) / c_{t-1}
                _matvec_axpy(A, vp, inv, u, 0)
            else:
                _matvec_dot(AT, vp, inv, u, 0)
            c = 0.0
            for k in range(K):
                v = u[k] * E[base + k]
                vp[k] = v
                c += v
            if not (c >= _TINY):
                return False, 0.0
            if c < _FLAG_MIN_C and _row_flushed(X, base, K):
                return False, 0.0
            cs[t] = c
            inv = 1.0 / c
            for k in range(K):
                out[t, k] = vp[k] * inv
            sum_m += mx[t]
            prod *= c
            if prod < 1e-100 or prod > 1e100:
                log_acc += math.log(prod)
                prod = 1.0
    return True, sum_m + (log_acc + math.log(prod))


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _acc_outer_chunk(S, P, Q, lo, hi):
    """S[i, j] += sum_{c in [lo, hi)} P[i, c] * Q[j, c] (vectorised dots)."""
    K = S.shape[0]
    for i in range(K):
        for j in range(K):
            acc = 0.0
            for c in range(lo, hi):
                acc += P[i, c] * Q[j, c]
            S[i, j] += acc


# ---------------------------------------------------------------------------
# forward-backward
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True, fastmath={"contract"})
def _fb_seq_scaled(pi, A, AT, ll, a, b, post, mx, cs, Sseq, X, E, EB, P, Q, u, bu, w):
    """Scaled forward-backward for the sequence ll[a:b].

    Writes posteriors to post[a:b] and adds sum_t outer(alpha_t / Z_t, w_{t+1})
    to ``Sseq`` (the expected transition counts are ``A * Sseq``).  Returns
    (ok, log_likelihood); on ``ok == False`` the outputs are garbage and the
    caller must use the log-space path.

    Backward recursion: beta_t is kept normalised to max 1 (lazily, as in the
    forward pass), w_t = B_t * beta_t, bu_t = A w_{t+1},
    Z_t = alpha_t . bu_t, gamma_t = alpha_t * bu_t / Z_t and
    xi_t = A * outer(alpha_t / Z_t, w_{t+1}); the outer products are
    buffered per chunk (P, Q) and reduced with vectorised dot products.
    """
    K = A.shape[0]
    ok, loglik = _forward_scaled(pi, AT, A, ll, a, b, post, mx, cs, X, E, EB, u, w)
    if not ok:
        return False, 0.0
    # gamma_{b-1} = alpha_hat_{b-1} is already in post[b - 1].
    # w holds the unnormalised B_{t+1} * bu_{t+1}; scale = 1 / max(bu_{t+1}).
    scale = 1.0
    last_c0 = a + ((b - 1 - a) // _CHUNK) * _CHUNK
    for c0 in range(last_c0, a - 1, -_CHUNK):
        c1 = min(c0 + _CHUNK, b)
        _chunk_frameprob(ll, c0, c1, mx, X, E, EB, False)
        hi = c1 - c0
        for t in range(c1 - 1, c0 - 1, -1):
            base = (t - c0) * K
            col = t - c0
            if t == b - 1:
                for k in range(K):
                    w[k] = E[base + k]
                hi = col
                continue
            if K >= _AXPY_MIN_K:  # bu = A w_{t+1}
                _matvec_axpy(AT, w, scale, bu, 0)
            else:
                _matvec_dot(A, w, scale, bu, 0)
            bmax = 0.0
            Z = 0.0
            for i in range(K):
                v = bu[i]
                bmax = max(bmax, v)
                Z += post[t, i] * v
            if not (Z >= _TINY):
                return False, 0.0
            if cs[t] * Z < _FLAG_MIN_CZ and _row_flushed(X, base, K):
                return False, 0.0
            invZ = 1.0 / Z
            for j in range(K):
                Q[j, col] = w[j] * scale
            for i in range(K):
                at = post[t, i]
                P[i, col] = at * invZ
                post[t, i] = at * bu[i] * invZ
                w[i] = E[base + i] * bu[i]
            scale = 1.0 / bmax  # bmax >= Z >= _TINY
        _acc_outer_chunk(Sseq, P, Q, 0, hi)
    return True, loglik


@njit(cache=True, nogil=True)
def _fb_seq_log(logpi, logA, ll, a, b, post, X, lb, lbn, tmp):
    """Exact log-space forward-backward for ll[a:b].

    Writes posteriors to post[a:b] and adds the expected transition counts to
    ``X``.  Returns the log-likelihood; if it is -inf the posteriors are zero
    and nothing is added.
    """
    K = logA.shape[0]
    for k in range(K):
        post[a, k] = logpi[k] + np.float64(ll[a, k])
    for t in range(a + 1, b):
        _log_forward_step(logA, post[t - 1], ll, t, post[t])
    loglik = _logsumexp_vec(post[b - 1])
    if loglik == _NEG_INF:
        for t in range(a, b):
            for k in range(K):
                post[t, k] = 0.0
        return _NEG_INF
    for k in range(K):
        lb[k] = 0.0
        post[b - 1, k] = math.exp(post[b - 1, k] - loglik)
    for t in range(b - 2, a - 1, -1):
        for i in range(K):
            m = _NEG_INF
            for j in range(K):
                v = logA[i, j] + np.float64(ll[t + 1, j]) + lb[j]
                tmp[j] = v
                if v > m:
                    m = v
            if m == _NEG_INF:
                lbn[i] = _NEG_INF
            else:
                s = 0.0
                for j in range(K):
                    s += math.exp(tmp[j] - m)
                lbn[i] = m + math.log(s)
            la = post[t, i]
            if la > _NEG_INF:
                for j in range(K):
                    X[i, j] += math.exp(la + tmp[j] - loglik)
            post[t, i] = math.exp(la + lbn[i] - loglik)
        for k in range(K):
            lb[k] = lbn[k]
    return loglik


@njit(cache=True, nogil=True, parallel=True)
def forward_backward_kernel(pi, A, AT, logpi, logA, ll, seq_starts, block_starts, force_log):
    """Forward-backward over all sequences.

    Returns
    -------
    seq_ll : (n_seq,) float64
    post : (T, K) float64
    xi : (K, K) float64
    start : (K,) float64
    """
    T = ll.shape[0]
    K = A.shape[0]
    n_seq = seq_starts.shape[0] - 1
    nb = block_starts.shape[0] - 1
    post = np.empty((T, K), dtype=np.float64)
    mx = np.empty(T, dtype=np.float64)
    cs = np.empty(T, dtype=np.float64)
    seq_ll = np.zeros(n_seq, dtype=np.float64)
    S_blk = np.zeros((nb, K, K), dtype=np.float64)
    X_blk = np.zeros((nb, K, K), dtype=np.float64)
    st_blk = np.zeros((nb, K), dtype=np.float64)
    for blk in prange(nb):
        u = np.empty(K, dtype=np.float64)
        bu = np.empty(K, dtype=np.float64)
        w = np.empty(K, dtype=np.float64)
        tmp = np.empty(K, dtype=np.float64)
        Sseq = np.empty((K, K), dtype=np.float64)
        X = np.empty(_CHUNK * K, dtype=np.float64)
        E = np.empty(_CHUNK * K, dtype=np.float64)
        EB = np.empty(_CHUNK * K, dtype=np.int64)
        P = np.empty((K, _CHUNK), dtype=np.float64)
        Q = np.empty((K, _CHUNK), dtype=np.float64)
        S = S_blk[blk]
        Xc = X_blk[blk]
        st = st_blk[blk]
        for s in range(block_starts[blk], block_starts[blk + 1]):
            a = seq_starts[s]
            b = seq_starts[s + 1]
            if b <= a:
                continue
            ok = False
            lp = 0.0
            if not force_log:
                Sseq[:, :] = 0.0
                ok, lp = _fb_seq_scaled(
                    pi, A, AT, ll, a, b, post, mx, cs, Sseq, X, E, EB, P, Q, u, bu, w
                )
                if ok:
                    for i in range(K):
                        for j in range(K):
                            S[i, j] += Sseq[i, j]
            if not ok:
                lp = _fb_seq_log(logpi, logA, ll, a, b, post, Xc, u, bu, tmp)
            seq_ll[s] = lp
            for k in range(K):
                st[k] += post[a, k]
    # ordered reduction over blocks (thread-count independent)
    S_tot = np.zeros((K, K), dtype=np.float64)
    X_tot = np.zeros((K, K), dtype=np.float64)
    start = np.zeros(K, dtype=np.float64)
    for blk in range(nb):
        for i in range(K):
            start[i] += st_blk[blk, i]
            for j in range(K):
                S_tot[i, j] += S_blk[blk, i, j]
                X_tot[i, j] += X_blk[blk, i, j]
    xi = np.empty((K, K), dtype=np.float64)
    for i in range(K):
        for j in range(K):
            xi[i, j] = A[i, j] * S_tot[i, j] + X_tot[i, j]
    return seq_ll, post, xi, start


# ---------------------------------------------------------------------------
# forward only (filtering)
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _filter_seq_log(logpi, logA, ll, a, b, out, la, lan, as_log):
    """Exact log-space forward pass.

    If ``as_log`` the rows of ``out`` receive log alpha_t (unnormalised);
    otherwise they receive the normalised filtered probabilities, zeros from
    the first step whose prefix is impossible.  Returns the log-likelihood.
    """
    K = logA.shape[0]
    for k in range(K):
        la[k] = logpi[k] + np.float64(ll[a, k])
    for t in range(a, b):
        if t > a:
            _log_forward_step(logA, la, ll, t, lan)
            for k in range(K):
                la[k] = lan[k]
        if as_log:
            for k in range(K):
                out[t, k] = la[k]
        else:
            lse = _logsumexp_vec(la)
            if lse == _NEG_INF:
                for k in range(K):
                    out[t, k] = 0.0
            else:
                for k in range(K):
                    out[t, k] = math.exp(la[k] - lse)
    return _logsumexp_vec(la)


@njit(cache=True, nogil=True, parallel=True)
def filter_kernel(pi, A, AT, logpi, logA, ll, seq_starts, block_starts, force_log):
    """Forward pass over all sequences.  Returns (seq_ll (n_seq,), filtered (T, K))."""
    T = ll.shape[0]
    K = AT.shape[0]
    n_seq = seq_starts.shape[0] - 1
    nb = block_starts.shape[0] - 1
    out = np.empty((T, K), dtype=np.float64)
    mx = np.empty(T, dtype=np.float64)
    cs = np.empty(T, dtype=np.float64)
    seq_ll = np.zeros(n_seq, dtype=np.float64)
    for blk in prange(nb):
        u = np.empty(K, dtype=np.float64)
        la = np.empty(K, dtype=np.float64)
        X = np.empty(_CHUNK * K, dtype=np.float64)
        E = np.empty(_CHUNK * K, dtype=np.float64)
        EB = np.empty(_CHUNK * K, dtype=np.int64)
        for s in range(block_starts[blk], block_starts[blk + 1]):
            a = seq_starts[s]
            b = seq_starts[s + 1]
            if b <= a:
                continue
            ok = False
            lp = 0.0
            if not force_log:
                ok, lp = _forward_scaled(pi, AT, A, ll, a, b, out, mx, cs, X, E, EB, u, la)
            if not ok:
                lp = _filter_seq_log(logpi, logA, ll, a, b, out, la, u, False)
            seq_ll[s] = lp
    return seq_ll, out


# ---------------------------------------------------------------------------
# Viterbi
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True, parallel=True)
def viterbi_kernel(logpi, logAT, ll, seq_starts, block_starts):
    """Viterbi over all sequences; ``logAT`` is log(transmat).T (contiguous).

    Returns (seq_logprob (n_seq,), path (T,) int64).  For a sequence with
    log-probability -inf the path is an arbitrary state sequence.
    """
    T = ll.shape[0]
    K = logAT.shape[0]
    n_seq = seq_starts.shape[0] - 1
    nb = block_starts.shape[0] - 1
    path = np.empty(T, dtype=np.int64)
    # delta[t, j] = max over paths ending in j at t; the backtrack recomputes
    # the arg-max (same floating point operations, so the same winner), which
    # keeps the forward recursion branch-free.
    delta = np.empty((T, K), dtype=np.float64)
    seq_lp = np.zeros(n_seq, dtype=np.float64)
    for blk in prange(nb):
        for s in range(block_starts[blk], block_starts[blk + 1]):
            a = seq_starts[s]
            b = seq_starts[s + 1]
            if b <= a:
                continue
            for k in range(K):
                delta[a, k] = logpi[k] + np.float64(ll[a, k])
            for t in range(a + 1, b):
                for j in range(K):
                    best = _NEG_INF
                    for i in range(K):
                        v = delta[t - 1, i] + logAT[j, i]
                        best = v if v > best else best
                    delta[t, j] = best + np.float64(ll[t, j])
            best = _NEG_INF
            arg = 0
            for k in range(K):
                if delta[b - 1, k] > best:
                    best = delta[b - 1, k]
                    arg = k
            seq_lp[s] = best
            path[b - 1] = arg
            for t in range(b - 1, a, -1):
                best = _NEG_INF
                nxt = 0
                for i in range(K):
                    v = delta[t - 1, i] + logAT[arg, i]
                    gt = v > best
                    nxt = i if gt else nxt
                    best = v if gt else best
                arg = nxt
                path[t - 1] = arg
    return seq_lp, path


# ---------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _ffbs_seq_scaled(A, a, b, fwd, unif, path, wts):
    """Backward sampling from scaled filtered marginals in fwd[a:b]."""
    K = A.shape[0]
    tot = 0.0
    for k in range(K):
        tot += fwd[b - 1, k]
    z = _pick(fwd[b - 1], tot, unif[b - 1])
    if z < 0:
        return False
    path[b - 1] = z
    for t in range(b - 2, a - 1, -1):
        tot = 0.0
        for i in range(K):
            v = fwd[t, i] * A[i, z]
            wts[i] = v
            tot += v
        z = _pick(wts, tot, unif[t])
        if z < 0:
            return False
        path[t] = z
    return True


@njit(cache=True, nogil=True)
def _ffbs_seq_log(logA, a, b, fwd, loglik, unif, path, wts, tmp):
    """Backward sampling from log alpha in fwd[a:b] (loglik finite)."""
    K = logA.shape[0]
    tot = 0.0
    for k in range(K):
        v = math.exp(fwd[b - 1, k] - loglik)
        wts[k] = v
        tot += v
    z = _pick(wts, tot, unif[b - 1])
    path[b - 1] = z
    for t in range(b - 2, a - 1, -1):
        m = _NEG_INF
        for i in range(K):
            v = fwd[t, i] + logA[i, z]
            tmp[i] = v
            if v > m:
                m = v
        tot = 0.0
        for i in range(K):
            v = math.exp(tmp[i] - m)
            wts[i] = v
            tot += v
        z = _pick(wts, tot, unif[t])
        path[t] = z


@njit(cache=True, nogil=True, parallel=True)
def ffbs_kernel(pi, A, AT, logpi, logA, ll, seq_starts, block_starts, unif, force_log):
    """Forward filtering, backward sampling.  ``unif`` (T,) uniforms in [0, 1).

    Returns (seq_ll (n_seq,), path (T,) int64); the path of an impossible
    sequence (seq_ll == -inf) is filled with -1.
    """
    T = ll.shape[0]
    K = A.shape[0]
    n_seq = seq_starts.shape[0] - 1
    nb = block_starts.shape[0] - 1
    fwd = np.empty((T, K), dtype=np.float64)
    mx = np.empty(T, dtype=np.float64)
    cs = np.empty(T, dtype=np.float64)
    path = np.empty(T, dtype=np.int64)
    seq_ll = np.zeros(n_seq, dtype=np.float64)
    for blk in prange(nb):
        u = np.empty(K, dtype=np.float64)
        la = np.empty(K, dtype=np.float64)
        wts = np.empty(K, dtype=np.float64)
        X = np.empty(_CHUNK * K, dtype=np.float64)
        E = np.empty(_CHUNK * K, dtype=np.float64)
        EB = np.empty(_CHUNK * K, dtype=np.int64)
        for s in range(block_starts[blk], block_starts[blk + 1]):
            a = seq_starts[s]
            b = seq_starts[s + 1]
            if b <= a:
                continue
            ok = False
            lp = 0.0
            if not force_log:
                ok, lp = _forward_scaled(pi, AT, A, ll, a, b, fwd, mx, cs, X, E, EB, u, la)
                if ok:
                    ok = _ffbs_seq_scaled(A, a, b, fwd, unif, path, wts)
            if not ok:
                # exact log-space fallback: fwd rows hold log alpha_t
                lp = _filter_seq_log(logpi, logA, ll, a, b, fwd, la, u, True)
                if lp == _NEG_INF:
                    for t in range(a, b):
                        path[t] = -1
                else:
                    _ffbs_seq_log(logA, a, b, fwd, lp, unif, path, wts, la)
            seq_ll[s] = lp
    return seq_ll, path


@njit(cache=True, nogil=True)
def sample_states_kernel(pi, A, unif):
    """Sample a Markov chain path of length ``unif.shape[0]``."""
    n = unif.shape[0]
    path = np.empty(n, dtype=np.int64)
    if n == 0:
        return path
    K = pi.shape[0]
    tot = 0.0
    for k in range(K):
        tot += pi[k]
    z = _pick(pi, tot, unif[0])
    path[0] = z
    rowsum = np.empty(K, dtype=np.float64)
    for i in range(K):
        s = 0.0
        for j in range(K):
            s += A[i, j]
        rowsum[i] = s
    for t in range(1, n):
        z = _pick(A[z], rowsum[z], unif[t])
        path[t] = z
    return path
