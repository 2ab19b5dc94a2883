"""Compiled kernels for Gaussian densities and moments of rows with missing (NaN) entries.

Rows arrive grouped by missingness pattern: ``starts`` (P + 1,) delimits the rows of each
pattern and ``observed`` (P, D) says which coordinates the pattern observes.  For every
(pattern, component) pair the observed block of the covariance is factorised once
(``S_oo = L L^T``); every row of the pattern then costs one triangular solve.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=True, nogil=True)
def _cholesky_block(S, o, L):
    """Lower Cholesky factor of ``S[o][:, o]`` into ``L[:no, :no]``; returns ``log det L`` (-inf if not PD)."""
    no = o.shape[0]
    logdet = 0.0
    for j in range(no):
        s = S[o[j], o[j]]
        for t in range(j):
            s -= L[j, t] * L[j, t]
        if not s > 0.0:
            return -np.inf
        d = math.sqrt(s)
        L[j, j] = d
        logdet += math.log(d)
        for i in range(j + 1, no):
            v = S[o[i], o[j]]
            for t in range(j):
                v -= L[i, t] * L[j, t]
            L[i, j] = v / d
    return logdet


@njit(cache=True, nogil=True)
def _solve_lower(L, no, r, z):
    """``z[:no] = L^{-1} r[:no]`` (forward substitution)."""
    for j in range(no):
        v = r[j]
        for t in range(j):
            v -= L[j, t] * z[t]
        z[j] = v / L[j, j]


@njit(cache=True, nogil=True)
def marginal_loglik(X, starts, observed, means, covs, out):
    """``out[i, k] = log N(x_i[o] | mu_k[o], S_k[o, o])`` for rows grouped by pattern.

    ``X`` (n, D) float64 (NaN where missing), ``covs`` (K, D, D).  A row with nothing observed
    gets 0 (its density integrates to one).  Returns -1 if an observed block is not positive
    definite, else 0.
    """
    n, D = X.shape
    K = means.shape[0]
    L = np.empty((D, D))
    r = np.empty(D)
    z = np.empty(D)
    for p in range(starts.shape[0] - 1):
        a, b = starts[p], starts[p + 1]
        o = np.flatnonzero(observed[p])
        no = o.shape[0]
        if no == 0:
            for i in range(a, b):
                for k in range(K):
                    out[i, k] = 0.0
            continue
        for k in range(K):
            logdet = _cholesky_block(covs[k], o, L)
            if logdet == -np.inf:
                return -1
            const = -0.5 * no * _LOG_2PI - logdet
            for i in range(a, b):
                for j in range(no):
                    r[j] = X[i, o[j]] - means[k, o[j]]
                _solve_lower(L, no, r, z)
                s = 0.0
                for j in range(no):
                    s += z[j] * z[j]
                out[i, k] = const - 0.5 * s
    return 0


@njit(cache=True, nogil=True)
def conditional_fill(X, starts, observed, means, covs, centers, W, Xs, Cw):
    """Conditional expectations of the missing entries, per component, about ``centers``.

    For every row ``i`` and component ``k``: ``Xs[k, i] = E[x_i | x_i[o], z = k] - centers[k]``
    (observed entries are kept, missing ones are ``mu_m + S_mo S_oo^{-1} (x_o - mu_o)``), and
    ``Cw[k] += sum_i W[i, k] * Cov[x_i | x_i[o], z = k]`` (the conditional covariance
    ``S_mm - S_mo S_oo^{-1} S_om`` in the missing block, zero elsewhere).

    ``X`` (n, D), ``W`` (n, K), ``covs`` (K, D, D), ``centers`` (K, D), ``Xs`` (K, n, D) and
    ``Cw`` (K, D, D) outputs (``Cw`` is added to).  Returns -1 if an observed block is not
    positive definite, else 0.
    """
    n, D = X.shape
    K = means.shape[0]
    L = np.empty((D, D))
    B = np.empty((D, D))
    r = np.empty(D)
    z = np.empty(D)
    col = np.empty(D)
    for p in range(starts.shape[0] - 1):
        a, b = starts[p], starts[p + 1]
        o = np.flatnonzero(observed[p])
        m = np.flatnonzero(~observed[p])
        no, nm = o.shape[0], m.shape[0]
        for k in range(K):
            S = covs[k]
            if no > 0:
                if _cholesky_block(S, o, L) == -np.inf:
                    return -1
                # B = L^{-1} S_om  (no x nm), column by column
                for c in range(nm):
                    for j in range(no):
                        r[j] = S[o[j], m[c]]
                    _solve_lower(L, no, r, col)
                    for j in range(no):
                        B[j, c] = col[j]
            wsum = 0.0
            for i in range(a, b):
                wsum += W[i, k]
                for j in range(no):
                    r[j] = X[i, o[j]] - means[k, o[j]]
                    Xs[k, i, o[j]] = X[i, o[j]] - centers[k, o[j]]
                if no > 0:
                    _solve_lower(L, no, r, z)
                for c in range(nm):
                    v = means[k, m[c]] - centers[k, m[c]]
                    for j in range(no):
                        v += B[j, c] * z[j]
                    Xs[k, i, m[c]] = v
            if wsum != 0.0:
                for c1 in range(nm):
                    for c2 in range(nm):
                        v = S[m[c1], m[c2]]
                        for j in range(no):
                            v -= B[j, c1] * B[j, c2]
                        Cw[k, m[c1], m[c2]] += wsum * v
    return 0


@njit(cache=True, nogil=True)
def diag_marginal_mahalanobis(Xz, obs, means, P, out):
    """``out[i, k] = sum_d obs[i, d] (Xz[i, d] - means[k, d])^2 P[k, d]``: observed entries only.

    ``Xz`` (n, D) holds the rows with missing entries set to 0 and ``obs`` (n, D) is 1.0 where an
    entry is observed, 0.0 where it is missing (branch-free, so the loop vectorises).
    """
    n, D = Xz.shape
    K = means.shape[0]
    for i in range(n):
        for k in range(K):
            s = 0.0
            for d in range(D):
                v = (Xz[i, d] - means[k, d]) * obs[i, d]
                s += v * v * P[k, d]
            out[i, k] = s
