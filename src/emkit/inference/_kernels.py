"""Compiled kernels for mixtures and K-means (numba, cached on disk, GIL released).

Each kernel replaces an inner loop with the same inputs and outputs as the
numpy code it stands for; callers see no difference except speed.  They run
single-threaded inside one chunk; parallelism comes from running chunks on
the thread pool of :mod:`emkit.em`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._hmm_kernels import _vexp

_NEG_INF = -np.inf


# rows per block of the blocked row kernels: a block's (K, rows) buffers stay in L1/L2
_BLOCK = 256


@njit(cache=True, nogil=True)
def normalize_log_resp(lp, log_norm):
    """In place: ``lp`` (n, K) log joint -> responsibilities; ``log_norm`` (n,) <- logsumexp of each row.

    A row whose entries are all -inf gets log_norm -inf and zero responsibilities.  The
    exponentials go through a vectorised exp (responsibilities below exp(-708) of a row's
    largest become 0).  Rows are processed in blocks held component-major, so that every pass
    (maximum, shift, exp, sum, scale) runs across rows in SIMD lanes; the exp writes a separate
    buffer (in place, the possible aliasing would keep the compiler from vectorising it).
    """
    n, K = lp.shape
    B = _BLOCK
    T = np.empty((K, B))
    E = np.empty((K, B))
    ebits = np.empty(K * B, dtype=np.int64)
    mx = np.empty(B)
    s = np.empty(B)
    for i0 in range(0, n, B):
        b = min(B, n - i0)
        for k in range(K):
            for j in range(b):
                T[k, j] = lp[i0 + j, k]
        for j in range(b):
            mx[j] = _NEG_INF
        for k in range(K):
            for j in range(b):
                if T[k, j] > mx[j]:
                    mx[j] = T[k, j]
        for j in range(b):
            if mx[j] == _NEG_INF:  # nothing possible: exp(-inf - 0) = 0 everywhere
                mx[j] = 0.0
        for k in range(K):
            for j in range(b):
                T[k, j] -= mx[j]
        if b == B:
            _vexp(T.reshape(K * B), E.reshape(K * B), ebits, K * B)
        else:
            for k in range(K):
                _vexp(T[k], E[k], ebits, b)
        for j in range(b):
            s[j] = 0.0
        for k in range(K):
            for j in range(b):
                s[j] += E[k, j]
        for j in range(b):
            if s[j] > 0.0:
                log_norm[i0 + j] = mx[j] + math.log(s[j])
                s[j] = 1.0 / s[j]
            else:
                log_norm[i0 + j] = _NEG_INF
        for k in range(K):
            for j in range(b):
                lp[i0 + j, k] = E[k, j] * s[j]


@njit(cache=True, nogil=True)
def outer_products(Xs, out):
    """Upper-triangle products ``out[i, p(a, b)] = Xs[i, a] * Xs[i, b]`` for a <= b, row-major pairs."""
    n, D = Xs.shape
    for i in range(n):
        p = 0
        for a in range(D):
            xa = Xs[i, a]
            for b in range(a, D):
                out[i, p] = xa * Xs[i, b]
                p += 1


@njit(cache=True, nogil=True)
def lloyd_chunk(X, G, c_sq, sample_weight, labels, sums, counts):
    """Assign rows to the nearest centre and accumulate.

    ``G`` (n, K) = X @ C.T; the squared distance is ``|x|^2 - 2 G + |c|^2``.  Fills
    ``labels`` (n,), adds weighted rows into ``sums`` (K, D) and weights into ``counts`` (K,).
    Returns the chunk's inertia.  ``sample_weight`` of length 0 means unit weights.
    """
    n, K = G.shape
    D = X.shape[1]
    weighted = sample_weight.shape[0] > 0
    inertia = 0.0
    for i in range(n):
        best = 0
        bv = c_sq[0] - 2.0 * G[i, 0]
        for k in range(1, K):
            v = c_sq[k] - 2.0 * G[i, k]
            if v < bv:
                bv = v
                best = k
        labels[i] = best
        xs = 0.0
        for d in range(D):
            xs += np.float64(X[i, d]) * X[i, d]
        dist = xs + bv
        if dist < 0.0:
            dist = 0.0
        w = sample_weight[i] if weighted else 1.0
        inertia += w * dist
        counts[best] += w
        for d in range(D):
            sums[best, d] += w * X[i, d]
    return inertia


# -- K-means with Hamerly's bounds (exact Lloyd iterations that skip most distance computations) ------

@njit(cache=True, nogil=True)
def best_two_from_products(X, C, GT, c_sq, labels, upper, lower):
    """Full assignment of a chunk from ``GT = C @ X.T`` (K, n): nearest centre, the distance to it
    (upper bound) and to the second nearest (lower bound), both recomputed directly from the rows.

    The scan runs centre by centre over all rows, which vectorises.
    """
    K, n = GT.shape
    D = X.shape[1]
    b1 = np.full(n, np.inf)
    b2 = np.full(n, np.inf)
    i2 = np.zeros(n, dtype=np.int64)
    for i in range(n):
        labels[i] = 0
    for k in range(K):
        ck = c_sq[k]
        for i in range(n):
            v = ck - 2.0 * GT[k, i]
            if v < b1[i]:
                b2[i] = b1[i]
                i2[i] = labels[i]
                b1[i] = v
                labels[i] = k
            elif v < b2[i]:
                b2[i] = v
                i2[i] = k
    for i in range(n):
        a = labels[i]
        s1 = 0.0
        s2 = 0.0
        for d in range(D):
            v = X[i, d] - C[a, d]
            s1 += v * v
            w = X[i, d] - C[i2[i], d]
            s2 += w * w
        upper[i] = math.sqrt(s1)
        lower[i] = math.sqrt(s2) if K > 1 else np.inf


@njit(cache=True, nogil=True)
def hamerly_bounds(X, C, labels, upper, lower, shift, half_sep, need):
    """Hamerly's test for a chunk of rows after the centres moved by ``shift`` (K,).

    Loosens each row's bounds by the moves and keeps its label when the upper bound (tightened
    to the exact distance if needed) is within ``max(lower bound, half_sep[label])``, where
    ``half_sep[k]`` is half the distance from centre k to its nearest other centre.  Rows that
    fail get ``need[i] = 1`` and must be reassigned in full.  Returns their number.
    """
    n, D = X.shape
    K = C.shape[0]
    j1 = 0
    for k in range(1, K):
        if shift[k] > shift[j1]:
            j1 = k
    s1 = shift[j1]
    s2 = 0.0
    for k in range(K):
        if k != j1 and shift[k] > s2:
            s2 = shift[k]
    count = 0
    for i in range(n):
        a = labels[i]
        u = upper[i] + shift[a]
        lo = lower[i] - (s2 if a == j1 else s1)
        m = half_sep[a] if half_sep[a] > lo else lo
        need[i] = 0
        if u > m:
            s = 0.0
            for d in range(D):
                v = X[i, d] - C[a, d]
                s += v * v
            u = math.sqrt(s)
            if u > m:
                need[i] = 1
                count += 1
        upper[i] = u
        lower[i] = lo
    return count


@njit(cache=True, nogil=True)
def cluster_sums(X, labels, sample_weight, sums, counts):
    """Add the (weighted) rows of a chunk into ``sums`` (K, D) and their weights into ``counts`` (K,)."""
    n, D = X.shape
    weighted = sample_weight.shape[0] > 0
    for i in range(n):
        w = sample_weight[i] if weighted else 1.0
        k = labels[i]
        counts[k] += w
        for d in range(D):
            sums[k, d] += w * X[i, d]


@njit(cache=True, nogil=True)
def weighted_inertia(X, C, labels, sample_weight):
    """``sum_i w_i ||x_i - c_{label_i}||^2`` over a chunk."""
    n, D = X.shape
    weighted = sample_weight.shape[0] > 0
    acc = 0.0
    for i in range(n):
        s = 0.0
        k = labels[i]
        for d in range(D):
            v = X[i, d] - C[k, d]
            s += v * v
        acc += (sample_weight[i] if weighted else 1.0) * s
    return acc


@njit(cache=True, nogil=True)
def diag_mahalanobis(X, means, P, out):
    """``out[i, k] = sum_d (X[i, d] - means[k, d])^2 * P[k, d]`` (diagonal precisions P (K, D)).

    Blocks of rows are transposed first, so the sums run across rows in SIMD lanes (each
    entry is summed over d in order, as in a row-by-row loop).
    """
    n, D = X.shape
    K = means.shape[0]
    B = _BLOCK
    XT = np.empty((D, B))
    acc = np.empty(B)
    for i0 in range(0, n, B):
        b = min(B, n - i0)
        for d in range(D):
            for j in range(b):
                XT[d, j] = X[i0 + j, d]
        for k in range(K):
            for j in range(b):
                acc[j] = 0.0
            for d in range(D):
                m = means[k, d]
                p = P[k, d]
                for j in range(b):
                    v = XT[d, j] - m
                    acc[j] += v * v * p
            for j in range(b):
                out[i0 + j, k] = acc[j]


@njit(cache=True, nogil=True, fastmath={"contract"})
def full_mahalanobis_t(XT, means, U, out):
    """Squared Mahalanobis distances with full precisions, vectorised over rows.

    ``XT`` (D, n) holds the chunk's rows as columns (float64, contiguous); ``U`` (K, D, D) the
    upper-triangular precision factors (``U @ U.T`` is the precision).  Fills ``out`` (n, K) with
    ``|| (x_i - mu_k)^T U_k ||^2``, using only the triangle of ``U_k``.
    """
    D, n = XT.shape
    K = means.shape[0]
    xc = np.empty((D, n))
    y = np.empty(n)
    acc = np.empty(n)
    for k in range(K):
        for l in range(D):
            m = means[k, l]
            for i in range(n):
                xc[l, i] = XT[l, i] - m
        for i in range(n):
            acc[i] = 0.0
        for j in range(D):
            u = U[k, 0, j]
            for i in range(n):
                y[i] = xc[0, i] * u
            for l in range(1, j + 1):
                u = U[k, l, j]
                for i in range(n):
                    y[i] += xc[l, i] * u
            for i in range(n):
                acc[i] += y[i] * y[i]
        for i in range(n):
            out[i, k] = acc[i]
