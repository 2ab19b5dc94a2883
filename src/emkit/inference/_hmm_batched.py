"""Forward-backward batched across sequences, in numpy (private).

All sequences advance together: sequences are sorted by decreasing length and
their frames laid out time-major, so the sequences still running at step ``t``
are the first ``n_t`` rows of step ``t``'s block.  Every step is then one
``(n_t, K) @ (K, K)`` product (BLAS) and a few element-wise operations on
``(n_t, K)`` arrays, and the expected transition counts are one
``(K, T') @ (T', K)`` product at the end.

This is the path for many sequences with many states (the per-step product
keeps BLAS busy) and for small problems (nothing to compile, so a first fit
does not wait for numba).  It computes what the scaled recursion of
:mod:`._hmm_kernels` computes, the same way: the step's largest frame
log-likelihood is subtracted before exponentiating, frame probabilities below
``exp(-708)`` of the step's best state are flushed to zero, the backward
messages are normalised to a maximum of 1 and the posteriors by their sum, and
a sequence leaves the scaled recursion under the same conditions.  Results
agree with the compiled kernel to rounding.  Sequences whose scaled recursion
is unsafe are returned to the caller, which recomputes them with the compiled
kernel (exact log-space recursions).
"""

from __future__ import annotations

import numpy as np

# the thresholds of the compiled scaled recursion (see _hmm_kernels)
_TINY = 1e-290
_EXP_FLOOR = -708.0
_FLAG_MIN_C = 1e-30
_FLAG_MIN_CZ = 1e-288


def time_major(seq_starts):
    """Layout of the sequences advancing together.

    Returns
    -------
    order : (n_seq,) int64
        Sequence indices sorted by decreasing length (stable).
    perm : (T,) int64
        ``perm[r]`` is the row of the concatenated input that goes to row ``r``
        of the time-major layout.
    offsets : (L + 1,) int64
        Step ``t`` occupies time-major rows ``offsets[t]:offsets[t + 1]``;
        ``L`` is the longest length.
    rank : (T,) int64
        Position (in ``order``) of the sequence of each time-major row.
    """
    lengths = np.diff(seq_starts)
    order = np.argsort(-lengths, kind="stable")
    L = int(lengths.max()) if lengths.size else 0
    # n_t = number of sequences longer than t
    n_t = lengths.size - np.cumsum(np.bincount(lengths, minlength=L + 1))[:L]
    offsets = np.zeros(L + 1, dtype=np.int64)
    np.cumsum(n_t, out=offsets[1:])
    T = int(offsets[-1])
    rank = np.arange(T, dtype=np.int64) - np.repeat(offsets[:-1], n_t)
    step = np.repeat(np.arange(L, dtype=np.int64), n_t)
    perm = seq_starts[:-1][order][rank] + step
    return order, perm, offsets, rank


