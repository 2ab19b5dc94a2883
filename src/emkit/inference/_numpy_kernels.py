"""The compiled kernels' computations in numpy, for small inputs (private).

A first fit on small data should not wait for numba to be imported and kernels to be compiled
(or loaded from the on-disk cache) that then run for microseconds: below a size threshold the
callers use the functions here instead.  Each takes the same arguments and writes the same
outputs as the compiled kernel of the same name (in :mod:`._kernels`, or
:mod:`._missing_kernels` for ``diag_marginal_mahalanobis``), with the same operations in the
same order wherever numpy allows: ``outer_products`` and the K-means functions give
bit-identical results; responsibilities (numpy's ``exp`` instead of the kernel's vectorised one)
and distances (BLAS products instead of fused multiply-adds) agree with the kernels to a few
units in the last place.  This module never imports numba.

How the thresholds were chosen (2-core Xeon, warm kernels, lower quartile of many calls; see
the constants): once compiled, a kernel is faster than its numpy twin at every size -- numba's
call costs about a microsecond, numpy's about a microsecond per operation -- so there is no
crossover to find.  What a small problem saves by staying in numpy is fixed per process: about
0.25-0.35 s to import numba plus 0.2 s to load the first kernels from a warm cache, or 3.6 s to
compile the six kernels of a small GaussianMixture fit on an empty cache.  Each threshold is
the size up to which the numpy twin costs at most about 50 microseconds more per call than the
compiled kernel, so that a 100-iteration fit in a process that has loaded the kernels anyway
loses at most a few milliseconds, while a fit in a new process gains the half second (or
seconds).  The size rule depends on shapes only: a given problem always takes the same path.
"""

from __future__ import annotations

import numpy as np

_EXP_FLOOR = -708.0  # the compiled exponential flushes exp(x) to 0 below this (see _hmm_kernels._vexp)

#: responsibilities (``normalize_log_resp``) in numpy up to this many entries n x K.  Numpy
#: minus compiled per call: 18 us at 256 x 2, 53 us at 1024 x 2, 35 us at 512 x 4, 24 us at
#: 256 x 16, 93 us at 2048 x 2.
SMALL_RESP_CELLS = 2048
#: full-covariance distances (``full_mahalanobis_t``) in numpy up to n x K x D of this: 32 us at
#: n=2048, K=2, D=2; 38 us at 1024, 8, 2; 39 us at 2048, 2, 5; 37 us at 512, 8, 5; 31 us at 256, 8,
#: 10; 53 us at 512, 8, 10 (40960).
SMALL_FULL_DISTANCES = 16384
#: upper-triangle products (``outer_products``, full covariances below 16 features) in numpy up
#: to this many products n x D (D + 1) / 2: 22 us at n=4096, D=2; 24 us at 1024, 5; 32 us at 256,
#: 10; 37 us at 2048, 5 (30720); 78 us at 256, 15 (30720).
SMALL_OUTER_PRODUCTS = 16384
#: K-means passes (``lloyd_fused``, ``cluster_sums``, ``weighted_inertia``) in numpy up to n x K x
#: D of this: a pass costs 23 us more at n=256, K=2, D=2; 25 us at 256, 8, 2; 32 us at 64, 8, 10;
#: 63 us at 1024, 2, 2; 39 us at 256, 8, 5 (10240).
SMALL_LLOYD_CELLS = 4096


def normalize_log_resp(lp, log_norm):
    """In place: ``lp`` (n, K) log joint -> responsibilities; ``log_norm`` (n,) <- logsumexp of each row.

    As :func:`._kernels.normalize_log_resp`: a row whose entries are all -inf gets log_norm -inf
    and zero responsibilities, and responsibilities below exp(-708) of a row's largest are 0.
    """
    if lp.shape[0] == 0:
        return
    mx = lp.max(axis=1, keepdims=True)
    mx[mx == -np.inf] = 0.0  # nothing possible: exp(-inf - 0) = 0 everywhere
    T = np.subtract(lp, mx, out=lp)
    flushed = T < _EXP_FLOOR
    E = np.exp(T, out=T)
    E[flushed] = 0.0
    s = E.sum(axis=1)
    with np.errstate(divide="ignore"):
        np.log(s, out=log_norm)
        log_norm += mx[:, 0]  # -inf where s == 0
        inv = np.divide(1.0, s, out=s)
    inv[~np.isfinite(inv)] = 0.0
    np.multiply(E, inv[:, None], out=lp)


