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
def _block_responsibilities(T, E, ebits, mx, s, b):
    """Log joint ``T`` (K, block) -> responsibilities ``E`` of the first ``b`` rows and each row's
    logsumexp in ``mx`` (see :func:`normalize_log_resp`); ``T`` and ``s`` are overwritten."""
    K = T.shape[0]
    for j in range(b):
        mx[j] = _NEG_INF
    for k in range(K):
        for j in range(b):
            if T[k, j] > mx[j]:
                mx[j] = T[k, j]
    for j in range(b):
        if mx[j] == _NEG_INF:
            mx[j] = 0.0
    for k in range(K):
        for j in range(b):
            T[k, j] -= mx[j]
    if b == T.shape[1]:
        _vexp(T.reshape(T.size), E.reshape(E.size), ebits, T.size)
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
            mx[j] = mx[j] + math.log(s[j])
            s[j] = 1.0 / s[j]
        else:
            mx[j] = _NEG_INF
    for k in range(K):
        for j in range(b):
            E[k, j] *= s[j]


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
        _block_responsibilities(T, E, ebits, mx, s, b)
        for j in range(b):
            log_norm[i0 + j] = mx[j]
        for k in range(K):
            for j in range(b):
                lp[i0 + j, k] = E[k, j]


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
def _round_down32(v):
    """``v`` >= 0 as a float32 no larger than ``v`` (lower bounds are stored in float32)."""
    return np.float32(v * (1.0 - 2.0 ** -22))


@njit(cache=True, nogil=True)
def _exact_group_minima(X, rows, m, C, group_of, xt, acc, m1, m2, j1):
    """Exact squared distances ``sum (x - c)^2`` from the rows ``X[rows[:m]]`` to every centre,
    vectorised over the rows (``xt`` (D, m), ``acc`` (m,) scratch): per group of centres the
    smallest (``m1``), the centre giving it (``j1``, lowest index on ties) and the second smallest
    (``m2``), each (G, m)."""
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


@njit(cache=True, nogil=True)
def _nearest_group(m1, j1, i):
    """The group holding row ``i``'s nearest centre, from the per-group minima of
    :func:`_exact_group_minima` (the lowest centre index on ties)."""
    gb = 0
    for g in range(1, m1.shape[0]):
        if m1[g, i] < m1[gb, i] or (m1[g, i] == m1[gb, i] and j1[g, i] < j1[gb, i]):
            gb = g
    return gb


@njit(cache=True, nogil=True)
def _reassign_block(X, rows, m, C, group_of, drift, group_drift, labels, upper, glower, xt, acc, m1, m2, j1):
    """Exact distances from the rows ``X[rows[:m]]`` to every centre, vectorised over the rows: the
    nearest centre (lowest index on ties), the distance to it (upper bound) and, per group, the
    distance to the nearest centre other than the assigned one (lower bounds).  Returns the
    number of labels that changed."""
    G = m1.shape[0]
    _exact_group_minima(X, rows, m, C, group_of, xt, acc, m1, m2, j1)
    changed = 0
    for i in range(m):
        r = rows[i]
        gb = _nearest_group(m1, j1, i)
        for g in range(G):
            glower[r, g] = _round_down32(math.sqrt(m2[g, i] if g == gb else m1[g, i]) + group_drift[g])
        a = j1[gb, i]
        upper[r] = math.sqrt(m1[gb, i]) - drift[a]
        if labels[r] != a:
            labels[r] = a
            changed += 1
    return changed


#: Unit roundoff of float32, and a bound on the absolute rounding error of float32 products and
#: sums below the normal range.
_U32 = 2.0 ** -24
_TINY32 = 2.0 ** -140
#: Rows and centres farther than this from the centres' mean are ranked in float64 (their float32
#: products could overflow).
_FAR32 = 1e15


