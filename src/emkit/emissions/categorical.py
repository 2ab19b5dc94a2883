"""Categorical emissions: one discrete symbol per step (the Baum-Welch of seed 001)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .._validation import check_array, check_int, check_stochastic_matrix
from ..stats import Stats
from ..structures import allowed_mask, check_concentration, dirichlet_log_density, map_probabilities
from .base import EmissionFamily, register_family

#: The alphabet is inferred as max(X) + 1 only up to this many symbols per row of data (or
#: ``MAX_SPARE_SYMBOLS``, if larger); beyond that the symbols must be remapped.
MAX_SYMBOLS_PER_ROW = 10
MAX_SPARE_SYMBOLS = 10_000


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


class CategoricalEmission(EmissionFamily):
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
    attributes = {"emissionprob": "emissionprob"}
    handles_missing = True
    #: the user-facing name of the alphabet size (in error messages)
    _alphabet_param = "n_features"

    def __init__(self, n_components, n_symbols, emissionprob_prior=1.0):
        self.n_components = n_components
        self.n_symbols = n_symbols
        self.emissionprob_prior = check_concentration(emissionprob_prior, "emissionprob_prior", None)

    def check_data(self, X):
        """One integer symbol per row, shape (n, 1); NaN or -1 marks a missing symbol (returned as -1, int64)."""
        X = check_array(X, "X", allow_nan=True)
        if X.shape[1] != 1:
            raise ValueError(f"X must have shape (n_samples, 1) with one integer symbol per row; got {X.shape}")
        nan = np.isnan(X)
        if nan.any():
            X = np.where(nan, -1.0, X)
        if not np.all(X == np.round(X)):
            raise ValueError("X must hold integers; got non-integer values")
        X = X.astype(np.int64)
        if X.min() < -1:
            raise ValueError(f"X must hold symbols >= 0 (-1 or NaN marks a missing symbol); got {X.min()}")
        n = self.n_symbols
        if n is not None and X.max() >= n:
            raise ValueError(f"X holds symbol {X.max()}, outside the range 0..{n - 1} of the model's {n} symbols "
                             f"({self._alphabet_param})")
        return X

    def configured(self, X):
        """With ``n_symbols`` None, a copy whose alphabet is ``0..max(X)`` (``X`` from :meth:`check_data`)."""
        if self.n_symbols is not None:
            return self
        largest, n_rows = int(np.max(X)), X.shape[0]
        if largest < 0:
            raise ValueError("X has no observed symbol (every entry is missing)")
        limit = max(MAX_SPARE_SYMBOLS, MAX_SYMBOLS_PER_ROW * n_rows)
        if largest + 1 > limit:
            raise ValueError(f"X holds symbol {largest}, so the alphabet would have {largest + 1} symbols for only "
                             f"{n_rows} rows; symbols must be 0..S-1: remap them (for example "
                             f"np.unique(X, return_inverse=True)) or pass {self._alphabet_param} explicitly")
        out = copy.copy(self)
        out.n_symbols = largest + 1
        return out

    def seeding_view(self, X):
        """One-hot rows (n, n_symbols): k-means++ then picks distinct symbols as centres (missing: all zero)."""
        symbols = np.asarray(X)[:, 0]
        seen = symbols >= 0  # NaN and -1: missing
        out = np.zeros((X.shape[0], self.n_symbols))
        out[np.flatnonzero(seen), symbols[seen].astype(np.int64)] = 1.0
        return out

    def configured_for(self, params):
        """With ``n_symbols`` None, a copy whose alphabet is that of ``params``."""
        if self.n_symbols is not None:
            return self
        out = copy.copy(self)
        out.n_symbols = params.emissionprob.shape[1]
        return out

    def n_features_of(self, params):
        return 1

    def params_from(self, emissionprob):
        """Parameters from ``emissionprob`` (K, n_symbols), rows summing to 1; its zeros are structural (kept)."""
        e = np.asarray(emissionprob, dtype=np.float64)
        K = self.n_components or (e.shape[0] if e.ndim == 2 else -1)
        e = check_stochastic_matrix(e, "emissionprob", (K, self.n_symbols or (e.shape[1] if e.ndim == 2 else -1)))
        return CategoricalParams(emissionprob=e, allowed=allowed_mask(e))

    def check_params(self, params, n_features):
        self.params_from(params.emissionprob)

    def prepare(self, X, lengths=None):
        symbols = X[:, 0]
        if symbols.dtype.kind == "f":  # chunks of a file or a float array: NaN marks a missing symbol
            symbols = np.where(np.isnan(symbols), -1.0, symbols)
        return np.ascontiguousarray(symbols, dtype=np.int64)

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


@register_family("categorical")
class Categorical(CategoricalEmission):
    """One discrete symbol per row: ``x | z = k ~ Categorical(emissionprob[k])``.

    X holds integer symbols ``0..n_symbols-1`` in one column; -1 or NaN marks a missing symbol.

    Parameters
    ----------
    n_symbols : int, optional
        Size of the alphabet; inferred as ``max(X) + 1`` when fitting if not given.
    emissionprob_prior : float, default=1.0
        Dirichlet concentration on each state's probabilities, >= 1 (1.0 is maximum likelihood).

    Parameters of the states: ``emissionprob`` (K, n_symbols); ``learn`` names ``"emissionprob"``.
    """

    _alphabet_param = "n_symbols"

    def __init__(self, n_symbols=None, emissionprob_prior=1.0):
        if n_symbols is not None:
            check_int(n_symbols, "n_symbols", minimum=1)
        if np.ndim(emissionprob_prior) != 0:
            raise ValueError("emissionprob_prior must be a number (one concentration for every entry); got an "
                             "array (per-entry concentrations: CategoricalHMM)")
        super().__init__(None, n_symbols, emissionprob_prior)
        self.emissionprob_prior = float(emissionprob_prior)
