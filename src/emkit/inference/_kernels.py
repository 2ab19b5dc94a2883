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
# rows per window of yinyang_step: bound checks, reassignments and accumulation of a window run
# back to back while its rows are in cache
_WINDOW = 2048


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


# -- Lloyd iterations: a fused pass for low dimensions, Yinyang bounds for higher ones ---------------
#
# Both kernels do a whole Lloyd E-step for a chunk of rows in one call: assign every row to its
# nearest centre, count the labels that changed and add the rows into per-cluster sums and
# weights.  Rows are handled in blocks of _BLOCK, copied to a (D, block) buffer so that the
# distance loops run over contiguous rows and vectorise.


@njit(cache=True, nogil=True)
def lloyd_fused(X, C, c_sq, sample_weight, labels, sums, counts, with_inertia):
    """Assign a chunk of rows to the nearest centre and accumulate, in one pass.

    The nearest centre minimises ``|c|^2 - 2 x.c`` (``c_sq`` (K,) = ``|c|^2``; lowest index on
    ties), as the BLAS formulation does, computed centre by centre over a block of rows.
    Overwrites ``labels`` (n,) (holding the previous labels), adds the weighted rows into ``sums``
    (K, D) and their weights into ``counts`` (K,); ``sample_weight`` of length 0 means unit
    weights.  Returns the number of rows whose label changed.
    """
    n, D = X.shape
    if D == 2:
        return _lloyd_fused_2d(X, C, c_sq, sample_weight, labels, sums, counts, with_inertia)
    K = C.shape[0]
    weighted = sample_weight.shape[0] > 0
    xt = np.empty((D, _BLOCK))
    g = np.empty(_BLOCK)
    best = np.empty(_BLOCK)
    lab = np.empty(_BLOCK, dtype=np.int64)
    changed = 0
    inertia = 0.0
    for s in range(0, n, _BLOCK):
        m = min(_BLOCK, n - s)
        for i in range(m):
            for d in range(D):
                xt[d, i] = X[s + i, d]
        for i in range(m):
            best[i] = np.inf
            lab[i] = 0
        for k in range(K):
            c0 = C[k, 0]
            for i in range(m):
                g[i] = xt[0, i] * c0
            for d in range(1, D):
                cd = C[k, d]
                for i in range(m):
                    g[i] += xt[d, i] * cd
            ck = c_sq[k]
            for i in range(m):
                v = ck - 2.0 * g[i]
                if v < best[i]:
                    best[i] = v
                    lab[i] = k
        for i in range(m):
            a = lab[i]
            if labels[s + i] != a:
                changed += 1
                labels[s + i] = a
            w = sample_weight[s + i] if weighted else 1.0
            counts[a] += w
            for d in range(D):
                sums[a, d] += w * xt[d, i]
        if with_inertia:
            inertia = _add_inertia(X, s, s + m, C, labels, sample_weight, inertia)
    return changed, inertia


@njit(cache=True, nogil=True)
def _lloyd_fused_2d(X, C, c_sq, sample_weight, labels, sums, counts, with_inertia):
    """:func:`lloyd_fused` for two features, the same arithmetic in fewer passes: each centre's
    value ``|c|^2 - 2 (x0 c0 + x1 c1)`` and the running minimum in one loop over the block (the
    general kernel builds ``x.c`` feature by feature in a buffer first), and the accumulation with
    the two coordinates written out (unit weights: no multiplications by 1)."""
    n = X.shape[0]
    K = C.shape[0]
    weighted = sample_weight.shape[0] > 0
    x0 = np.empty(_BLOCK)
    x1 = np.empty(_BLOCK)
    best = np.empty(_BLOCK)
    lab = np.empty(_BLOCK, dtype=np.int64)
    changed = 0
    inertia = 0.0
    for s in range(0, n, _BLOCK):
        m = min(_BLOCK, n - s)
        for i in range(m):
            x0[i] = X[s + i, 0]
            x1[i] = X[s + i, 1]
            best[i] = np.inf
            lab[i] = 0
        for k in range(K):
            c0 = C[k, 0]
            c1 = C[k, 1]
            ck = c_sq[k]
            for i in range(m):
                v = ck - 2.0 * (x0[i] * c0 + x1[i] * c1)
                lt = v < best[i]
                best[i] = v if lt else best[i]
                lab[i] = k if lt else lab[i]
        for i in range(m):
            a = lab[i]
            if labels[s + i] != a:
                changed += 1
                labels[s + i] = a
        if weighted:
            for i in range(m):
                a = lab[i]
                w = sample_weight[s + i]
                counts[a] += w
                sums[a, 0] += w * x0[i]
                sums[a, 1] += w * x1[i]
        else:
            for i in range(m):
                a = lab[i]
                counts[a] += 1.0
                sums[a, 0] += x0[i]
                sums[a, 1] += x1[i]
        if with_inertia:
            inertia = _add_inertia(X, s, s + m, C, labels, sample_weight, inertia)
    return changed, inertia