@njit(cache=True, nogil=True)
def _reassign_block_gemm(X, rows, m, C, origin, C_rel, c_sq_rel, c_norm_max, group_of, drift, group_drift, labels,
                         upper, glower, xbuf, pbuf, tmp, m1, m2, j1, m1e, m2e, j1e, exact_rows, xt, acc):
    """:func:`_reassign_block` for the rows ``X[rows[:m]]`` with the same labels, the distances
    ranked by one float32 BLAS product.

    With ``x`` and ``c`` taken relative to ``origin`` (the centres' mean) and rounded to float32
    (``C_rel`` (K, D) float32, ``c_sq_rel`` (K,) = ``|c|^2`` of those, float32), the product
    ``P = C_rel @ x`` (K, m) ranks the centres by ``|c|^2 - 2 x.c``.  That value plus ``|x|^2``
    differs from the exact squared distance ``sum (x - c)^2`` (float64) of
    :func:`_reassign_block` by less than ``E = (4D + 16) u (|x| + max |c|)^2`` (``u`` the float32
    unit roundoff; ``S = |x| + |c|``: the rounding to float32 moves the distance by at most
    ``2 u S^2``, the product, the ``|c|^2`` and the subtraction round by at most ``(D + 2) u S^2``
    whatever the order of the sums, the float64 distance by far less: a factor 2 to spare; plus
    a tiny absolute term for float32 values below the normal range).  A row whose best value
    beats every other centre by more than ``2E`` has the same nearest centre under both
    formulations, so it takes that label, with the exact distance to it as upper bound and the
    group minima lowered by ``E`` as lower bounds (valid, a little looser).  The other rows (near
    ties, duplicated centres, rows too far out for float32) go through :func:`_reassign_block`:
    exactly the old labels and bounds.  Every step runs across the rows in SIMD lanes (``tmp``
    (5, m) scratch) but the final scatter.  ``m1``, ``m2`` (G, m) float32 and ``j1`` (G, m) int32
    are the ranking's buffers, ``m1e``, ``m2e``, ``j1e`` those of :func:`_reassign_block`.
    Returns the number of labels that changed."""
    K, D = C.shape
    G = m1.shape[0]
    xT = xbuf[: D * m].reshape((D, m))
    best, best_group, runner, margin, xsq = tmp[0], tmp[1], tmp[2], tmp[3], tmp[4]
    for i in range(m):
        r = rows[i]
        for d in range(D):
            xT[d, i] = np.float32(X[r, d] - origin[d])
    for i in range(m):
        xsq[i] = 0.0
    for d in range(D):
        for i in range(m):
            v = np.float64(xT[d, i])
            xsq[i] += v * v
    P = pbuf[: K * m].reshape((K, m))
    np.dot(C_rel, xT, P)
    inf32 = np.float32(np.inf)
    two32 = np.float32(2.0)
    for g in range(G):
        m1g, m2g, j1g = m1[g], m2[g], j1[g]
        for i in range(m):
            m1g[i] = inf32
            m2g[i] = inf32
            j1g[i] = 0
    for k in range(K):  # per group: the smallest value, its centre and the second smallest
        ck = c_sq_rel[k]
        Pk = P[k]
        g = group_of[k]
        m1g, m2g, j1g = m1[g], m2[g], j1[g]
        k32 = np.int32(k)
        for i in range(m):
            v = ck - two32 * Pk[i]
            a = m1g[i]
            b = a if a > v else v
            c = m2g[i]
            m2g[i] = b if b < c else c
            j1g[i] = k32 if v < a else j1g[i]
            m1g[i] = v if v < a else a
    for i in range(m):  # the best group (a float, to stay in the SIMD lanes of the values)
        best[i] = m1[0, i]
        best_group[i] = 0.0
    for g in range(1, G):
        m1g = m1[g]
        fg = float(g)
        for i in range(m):
            v = np.float64(m1g[i])
            lt = v < best[i]
            best[i] = v if lt else best[i]
            best_group[i] = fg if lt else best_group[i]
    for i in range(m):
        runner[i] = np.inf
    for g in range(G):
        m1g, m2g = m1[g], m2[g]
        fg = float(g)
        for i in range(m):
            v = np.float64(m2g[i] if best_group[i] == fg else m1g[i])
            runner[i] = v if v < runner[i] else runner[i]
    coef = (4 * D + 16) * _U32
    tiny = (4 * D + 16) * _TINY32
    for i in range(m):
        e = math.sqrt(xsq[i]) + c_norm_max
        margin[i] = coef * e * e + tiny
    n_exact = 0
    changed = 0
    for i in range(m):
        r = rows[i]
        if not (runner[i] - best[i] > 2.0 * margin[i] and xsq[i] < _FAR32 * _FAR32):
            exact_rows[n_exact] = r
            n_exact += 1
            continue
        gb = int(best_group[i])
        lab = j1[gb, i]
        for g in range(G):
            v = np.float64(m2[g, i] if g == gb else m1[g, i]) + xsq[i] - margin[i]
            glower[r, g] = _round_down32((math.sqrt(v) if v > 0.0 else 0.0) + group_drift[g])
        upper[r] = _distance(X, r, C, lab) - drift[lab]
        if labels[r] != lab:
            labels[r] = lab
            changed += 1
    if n_exact:
        changed += _reassign_block(X, exact_rows, n_exact, C, group_of, drift, group_drift, labels, upper, glower, xt,
                                   acc, m1e, m2e, j1e)
    return changed


