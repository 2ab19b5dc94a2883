"""Categorical emissions: one discrete symbol per step (the Baum-Welch of seed 001)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stats import Stats
from ..structures import check_concentration, dirichlet_log_density, map_probabilities


@dataclass(frozen=True)
class CategoricalParams:
    """``emissionprob`` (K, n_symbols): row k is p(symbol | state k).

    ``allowed`` (K, n_symbols) marks the entries the M-step may make positive (None: all); its
    False entries are the structural zeros the user gave.
    """

    emissionprob: np.ndarray
    allowed: np.ndarray = None


@dataclass
class CategoricalStats(Stats):
    """``counts`` (K, n_symbols): expected number of emissions of each symbol by each state."""

    counts: np.ndarray


class CategoricalEmission:
    """Categorical emission family over symbols ``0..n_symbols-1`` (X of shape (n, 1), integers).

    A missing symbol is -1: its likelihood is 1 and the statistics hold its conditional
    expectation (the state's emission probabilities).

    Parameters
    ----------
    n_components, n_symbols : int
    emissionprob_prior : float or ndarray (K, n_symbols)
        Dirichlet concentration, >= 1; 1.0 is maximum likelihood.
    """

    param_names = ("emissionprob",)

    def __init__(self, n_components, n_symbols, emissionprob_prior=1.0):
        self.n_components = n_components
        self.n_symbols = n_symbols
        self.emissionprob_prior = check_concentration(emissionprob_prior, "emissionprob_prior", None)

    def prepare(self, X, lengths=None):
        return np.ascontiguousarray(X[:, 0], dtype=np.int64)

    def log_likelihood(self, params, symbols):
        with np.errstate(divide="ignore"):
            out = np.log(params.emissionprob).T[symbols]
        missing = symbols < 0
        if missing.any():
            out[missing] = 0.0
        return out

    def statistics(self, params, symbols, weights):
        K = weights.shape[1]
        missing = symbols < 0
        has_missing = missing.any()
        if has_missing:
            W_missing = weights[missing]
            symbols, weights = symbols[~missing], weights[~missing]
        counts = np.empty((K, self.n_symbols))
        for k in range(K):
            counts[k] = np.bincount(symbols, weights=weights[:, k], minlength=self.n_symbols)
        if has_missing and params is not None:
            counts += W_missing.sum(axis=0)[:, None] * params.emissionprob
        return CategoricalStats(counts=counts)

    def m_step(self, stats, params=None, learn=None):
        """Dirichlet MAP emission probabilities ``counts + (alpha - 1)`` normalised per state.

        Structural zeros (``params.allowed``) stay zero; a state with no mass keeps its old row
        (uniform when there is none).
        """
        if learn is not None and "emissionprob" not in learn:
            return params
        if params is None:
            old = np.full(stats.counts.shape, 1.0 / self.n_symbols)
            allowed = None
        else:
            old, allowed = params.emissionprob, params.allowed
        prob = map_probabilities(stats.counts, self.emissionprob_prior, old, allowed)
        return CategoricalParams(emissionprob=prob, allowed=allowed)

    def init_params(self, stats):
        return self.m_step(stats)

    def log_prior(self, params):
        return dirichlet_log_density(params.emissionprob, self.emissionprob_prior, params.allowed)

    def collapsed(self, params, occupancy):
        """Categorical states have no covariance floor: only emptiness counts (see emkit.collapse)."""
        return np.zeros(len(occupancy), dtype=bool)

    def split(self, params, j, k):
        """State ``k`` re-seeded from state ``j``: one sharpened, one flattened copy of its row."""
        prob = params.emissionprob.copy()
        p = prob[j]
        prob[k], prob[j] = p**2 / np.sum(p**2), np.sqrt(p) / np.sum(np.sqrt(p))
        return CategoricalParams(emissionprob=prob, allowed=params.allowed)

    def sample(self, params, z, rng):
        cum = np.cumsum(params.emissionprob, axis=1)
        u = rng.uniform(size=len(z))
        out = np.array([np.searchsorted(cum[k], ui, side="right") for k, ui in zip(z, u)], dtype=np.int64)
        return np.minimum(out, self.n_symbols - 1).reshape(-1, 1)

    def n_parameters(self, n_features=None):
        return self.n_components * (self.n_symbols - 1)
