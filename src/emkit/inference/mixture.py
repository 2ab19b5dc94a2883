"""Mixture latent structure: responsibilities from per-component log-likelihoods."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from ..stats import Stats


@dataclass
class MixtureStats(Stats):
    """Statistics of one E-step of a mixture over some rows.

    Attributes
    ----------
    resp : ndarray (K,)
        Sum over rows of (sample weight x responsibility).
    emission : Stats
        The emission family's statistics.
    log_likelihood : float
        Sum over rows of (sample weight x log p(x_n)).
    n_samples : float
        Sum of sample weights.
    """

    resp: np.ndarray
    emission: Stats
    log_likelihood: float
    n_samples: float


def log_responsibilities(log_weights, frame_loglik):
    """Per-row log-likelihood and log responsibilities.

    Parameters
    ----------
    log_weights : ndarray (K,)
    frame_loglik : ndarray (n, K)
        ``log p(x_n | z_n = k)``.

    Returns
    -------
    log_norm : ndarray (n,)
        ``log p(x_n)``.
    log_resp : ndarray (n, K)
        ``log p(z_n = k | x_n)``.
    """
    weighted = frame_loglik + log_weights
    log_norm = logsumexp(weighted, axis=1)
    with np.errstate(invalid="ignore"):
        log_resp = weighted - log_norm[:, None]
    return log_norm, log_resp
