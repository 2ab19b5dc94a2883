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

_NEG_INF = -np.inf


@njit(cache=True, nogil=True)
def normalize_log_resp(lp, log_norm):
    """In place: ``lp`` (n, K) log joint -> responsibilities; ``log_norm`` (n,) <- logsumexp of each row.

    A row whose entries are all -inf gets log_norm -inf and zero responsibilities.
    """
    n, K = lp.shape
    for i in range(n):
        m = _NEG_INF
        for k in range(K):
            if lp[i, k] > m:
                m = lp[i, k]
        if m == _NEG_INF:
            log_norm[i] = _NEG_INF
            for k in range(K):
                lp[i, k] = 0.0
            continue
        s = 0.0
        for k in range(K):
            e = math.exp(lp[i, k] - m)
            lp[i, k] = e
            s += e
        inv = 1.0 / s
        for k in range(K):
            lp[i, k] *= inv
        log_norm[i] = m + math.log(s)


@njit(cache=True, nogil=True)
def full_log_density(Y, bias, D, const, out):
    """``out[i, k] = const[k] - 0.5 * ||Y[i, kD:(k+1)D] - bias[kD:(k+1)D]||^2``.

    ``Y`` (n, K*D) holds the data projected on every component's precision factor.
    """
    n = Y.shape[0]
    K = const.shape[0]
    for i in range(n):
        for k in range(K):
            s = 0.0
            o = k * D
            for d in range(D):
                v = Y[i, o + d] - bias[o + d]
                s += v * v
            out[i, k] = const[k] - 0.5 * s


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
