"""Categorical emissions: one discrete symbol per step (the Baum-Welch of seed 001)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stats import Stats


@dataclass(frozen=True)
class CategoricalParams:
    """``emissionprob`` (K, n_symbols): row k is p(symbol | state k)."""

    emissionprob: np.ndarray


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
        Dirichlet concentration; 1.0 is maximum likelihood.
    """

    param_names = ("emissionprob",)

    def __init__(self, n_components, n_symbols, emissionprob_prior=1.0):
        self.n_components = n_components
        self.n_symbols = n_symbols
        self.emissionprob_prior = emissionprob_prior

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
        if learn is not None and "emissionprob" not in learn:
            return params
        c = np.maximum(stats.counts + np.asarray(self.emissionprob_prior, dtype=np.float64) - 1.0, 0.0)
        if params is not None:  # structural zeros stay zero
            c = np.where(params.emissionprob == 0, 0.0, c)
        sums = c.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            prob = np.where(sums > 0, c / np.where(sums > 0, sums, 1.0), 1.0 / self.n_symbols)
        return CategoricalParams(emissionprob=prob)

    def init_params(self, stats):
        return self.m_step(stats)

    def log_prior(self, params):
        a = np.asarray(self.emissionprob_prior, dtype=np.float64) - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a == 0, 0.0, a * np.log(params.emissionprob))
        return float(np.sum(terms))

    def sample(self, params, z, rng):
        cum = np.cumsum(params.emissionprob, axis=1)
        u = rng.uniform(size=len(z))
        out = np.array([np.searchsorted(cum[k], ui, side="right") for k, ui in zip(z, u)], dtype=np.int64)
        return np.minimum(out, self.n_symbols - 1).reshape(-1, 1)

    def n_parameters(self, n_features=None):
        return self.n_components * (self.n_symbols - 1)
