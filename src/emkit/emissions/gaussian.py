"""Gaussian emissions with full, diagonal, spherical and tied covariances.

The covariance type is decided in one place: a :class:`_CovarianceType`
strategy object that knows the compact shape of its covariances, how to turn
statistics into covariances, covariances into Cholesky factors of precisions,
and how to evaluate log-densities.  Everything else is shared.

Compact shapes (those of scikit-learn's ``covariances_``):

=========  ==============
full       (K, D, D)
diag       (K, D)
spherical  (K,)
tied       (D, D)
=========  ==============

Statistics are moments about per-component centres (the means in force when
the E-step ran), which keeps the second moments free of cancellation even
for data far from the origin; statistics taken about different centres are
re-centred exactly before they are added.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from ..stats import Stats

LOG_2PI = np.log(2.0 * np.pi)

_SINGULAR_MESSAGE = (
    "Fitting failed because some components have an ill-defined (singular) covariance, for "
    "instance because of singleton or collapsed samples. Increase reg_covar (it is added to the "
    "diagonal of every covariance; currently {reg}) or decrease the number of components."
)


@dataclass(frozen=True)
class GaussianParams:
    """Parameters of K Gaussians.

    Attributes
    ----------
    means : ndarray (K, D)
    covariances : ndarray, compact shape of the covariance type
    precisions_cholesky : ndarray, same shape as ``covariances``
        Upper-triangular factors ``U`` with ``U @ U.T`` the precision (full, tied) or
        ``1 / sqrt(variance)`` (diag, spherical).
    """

    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray


@dataclass
class GaussianStats(Stats):
    """Weighted moments about per-component centres.

    Attributes
    ----------
    n : ndarray (K,)
        Sum of weights per component.
    sx : ndarray (K, D)
        ``sum_n w_nk (x_n - c_k)``.
    sxx : ndarray (K, D, D) or (K, D)
        ``sum_n w_nk (x_n - c_k)(x_n - c_k)^T`` (full and tied) or its diagonal (diag, spherical).
    center : ndarray (K, D)
        The centres ``c_k`` (a frame field, not summed).
    """

    n: np.ndarray
    sx: np.ndarray
    sxx: np.ndarray
    center: np.ndarray
    _frame_fields = ("center",)

    def _align(self, other):
        if other.center is self.center or np.array_equal(other.center, self.center):
            return other
        return other.recentered(self.center)

    def recentered(self, center):
        """The same statistics expressed as moments about ``center`` (K, D), exactly."""
        delta = self.center - center  # (K, D)
        n = self.n[:, None]
        sx = self.sx + n * delta
        if self.sxx.ndim == 3:
            outer = delta[:, :, None] * self.sx[:, None, :]
            sxx = self.sxx + outer + outer.transpose(0, 2, 1) + n[:, :, None] * delta[:, :, None] * delta[:, None, :]
        else:
            sxx = self.sxx + 2.0 * delta * self.sx + n * delta**2
        return GaussianStats(n=self.n.copy(), sx=sx, sxx=sxx, center=np.array(center, dtype=np.float64))


def _flipudlr(a):
    return np.flipud(np.fliplr(a))


def _chol_upper_of_precision(precision):
    """Upper-triangular ``U`` with ``U @ U.T == precision`` (scikit-learn's convention)."""
    return _flipudlr(linalg.cholesky(_flipudlr(precision), lower=True))


def _precision_cholesky_from_covariance(cov, reg_covar):
    try:
        chol = linalg.cholesky(cov, lower=True)
    except linalg.LinAlgError:
        raise ValueError(_SINGULAR_MESSAGE.format(reg=reg_covar)) from None
    # Numerically singular: a pivot that is rounding noise relative to the matrix's own scale.
    scale = np.max(np.abs(np.diag(cov)))
    if not np.all(np.isfinite(chol)) or np.min(np.diag(chol)) ** 2 <= cov.shape[0] * np.finfo(np.float64).eps * scale:
        raise ValueError(_SINGULAR_MESSAGE.format(reg=reg_covar))
    return linalg.solve_triangular(chol, np.eye(cov.shape[0]), lower=True).T


def _check_spd(matrix, name):
    if not np.allclose(matrix, matrix.T, rtol=1e-8, atol=1e-12 * max(1.0, np.abs(matrix).max())):
        raise ValueError(f"{name} must be symmetric")
    try:
        linalg.cholesky(matrix, lower=True)
    except linalg.LinAlgError:
        raise ValueError(f"{name} must be positive definite") from None


class _CovarianceType:
    """Strategy for one covariance type (see module docstring)."""

    name: str
    moment: str  # "full" or "diag": which second moments the statistics keep

    def compact_shape(self, K, D):
        raise NotImplementedError

    def from_moments(self, cov_full_or_diag, n, reg_covar):
        """Compact covariances from per-component centred covariances (K, D, D) or (K, D)."""
        raise NotImplementedError

    def precisions_cholesky(self, covariances, reg_covar):
        raise NotImplementedError

    def precisions(self, precisions_cholesky):
        raise NotImplementedError

    def precisions_cholesky_from_precisions(self, precisions):
        raise NotImplementedError

    def covariances_from_precisions(self, precisions):
        raise NotImplementedError

    def log_det_cholesky(self, precisions_cholesky, D):
        """``log det(U)`` per component, (K,) (or a scalar for tied)."""
        raise NotImplementedError

    def mahalanobis(self, X, means, precisions_cholesky):
        """Squared Mahalanobis distances (n, K)."""
        raise NotImplementedError

    def full_covariances(self, covariances, K, D):
        """Covariances as (K, D, D) matrices (for sampling and plotting)."""
        raise NotImplementedError

    def n_parameters(self, K, D):
        raise NotImplementedError

    def check_precisions(self, precisions, K, D, name="precisions_init"):
        raise NotImplementedError

    def check_covariances(self, covariances, K, D, name="covars_init"):
        raise NotImplementedError


def _check_shape(a, shape, name):
    a = np.asarray(a, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


class _Full(_CovarianceType):
    name = "full"
    moment = "full"

    def compact_shape(self, K, D):
        return (K, D, D)

    def from_moments(self, cov, n, reg_covar):
        out = cov.copy()
        idx = np.arange(out.shape[1])
        out[:, idx, idx] += reg_covar
        return out

    def precisions_cholesky(self, covariances, reg_covar):
        return np.stack([_precision_cholesky_from_covariance(c, reg_covar) for c in covariances])

    def precisions(self, pc):
        return np.einsum("kij,klj->kil", pc, pc)

    def precisions_cholesky_from_precisions(self, precisions):
        return np.stack([_chol_upper_of_precision(p) for p in precisions])

    def covariances_from_precisions(self, precisions):
        return np.stack([linalg.inv(p) for p in precisions])

    def log_det_cholesky(self, pc, D):
        return np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(axis=1)

    def mahalanobis(self, X, means, pc):
        out = np.empty((X.shape[0], means.shape[0]))
        for k in range(means.shape[0]):
            y = (X - means[k]) @ pc[k]
            out[:, k] = np.einsum("ij,ij->i", y, y)
        return out

    def full_covariances(self, covariances, K, D):
        return covariances

    def n_parameters(self, K, D):
        return K * D * (D + 1) // 2

    def check_precisions(self, precisions, K, D, name="precisions_init"):
        precisions = _check_shape(precisions, (K, D, D), name)
        for k, p in enumerate(precisions):
            _check_spd(p, f"{name}[{k}]")
        return precisions

    def check_covariances(self, covariances, K, D, name="covars_init"):
        return self.check_precisions(covariances, K, D, name)


class _Tied(_Full):
    name = "tied"
    moment = "full"

    def compact_shape(self, K, D):
        return (D, D)

    def from_moments(self, cov, n, reg_covar):
        total = n.sum()
        out = np.einsum("k,kij->ij", n, cov) / total
        out[np.diag_indices_from(out)] += reg_covar
        return out

    def precisions_cholesky(self, covariances, reg_covar):
        return _precision_cholesky_from_covariance(covariances, reg_covar)

    def precisions(self, pc):
        return pc @ pc.T

    def precisions_cholesky_from_precisions(self, precisions):
        return _chol_upper_of_precision(precisions)

    def covariances_from_precisions(self, precisions):
        return linalg.inv(precisions)

    def log_det_cholesky(self, pc, D):
        return np.log(np.diag(pc)).sum()

    def mahalanobis(self, X, means, pc):
        out = np.empty((X.shape[0], means.shape[0]))
        for k in range(means.shape[0]):
            y = (X - means[k]) @ pc
            out[:, k] = np.einsum("ij,ij->i", y, y)
        return out

    def full_covariances(self, covariances, K, D):
        return np.broadcast_to(covariances, (K, D, D))

    def n_parameters(self, K, D):
        return D * (D + 1) // 2

    def check_precisions(self, precisions, K, D, name="precisions_init"):
        precisions = _check_shape(precisions, (D, D), name)
        _check_spd(precisions, name)
        return precisions


class _Diag(_CovarianceType):
    name = "diag"
    moment = "diag"

    def compact_shape(self, K, D):
        return (K, D)

    def from_moments(self, var, n, reg_covar):
        return var + reg_covar

    def precisions_cholesky(self, covariances, reg_covar):
        scale = np.max(np.abs(covariances)) if covariances.size else 0.0
        if not np.all(np.isfinite(covariances)) or np.any(covariances <= np.finfo(np.float64).eps * scale):
            raise ValueError(_SINGULAR_MESSAGE.format(reg=reg_covar))
        return 1.0 / np.sqrt(covariances)

    def precisions(self, pc):
        return pc**2

    def precisions_cholesky_from_precisions(self, precisions):
        return np.sqrt(precisions)

    def covariances_from_precisions(self, precisions):
        return 1.0 / precisions

    def log_det_cholesky(self, pc, D):
        return np.log(pc).sum(axis=1)

    def mahalanobis(self, X, means, pc):
        out = np.empty((X.shape[0], means.shape[0]))
        for k in range(means.shape[0]):
            y = (X - means[k]) * pc[k]
            out[:, k] = np.einsum("ij,ij->i", y, y)
        return out

    def full_covariances(self, covariances, K, D):
        return np.stack([np.diag(c) for c in covariances])

    def n_parameters(self, K, D):
        return K * D

    def check_precisions(self, precisions, K, D, name="precisions_init"):
        precisions = _check_shape(precisions, (K, D), name)
        if np.any(precisions <= 0):
            raise ValueError(f"{name} must be positive")
        return precisions

    check_covariances = check_precisions


class _Spherical(_Diag):
    name = "spherical"
    moment = "diag"

    def compact_shape(self, K, D):
        return (K,)

    def from_moments(self, var, n, reg_covar):
        return var.mean(axis=1) + reg_covar

    def log_det_cholesky(self, pc, D):
        return D * np.log(pc)

    def mahalanobis(self, X, means, pc):
        out = np.empty((X.shape[0], means.shape[0]))
        for k in range(means.shape[0]):
            y = X - means[k]
            out[:, k] = np.einsum("ij,ij->i", y, y) * pc[k] ** 2
        return out

    def full_covariances(self, covariances, K, D):
        return covariances[:, None, None] * np.eye(D)[None]

    def n_parameters(self, K, D):
        return K

    def check_precisions(self, precisions, K, D, name="precisions_init"):
        precisions = _check_shape(precisions, (K,), name)
        if np.any(precisions <= 0):
            raise ValueError(f"{name} must be positive")
        return precisions

    check_covariances = check_precisions


COVARIANCE_TYPES = {c.name: c for c in (_Full(), _Diag(), _Spherical(), _Tied())}


class GaussianEmission:
    """Gaussian emission family.

    Parameters
    ----------
    n_components : int
    covariance_type : {"full", "diag", "spherical", "tied"}
    reg_covar : float
        Added to the diagonal of every covariance in the M-step.
    """

    def __init__(self, n_components, covariance_type="full", reg_covar=1e-6):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.cov = COVARIANCE_TYPES[covariance_type]
        self.reg_covar = reg_covar

    # -- E-step -----------------------------------------------------------------
    def log_likelihood(self, params, X):
        """``log N(x_n | mu_k, Sigma_k)`` as an (n, K) array."""
        D = X.shape[1]
        maha = self.cov.mahalanobis(X, params.means, params.precisions_cholesky)
        log_det = self.cov.log_det_cholesky(params.precisions_cholesky, D)
        return -0.5 * (D * LOG_2PI + maha) + log_det

    def statistics(self, params, X, weights):
        """Weighted moments of ``X`` (n, D) with weights (n, K) about the current means."""
        return self.moments(X, weights, params.means)

    def moments(self, X, weights, center):
        """Weighted moments of ``X`` about ``center`` (K, D)."""
        K = weights.shape[1]
        D = X.shape[1]
        center = np.asarray(center, dtype=np.float64)
        n = weights.sum(axis=0, dtype=np.float64)
        sx = np.empty((K, D))
        full = self.cov.moment == "full"
        sxx = np.empty((K, D, D)) if full else np.empty((K, D))
        for k in range(K):
            w = weights[:, k]
            xc = X - center[k]
            sx[k] = w @ xc
            if full:
                sxx[k] = (xc * w[:, None]).T @ xc
            else:
                sxx[k] = w @ (xc * xc)
        return GaussianStats(n=n, sx=sx, sxx=sxx, center=center)

    # -- M-step -----------------------------------------------------------------
    param_names = ("means", "covars")

    def m_step(self, stats, params=None, learn=None):
        """Means and covariances from statistics; raises ``ValueError`` naming ``reg_covar`` if singular.

        ``learn`` (a set of names from ``param_names``) restricts what is re-estimated; the rest is
        taken from ``params``.
        """
        learn_means = learn is None or "means" in learn
        learn_covars = learn is None or "covars" in learn
        if not learn_means:
            stats = stats.recentered(params.means)
        nk = stats.n + 10 * np.finfo(np.float64).eps
        d = stats.sx / nk[:, None] if learn_means else np.zeros_like(stats.sx)
        means = stats.center + d
        if not learn_covars:
            return self.params_from_covariances(means, params.covariances)
        if stats.sxx.ndim == 3:
            cov = stats.sxx / nk[:, None, None] - d[:, :, None] * d[:, None, :]
            cov = 0.5 * (cov + cov.transpose(0, 2, 1))
        else:
            cov = np.maximum(stats.sxx / nk[:, None] - d * d, 0.0)
        covariances = self.cov.from_moments(cov, nk, self.reg_covar)
        return self.params_from_covariances(means, covariances)

    def init_params(self, X, resp):
        """Parameters from initial responsibilities (n, K): one M-step about the data mean."""
        center = np.broadcast_to(X.mean(axis=0, dtype=np.float64), (resp.shape[1], X.shape[1]))
        return self.m_step(self.moments(X, resp, center))

    def prepare(self, X, lengths=None):
        return X

    def log_prior(self, params):
        return 0.0

    def params_from_covariances(self, means, covariances):
        pc = self.cov.precisions_cholesky(covariances, self.reg_covar)
        return GaussianParams(means=means, covariances=covariances, precisions_cholesky=pc)

    def params_from_precisions(self, means, precisions):
        pc = self.cov.precisions_cholesky_from_precisions(precisions)
        cov = self.cov.covariances_from_precisions(precisions)
        return GaussianParams(means=means, covariances=cov, precisions_cholesky=pc)

    # -- the rest -----------------------------------------------------------------
    def sample(self, params, z, rng):
        """Draw one row per state in ``z`` (n,)."""
        K, D = params.means.shape
        full = self.cov.full_covariances(params.covariances, K, D)
        X = np.empty((len(z), D))
        for k in range(K):
            idx = np.flatnonzero(z == k)
            if idx.size:
                X[idx] = rng.multivariate_normal(params.means[k], full[k], size=idx.size, method="cholesky")
        return X

    def n_parameters(self, n_features):
        K, D = self.n_components, n_features
        return K * D + self.cov.n_parameters(K, D)


def replace(params, **changes):
    return dataclasses.replace(params, **changes)