@njit(cache=True, nogil=True)
def _distance(X, i, C, k):
    s = 0.0
    for d in range(X.shape[1]):
        v = X[i, d] - C[k, d]
        s += v * v
    return math.sqrt(s)


@njit(cache=True, nogil=True)
def _reassign_block(X, rows, m, C, group_of, labels, upper, glower, xt, acc, m1, m2, j1):
    """Exact distances from the rows ``X[rows[:m]]`` to every centre, vectorised over the rows: the
    nearest centre (lowest index on ties), the distance to it (upper bound) and, per group, the
    distance to the nearest centre other than the assigned one (lower bounds).  Returns the
    number of labels that changed."""
    K, D = C.shape
    G = m1.shape[0]
    for i in range(m):
        r = rows[i]
        for d in range(D):
            xt[d, i] = X[r, d]
    for g in range(G):
        for i in range(m):
            m1[g, i] = np.inf
            m2[g, i] = np.inf
            j1[g, i] = -1
    for k in range(K):
        c0 = C[k, 0]
        for i in range(m):
            t = xt[0, i] - c0
            acc[i] = t * t
        for d in range(1, D):
            cd = C[k, d]
            for i in range(m):
                t = xt[d, i] - cd
                acc[i] += t * t
        g = group_of[k]
        for i in range(m):
            v = acc[i]
            if v < m1[g, i]:
                m2[g, i] = m1[g, i]
                m1[g, i] = v
                j1[g, i] = k
            elif v < m2[g, i]:
                m2[g, i] = v
    changed = 0
    for i in range(m):
        r = rows[i]
        gb = 0
        for g in range(1, G):
            if m1[g, i] < m1[gb, i] or (m1[g, i] == m1[gb, i] and j1[g, i] < j1[gb, i]):
                gb = g
        for g in range(G):
            glower[r, g] = math.sqrt(m2[g, i] if g == gb else m1[g, i])
        upper[r] = math.sqrt(m1[gb, i])
        if labels[r] != j1[gb, i]:
            labels[r] = j1[gb, i]
            changed += 1
    return changed


#: Unit roundoff of float64.
_U64 = 2.0 ** -53


