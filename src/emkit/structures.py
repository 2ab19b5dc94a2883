"""Latent structures: how states are linked.  A structure combined with an
emission family is an EM *model* in the sense of :mod:`emkit.em`.

``Mixture``  independent states per row (Gaussian mixture, and K-means as its hard limit).
``MarkovChain`` states linked over time (hidden Markov models) lives in :mod:`emkit.hmm_core`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .inference.mixture import MixtureStats, log_responsibilities

_EPS10 = 10 * np.finfo(np.float64).eps


@dataclass(frozen=True)
class MixtureParams:
    """Mixture parameters: ``weights`` (K,) and the emission's parameters."""

    weights: np.ndarray
    emission: object


class Mixture:
    """Mixture latent structure over an emission family."""

    def __init__(self, emission):
        self.emission = emission

    def log_resp(self, params, X):
        """``(log p(x_n), log p(z_n=k | x_n))`` with shapes (n,) and (n, K)."""
        with np.errstate(divide="ignore"):
            log_w = np.log(params.weights)
        return log_responsibilities(log_w, self.emission.log_likelihood(params.emission, X))

    def e_step(self, params, X, sample_weight=None):
        log_norm, log_resp = self.log_resp(params, X)
        resp = np.exp(log_resp)
        if sample_weight is None:
            ll = float(log_norm.sum())
            n = float(X.shape[0])
        else:
            resp *= sample_weight[:, None]
            ll = float(sample_weight @ log_norm)
            n = float(sample_weight.sum())
        return MixtureStats(resp=resp.sum(axis=0), emission=self.emission.statistics(params.emission, X, resp),
                            log_likelihood=ll, n_samples=n)

    def m_step(self, stats):
        weights = stats.resp + _EPS10
        weights = weights / weights.sum()
        return MixtureParams(weights=weights, emission=self.emission.m_step(stats.emission))

    def objective(self, stats, params):
        return stats.log_likelihood / stats.n_samples
