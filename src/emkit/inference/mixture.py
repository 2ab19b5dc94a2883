"""Mixture latent structure: responsibilities from per-component log-likelihoods."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from .._lazy import LazyModule
from ..stats import Stats
from . import _numpy_kernels as _npk

_k = LazyModule("emkit.inference._kernels")


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


def normalize_log_resp(lp, log_norm):
    """In place: ``lp`` (n, K) log joint -> responsibilities; ``log_norm`` (n,) <- ``log p(x_n)``.

    The compiled kernel (:func:`._kernels.normalize_log_resp`), or its numpy twin for small
    inputs (see :data:`._numpy_kernels.SMALL_RESP_CELLS`).
    """
    (_npk if lp.size <= _npk.SMALL_RESP_CELLS else _k).normalize_log_resp(lp, log_norm)


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