@njit(cache=True, nogil=True)
def _reassign_block_gemm(X, rows, m, C, origin, C_rel, c_sq_rel, c_norm_max, group_of, labels, upper, glower, xbuf,
                         pbuf, xsq, m1, m2, j1, exact_rows, xt, acc):
    """:func:`_reassign_block` for the rows ``X[rows[:m]]`` with the same labels, the distances from
    one BLAS product.

    With ``x`` and ``c`` taken relative to ``origin`` (the centres' mean; ``C_rel`` (K, D) and
    ``c_sq_rel`` (K,) = ``|c|^2`` relative to it), the product ``P = C_rel @ x`` (K, m) ranks the
    centres by ``|c|^2 - 2 x.c``.  That formulation rounds differently from the exact distances
    ``sum (x - c)^2`` of :func:`_reassign_block`: each is within ``(D + 2) u S^2`` of the true
    squared distance and the shift to the origin moves it by at most ``2 u S^2`` (``u`` the unit
    roundoff, ``S = |x| + |c|`` relative to the origin; sums of D products or squares, bounded
    term by term whatever the order of the sums), so they differ by less than
    ``E = (4D + 16) u (|x| + max |c|)^2`` (a factor 2 to spare).  A row whose best value beats
    every other centre by more than ``2E`` has the same nearest centre under both formulations, so
    it takes that label, with the exact distance to it as upper bound and the group minima lowered
    by ``E`` as lower bounds (still valid bounds, a hair looser).  The other rows (near ties,
    duplicated centres) go through :func:`_reassign_block`: exactly the old labels and bounds.
    Returns the number of labels that changed."""
    K, D = C.shape
    G = m1.shape[0]
    xT = xbuf[: D * m].reshape((D, m))
    for i in range(m):
        r = rows[i]
        s = 0.0
        for d in range(D):
            v = X[r, d] - origin[d]
            xT[d, i] = v
            s += v * v
        xsq[i] = s
    P = pbuf[: K * m].reshape((K, m))
    np.dot(C_rel, xT, P)
    for g in range(G):
        for i in range(m):
            m1[g, i] = np.inf
            m2[g, i] = np.inf
            j1[g, i] = 0
    for k in range(K):
        g = group_of[k]
        ck = c_sq_rel[k]
        for i in range(m):
            v = ck - 2.0 * P[k, i]
            a = m1[g, i]
            b = a if a > v else v
            m2[g, i] = b if b < m2[g, i] else m2[g, i]
            j1[g, i] = k if v < a else j1[g, i]
            m1[g, i] = v if v < a else a
    coef = (4 * D + 16) * _U64
    n_exact = 0
    changed = 0
    for i in range(m):
        r = rows[i]
        gb = 0
        for g in range(1, G):
            if m1[g, i] < m1[gb, i]:
                gb = g
        second = m2[gb, i]
        for g in range(G):
            if g != gb and m1[g, i] < second:
                second = m1[g, i]
        e = math.sqrt(xsq[i]) + c_norm_max
        e = coef * e * e
        if not second - m1[gb, i] > 2.0 * e:
            exact_rows[n_exact] = r
            n_exact += 1
            continue
        best = j1[gb, i]
        for g in range(G):
            lo = (m2[g, i] if g == gb else m1[g, i]) + xsq[i] - e
            glower[r, g] = math.sqrt(lo) if lo > 0.0 else 0.0
        upper[r] = _distance(X, r, C, best)
        if labels[r] != best:
            labels[r] = best
            changed += 1
    if n_exact:
        changed += _reassign_block(X, exact_rows, n_exact, C, group_of, labels, upper, glower, xt, acc, m1, m2, j1)
    return changed


