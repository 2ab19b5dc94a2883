"""Negative-binomial emissions: D independent overdispersed counts per row (spike counts, events).

``x_d | z = k ~ NB(mean = m[k, d], dispersion r[k, d])``, ``var = m + m^2 / r`` (NB2; statsmodels'
``alpha`` is ``1 / r``; large ``r`` approaches the Poisson distribution)::

    log p(x) = log Gamma(x + r) - log Gamma(r) - log x! + r log(r / (r + m)) + x log(m / (r + m)).

Statistics.  The expected log-likelihood in ``r`` needs ``sum_n w_n log Gamma(x_n + r)``, which
no fixed set of moments gives; but counts are integers, so the statistics are a weighted
*histogram* of the count values per state and coordinate, ``hist[k, d, v] = sum_n w_nk [x_nd = v]``
(additive: histograms of different lengths are added by padding with zeros).  Counts above
``max_count`` are refused with a clear error (the histogram would be too large).

M-step (generalised EM).  The mean is exact for any ``r``: ``m = sum w x / sum w``.  The
dispersion maximises ``g(r) = sum_j T_j log(1 + j / r) - (sum w x + r sum w) log(1 + m / r)``
(the terms of ``J`` that depend on ``r``; ``T_j = sum_{v > j} hist[v]``) by Newton iterations
in ``log r`` from the better of the current ``r`` and the moment estimate ``m^2 / (var - m)``;
every iteration is checked with :func:`emkit.emissions.improving_step` (halve the step until
``g`` does not decrease), so EM stays monotone.  When a state's weighted variance does not
exceed its mean the likelihood increases all the way to the Poisson limit: ``r`` is then set
to :data:`R_MAX`.  ``r`` stays in ``[R_MIN, R_MAX]``.

Missing values: a NaN count is skipped exactly (the coordinates are independent, so a row's
likelihood is that of its observed counts) and adds nothing to the histogram, which counts the
weight per state *and coordinate*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, xlogy

from .._validation import check_array, check_int
from ..stats import Stats
from .base import EmissionFamily, improving_step, register_family

#: Bounds of the dispersion ``r``: ``R_MAX`` is the Poisson limit (variance exceeds the mean by ``m^2 / 1e6``).
R_MIN, R_MAX = 1e-8, 1e6
#: Newton iterations stop after a step that changes ``log r`` by at most this (quadratic convergence: the
#: next would be below rounding), or after MAX_NEWTON.
NEWTON_TOL = 1e-9
#: ... or when the increase of the objective a step promises is below this (relative): rounding.
GAIN_RTOL = 1e-12
MAX_NEWTON = 100
#: Largest Newton step in ``log r`` (a factor of e^3 on ``r``).
MAX_LOG_STEP = 3.0


@dataclass(frozen=True)
class NegativeBinomialParams:
    """``means`` (K, D) >= 0 and ``dispersions`` (K, D) in ``[R_MIN, R_MAX]``."""

    means: np.ndarray
    dispersions: np.ndarray


@dataclass
class NegativeBinomialStats(Stats):
    """``hist`` (K, D, V): weight of each count value ``0 .. V-1`` per state and coordinate.

    Histograms of different lengths add (the shorter is padded with zeros).
    """

    hist: np.ndarray

    def __add__(self, other):
        if isinstance(other, NegativeBinomialStats) and other.hist.shape[-1] != self.hist.shape[-1]:
            V = max(self.hist.shape[-1], other.hist.shape[-1])
            return NegativeBinomialStats(_pad(self.hist, V) + _pad(other.hist, V))
        return super().__add__(other)

    __radd__ = __add__

    def moments(self):
        """``(n, sum w x, sum w x^2)`` per state and coordinate, each (K, D)."""
        v = np.arange(self.hist.shape[-1], dtype=np.float64)
        return self.hist.sum(axis=-1), self.hist @ v, self.hist @ (v * v)

    def tails(self):
        """``T[..., j] = sum_{v > j} hist[..., v]`` for ``j = 0 .. V-2``."""
        return np.cumsum(self.hist[..., :0:-1], axis=-1)[..., ::-1]


def _pad(hist, V):
    return hist if hist.shape[-1] == V else np.concatenate(
        [hist, np.zeros(hist.shape[:-1] + (V - hist.shape[-1],))], axis=-1)


def check_counts(X, max_count):
    """``(counts (n, D) int64 with missing as 0, observed mask or None, largest count)``; a clear
    ``ValueError`` naming X for negative, non-integer, infinite or too large counts."""
    X = np.asarray(X)
    if X.dtype.kind in "iub":
        nan = None
        counts = X.astype(np.int64, copy=False)
    else:
        X = np.asarray(X, dtype=np.float64)
        nan = np.isnan(X)
        nan = nan if nan.any() else None
        if np.isinf(X).any():
            raise ValueError("X contains infinity; counts must be finite (NaN marks a missing count)")
        Xf = X if nan is None else np.where(nan, 0.0, X)
        if np.any(Xf != np.round(Xf)):
            raise ValueError("X must hold integer counts for negative-binomial emissions; got non-integer values")
        counts = Xf
    if counts.size and counts.min() < 0:
        raise ValueError("X must hold non-negative counts for negative-binomial emissions; got negative values")
    top = int(counts.max()) if counts.size else 0
    if top > max_count:
        raise ValueError(f"X holds a count of {top}, above max_count={max_count} of NegativeBinomial (its statistics "
                         "are a histogram of count values per state and coordinate); raise max_count if memory "
                         "allows (K * D * max_count numbers per chunk), or model such counts another way")
    return counts.astype(np.int64, copy=False), (None if nan is None else ~nan), top


def dispersion_objective(r, tails, n, sx, m):
    """``g(r)``: the terms of the expected log-likelihood that depend on ``r`` (see the module doc),
    per entry; ``tails`` (E, V-1), the others (E,)."""
    j = np.arange(tails.shape[-1], dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    return np.sum(tails * np.log1p(j / r[:, None]), axis=-1) - (sx + n * r) * np.log1p(m / r)


def _dispersion_derivatives(r, tails, n, sx, m):
    """First and second derivatives of ``g`` with respect to ``s = log r``."""
    j = np.arange(tails.shape[-1], dtype=np.float64)
    rr = r[:, None]
    d1 = -np.sum(tails * j / (rr * (rr + j)), axis=-1) - n * np.log1p(m / r) + (sx + n * r) * m / (r * (r + m))
    d2 = (np.sum(tails * j * (2 * rr + j) / (rr * rr * (rr + j) ** 2), axis=-1) + 2 * n * m / (r * (r + m))
          - (sx + n * r) * m * (2 * r + m) / (r * r * (r + m) ** 2))
    return r * d1, r * d1 + r * r * d2


def solve_dispersion(stats, m, current=None):
    """Dispersions ``r`` (K, D) maximising ``g`` for the means ``m`` by checked Newton steps in ``log r``.

    Returns ``(r, info)`` with ``info = {"newton": iterations, "halvings": total halvings}``.  The
    result never has a lower ``g`` than ``current``; entries without weight keep ``current``
    (or get ``R_MAX``).
    """
    n, sx, sxx = stats.moments()
    shape = n.shape
    tails = stats.tails().reshape(n.size, -1 if n.size else 0)  # (entries, V - 1); V = 1 when all counts are 0
    n, sx, sxx, m = (np.asarray(a, dtype=np.float64).ravel() for a in (n, sx, sxx, np.broadcast_to(m, shape)))
    weighted = n > 0
    cur = None if current is None else np.clip(np.asarray(current, dtype=np.float64).ravel(), R_MIN, R_MAX)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = sxx / n - 2 * m * sx / n + m * m  # weighted variance about m
        excess = var - m
        moment = np.where(excess > 0, m * m / excess, R_MAX)
    r = np.clip(np.nan_to_num(moment, nan=R_MAX, posinf=R_MAX), R_MIN, R_MAX)
    poisson = weighted & ~(excess > 0)  # g increases up to the Poisson limit
    r[poisson] = R_MAX
    if cur is not None:
        better = dispersion_objective(cur, tails, n, sx, m) > dispersion_objective(r, tails, n, sx, m)
        r = np.where(better, cur, r)
    active = weighted & (m > 0) & ~(poisson & (r == R_MAX))
    newton = halvings = 0
    lo, hi = np.log(R_MIN), np.log(R_MAX)
    for _ in range(MAX_NEWTON):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        s = np.log(r[idx])
        d1, d2 = _dispersion_derivatives(r[idx], tails[idx], n[idx], sx[idx], m[idx])
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(d2 < 0, -d1 / d2, np.sign(d1) * MAX_LOG_STEP)  # not concave there: move uphill
        step = np.clip(np.nan_to_num(step), -MAX_LOG_STEP, MAX_LOG_STEP)
        proposal = np.clip(s + step, lo, hi)
        sub = (tails[idx], n[idx], sx[idx], m[idx])
        g = dispersion_objective(r[idx], *sub)
        # converged: the step is negligible, or the gain it promises is below the rounding of g
        done = (np.abs(proposal - s) <= NEWTON_TOL) | (np.abs(d1 * (proposal - s)) <= GAIN_RTOL * np.maximum(np.abs(g), 1.0))
        if done.all():
            break
        idx, s, proposal, sub = idx[~done], s[~done], proposal[~done], tuple(a[~done] for a in sub)
        new, h = improving_step(lambda t: dispersion_objective(np.exp(t), *sub), s, proposal)
        newton += 1
        halvings += int(np.sum(np.maximum(h, 0)))
        r[idx] = np.exp(new)
        active[:] = False
        active[idx] = h >= 0
    if cur is not None:
        r = np.where(weighted, r, cur)
    else:
        r = np.where(weighted, r, R_MAX)
    return r.reshape(shape), {"newton": newton, "halvings": halvings}


@register_family("negbinom")
class NegativeBinomial(EmissionFamily):
    """Independent negative-binomial counts per state, with a mean and a dispersion per state and count.

    ``x_d | z = k`` has mean ``means[k, d]`` and variance ``m + m^2 / r`` with ``r = dispersions[k, d]``
    (NB2; large ``r`` is the Poisson limit, capped at ``R_MAX`` = 1e6).  X holds non-negative
    integer counts; NaN marks a missing count, skipped exactly.  The mean is re-estimated in
    closed form and the dispersion by checked Newton steps (see :mod:`emkit.emissions.negbinom`).

    Parameters
    ----------
    max_count : int, default=10000
        Largest count accepted: the statistics are a weighted histogram of count values per state
        and coordinate (``K * D * (largest count + 1)`` numbers per chunk).

    Parameters of the states: ``means`` (K, D) and ``dispersions`` (K, D) (fitted attributes
    ``means_`` and ``dispersions_``); ``learn`` names ``"means"`` and ``"dispersions"``.
    """

    param_names = ("means", "dispersions")
    attributes = {"means": "means", "dispersions": "dispersions"}
    handles_missing = True

    def __init__(self, max_count=10000):
        self.max_count = check_int(max_count, "max_count", minimum=1)

    # -- data ----------------------------------------------------------------------------------------
    def check_data(self, X):
        """Non-negative integer counts up to ``max_count`` (NaN: missing)."""
        X = check_array(X, "X", allow_nan=True)
        check_counts(X, self.max_count)
        return X

    # -- EM ------------------------------------------------------------------------------------------
    def log_likelihood(self, params, X):
        counts, obs, top = check_counts(X, self.max_count)
        m, r = params.means, params.dispersions
        K, D = m.shape
        V = top + 1
        j = np.arange(V, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            log1p_mr = np.log1p(m / r)  # (K, D)
            # table[k, d, v] = sum_{i<v} log(1 + i/r) - v log(1 + m/r) + v log m - log v!  (exact at v = 0: 0)
            steps = np.log1p(j[:-1] / r[..., None])  # (K, D, V-1)
            table = np.zeros((K, D, V))
            np.cumsum(steps, axis=-1, out=table[..., 1:])
            table -= j * log1p_mr[..., None]
            table += xlogy(j, m[..., None])
            table -= gammaln(j + 1.0)
        flat = counts + V * np.arange(D)  # (n, D)
        out = table.reshape(K, D * V)[:, flat].sum(axis=-1).T  # (n, K)
        const = -r * log1p_mr  # r log(r / (r + m)), (K, D)
        if obs is None:
            out += const.sum(axis=1)
        else:
            out += obs.astype(np.float64) @ const.T
        return np.ascontiguousarray(out)

    def statistics(self, params, X, weights):
        counts, obs, top = check_counts(X, self.max_count)
        n, D = counts.shape
        K = weights.shape[1]
        V = top + 1
        flat = (counts + V * np.arange(D)).ravel()
        rows = np.repeat(np.arange(n), D)
        if obs is not None:
            keep = obs.ravel()
            flat, rows = flat[keep], rows[keep]
        hist = np.empty((K, D * V))
        for k in range(K):
            hist[k] = np.bincount(flat, weights=weights[rows, k], minlength=D * V)
        return NegativeBinomialStats(hist=hist.reshape(K, D, V))

    def m_step(self, stats, params=None, learn=None):
        learn_m = learn is None or "means" in learn
        learn_r = learn is None or "dispersions" in learn
        if params is not None and not (learn_m or learn_r):
            return params
        n, sx, _ = stats.moments()
        weighted = n > 0
        if learn_m or params is None:
            with np.errstate(divide="ignore", invalid="ignore"):
                m = np.where(weighted, sx / np.where(weighted, n, 1.0), 0.0 if params is None else params.means)
        else:
            m = params.means
        if learn_r or params is None:
            r, _ = solve_dispersion(stats, m, None if params is None else params.dispersions)
        else:
            r = params.dispersions
        return NegativeBinomialParams(means=m, dispersions=r)

    def init_params(self, stats):
        params = self.m_step(stats)
        # every mean positive at the start, so that no count is impossible
        n, sx, _ = stats.moments()
        overall = float(sx.sum() / max(n.sum(), 1e-300))
        return NegativeBinomialParams(means=np.maximum(params.means, max(1e-3, 1e-3 * overall)),
                                      dispersions=params.dispersions)

    def sample(self, params, z, rng):
        m, r = params.means[z], params.dispersions[z]
        return rng.negative_binomial(r, r / (r + m)).astype(np.int64)

    def n_parameters(self, n_features):
        return 2 * self.n_components * n_features

    def split(self, params, j, k):
        """State ``k`` re-seeded from state ``j``: means half a standard deviation apart."""
        m, r = params.means.copy(), params.dispersions.copy()
        delta = np.minimum(0.5 * np.sqrt(m[j] + m[j] ** 2 / r[j]), 0.5 * m[j])
        m[k], m[j] = m[j] + delta, m[j] - delta
        r[k] = r[j]
        return NegativeBinomialParams(means=m, dispersions=r)

    # -- parameters as arrays -------------------------------------------------------------------------
    def params_from(self, means, dispersions):
        """Parameters from ``means`` (K, D) >= 0 and ``dispersions`` (K, D) in ``[R_MIN, R_MAX]``."""
        m = check_array(means, "means").astype(np.float64)
        r = check_array(dispersions, "dispersions").astype(np.float64)
        if m.shape != r.shape:
            raise ValueError(f"means and dispersions must have the same shape (n_components, n_features); got "
                             f"{m.shape} and {r.shape}")
        if self.n_components is not None and m.shape[0] != self.n_components:
            raise ValueError(f"means must have shape ({self.n_components}, n_features); got {m.shape}")
        if np.any(m < 0):
            raise ValueError("means must be non-negative")
        if np.any(r < R_MIN) or np.any(r > R_MAX):
            raise ValueError(f"dispersions must be in [{R_MIN:g}, {R_MAX:g}]; got values from {r.min():g} to "
                             f"{r.max():g}")
        return NegativeBinomialParams(means=m, dispersions=r)

    def check_params(self, params, n_features):
        self.params_from(params.means, params.dispersions)
        if params.means.shape[1] != n_features:
            raise ValueError(f"means must have shape ({self.n_components}, {n_features}); got {params.means.shape}")