def forward_backward(pi, A, ll, seq_starts):
    """Scaled forward-backward over all sequences at once.

    Returns
    -------
    seq_ll : (n_seq,) float64
    post : (T, K) float64
    xi : (K, K) float64
        Expected transition counts of the sequences that are not ``bad``.
    start : (K,) float64
        Sum of the first posteriors of the sequences that are not ``bad``.
    bad : (n_seq,) bool
        Sequences whose scaled recursion left the safe range; their entries in
        ``seq_ll`` and ``post`` are garbage and must be recomputed.
    """
    T, K = ll.shape
    n_seq = seq_starts.shape[0] - 1
    order, perm, off, rank = time_major(seq_starts)
    L = off.shape[0] - 1
    n = np.diff(off)  # sequences running at each step
    post = np.empty((T, K))
    with np.errstate(all="ignore"):
        # E <- exp(ll - max), time-major (float32 input is widened first)
        E = ll[perm].astype(np.float64, copy=False)
        mx = E.max(axis=1)
        E -= mx[:, None]
        below = E < _EXP_FLOOR
        flagged = np.any(below & (E > -np.inf), axis=1) if below.any() else None
        np.exp(E, out=E)
        E[below] = 0.0
        del below
        # forward: alpha_t = (alpha_{t-1} @ A) * E_t / c_t
        alpha = np.empty((T, K))
        c = np.empty(T)
        if L:
            np.multiply(pi, E[: n[0]], out=alpha[: n[0]])
        for t in range(L):
            lo, hi = off[t], off[t + 1]
            cur = alpha[lo:hi]
            if t:
                np.matmul(alpha[off[t - 1]:off[t - 1] + n[t]], A, out=cur)
                cur *= E[lo:hi]
            np.add.reduce(cur, axis=1, out=c[lo:hi])
            cur /= c[lo:hi, None]
        # backward.  beta_t (normalised to max 1) lives in B[:n_t];
        # W_{t+1} = E_{t+1} * beta_{t+1} overwrites E's block t+1 and
        # P_t = alpha_t / Z_t overwrites alpha's block t+1 (no longer needed),
        # so that sum_t outer(P_t, W_{t+1}) is one product at the end.
        Z = np.ones(T)
        B = np.ones((n[0] if L else 0, K))
        BU = np.empty_like(B)
        AT = np.ascontiguousarray(A.T)
        if L:
            post[perm[off[L - 1]:]] = alpha[off[L - 1]:]
        for t in range(L - 2, -1, -1):
            lo, hi, nxt = off[t], off[t + 1], n[t + 1]
            W = E[hi:hi + nxt]
            W *= B[:nxt]
            bu = np.matmul(W, AT, out=BU[:nxt])
            at = alpha[lo:lo + nxt]
            z = Z[lo:lo + nxt]
            np.einsum("ij,ij->i", at, bu, out=z)
            P = np.divide(at, z[:, None], out=alpha[hi:hi + nxt])
            post[perm[lo:lo + nxt]] = P * bu
            if hi > lo + nxt:  # sequences ending at step t
                post[perm[lo + nxt:hi]] = alpha[lo + nxt:hi]
                B[nxt:hi - lo] = 1.0
            np.divide(bu, bu.max(axis=1)[:, None], out=B[:nxt])
        bad_row = ~(c >= _TINY) | ~(Z >= _TINY)
        if flagged is not None:
            bad_row |= flagged & ((c < _FLAG_MIN_C) | (c * Z < _FLAG_MIN_CZ))
        seq_ll = np.zeros(n_seq)
        seq_ll[order] = np.bincount(rank, weights=mx + np.log(c), minlength=n_seq)
    bad = np.zeros(n_seq, dtype=bool)
    if bad_row.any():
        bad[order[np.unique(rank[bad_row])]] = True
        # keep the garbage of bad sequences out of the sums
        P_all = alpha[off[1]:] if L > 1 else alpha[:0]
        skip = bad[order][rank[off[1]:]] if L > 1 else np.zeros(0, dtype=bool)
        P_all[skip] = 0.0
        E[off[1]:][skip] = 0.0
        first = post[perm[: n[0]]] if L else np.zeros((0, K))
        first[bad[order][: first.shape[0]]] = 0.0
        start = first.sum(axis=0)
    else:
        start = post[perm[: n[0]]].sum(axis=0) if L else np.zeros(K)
    if L > 1:
        xi = A * (alpha[off[1]:].T @ E[off[1]:])
    else:
        xi = np.zeros((K, K))
    return seq_ll, post, xi, start, bad


def viterbi(logpi, logA, ll, seq_starts):
    """Viterbi over all sequences at once (the max-product recursion of the compiled kernel).

    Returns ``(seq_lp (n_seq,), path (T,) int64)``: the same values and paths as the compiled
    kernel (the same additions in the same order; ties go to the lowest state index).
    """
    T, K = ll.shape
    n_seq = seq_starts.shape[0] - 1
    order, perm, off, rank = time_major(seq_starts)
    L = off.shape[0] - 1
    n = np.diff(off)
    lt = ll[perm].astype(np.float64, copy=False)
    delta = np.empty((T, K))
    back = np.empty((T, K), dtype=np.int64)  # back[r, j]: best predecessor of state j at row r
    if L:
        np.add(logpi, lt[: n[0]], out=delta[: n[0]])
    for t in range(1, L):
        lo, hi, plo = off[t], off[t + 1], off[t - 1]
        cand = delta[plo:plo + n[t], :, None] + logA  # (n_t, i, j)
        np.argmax(cand, axis=1, out=back[lo:hi])
        np.add(np.take_along_axis(cand, back[lo:hi, None, :], axis=1)[:, 0, :], lt[lo:hi], out=delta[lo:hi])
    seq_lp = np.zeros(n_seq)
    path = np.empty(T, dtype=np.int64)
    state = np.zeros(n[0] if L else 0, dtype=np.int64)
    rows = np.arange(state.shape[0])
    for t in range(L - 1, -1, -1):
        lo, hi = off[t], off[t + 1]
        nxt = n[t + 1] if t + 1 < L else 0
        if nxt:  # sequences still running at t + 1 follow their back pointers
            state[:nxt] = back[off[t + 1] + rows[:nxt], state[:nxt]]
        if hi - lo > nxt:  # sequences ending at step t start from their best final state
            last = delta[lo + nxt:hi]
            state[nxt:hi - lo] = np.argmax(last, axis=1)
            seq_lp[order[nxt:hi - lo]] = last.max(axis=1)
        path[perm[lo:hi]] = state[:hi - lo]
    return seq_lp, path