def full_mahalanobis_t(XT, means, U, out):
    """``out[i, k] = || (x_i - mu_k)^T U_k ||^2`` with ``XT`` (D, n) the rows as columns and ``U``
    (K, D, D) upper-triangular precision factors (only their upper triangles are used)."""
    Y = np.matmul(XT.T[None, :, :] - means[:, None, :], np.triu(U))  # (K, n, D)
    np.einsum("kij,kij->ik", Y, Y, out=out)


def diag_mahalanobis(X, means, P, out):
    """``out[i, k] = sum_d (X[i, d] - means[k, d])^2 * P[k, d]`` (diagonal precisions P (K, D))."""
    d = X[:, None, :] - means[None]
    d *= d
    d *= P
    np.sum(d, axis=2, out=out)


def diag_marginal_mahalanobis(Xz, obs, means, P, out):
    """``out[i, k] = sum_d obs[i, d] (Xz[i, d] - means[k, d])^2 P[k, d]`` (as
    :func:`._missing_kernels.diag_marginal_mahalanobis`): the observed entries of rows with missing ones."""
    d = (Xz[:, None, :] - means[None]) * obs[:, None, :]
    d *= d
    d *= P
    np.sum(d, axis=2, out=out)


def outer_products(Xs, out):
    """Upper-triangle products ``out[i, p(a, b)] = Xs[i, a] * Xs[i, b]`` for a <= b, row-major pairs."""
    a, b = np.triu_indices(Xs.shape[1])
    np.multiply(Xs[:, a], Xs[:, b], out=out)


# -- K-means ------------------------------------------------------------------------------------


def _weights(sample_weight, n):
    return sample_weight if sample_weight.shape[0] > 0 else np.ones(n)


def _accumulate(X, labels, w, sums, counts):
    """``sums[labels[i]] += w[i] * X[i]`` and ``counts[labels[i]] += w[i]``, row after row."""
    np.add.at(sums, labels, w[:, None] * X)
    np.add.at(counts, labels, w)


def lloyd_fused(X, C, c_sq, sample_weight, labels, sums, counts, with_inertia):
    """Assign rows to the nearest centre (lowest index on ties) and accumulate, as
    :func:`._kernels.lloyd_fused`; returns the number of rows whose label changed and, with
    ``with_inertia``, the inertia under the new labels (else 0)."""
    n, D = X.shape
    if n == 0:
        return 0, 0.0
    Xf = np.asarray(X, dtype=np.float64)
    g = Xf[:, :1] * C[:, 0]  # (n, K): x.c summed over the features in order
    for d in range(1, D):
        g += Xf[:, d:d + 1] * C[:, d]
    lab = np.argmin(c_sq - 2.0 * g, axis=1)
    changed = int(np.count_nonzero(labels != lab))
    labels[:] = lab
    _accumulate(Xf, lab, _weights(sample_weight, n), sums, counts)
    return changed, weighted_inertia(X, C, lab, sample_weight) if with_inertia else 0.0


def lloyd_chunk(X, G, c_sq, sample_weight, labels, sums, counts):
    """As :func:`._kernels.lloyd_chunk`: nearest centre from ``G`` = X @ C.T, accumulation, and the
    chunk's inertia."""
    n, K = G.shape
    if n == 0:
        return 0.0
    X = np.asarray(X, dtype=np.float64)
    v = c_sq - 2.0 * np.asarray(G, dtype=np.float64)  # in float64, as the kernel computes it
    lab = np.argmin(v, axis=1)
    labels[:] = lab
    xs = X[:, 0] * X[:, 0]
    for d in range(1, X.shape[1]):
        xs += X[:, d] * X[:, d]
    dist = np.maximum(xs + v[np.arange(n), lab], 0.0)
    w = _weights(sample_weight, n)
    _accumulate(X, lab, w, sums, counts)
    return float(np.cumsum(w * dist)[-1])  # summed in row order


def cluster_sums(X, labels, sample_weight, sums, counts):
    """Add the (weighted) rows of a chunk into ``sums`` (K, D) and their weights into ``counts`` (K,)."""
    n = X.shape[0]
    if n:
        _accumulate(np.asarray(X, dtype=np.float64), labels, _weights(sample_weight, n), sums, counts)


def weighted_inertia(X, C, labels, sample_weight):
    """``sum_i w_i ||x_i - c_{label_i}||^2`` over a chunk, summed in row order."""
    n, D = X.shape
    if n == 0:
        return 0.0
    Cl = C[labels]
    v = X[:, 0] - Cl[:, 0]
    s = v * v
    for d in range(1, D):
        v = X[:, d] - Cl[:, d]
        s += v * v
    if sample_weight.shape[0] > 0:
        s = sample_weight * s
    return float(np.cumsum(s)[-1])
