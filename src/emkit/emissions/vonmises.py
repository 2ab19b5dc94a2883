"""Von Mises emissions: D independent angles per row (head direction, heading, phase).

``x_d | z = k ~ VonMises(mu[k, d], kappa[k, d])``, with density
``exp(kappa cos(x - mu)) / (2 pi I0(kappa))`` on the circle.  Angles are in radians and may
be any real number (they wrap: ``x`` and ``x + 2 pi`` are the same angle).

M-step (generalised EM).  From the additive statistics ``n = sum w``, ``C = sum w cos x``,
``S = sum w sin x`` (per state and coordinate) the mean direction is exact,
``mu = atan2(S, C)``; the concentration maximises ``J(kappa) = kappa n rho - n log I0(kappa)``
with ``rho = (C cos mu + S sin mu) / n`` (the mean resultant length ``Rbar`` when ``mu`` is
learned), i.e. solves ``A(kappa) = I1(kappa) / I0(kappa) = rho``.  It is found by Newton
iterations on ``J`` from the better of the current ``kappa`` and Banerjee's approximation
``rho (2 - rho^2) / (1 - rho^2)``; every iteration is checked with
:func:`emkit.emissions.improving_step` (halve the step until ``J`` does not decrease), so EM
stays monotone.  ``rho <= 0`` gives ``kappa = 0`` (uniform).

A state on (nearly) identical angles has ``Rbar -> 1`` and ``kappa -> infinity``; ``kappa`` is
capped at :data:`KAPPA_MAX` (circular standard deviation about 0.001 rad, 0.06 degrees) and
a state at the cap is reported as collapsed (see :mod:`emkit.collapse`).

Missing values: a NaN angle is skipped exactly (the coordinates are independent, so a row's
likelihood is that of its observed angles) and adds nothing to the statistics, which count
the weight ``n`` per state *and coordinate*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import i0e, i1e

from .._validation import check_array
from ..stats import Stats
from .base import EmissionFamily, improving_step, register_family

#: Largest concentration: a state whose angles are (nearly) identical is held here and reported as collapsed.
KAPPA_MAX = 1e6
#: Newton iterations stop after a step that changes ``kappa`` by at most this (relative; quadratic
#: convergence: the next would be below rounding), or after MAX_NEWTON.
NEWTON_RTOL = 1e-9
#: ... or when the increase of ``J`` a step promises is below this (relative): rounding.
GAIN_RTOL = 1e-12
MAX_NEWTON = 50
_LOG_2PI = np.log(2.0 * np.pi)


@dataclass(frozen=True)
class VonMisesParams:
    """``mu`` (K, D) mean directions in (-pi, pi] and ``kappa`` (K, D) concentrations >= 0."""

    mu: np.ndarray
    kappa: np.ndarray


@dataclass
class VonMisesStats(Stats):
    """Per state and coordinate (K, D): ``n`` weight of the observed angles, ``c = sum w cos x``,
    ``s = sum w sin x``."""

    n: np.ndarray
    c: np.ndarray
    s: np.ndarray


def log_i0(kappa):
    """``log I0(kappa)``, stable for large ``kappa``."""
    kappa = np.asarray(kappa, dtype=np.float64)
    return np.log(i0e(kappa)) + kappa


def bessel_ratio(kappa):
    """``A(kappa) = I1(kappa) / I0(kappa)``, the mean resultant length of VonMises(0, kappa)."""
    kappa = np.asarray(kappa, dtype=np.float64)
    return i1e(kappa) / i0e(kappa)


def bessel_ratio_derivative(kappa, A=None):
    """``A'(kappa) = 1 - A / kappa - A^2`` (1/2 at 0)."""
    kappa = np.asarray(kappa, dtype=np.float64)
    A = bessel_ratio(kappa) if A is None else A
    with np.errstate(divide="ignore", invalid="ignore"):
        d = 1.0 - A / kappa - A * A
    return np.where(kappa > 1e-8, d, 0.5)


def _angles(X):
    """``(cos x, sin x, observed)`` with missing angles giving 0 and 0; ``observed`` is None without NaN."""
    X = np.asarray(X, dtype=np.float64)
    nan = np.isnan(X)
    if nan.any():
        Xf = np.where(nan, 0.0, X)
        obs = ~nan
        return np.where(obs, np.cos(Xf), 0.0), np.where(obs, np.sin(Xf), 0.0), obs
    return np.cos(X), np.sin(X), None