@njit(cache=True, nogil=True)
def yinyang_step(X, C, group_of, shift, group_shift, half_sep, sample_weight, labels, upper, glower, sums, counts,
                 with_inertia):
    """Lloyd E-step of a chunk with Yinyang (group) bounds, and accumulation.

    The centres are split into G groups (``group_of`` (K,)).  Each row keeps an upper bound
    ``upper`` (n,) on the distance to its centre and lower bounds ``glower`` (n, G) on the
    distance to every other centre of each group.  After the centres moved by ``shift`` (K,)
    (``group_shift`` (G,): the largest move in each group), the bounds are loosened by the
    moves; a row keeps its label when its upper bound (tightened to the exact distance if
    needed) is within the smallest group bound or within ``half_sep`` (K,) of its centre (half
    the distance to the nearest other centre).  The other rows get exact distances to every
    centre (:func:`_reassign_block`).  Rows start with ``upper = inf``.  Accumulates like
    :func:`lloyd_fused` and returns the number of labels that changed.
    """
    n, D = X.shape
    G = glower.shape[1]
    weighted = sample_weight.shape[0] > 0
    K = C.shape[0]
    origin = np.zeros(D)
    for k in range(K):
        for d in range(D):
            origin[d] += C[k, d]
    for d in range(D):
        origin[d] /= K
    C_rel = np.empty((K, D))
    c_sq_rel = np.empty(K)
    for k in range(K):
        s = 0.0
        for d in range(D):
            v = C[k, d] - origin[d]
            C_rel[k, d] = v
            s += v * v
        c_sq_rel[k] = s
    c_norm_max = math.sqrt(c_sq_rel.max())
    rows = np.empty(_BLOCK, dtype=np.int64)
    exact_rows = np.empty(_BLOCK, dtype=np.int64)
    xt = np.empty((D, _BLOCK))
    xbuf = np.empty(D * _BLOCK)
    pbuf = np.empty(K * _BLOCK)
    xsq = np.empty(_BLOCK)
    acc = np.empty(_BLOCK)
    m1 = np.empty((G, _BLOCK))
    m2 = np.empty((G, _BLOCK))
    j1 = np.empty((G, _BLOCK), dtype=np.int64)
    changed = 0
    inertia = 0.0
    for w0 in range(0, n, _WINDOW):
        w1 = min(n, w0 + _WINDOW)
        m = 0
        for i in range(w0, w1):
            a = labels[i]
            u = upper[i] + shift[a]
            lmin = np.inf
            for g in range(G):
                lo = glower[i, g] - group_shift[g]
                glower[i, g] = lo
                if lo < lmin:
                    lmin = lo
            if half_sep[a] > lmin:
                lmin = half_sep[a]
            if u > lmin:
                u = _distance(X, i, C, a)
                if u > lmin:
                    rows[m] = i
                    m += 1
                    if m == _BLOCK:
                        changed += _reassign_block_gemm(X, rows, m, C, origin, C_rel, c_sq_rel, c_norm_max, group_of,
                                                        labels, upper, glower, xbuf, pbuf, xsq, m1, m2, j1,
                                                        exact_rows, xt, acc)
                        m = 0
                    continue
            upper[i] = u
        if m:
            changed += _reassign_block_gemm(X, rows, m, C, origin, C_rel, c_sq_rel, c_norm_max, group_of, labels,
                                            upper, glower, xbuf, pbuf, xsq, m1, m2, j1, exact_rows, xt, acc)
        for i in range(w0, w1):  # the window's rows are still in cache
            a = labels[i]
            w = sample_weight[i] if weighted else 1.0
            counts[a] += w
            for d in range(D):
                sums[a, d] += w * X[i, d]
        if with_inertia:
            inertia = _add_inertia(X, w0, w1, C, labels, sample_weight, inertia)
    return changed, inertia


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
def _add_inertia(X, start, stop, C, labels, sample_weight, acc):
    """``acc`` plus ``sum_i w_i ||x_i - c_{label_i}||^2`` over the rows ``start:stop``, in row order."""
    D = X.shape[1]
    weighted = sample_weight.shape[0] > 0
    for i in range(start, stop):
        s = 0.0
        k = labels[i]
        for d in range(D):
            v = X[i, d] - C[k, d]
            s += v * v
        acc += (sample_weight[i] if weighted else 1.0) * s
    return acc


@njit(cache=True, nogil=True)
def weighted_inertia(X, C, labels, sample_weight):
    """``sum_i w_i ||x_i - c_{label_i}||^2`` over a chunk."""
    return _add_inertia(X, 0, X.shape[0], C, labels, sample_weight, 0.0)


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
    zero = np.zeros(K)
    for i0 in range(0, n, B):
        diag_mahalanobis_rows(X, i0, min(B, n - i0), means, P, XT, acc, out, i0, 1.0, zero)


@njit(cache=True, nogil=True)
def diag_mahalanobis_rows(X, i0, b, means, P, XT, acc, out, o0, scale, shift):
    """``out[o0 + j, k] = scale * sum_d (X[i0 + j, d] - means[k, d])^2 * P[k, d] + shift[k]`` for
    ``j < b``; ``XT`` (D, >= b) and ``acc`` (>= b) are buffers.  (With scale 1 and shift 0 the sums
    themselves, exactly.)"""
    D = X.shape[1]
    K = means.shape[0]
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
        c = shift[k]
        for j in range(b):
            out[o0 + j, k] = acc[j] * scale + c


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
