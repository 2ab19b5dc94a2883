"""Poisson emissions: D independent event counts per step (spike counts, event tallies).

A missing count (NaN) is skipped: the row's likelihood is that of its observed counts, and the
statistics hold its conditional expectation (the state's rate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from .._validation import check_array, check_float
from ..stats import Stats
from .base import EmissionFamily, register_family
from .missing import component_means


@dataclass(frozen=True)
class PoissonParams:
    """``lambdas`` (K, D): the rate of each count in each state."""

    lambdas: np.ndarray


@dataclass
class PoissonStats(Stats):
    """``n`` (K,) weight per state and ``sx`` (K, D) weighted count sums."""

    n: np.ndarray
    sx: np.ndarray


class PoissonEmission(EmissionFamily):
    """Poisson emission family (the engine of PoissonHMM; see :class:`Poisson`).

    Parameters
    ----------
    n_components : int
    lambdas_prior, lambdas_weight : float
        Gamma prior on the rates as in hmmlearn: ``lambda = (prior + sum w x) / (weight + sum w)``;
        0 and 0 is maximum likelihood.  A state with no weight (and ``weight == 0``) keeps its rates.
    """

    param_names = ("lambdas",)
    attributes = {"lambdas": "lambdas"}
    handles_missing = True

    def __init__(self, n_components, lambdas_prior=0.0, lambdas_weight=0.0):
        self.n_components = n_components
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight

    def check_data(self, X):
        """Non-negative integer counts (NaN: missing)."""
        X = check_array(X, "X", allow_nan=True)
        if np.any(X < 0):
            raise ValueError("X must hold non-negative counts for Poisson emissions; got negative values")
        if X.dtype.kind == "f" and not np.all((X == np.round(X)) | np.isnan(X)):
            raise ValueError("X must hold integer counts for Poisson emissions; got non-integer values")
        return X

    def params_from(self, lambdas):
        """Parameters from the rates ``lambdas`` (K, D), non-negative."""
        lam = check_array(lambdas, "lambdas").astype(np.float64)
        if self.n_components is not None and lam.shape[0] != self.n_components:
            raise ValueError(f"lambdas must have shape ({self.n_components}, n_features); got {lam.shape}")
        if np.any(lam < 0):
            raise ValueError("lambdas must be non-negative")
        return PoissonParams(lambdas=lam)

    def check_params(self, params, n_features):
        self.params_from(params.lambdas)
        if params.lambdas.shape[1] != n_features:
            raise ValueError(f"lambdas must have shape ({self.n_components}, {n_features}); got "
                             f"{params.lambdas.shape}")

    def log_likelihood(self, params, X):
        X = np.asarray(X, dtype=np.float64)
        nan = np.isnan(X)
        missing = nan.any()
        if missing:
            X = np.where(nan, 0.0, X)  # a zero count adds nothing but its rate, removed below
        lam = params.lambdas
        with np.errstate(divide="ignore", invalid="ignore"):
            log_lam = np.log(lam)
            xl = X @ np.where(np.isfinite(log_lam), log_lam, 0.0).T  # (n, K)
            # a zero rate makes any positive count impossible
            zero = (lam <= 0).T.astype(np.float64)  # (D, K)
            impossible = (X > 0).astype(np.float64) @ zero > 0
        rate = (~nan) @ lam.T if missing else lam.sum(axis=1)
        out = xl - rate - gammaln(X + 1).sum(axis=1, keepdims=True)
        out[impossible] = -np.inf
        return out

    def statistics(self, params, X, weights):
        """Weighted count sums; a missing count contributes its expectation (the rate, or with ``params``
        None the state's mean observed count in this chunk)."""
        X = np.asarray(X, dtype=np.float64)
        nan = np.isnan(X)
        if not nan.any():
            return PoissonStats(n=weights.sum(axis=0), sx=weights.T @ X)
        fill = component_means(X, weights) if params is None else params.lambdas
        sx = weights.T @ np.where(nan, 0.0, X) + (weights.T @ nan) * fill
        return PoissonStats(n=weights.sum(axis=0), sx=sx)

    def conditional_expectations(self, params, X):
        """``E[x_n | observed counts of x_n, z_n = k]`` as a (K, n, D) array: a missing count's expectation is the rate."""
        X = np.asarray(X, dtype=np.float64)
        return np.where(np.isnan(X)[None], params.lambdas[:, None, :], X[None])

    def m_step(self, stats, params=None, learn=None):
        if learn is not None and "lambdas" not in learn:
            return params
        denom = np.broadcast_to(self.lambdas_weight + stats.n[:, None], stats.sx.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = (self.lambdas_prior + stats.sx) / denom
        if np.any(denom <= 0):  # a state with no weight and no prior weight keeps its rates
            old = params.lambdas if params is not None else np.zeros_like(lam)
            lam = np.where(denom > 0, lam, old)
        return PoissonParams(lambdas=lam)

    def init_params(self, stats):
        params = self.m_step(stats)
        # keep every rate positive at the start so no count is impossible
        mean = float(stats.sx.sum() / max(stats.n.sum(), 1e-300) / stats.sx.shape[1])
        return PoissonParams(lambdas=np.maximum(params.lambdas, max(1e-3, 1e-3 * mean)))

    def log_prior(self, params):
        a, b = self.lambdas_prior, self.lambdas_weight
        if a == 0 and b == 0:
            return 0.0
        lam = params.lambdas
        with np.errstate(divide="ignore"):
            return float(np.sum(a * np.log(lam) - b * lam)) if a > 0 else float(np.sum(-b * lam))

    def collapsed(self, params, occupancy):
        """Poisson states have no covariance floor: only emptiness counts (see emkit.collapse)."""
        return np.zeros(len(occupancy), dtype=bool)

    def split(self, params, j, k):
        """State ``k`` re-seeded from state ``j``: rates half a Poisson standard deviation apart."""
        lam = params.lambdas.copy()
        delta = np.minimum(0.5 * np.sqrt(lam[j]), 0.5 * lam[j])
        lam[k], lam[j] = lam[j] + delta, lam[j] - delta
        return PoissonParams(lambdas=lam)

    def sample(self, params, z, rng):
        return rng.poisson(params.lambdas[z]).astype(np.int64)

    def n_parameters(self, n_features):
        return self.n_components * n_features


@register_family("poisson")
class Poisson(PoissonEmission):
    """Independent Poisson counts per state: ``x_d | z = k ~ Poisson(lambdas[k, d])``.

    X holds non-negative integer counts (spike counts, event tallies); a missing count (NaN)
    is skipped exactly.

    Parameters
    ----------
    lambdas_prior, lambdas_weight : float, default=0.0
        Gamma prior on the rates (hmmlearn's meaning): ``lambda = (prior + sum w x) / (weight + sum w)``;
        0 and 0 is maximum likelihood.

    Parameters of the states: ``lambdas`` (K, D); ``learn`` names ``"lambdas"``.
    """

    def __init__(self, lambdas_prior=0.0, lambdas_weight=0.0):
        check_float(lambdas_prior, "lambdas_prior", minimum=0.0)
        check_float(lambdas_weight, "lambdas_weight", minimum=0.0)
        super().__init__(None, lambdas_prior, lambdas_weight)