@njit(cache=True, nogil=True)
def _reassign(X, rows, m, C, origin, C_rel, c_sq_rel, c_norm_max, ranked, group_of, drift, group_drift, labels, upper,
              glower, xbuf, pbuf, tmp, m1, m2, j1, m1e, m2e, j1e, exact_rows, xt, acc):
    if ranked:
        return _reassign_block_gemm(X, rows, m, C, origin, C_rel, c_sq_rel, c_norm_max, group_of, drift,
                                    group_drift, labels, upper, glower, xbuf, pbuf, tmp, m1, m2, j1, m1e, m2e, j1e,
                                    exact_rows, xt, acc)
    return _reassign_block(X, rows, m, C, group_of, drift, group_drift, labels, upper, glower, xt, acc, m1e, m2e, j1e)


@njit(cache=True, nogil=True)
def yinyang_step(X, C, group_of, drift, group_drift, half_sep, sample_weight, labels, upper, glower, sums, counts,
                 with_inertia):
    """Lloyd E-step of a chunk with Yinyang (group) bounds, and accumulation.

    The centres are split into G groups (``group_of`` (K,)).  Each row keeps an upper bound on the
    distance to its centre and lower bounds on the distance to every other centre of each group.
    As the centres move, the upper bound grows by its centre's moves and the lower bounds shrink
    by the largest move in their group; the bounds are stored relative to the running totals of
    those moves, ``drift`` (K,) and ``group_drift`` (G,) (after this iteration's moves), so that
    rows keeping their label write nothing: the upper bound is ``upper + drift[label]``, the group
    bounds ``glower - group_drift`` (``upper`` (n,), ``glower`` (n, G)).  A row keeps its label
    when its upper bound (tightened to the exact distance if needed) is within the smallest group
    bound or within ``half_sep`` (K,) of its centre (half the distance to the nearest other
    centre).  The other rows get distances to every centre (:func:`_reassign_block_gemm`).  Rows
    start with ``upper = inf``.  Rows are checked ``_WINDOW`` at a time and those whose labels are
    final accumulated right after, while they are in cache (a partial block of rows to reassign is
    flushed when it holds rows back for more than three windows); always in row order.  Accumulates like
    :func:`lloyd_fused`; returns the number of labels that changed and, ``with_inertia``, the
    inertia under the new labels (else 0).
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
    C_rel = np.empty((K, D), dtype=np.float32)
    c_sq_rel = np.empty(K, dtype=np.float32)
    c_sq_max = 0.0
    for k in range(K):
        s = 0.0
        for d in range(D):
            v = np.float32(C[k, d] - origin[d])
            C_rel[k, d] = v
            s += np.float64(v) * v
        c_sq_rel[k] = s
        c_sq_max = max(c_sq_max, s)
    c_norm_max = math.sqrt(c_sq_max)
    ranked = c_norm_max < _FAR32  # else every reassignment computes exact distances
    rows = np.empty(_BLOCK, dtype=np.int64)
    exact_rows = np.empty(_BLOCK, dtype=np.int64)
    xt = np.empty((D, _BLOCK))
    xbuf = np.empty(D * _BLOCK, dtype=np.float32)
    pbuf = np.empty(K * _BLOCK, dtype=np.float32)
    tmp = np.empty((5, _BLOCK))
    acc = np.empty(_BLOCK)
    m1 = np.empty((G, _BLOCK), dtype=np.float32)
    m2 = np.empty((G, _BLOCK), dtype=np.float32)
    j1 = np.empty((G, _BLOCK), dtype=np.int32)
    m1e = np.empty((G, _BLOCK))
    m2e = np.empty((G, _BLOCK))
    j1e = np.empty((G, _BLOCK), dtype=np.int64)
    changed = 0
    inertia = 0.0
    m = 0
    done = 0  # rows [0, done) are accumulated
    for w0 in range(0, n, _WINDOW):
        w1 = min(n, w0 + _WINDOW)
        for i in range(w0, w1):
            a = labels[i]
            u = upper[i] + drift[a]
            lmin = np.inf
            for g in range(G):
                lo = np.float64(glower[i, g]) - group_drift[g]
                if lo < lmin:
                    lmin = lo
            if half_sep[a] > lmin:
                lmin = half_sep[a]
            if u > lmin:
                if u < np.inf:  # tighten to the exact distance (no bound yet: first pass)
                    u = _distance(X, i, C, a)
                    upper[i] = u - drift[a]
                if u > lmin:
                    rows[m] = i
                    m += 1
                    if m == _BLOCK:
                        changed += _reassign(X, rows, m, C, origin, C_rel, c_sq_rel, c_norm_max, ranked, group_of,
                                             drift, group_drift, labels, upper, glower, xbuf, pbuf, tmp, m1, m2, j1,
                                             m1e, m2e, j1e, exact_rows, xt, acc)
                        m = 0
        if m and (w1 == n or w1 - rows[0] > 3 * _WINDOW):  # pending rows held back too long: reassign now
            changed += _reassign(X, rows, m, C, origin, C_rel, c_sq_rel, c_norm_max, ranked, group_of, drift,
                                 group_drift, labels, upper, glower, xbuf, pbuf, tmp, m1, m2, j1, m1e, m2e, j1e,
                                 exact_rows, xt, acc)
            m = 0
        final = w1 if m == 0 else rows[0]  # rows before final have their labels: accumulate them in row order
        for r in range(done, final):
            a = labels[r]
            w = sample_weight[r] if weighted else 1.0
            counts[a] += w
            for d in range(D):
                sums[a, d] += w * X[r, d]
        if with_inertia:
            inertia = _add_inertia(X, done, final, C, labels, sample_weight, inertia)
        done = final
    return changed, inertia


@njit(cache=True, nogil=True)
def _reassign_block_plain(X, rows, m, C, group_of, labels, upper, glower, xt, acc, m1, m2, j1):
    """Exact distances from the rows ``X[rows[:m]]`` to every centre, vectorised over the rows: the
    nearest centre (lowest index on ties), the distance to it (upper bound) and, per group, the
    distance to the nearest centre other than the assigned one (lower bounds).  Returns the
    number of labels that changed."""
    G = m1.shape[0]
    _exact_group_minima(X, rows, m, C, group_of, xt, acc, m1, m2, j1)
    changed = 0
    for i in range(m):
        r = rows[i]
        gb = _nearest_group(m1, j1, i)
        for g in range(G):
            glower[r, g] = math.sqrt(m2[g, i] if g == gb else m1[g, i])
        upper[r] = math.sqrt(m1[gb, i])
        if labels[r] != j1[gb, i]:
            labels[r] = j1[gb, i]
            changed += 1
    return changed


@njit(cache=True, nogil=True)
def yinyang_step_plain(X, C, group_of, shift, group_shift, half_sep, sample_weight, labels, upper, glower, sums,
                       counts):
    """Lloyd E-step of a chunk with Yinyang (group) bounds, and accumulation; for few centres and
    features (see ``kmeans.RANKED_MIN_WORK``), where :func:`yinyang_step` costs more per row.

    The centres are split into G groups (``group_of`` (K,)).  Each row keeps an upper bound
    ``upper`` (n,) on the distance to its centre and lower bounds ``glower`` (n, G) on the
    distance to every other centre of each group.  After the centres moved by ``shift`` (K,)
    (``group_shift`` (G,): the largest move in each group), the bounds are loosened by the
    moves; a row keeps its label when its upper bound (tightened to the exact distance if
    needed) is within the smallest group bound or within ``half_sep`` (K,) of its centre (half
    the distance to the nearest other centre).  The other rows get exact distances to every
    centre (:func:`_reassign_block_plain`).  Rows start with ``upper = inf``.  Accumulates like
    :func:`lloyd_fused` and returns the number of labels that changed.
    """
    n, D = X.shape
    G = glower.shape[1]
    weighted = sample_weight.shape[0] > 0
    rows = np.empty(_BLOCK, dtype=np.int64)
    xt = np.empty((D, _BLOCK))
    acc = np.empty(_BLOCK)
    m1 = np.empty((G, _BLOCK))
    m2 = np.empty((G, _BLOCK))
    j1 = np.empty((G, _BLOCK), dtype=np.int64)
    changed = 0
    m = 0
    for i in range(n):
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
                    changed += _reassign_block_plain(X, rows, m, C, group_of, labels, upper, glower, xt, acc, m1, m2,
                                                     j1)
                    m = 0
                continue
        upper[i] = u
    if m:
        changed += _reassign_block_plain(X, rows, m, C, group_of, labels, upper, glower, xt, acc, m1, m2, j1)
    for i in range(n):
        a = labels[i]
        w = sample_weight[i] if weighted else 1.0
        counts[a] += w
        for d in range(D):
            sums[a, d] += w * X[i, d]
    return changed


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


@njit(cache=True, nogil=True)
def subtract_row(X, m, out):
    """``out[i, d] = X[i, d] - m[d]`` in float64 (numpy's broadcasting loop is several times slower)."""
    n, D = X.shape
    for i in range(n):
        for d in range(D):
            out[i, d] = np.float64(X[i, d]) - m[d]


@njit(cache=True, nogil=True)
def scale_rows(X, w, out):
    """``out[i, d] = X[i, d] * w[i]``."""
    n, D = X.shape
    for i in range(n):
        wi = w[i]
        for d in range(D):
            out[i, d] = X[i, d] * wi


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def row_sq_norms(Y, out):
    """``out[i] = sum_j Y[i, j]^2`` (sums across SIMD lanes)."""
    n, D = Y.shape
    for i in range(n):
        s = 0.0
        for j in range(D):
            s += Y[i, j] * Y[i, j]
        out[i] = s


@njit(cache=True, nogil=True, fastmath={"contract"})
def _full_sq_distances(XT, b, means, U, k, xc, y, acc):
    """``acc[:b]`` <- ``|| (x_i - mu_k)^T U_k ||^2`` for the rows ``XT[:, :b]`` (columns), using only the
    upper triangle of ``U[k]``; ``xc`` (D, >= b) and ``y`` (>= b) are work space."""
    D = XT.shape[0]
    for l in range(D):
        m = means[k, l]
        for i in range(b):
            xc[l, i] = XT[l, i] - m
    for i in range(b):
        acc[i] = 0.0
    for j in range(D):
        u = U[k, 0, j]
        for i in range(b):
            y[i] = xc[0, i] * u
        for l in range(1, j + 1):
            u = U[k, l, j]
            for i in range(b):
                y[i] += xc[l, i] * u
        for i in range(b):
            acc[i] += y[i] * y[i]


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
        _full_sq_distances(XT, n, means, U, k, xc, y, acc)
        for i in range(n):
            out[i, k] = acc[i]


# -- fused mixture E-steps: distances, responsibilities and moments per block of rows ---------------
#
# One call does a whole Gaussian-mixture E-step for a chunk of rows without (n, K) arrays: each block
# of _BLOCK rows is transposed once, its log joint densities (K, block) computed across rows in SIMD
# lanes, normalised into responsibilities (as in normalize_log_resp) and folded straight into the
# moments while the block is in cache.  The moments of a block are one small matrix product
# M += R Z^T of the responsibilities R (K, block) and the rows' features Z (Q, block): a row of
# ones (the counts), the centred values and their squares or pairwise products.


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _accumulate_products(R, Z, b, M):
    """``M[k, q] += sum_j R[k, j] * Z[q, j]`` over the first ``b`` columns (sums across SIMD lanes,
    two rows of ``R`` by four of ``Z`` at a time)."""
    K = R.shape[0]
    Q = Z.shape[0]
    for k in range(0, K - 1, 2):
        r0 = R[k]
        r1 = R[k + 1]
        for q in range(0, Q - 3, 4):
            z0 = Z[q]
            z1 = Z[q + 1]
            z2 = Z[q + 2]
            z3 = Z[q + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
            for j in range(b):
                a0 = r0[j]
                a1 = r1[j]
                c0 = z0[j]
                c1 = z1[j]
                c2 = z2[j]
                c3 = z3[j]
                s00 += a0 * c0
                s01 += a0 * c1
                s02 += a0 * c2
                s03 += a0 * c3
                s10 += a1 * c0
                s11 += a1 * c1
                s12 += a1 * c2
                s13 += a1 * c3
            M[k, q] += s00
            M[k, q + 1] += s01
            M[k, q + 2] += s02
            M[k, q + 3] += s03
            M[k + 1, q] += s10
            M[k + 1, q + 1] += s11
            M[k + 1, q + 2] += s12
            M[k + 1, q + 3] += s13
        for q in range(Q - Q % 4, Q):
            z0 = Z[q]
            s00 = s10 = 0.0
            for j in range(b):
                s00 += r0[j] * z0[j]
                s10 += r1[j] * z0[j]
            M[k, q] += s00
            M[k + 1, q] += s10
    if K % 2:
        k = K - 1
        r0 = R[k]
        for q in range(Q):
            z0 = Z[q]
            s00 = 0.0
            for j in range(b):
                s00 += r0[j] * z0[j]
            M[k, q] += s00


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _not_finite(a, m):
    """Whether ``a[:m]`` holds NaN or an infinity (``x * 0`` is 0 for every finite ``x``)."""
    s = 0.0
    for j in range(m):
        s += a[j] * 0.0
    return s != 0.0 or s != s


@njit(cache=True, nogil=True)
def _weigh_block(E, mx, s, sample_weight, i0, b, weighted):
    """Responsibilities ``E`` times the rows' weights; returns the block's weighted log-likelihood."""
    ll = 0.0
    if weighted:
        for j in range(b):
            w = sample_weight[i0 + j]
            ll += w * mx[j]
            s[j] = w
        for k in range(E.shape[0]):
            for j in range(b):
                E[k, j] *= s[j]
    else:
        for j in range(b):
            ll += mx[j]
    return ll


@njit(cache=True, nogil=True)
def _load_block(X, i0, b, center, XT, Z):
    """``XT[:, :b]`` <- rows ``i0:i0+b`` of ``X`` transposed; ``Z[0]`` <- 1 and ``Z[1:D+1]`` <- the
    rows minus ``center``.  Returns True if a value is not finite."""
    D = X.shape[1]
    for d in range(D):
        c = center[d]
        for j in range(b):
            v = np.float64(X[i0 + j, d])
            XT[d, j] = v
            Z[1 + d, j] = v - c
        if _not_finite(XT[d], b):
            return True
    for j in range(b):
        Z[0, j] = 1.0
    return False


@njit(cache=True, nogil=True)
def diag_mixture_estep(X, sample_weight, means, P, log_const, log_w, center, spherical, M):
    """E-step of a mixture of diagonal (``spherical``: isotropic) Gaussians over a chunk, fused.

    ``log_joint[i, k] = -0.5 * sum_d (X[i, d] - means[k, d])^2 P[k, d] + log_const[k] + log_w[k]``
    (``P`` (K, D) the precisions); responsibilities ``r`` as :func:`normalize_log_resp`, times
    ``sample_weight`` (length 0: unit weights).  Adds into ``M`` (K, 1 + 2D) (spherical: (K, 2 + D))
    the sums over rows of ``r``, of ``r (X - center)`` and of ``r (X - center)^2`` (spherical: its
    sum over features).  Returns the chunk's weighted log-likelihood, or NaN (``M`` then partly
    filled) if ``X`` holds a value that is not finite.
    """
    n, D = X.shape
    K = means.shape[0]
    B = _BLOCK
    weighted = sample_weight.shape[0] > 0
    XT = np.empty((D, B))
    Z = np.empty((M.shape[1], B))
    T = np.empty((K, B))
    E = np.empty((K, B))
    ebits = np.empty(K * B, dtype=np.int64)
    acc = np.empty(B)
    mx = np.empty(B)
    s = np.empty(B)
    ll = 0.0
    for i0 in range(0, n, B):
        b = min(B, n - i0)
        if _load_block(X, i0, b, center, XT, Z):
            return np.nan
        for k in range(K):
            for j in range(b):
                acc[j] = 0.0
            if spherical:
                for d in range(D):
                    m = means[k, d]
                    for j in range(b):
                        v = XT[d, j] - m
                        acc[j] += v * v
                p = P[k, 0]
                for j in range(b):
                    acc[j] *= p
            else:
                for d in range(D):
                    m = means[k, d]
                    p = P[k, d]
                    for j in range(b):
                        v = XT[d, j] - m
                        acc[j] += v * v * p
            lc = log_const[k]
            lw = log_w[k]
            for j in range(b):
                T[k, j] = (acc[j] * -0.5 + lc) + lw
        _block_responsibilities(T, E, ebits, mx, s, b)
        ll += _weigh_block(E, mx, s, sample_weight, i0, b, weighted)
        if spherical:
            for j in range(b):
                Z[1 + D, j] = 0.0
            for d in range(D):
                for j in range(b):
                    Z[1 + D, j] += Z[1 + d, j] * Z[1 + d, j]
        else:
            for d in range(D):
                for j in range(b):
                    Z[1 + D + d, j] = Z[1 + d, j] * Z[1 + d, j]
        _accumulate_products(E, Z, b, M)
    return ll


@njit(cache=True, nogil=True, fastmath={"contract"})
def _full_block_log_joint(XT, b, means, U, log_const, log_w, xc, y, acc, T):
    """``T[k, :b]`` <- log joint densities of the block ``XT[:, :b]`` under full covariances: the
    distances of :func:`full_mahalanobis_t` (the triangles of ``U``) times -0.5, plus ``log_const``
    and ``log_w``."""
    K = means.shape[0]
    for k in range(K):
        _full_sq_distances(XT, b, means, U, k, xc, y, acc)
        lc = log_const[k]
        lw = log_w[k]
        for i in range(b):
            T[k, i] = (acc[i] * -0.5 + lc) + lw


@njit(cache=True, nogil=True)
def full_mixture_estep(X, sample_weight, means, U, log_const, log_w, center, M):
    """E-step of a mixture of full-covariance Gaussians over a chunk, fused.

    Squared Mahalanobis distances through the upper-triangular precision factors ``U`` (K, D, D)
    as :func:`full_mahalanobis_t`; log joint ``-0.5 * distance + log_const[k] + log_w[k]``;
    responsibilities ``r`` as :func:`normalize_log_resp`, times ``sample_weight`` (length 0: unit
    weights).  Adds into ``M`` (K, 1 + D + D (D + 1) / 2) the sums over rows of ``r``, of
    ``r (X - center)`` and of ``r`` times the products ``(X - center)_a (X - center)_b``, a <= b in
    row-major order.  Returns the chunk's weighted log-likelihood, or NaN (``M`` then partly
    filled) if ``X`` holds a value that is not finite.
    """
    n, D = X.shape
    K = means.shape[0]
    B = _BLOCK
    weighted = sample_weight.shape[0] > 0
    XT = np.empty((D, B))
    Z = np.empty((M.shape[1], B))
    xc = np.empty((D, B))
    y = np.empty(B)
    acc = np.empty(B)
    T = np.empty((K, B))
    E = np.empty((K, B))
    ebits = np.empty(K * B, dtype=np.int64)
    mx = np.empty(B)
    s = np.empty(B)
    ll = 0.0
    for i0 in range(0, n, B):
        b = min(B, n - i0)
        if _load_block(X, i0, b, center, XT, Z):
            return np.nan
        _full_block_log_joint(XT, b, means, U, log_const, log_w, xc, y, acc, T)
        _block_responsibilities(T, E, ebits, mx, s, b)
        ll += _weigh_block(E, mx, s, sample_weight, i0, b, weighted)
        q = 1 + D
        for a in range(D):
            for c in range(a, D):
                za = Z[1 + a]
                zc = Z[1 + c]
                for j in range(b):
                    Z[q, j] = za[j] * zc[j]
                q += 1
        _accumulate_products(E, Z, b, M)
    return ll