def solve_kappa(rho, n, current=None):
    """Concentrations maximising ``J(kappa) = n (kappa rho - log I0(kappa))`` by checked Newton steps.

    Parameters
    ----------
    rho : ndarray
        ``(C cos mu + S sin mu) / n`` per entry (<= 1).
    n : ndarray
        Weights (same shape); entries with ``n <= 0`` keep ``current`` (or get 0).
    current : ndarray or None
        The current concentrations; the result never has a lower ``J`` than they do.

    Returns
    -------
    kappa : ndarray
    info : dict
        ``newton`` iterations taken and ``halvings`` (total over entries and iterations) that
        :func:`improving_step` needed.
    """
    rho = np.asarray(rho, dtype=np.float64)
    shape = rho.shape
    rho = np.clip(rho.ravel(), -1.0, 1.0)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), shape).ravel()
    cur = None if current is None else np.asarray(current, dtype=np.float64).ravel()
    weighted = n > 0

    def J(kappa):  # per entry
        return n * (kappa * rho - log_i0(kappa))

    r = np.clip(rho, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        approx = np.where(r < 1.0, r * (2.0 - r * r) / (1.0 - r * r), KAPPA_MAX)  # Banerjee et al. (2005)
    kappa = np.clip(np.nan_to_num(approx, nan=0.0, posinf=KAPPA_MAX), 0.0, KAPPA_MAX)
    if cur is not None:
        kappa = np.where(J(np.clip(cur, 0.0, KAPPA_MAX)) > J(kappa), np.clip(cur, 0.0, KAPPA_MAX), kappa)
    at_cap = weighted & (rho >= bessel_ratio(KAPPA_MAX))  # J still increases at the cap
    kappa[at_cap] = KAPPA_MAX
    kappa[weighted & (rho <= 0.0)] = 0.0  # J decreases from 0 on: uniform
    active = weighted & ~at_cap & (rho > 0.0)
    newton = halvings = 0
    for _ in range(MAX_NEWTON):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        k = kappa[idx]
        A = bessel_ratio(k)
        step = (rho[idx] - A) / bessel_ratio_derivative(k, A)  # J' / -J'' (J is concave)
        proposal = np.clip(k + step, 0.0, KAPPA_MAX)
        # converged: the step is negligible, or the gain it promises is below the rounding of J
        gain = np.abs(n[idx] * (rho[idx] - A) * (proposal - k))
        value = n[idx] * (k * rho[idx] - log_i0(k))
        done = (np.abs(proposal - k) <= NEWTON_RTOL * k) | (gain <= GAIN_RTOL * np.maximum(np.abs(value), 1.0))
        if done.all():
            break
        idx, k, proposal = idx[~done], k[~done], proposal[~done]
        sub_n, sub_rho = n[idx], rho[idx]
        new, h = improving_step(lambda t: sub_n * (t * sub_rho - log_i0(t)), k, proposal)
        newton += 1
        halvings += int(np.sum(np.maximum(h, 0)))
        kappa[idx] = new
        active[:] = False
        active[idx] = h >= 0  # no improving step left: the maximum to rounding
    if cur is not None:  # a state without weight keeps its concentration
        kappa = np.where(weighted, kappa, cur)
    else:
        kappa = np.where(weighted, kappa, 0.0)
    return kappa.reshape(shape), {"newton": newton, "halvings": halvings}


@register_family("vonmises")
class VonMises(EmissionFamily):
    """Independent von Mises angles per state: ``x_d | z = k ~ VonMises(mu[k, d], kappa[k, d])``.

    X holds angles in radians (any real value: they wrap); NaN marks a missing angle, skipped
    exactly.  The mean direction is re-estimated in closed form and the concentration by
    checked Newton steps on the Bessel-ratio equation (see :mod:`emkit.emissions.vonmises`);
    ``kappa`` is capped at ``KAPPA_MAX`` (1e6), where a state counts as collapsed.

    Parameters of the states: ``mu`` (K, D) mean directions in (-pi, pi] and ``kappa`` (K, D)
    concentrations (fitted attributes ``mu_`` and ``kappa_``); ``learn`` names ``"mu"`` and
    ``"kappa"``.
    """

    param_names = ("mu", "kappa")
    attributes = {"mu": "mu", "kappa": "kappa"}
    handles_missing = True

    def __init__(self):
        pass

    # -- data ----------------------------------------------------------------------------------------
    def check_data(self, X):
        """Angles in radians: finite numbers, NaN for a missing angle."""
        return check_array(X, "X", allow_nan=True)

    def seeding_view(self, X):
        """Angles as points on the unit circle, ``[cos x, sin x]`` (n, 2D), so k-means++ seeding respects the wrap."""
        X = np.asarray(X, dtype=np.float64)
        return np.hstack([np.cos(X), np.sin(X)])

    # -- EM ------------------------------------------------------------------------------------------
    def log_likelihood(self, params, X):
        cos_x, sin_x, obs = _angles(X)
        mu, kappa = params.mu, params.kappa
        out = cos_x @ (kappa * np.cos(mu)).T
        out += sin_x @ (kappa * np.sin(mu)).T
        norm = _LOG_2PI + log_i0(kappa)  # (K, D)
        if obs is None:
            out -= norm.sum(axis=1)
        else:
            out -= obs.astype(np.float64) @ norm.T
        return out

    def statistics(self, params, X, weights):
        cos_x, sin_x, obs = _angles(X)
        n = np.broadcast_to(weights.sum(axis=0)[:, None], (weights.shape[1], cos_x.shape[1])).copy() \
            if obs is None else weights.T @ obs.astype(np.float64)
        return VonMisesStats(n=n, c=weights.T @ cos_x, s=weights.T @ sin_x)

    def m_step(self, stats, params=None, learn=None):
        learn_mu = learn is None or "mu" in learn
        learn_kappa = learn is None or "kappa" in learn
        if params is not None and not (learn_mu or learn_kappa):
            return params
        n = np.asarray(stats.n, dtype=np.float64)
        weighted = n > 0
        if learn_mu or params is None:
            mu = np.arctan2(stats.s, stats.c)
            if params is not None:
                mu = np.where(weighted, mu, params.mu)
        else:
            mu = params.mu
        if learn_kappa or params is None:
            with np.errstate(divide="ignore", invalid="ignore"):
                rho = np.where(weighted, (stats.c * np.cos(mu) + stats.s * np.sin(mu)) / np.where(weighted, n, 1.0),
                               0.0)
            kappa, _ = solve_kappa(rho, n, None if params is None else params.kappa)
        else:
            kappa = params.kappa
        return VonMisesParams(mu=mu, kappa=kappa)

    def sample(self, params, z, rng):
        return rng.vonmises(params.mu[z], params.kappa[z])

    def n_parameters(self, n_features):
        return 2 * self.n_components * n_features

    # -- collapse ------------------------------------------------------------------------------------
    def collapsed(self, params, occupancy):
        """States with a concentration at the cap ``KAPPA_MAX`` (angles all but identical)."""
        return np.any(params.kappa >= KAPPA_MAX, axis=1)

    def split(self, params, j, k):
        """State ``k`` re-seeded from state ``j``: mean directions half a circular standard deviation apart."""
        mu, kappa = params.mu.copy(), params.kappa.copy()
        delta = 0.5 / np.sqrt(np.maximum(kappa[j], 1.0))
        mu[k] = np.angle(np.exp(1j * (mu[j] + delta)))
        mu[j] = np.angle(np.exp(1j * (mu[j] - delta)))
        kappa[k] = kappa[j]
        return VonMisesParams(mu=mu, kappa=kappa)

    # -- parameters as arrays -------------------------------------------------------------------------
    def params_from(self, mu, kappa):
        """Parameters from mean directions ``mu`` (K, D, radians, wrapped to (-pi, pi]) and
        concentrations ``kappa`` (K, D), ``0 <= kappa <= KAPPA_MAX``."""
        mu = check_array(mu, "mu").astype(np.float64)
        kappa = check_array(kappa, "kappa").astype(np.float64)
        if mu.shape != kappa.shape:
            raise ValueError(f"mu and kappa must have the same shape (n_components, n_features); got {mu.shape} "
                             f"and {kappa.shape}")
        if self.n_components is not None and mu.shape[0] != self.n_components:
            raise ValueError(f"mu must have shape ({self.n_components}, n_features); got {mu.shape}")
        if np.any(kappa < 0) or np.any(kappa > KAPPA_MAX):
            raise ValueError(f"kappa must be in [0, {KAPPA_MAX:g}]; got values from {kappa.min():g} to "
                             f"{kappa.max():g}")
        return VonMisesParams(mu=np.angle(np.exp(1j * mu)), kappa=kappa)

    def check_params(self, params, n_features):
        self.params_from(params.mu, params.kappa)
        if params.mu.shape[1] != n_features:
            raise ValueError(f"mu must have shape ({self.n_components}, {n_features}); got {params.mu.shape}")
