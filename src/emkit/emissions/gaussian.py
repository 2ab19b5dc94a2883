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

Statistics are moments about per-component centres (K, D).  An E-step takes
them about the mean of the means when that loses no precision, and about a
component's own mean when the component lies far (in its own Mahalanobis
metric) from that common centre; initial statistics and rows with missing
values always use per-component centres.  Statistics taken about different
centres are re-centred exactly before they are added.

Missing values (NaN) are integrated out: a row's density is the marginal
density of its observed coordinates (1 for a row with nothing observed), and
its statistics use, per component, the conditional mean of the missing
coordinates given the observed ones and their conditional covariance
(Ghahramani & Jordan 1994).  Rows are grouped by missingness pattern, so each
(pattern, component) pair costs one factorisation per chunk.  Data without
NaN never enters that code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from ..collapse import floor_collapsed, main_axis_offset
from .._lazy import LazyModule
from ..inference import _blas
from ..inference import _numpy_kernels as _npk
from .._validation import check_array, check_choice, check_float
from ..stats import Stats
from .base import EmissionFamily, register_family
from .missing import component_means, has_nan, missing_patterns

_k = LazyModule("emkit.inference._kernels")  # compiled kernels: imported (with numba) when first used
_mk = LazyModule("emkit.inference._missing_kernels")
_hmm = LazyModule("emkit.inference.hmm")  # HMM inference: only HMMs use it

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
    """Weighted moments about per-component centres ``c_k`` (K, D).

    Attributes
    ----------
    n : ndarray (K,)
        Sum of weights per component.
    sx : ndarray (K, D)
        ``sum_n w_nk (x_n - c_k)``.
    sxx : ndarray
        Second moments ``sum_n w_nk (x_n - c_k)(x_n - c_k)^T`` in the covariance type's form:
        full (K, D, D); tied (D, D) summed over components; diag (K, D) the diagonal;
        spherical (K,) the trace.  For rows with missing entries ``x_n`` stands for its
        conditional expectation and the conditional covariance is added.
    center : ndarray (K, D)
        The centres (a frame field, not summed; a (D,) centre is broadcast to every component).
    kind : str
        The covariance type (a frame field).
    """

    n: np.ndarray
    sx: np.ndarray
    sxx: np.ndarray
    center: np.ndarray
    kind: str = "full"
    _frame_fields = ("center", "kind")

    def __post_init__(self):
        center = np.asarray(self.center, dtype=np.float64)
        if center.ndim == 1:
            center = np.broadcast_to(center, self.sx.shape).copy()
        self.center = center

    def _align(self, other):
        if other.center is self.center or np.array_equal(other.center, self.center):
            return other
        return other.recentered(self.center)

    def recentered(self, center):
        """The same statistics expressed as moments about ``center`` (K, D) or (D,), exactly."""
        center = np.broadcast_to(np.asarray(center, dtype=np.float64), self.sx.shape).copy()
        delta = self.center - center  # (K, D)
        sxx = COVARIANCE_TYPES[self.kind].recenter_sxx(self.sxx, self.sx, self.n, delta)
        return GaussianStats(n=self.n.copy(), sx=self.sx + self.n[:, None] * delta, sxx=sxx, center=center,
                             kind=self.kind)


# diagonal Mahalanobis distances of at most this many (row, component, feature) terms are computed
# in numpy rather than by the compiled kernel (which costs far more to compile than to run them)
_SMALL_DIAG_CELLS = 1 << 16

#: chunks of more than this many (row, component, feature) terms take the fused mixture E-step
#: (:meth:`GaussianEmission.mixture_e_step`); smaller ones go step by step, small problems through
#: the numpy twins of the kernels
_FUSED_MIN_CELLS = 1 << 16

_EMPTY = np.empty(0)

#: (params, weights, covariance type, constants) of the last fused E-step: its chunks share them
_FUSED_LAST = None


def _diag_kernels(out, D):
    """The numpy twins for small diagonal distances (``out`` (n, K)), else the compiled kernels."""
    return _npk if out.size * D <= _SMALL_DIAG_CELLS else _k


def _flipudlr(a):
    return np.flipud(np.fliplr(a))


def _chol_upper_of_precision(precision):
    """Upper-triangular ``U`` with ``U @ U.T == precision`` (scikit-learn's convention)."""
    return _flipudlr(linalg.cholesky(_flipudlr(precision), lower=True))


def _precision_cholesky_from_covariance(cov, reg_covar):
    if not np.all(np.isfinite(cov)):
        raise ValueError("a covariance is not finite: the data's values are too large for float64 arithmetic "
                         "(squares overflow); rescale X (for example divide it by its standard deviation)")
    try:
        chol = linalg.cholesky(cov, lower=True)
    except linalg.LinAlgError:
        raise ValueError(_SINGULAR_MESSAGE.format(reg=reg_covar)) from None
    # Numerically singular: a pivot that is rounding noise relative to the matrix's own scale.
    scale = np.max(np.abs(np.diag(cov)))
    if not np.all(np.isfinite(chol)) or np.min(np.diag(chol)) ** 2 <= cov.shape[0] * np.finfo(np.float64).eps * scale:
        raise ValueError(_SINGULAR_MESSAGE.format(reg=reg_covar))
    return linalg.solve_triangular(chol, np.eye(cov.shape[0]), lower=True).T


#: Largest asymmetry accepted in a given covariance or precision, relative to the matrix's scale
#: (the inverse of a real 64 x 64 covariance is symmetric to about 1e-10 of it).
SYMMETRY_RTOL = 1e-6


def _check_spd(matrix, name):
    """The symmetric part of ``matrix`` (D, D), checked symmetric (relative to its scale) and positive definite."""
    scale = np.abs(matrix).max()
    asymmetry = np.abs(matrix - matrix.T).max()
    if asymmetry > SYMMETRY_RTOL * scale:
        raise ValueError(f"{name} must be symmetric; its largest asymmetry {asymmetry:.3g} is more than "
                         f"{SYMMETRY_RTOL:g} times its largest entry {scale:.3g}")
    matrix = 0.5 * (matrix + matrix.T)
    try:
        linalg.cholesky(matrix, lower=True)
    except linalg.LinAlgError:
        raise ValueError(f"{name} must be positive definite") from None
    return matrix


class _CovarianceType:
    """Strategy for one covariance type (see module docstring).

    ``Xs`` below is data minus the statistics centre ``c`` (float64, (n, D)); ``m`` is the
    means minus ``c`` (K, D).  Types with ``direct = True`` take the raw rows and means in
    ``mahalanobis`` instead.
    """

    name: str
    direct = False

    # shapes, counting, checks
    def compact_shape(self, K, D):
        raise NotImplementedError

    def n_parameters(self, K, D):
        raise NotImplementedError

    def check_precisions(self, precisions, K, D, name="precisions_init"):
        raise NotImplementedError

    def check_covariances(self, covariances, K, D, name="covars_init"):
        return self.check_precisions(covariances, K, D, name)

    # conversions
    def precisions_cholesky(self, covariances, reg_covar):
        raise NotImplementedError

    def precisions(self, precisions_cholesky):
        raise NotImplementedError

    def precisions_cholesky_from_precisions(self, precisions):
        raise NotImplementedError

    def covariances_from_precisions(self, precisions):
        raise NotImplementedError

    def full_covariances(self, covariances, K, D):
        """Covariances as (K, D, D) matrices (for sampling and plotting)."""
        raise NotImplementedError

    def log_det_cholesky(self, pc, D):
        """``log det(U)`` per component, (K,)."""
        raise NotImplementedError

    # E-step
    def mahalanobis(self, Xs, m, pc):
        """Squared Mahalanobis distances (n, K)."""
        raise NotImplementedError

    def second_moments(self, Xs, W):
        """``sxx`` of :class:`GaussianStats` for weights ``W`` (n, K)."""
        raise NotImplementedError

    def recenter_sxx(self, sxx, sx, n, delta):
        """``sxx`` about centres moved by ``-delta`` (K, D)."""
        raise NotImplementedError

    def component_moment(self, Xs, w):
        """One component's ``sum_n w_n Xs_n Xs_n^T`` in per-component form: (D, D), (D,) or a number."""
        raise NotImplementedError

    def stack(self, parts):
        """Per-component moments (list of K) -> ``sxx`` of :class:`GaussianStats`."""
        return np.stack(parts) if parts[0].ndim else np.array(parts)

    def conditional(self, C):
        """A (D, D) conditional covariance in per-component form."""
        return C

    # M-step
    def covariances(self, stats, m, reg_covar):
        """Compact covariances about the means ``m`` (relative to the stats centre), plus ``reg_covar``."""
        raise NotImplementedError


#: Full covariances from this many features on: squared distances as one triangular matrix product
#: per component, and second moments as one symmetric rank-n update per component (BLAS-3).  Below,
#: the compiled kernels over the triangles win (measured on 2 AVX-512 cores: at D=10 the kernels take
#: 0.7x the BLAS time for distances and 1.0x for moments; at D=32, 1.2x and 2.1x; at D=100, 1.4x and 4x).
BLAS3_DISTANCES_MIN_D = 32
BLAS3_MOMENTS_MIN_D = 16


def chunk_width(covariance_type, n_components, n_features):
    """Per-row width of the E-step's temporaries (for :func:`emkit.data.chunk_rows`).

    ``n_components`` columns of distances and responsibilities; full covariances below
    :data:`BLAS3_MOMENTS_MIN_D` features also take ``D (D + 1) / 2`` products per row (tied
    covariances keep the same chunks).
    """
    if covariance_type == "tied" or (covariance_type == "full" and n_features < BLAS3_MOMENTS_MIN_D):
        return max(n_components, (n_features + 1) // 2)
    return max(n_components, 1)


#: Squared Mahalanobis distance of a mean from the common centre beyond which that component's
#: moments are taken about its own mean (about a common centre they would lose log10(_FAR) digits).
_FAR = 1e6


def _check_shape(a, shape, name):
    a = np.asarray(a, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


def _nk(stats):
    return stats.n + 10 * np.finfo(np.float64).eps


class _Full(_CovarianceType):
    name = "full"

    def compact_shape(self, K, D):
        return (K, D, D)

    def n_parameters(self, K, D):
        return K * D * (D + 1) // 2

    def check_precisions(self, precisions, K, D, name="precisions_init"):
        precisions = _check_shape(precisions, (K, D, D), name)
        return np.stack([_check_spd(p, f"{name}[{k}]") for k, p in enumerate(precisions)])

    def precisions_cholesky(self, covariances, reg_covar):
        return np.stack([_precision_cholesky_from_covariance(c, reg_covar) for c in covariances])

    def precisions(self, pc):
        return np.einsum("kij,klj->kil", pc, pc)

    def precisions_cholesky_from_precisions(self, precisions):
        return np.stack([_chol_upper_of_precision(p) for p in precisions])

    def covariances_from_precisions(self, precisions):
        return np.stack([linalg.inv(p) for p in precisions])

    def full_covariances(self, covariances, K, D):
        return covariances

    def log_det_cholesky(self, pc, D):
        return np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(axis=1)

    direct = True  # distances from the raw rows, vectorised over rows, using only the triangles

    def mahalanobis(self, X, means, pc):
        n, D = X.shape
        out = np.empty((n, means.shape[0]))
        if D >= BLAS3_DISTANCES_MIN_D:
            # per component a triangular matrix product (BLAS-3) of the centred rows, Y = (X - mu_k) U_k, in
            # one buffer: C order (n, D), so its transpose is the Fortran (D, n) matrix dtrmm overwrites
            Y = np.empty((n, D))
            small = n * means.shape[0] * D <= _npk.SMALL_FULL_DISTANCES  # numpy: no compiled kernel to load
            for k in range(means.shape[0]):
                if small:
                    np.subtract(X, means[k], out=Y)
                else:
                    _k.subtract_row(X, means[k], Y)
                _blas.times_upper(Y, np.ascontiguousarray(pc[k], dtype=np.float64))
                if small:
                    np.einsum("ij,ij->i", Y, Y, out=out[:, k])
                else:
                    _k.row_sq_norms(Y, out[:, k])
            return out
        XT = np.ascontiguousarray(X.T, dtype=np.float64)
        kernels = _npk if n * means.shape[0] * D <= _npk.SMALL_FULL_DISTANCES else _k
        kernels.full_mahalanobis_t(XT, np.ascontiguousarray(means), np.ascontiguousarray(pc), out)
        return out

    def second_moments(self, Xs, W):
        n, D = Xs.shape
        if D >= BLAS3_MOMENTS_MIN_D:
            # per component a symmetric rank-n update (BLAS-3): sum_n w_n x_n x_n^T = Z^T Z, Z = sqrt(w) x
            K = W.shape[1]
            if n and W.min() < 0.0:  # negative weights have no square root: general products
                return np.stack([(Xs * W[:, k:k + 1]).T @ Xs for k in range(K)])
            R = np.sqrt(W)
            Xs = np.ascontiguousarray(Xs, dtype=np.float64)
            Z = np.empty((n, D))
            upper = np.empty((K, D, D))
            small = n * K * D <= _npk.SMALL_FULL_DISTANCES  # numpy: no compiled kernel to load
            for k in range(K):
                if small:
                    np.multiply(Xs, R[:, k:k + 1], out=Z)
                else:
                    _k.scale_rows(Xs, R[:, k], Z)
                _blas.gram_upper(Z, upper[k])
            sxx = np.triu(upper)
            sxx += np.triu(upper, 1).transpose(0, 2, 1)
            return sxx
        iu = np.triu_indices(D)
        O = np.empty((n, iu[0].size))
        (_npk if O.size <= _npk.SMALL_OUTER_PRODUCTS else _k).outer_products(Xs, O)
        upper = W.T @ O  # (K, D(D+1)/2)
        sxx = np.empty((W.shape[1], D, D))
        sxx[:, iu[0], iu[1]] = upper
        sxx[:, iu[1], iu[0]] = upper
        return sxx

    def recenter_sxx(self, sxx, sx, n, delta):
        outer = sx[:, :, None] * delta[:, None, :]
        return sxx + outer + outer.transpose(0, 2, 1) + n[:, None, None] * (delta[:, :, None] * delta[:, None, :])

    def component_moment(self, Xs, w):
        return (Xs * w[:, None]).T @ Xs

    def covariances(self, stats, m, reg_covar):
        nk = _nk(stats)
        d = stats.sx / nk[:, None]
        dm = d[:, :, None] * m[:, None, :]
        cov = stats.sxx / nk[:, None, None] - dm - dm.transpose(0, 2, 1) + m[:, :, None] * m[:, None, :]
        cov = 0.5 * (cov + cov.transpose(0, 2, 1))
        idx = np.arange(cov.shape[1])
        cov[:, idx, idx] += reg_covar
        return cov


class _Tied(_Full):
    name = "tied"
    direct = False

    def compact_shape(self, K, D):
        return (D, D)

    def n_parameters(self, K, D):
        return D * (D + 1) // 2

    def check_precisions(self, precisions, K, D, name="precisions_init"):
        return _check_spd(_check_shape(precisions, (D, D), name), name)

    def precisions_cholesky(self, covariances, reg_covar):
        return _precision_cholesky_from_covariance(covariances, reg_covar)

    def precisions(self, pc):
        return pc @ pc.T

    def precisions_cholesky_from_precisions(self, precisions):
        return _chol_upper_of_precision(precisions)

    def covariances_from_precisions(self, precisions):
        return linalg.inv(precisions)

    def full_covariances(self, covariances, K, D):
        return np.broadcast_to(covariances, (K, D, D))

    def log_det_cholesky(self, pc, D):
        return np.log(np.diag(pc)).sum()

    def mahalanobis(self, Xs, m, pc):
        Y = Xs @ pc
        b = m @ pc  # (K, D)
        if np.einsum("kj,kj->k", b, b).max(initial=0.0) < _FAR:
            # every mean near the centre: the expanded products lose no significant digits
            out = Y @ (-2.0 * b.T)
            out += np.einsum("ij,ij->i", Y, Y)[:, None]
            out += np.einsum("kj,kj->k", b, b)[None, :]
            np.maximum(out, 0.0, out=out)
            return out
        out = np.empty((Y.shape[0], b.shape[0]))
        _diag_kernels(out, Y.shape[1]).diag_mahalanobis(np.ascontiguousarray(Y), np.ascontiguousarray(b),
                                                        np.ones_like(b), out)
        return out

    def second_moments(self, Xs, W):
        w = W.sum(axis=1)
        return (Xs * w[:, None]).T @ Xs

    def recenter_sxx(self, sxx, sx, n, delta):
        outer = sx.T @ delta
        return sxx + outer + outer.T + (delta * n[:, None]).T @ delta

    def stack(self, parts):
        return np.sum(parts, axis=0)

    def covariances(self, stats, m, reg_covar):
        nk = _nk(stats)
        d = stats.sx / nk[:, None]
        dm = np.einsum("k,ki,kj->ij", nk, d, m)
        cov = (stats.sxx - dm - dm.T + np.einsum("k,ki,kj->ij", nk, m, m)) / nk.sum()
        cov = 0.5 * (cov + cov.T)
        cov[np.diag_indices_from(cov)] += reg_covar
        return cov


class _Diag(_CovarianceType):
    name = "diag"

    def compact_shape(self, K, D):
        return (K, D)

    def n_parameters(self, K, D):
        return K * D

    def check_precisions(self, precisions, K, D, name="precisions_init"):
        precisions = _check_shape(precisions, self.compact_shape(K, D), name)
        if np.any(precisions <= 0):
            raise ValueError(f"{name} must be positive")
        return precisions

    def precisions_cholesky(self, covariances, reg_covar):
        if not np.all(np.isfinite(covariances)):
            raise ValueError("a variance is not finite: the data's values are too large for float64 arithmetic "
                             "(squares overflow); rescale X (for example divide it by its standard deviation)")
        scale = np.max(np.abs(covariances)) if covariances.size else 0.0
        if np.any(covariances <= np.finfo(np.float64).eps * scale):
            raise ValueError(_SINGULAR_MESSAGE.format(reg=reg_covar))
        return 1.0 / np.sqrt(covariances)

    def precisions(self, pc):
        return pc**2

    def precisions_cholesky_from_precisions(self, precisions):
        return np.sqrt(precisions)

    def covariances_from_precisions(self, precisions):
        return 1.0 / precisions

    def full_covariances(self, covariances, K, D):
        return np.stack([np.diag(c) for c in covariances])

    def log_det_cholesky(self, pc, D):
        return np.log(pc).sum(axis=1)

    direct = True  # distances computed from the raw rows by a compiled kernel, exactly

    def precision_matrix(self, pc, D):
        return pc**2

    def mahalanobis(self, X, means, pc):
        P = np.ascontiguousarray(self.precision_matrix(pc, X.shape[1]))
        out = np.empty((X.shape[0], means.shape[0]))
        _diag_kernels(out, X.shape[1]).diag_mahalanobis(X, means, P, out)
        return out

    def second_moments(self, Xs, W):
        return W.T @ (Xs * Xs)

    def recenter_sxx(self, sxx, sx, n, delta):
        return sxx + 2.0 * sx * delta + n[:, None] * delta**2

    def component_moment(self, Xs, w):
        return w @ (Xs * Xs)

    def conditional(self, C):
        return np.diagonal(C).copy()

    def covariances(self, stats, m, reg_covar):
        nk = _nk(stats)
        d = stats.sx / nk[:, None]
        return np.maximum(stats.sxx / nk[:, None] - 2.0 * d * m + m * m, 0.0) + reg_covar


class _Spherical(_Diag):
    name = "spherical"

    def compact_shape(self, K, D):
        return (K,)

    def n_parameters(self, K, D):
        return K

    def full_covariances(self, covariances, K, D):
        return covariances[:, None, None] * np.eye(D)[None]

    def log_det_cholesky(self, pc, D):
        return D * np.log(pc)

    def precision_matrix(self, pc, D):
        return np.repeat((pc**2)[:, None], D, axis=1)

    def second_moments(self, Xs, W):
        return W.T @ np.einsum("ij,ij->i", Xs, Xs)

    def recenter_sxx(self, sxx, sx, n, delta):
        return sxx + 2.0 * np.einsum("kd,kd->k", sx, delta) + n * np.einsum("kd,kd->k", delta, delta)

    def component_moment(self, Xs, w):
        return w @ np.einsum("ij,ij->i", Xs, Xs)

    def conditional(self, C):
        return np.trace(C)

    def covariances(self, stats, m, reg_covar):
        nk = _nk(stats)
        d = stats.sx / nk[:, None]
        D = m.shape[1]
        var = stats.sxx / nk - 2.0 * np.einsum("kd,kd->k", d, m) + np.einsum("kd,kd->k", m, m)
        return np.maximum(var / D, 0.0) + reg_covar


COVARIANCE_TYPES = {c.name: c for c in (_Full(), _Diag(), _Spherical(), _Tied())}


class GaussianEmission(EmissionFamily):
    """Gaussian emission family (the engine of GaussianMixture and GaussianHMM; see :class:`Gaussian`).

    Parameters
    ----------
    n_components : int
    covariance_type : {"full", "diag", "spherical", "tied"}
    reg_covar : float
        Added to the diagonal of every covariance in the M-step.
    """

    param_names = ("means", "covars")
    attributes = {"means": "means", "covars": "covariances"}
    handles_missing = True

    def __init__(self, n_components, covariance_type="full", reg_covar=1e-6):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.cov = COVARIANCE_TYPES[covariance_type]
        self.reg_covar = reg_covar

    @staticmethod
    def center_of(params):
        """The centre (D,) statistics and densities are computed about: the mean of the means."""
        return params.means.mean(axis=0)

    # -- E-step -----------------------------------------------------------------
    def log_likelihood(self, params, X):
        """``log N(x_n[o] | mu_k[o], Sigma_k[o, o])`` as an (n, K) array, ``o`` the observed coordinates.

        Rows without NaN get the full density; a row with nothing observed gets 0.
        """
        miss = missing_patterns(X)
        if miss is None:
            return self._complete_log_likelihood(params, X)
        idx, starts, observed = miss
        n, D = X.shape
        K = params.means.shape[0]
        out = np.empty((n, K))
        complete = np.ones(n, dtype=bool)
        complete[idx] = False
        if complete.any():  # rows without NaN: exactly as in data without NaN
            out[complete] = self._complete_log_likelihood(params, X[complete])
        Xi = np.ascontiguousarray(X[idx], dtype=np.float64)
        sub = np.empty((idx.size, K))
        if self.cov.name in ("diag", "spherical"):  # per-coordinate terms
            pc = params.precisions_cholesky
            nan = np.isnan(Xi)
            obs = (~nan).astype(np.float64)
            Xi[nan] = 0.0
            kernels = _npk if sub.size * D <= _SMALL_DIAG_CELLS else _mk
            kernels.diag_marginal_mahalanobis(Xi, obs, params.means,
                                              np.ascontiguousarray(self.cov.precision_matrix(pc, D)), sub)
            sub *= -0.5
            log_pc = np.log(np.broadcast_to(pc[:, None] if pc.ndim == 1 else pc, (K, D)))
            sub += obs @ log_pc.T
            sub -= (0.5 * LOG_2PI) * obs.sum(axis=1)[:, None]
        elif _mk.marginal_loglik(Xi, starts, observed, np.ascontiguousarray(params.means),
                                 self._full_covariances(params), sub) < 0:
            raise ValueError(_SINGULAR_MESSAGE.format(reg=self.reg_covar))
        out[idx] = sub
        return out

    def _complete_log_likelihood(self, params, X):
        D = X.shape[1]
        if self.cov.direct:
            maha = self.cov.mahalanobis(X, params.means, params.precisions_cholesky)
        else:
            c = self.center_of(params)
            maha = self.cov.mahalanobis(np.subtract(X, c, dtype=np.float64), params.means - c,
                                        params.precisions_cholesky)
        maha *= -0.5
        maha += self.cov.log_det_cholesky(params.precisions_cholesky, D) - 0.5 * D * LOG_2PI
        return maha

    def _full_covariances(self, params):
        K, D = params.means.shape
        return np.ascontiguousarray(self.cov.full_covariances(params.covariances, K, D), dtype=np.float64)

    def _has_far_component(self, params, c):
        """Whether some component's mean is so far from ``c`` (in its own metric) that moments about ``c`` lose digits."""
        if self.cov.direct:
            d2 = self.cov.mahalanobis(c[None, :], params.means, params.precisions_cholesky)[0]
        else:
            d2 = self.cov.mahalanobis(np.zeros((1, c.size)), params.means - c, params.precisions_cholesky)[0]
        return not np.all(d2 < _FAR)

    def statistics(self, params, X, weights):
        """Weighted moments of ``X`` (n, D) with weights (n, K).

        About the mean of the means when that is exact enough, else about each component's
        mean; with ``params`` None (initialisation), about each component's weighted mean in
        this chunk, missing entries filled with it.
        """
        if params is None:
            return self.moments(X, weights)
        c = self.center_of(params)
        if not self._has_far_component(params, c):
            if not has_nan(X):
                return self._common_moments(X, weights, c)
            if self.cov.name in ("diag", "spherical"):
                return self._per_coordinate_moments(X, weights, c, params)
        return self.moments(X, weights, params.means, params)

    def hmm_statistics(self, params, X, lengths, startprob, transmat):
        """The E-step of a Markov chain over these emissions in one fused pass, or None.

        For diagonal and spherical covariances on data without NaN (and every mean near the
        common centre), returns ``(seq_log_likelihood, expected_start, expected_transitions,
        GaussianStats)`` from :func:`emkit.inference.hmm.gaussian_diag_e_step`: what
        forward-backward on :meth:`log_likelihood` followed by :meth:`statistics` gives, without
        forming the (T, K) arrays.  None when that does not apply (the caller takes those steps).
        """
        if self.cov.name not in ("diag", "spherical") or has_nan(X):
            return None
        c = self.center_of(params)
        if self._has_far_component(params, c):
            return None
        D = X.shape[1]
        pc = params.precisions_cholesky
        log_norm = self.cov.log_det_cholesky(pc, D) - 0.5 * D * LOG_2PI
        out = _hmm.gaussian_diag_e_step(startprob, transmat, X, lengths, params.means,
                                        self.cov.precision_matrix(pc, D), log_norm, c)
        if out is None:
            return None
        seq_ll, start, trans, n, sx, sxx = out
        return seq_ll, start, trans, GaussianStats(n=n, sx=sx, sxx=sxx if self.cov.name == "diag" else sxx.sum(axis=1),
                                                   center=c, kind=self.cov.name)

    def _common_moments(self, X, weights, center):
        """Moments of ``X`` without NaN about one centre (D,) for every component."""
        center = np.asarray(center, dtype=np.float64)
        Xs = np.subtract(X, center, dtype=np.float64)
        return GaussianStats(n=weights.sum(axis=0, dtype=np.float64), sx=weights.T @ Xs,
                             sxx=self.cov.second_moments(Xs, weights), center=center, kind=self.cov.name)

    def _per_coordinate_moments(self, X, weights, c, params):
        """Diag and spherical moments about the common centre ``c`` (D,) with NaN entries integrated out.

        A missing entry of a row in component k has conditional mean ``mu_kd`` and variance
        ``sigma2_kd`` (coordinates are independent given the component), so it adds
        ``w (mu_kd - c_d)`` to ``sx`` and ``w ((mu_kd - c_d)^2 + sigma2_kd)`` to the second moment.
        """
        K, D = params.means.shape
        nan = np.isnan(X)
        Xc = np.subtract(X, c, dtype=np.float64)
        Xc[nan] = 0.0
        w_missing = weights.T @ nan.astype(np.float64)  # (K, D)
        d = params.means - c
        variances = np.diagonal(self._full_covariances(params), axis1=1, axis2=2)
        sx = weights.T @ Xc + w_missing * d
        sxx = weights.T @ (Xc * Xc) + w_missing * (d * d + variances)
        return GaussianStats(n=weights.sum(axis=0, dtype=np.float64), sx=sx,
                             sxx=sxx if self.cov.name == "diag" else sxx.sum(axis=1), center=c, kind=self.cov.name)

    def moments(self, X, weights, center=None, params=None, miss=False):
        """Weighted moments of ``X`` (n, D) with weights (n, K).

        Parameters
        ----------
        center : ndarray (D,) or (K, D), optional
            Centre(s) of the moments; default: each component's weighted mean of the observed
            entries of ``X``.
        params : GaussianParams, optional
            Parameters giving the conditional expectations of missing entries; without them a
            missing entry takes the centre's value and no conditional variance.
        miss : optional
            :func:`missing_patterns` of ``X`` if already known.
        """
        if miss is False:
            miss = missing_patterns(X)
        K, D = weights.shape[1], X.shape[1]
        nk = weights.sum(axis=0, dtype=np.float64)
        if miss is None and center is not None and np.ndim(center) == 1:  # one centre for all components
            return self._common_moments(X, weights, center)
        centers = component_means(X, weights) if center is None else np.asarray(center, dtype=np.float64)
        centers = np.ascontiguousarray(np.broadcast_to(centers, (K, D)))
        filled, cond = (None, None) if miss is None else self._filled(X, weights, centers, params, miss)
        sx = np.empty((K, D))
        parts = []
        for k in range(K):
            Xs = filled[k] if filled is not None else np.subtract(X, centers[k], dtype=np.float64)
            w = weights[:, k]
            sx[k] = w @ Xs
            part = self.cov.component_moment(Xs, w)
            if cond is not None:
                part = part + self.cov.conditional(cond[k])
            parts.append(part)
        return GaussianStats(n=nk, sx=sx, sxx=self.cov.stack(parts), center=centers, kind=self.cov.name)

    # -- fused mixture E-step (large chunks) -------------------------------------------
    def mixture_e_step(self, params, weights, X, sample_weight=None):
        """A mixture's whole E-step over a chunk in one compiled pass, or None where it does not apply.

        ``weights`` (K,) are the mixture weights.  Returns ``(resp (K,), GaussianStats,
        log_likelihood)``: the same sums as the log-likelihood, responsibilities and
        :meth:`statistics` steps give (moments about the common centre), without (n, K)
        temporaries.  It applies to chunks of more than ``_FUSED_MIN_CELLS`` (row, component,
        feature) terms whose values are all finite, when every component lies near the common
        centre; elsewhere the caller takes the steps one by one.
        """
        K, D = params.means.shape
        kind = self.cov.name
        if X.shape[0] * K * D <= _FUSED_MIN_CELLS or kind == "tied" or (kind == "full" and D >= BLAS3_MOMENTS_MIN_D):
            return None
        prep = self._fused_constants(params, weights)
        if prep is None:
            return None
        center, P, log_const, log_w = prep
        sw = _EMPTY if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=np.float64)
        if kind == "full":
            M = np.zeros((K, 1 + D + D * (D + 1) // 2))
            ll = _k.full_mixture_estep(X, sw, params.means, P, log_const, log_w, center, M)
            iu = np.triu_indices(D)
            sxx = np.empty((K, D, D))
            sxx[:, iu[0], iu[1]] = M[:, 1 + D:]
            sxx[:, iu[1], iu[0]] = M[:, 1 + D:]
        else:
            spherical = kind == "spherical"
            M = np.zeros((K, 2 + D if spherical else 1 + 2 * D))
            ll = _k.diag_mixture_estep(X, sw, params.means, P, log_const, log_w, center, spherical, M)
            sxx = M[:, 1 + D].copy() if spherical else M[:, 1 + D:].copy()
        if ll != ll:  # a value that is not finite (NaN marks a missing value): the general steps
            return None
        return M[:, 0].copy(), GaussianStats(n=M[:, 0].copy(), sx=M[:, 1:1 + D].copy(), sxx=sxx, center=center,
                                             kind=kind), float(ll)

    def _fused_constants(self, params, weights):
        """``(center, P, log_const, log_w)`` of :meth:`mixture_e_step` for these parameters (``P``: the
        precisions (K, D), or the precision factors (K, D, D) of full covariances; None
        if a component is far from the common centre); computed once per E-step (the last are kept)."""
        global _FUSED_LAST
        last = _FUSED_LAST
        if last is not None and last[0] is params and last[1] is weights and last[2] == self.cov.name:
            return last[3]
        K, D = params.means.shape
        c = self.center_of(params)
        if self._has_far_component(params, c):
            prep = None
        else:
            pc = params.precisions_cholesky
            with np.errstate(divide="ignore"):
                log_w = np.log(weights)
            P = pc if self.cov.name == "full" else self.cov.precision_matrix(pc, D)
            prep = (np.ascontiguousarray(c, dtype=np.float64), np.ascontiguousarray(P, dtype=np.float64),
                    np.ascontiguousarray(self.cov.log_det_cholesky(pc, D) - 0.5 * D * LOG_2PI, dtype=np.float64),
                    np.ascontiguousarray(log_w, dtype=np.float64))
        _FUSED_LAST = (params, weights, self.cov.name, prep)
        return prep

    def conditional_expectations(self, params, X):
        """``E[x_n | observed entries of x_n, z_n = k]`` as a (K, n, D) array (observed entries as given)."""
        K, D = params.means.shape
        miss = missing_patterns(X)
        if miss is None:
            return np.broadcast_to(np.asarray(X, dtype=np.float64), (K,) + X.shape)
        return self._filled(X, np.zeros((X.shape[0], K)), np.zeros((K, D)), params, miss)[0]

    def _filled(self, X, weights, centers, params, miss):
        """Rows with missing entries replaced by conditional expectations, per component, minus the centres.

        Returns ``filled`` (K, n, D) and ``cond`` (K, D, D): the weighted sum over rows of the
        conditional covariances.
        """
        idx, starts, observed = miss
        K = weights.shape[1]
        n, D = X.shape
        filled = np.empty((K, n, D))
        np.subtract(X[None, :, :], centers[:, None, :], out=filled)
        cond = np.zeros((K, D, D))
        Xi = np.ascontiguousarray(X[idx], dtype=np.float64)
        Wi = np.ascontiguousarray(weights[idx], dtype=np.float64)
        if params is not None and self.cov.name in ("full", "tied"):
            sub = np.empty((K, idx.size, D))
            status = _mk.conditional_fill(Xi, starts, observed, np.ascontiguousarray(params.means),
                                          self._full_covariances(params), centers, Wi, sub, cond)
            if status < 0:
                raise ValueError(_SINGULAR_MESSAGE.format(reg=self.reg_covar))
            filled[:, idx] = sub
            return filled, cond
        # per coordinate: a missing entry's conditional law is its marginal (diag, spherical)
        means = centers if params is None else params.means
        nan = np.isnan(Xi)
        filled[:, idx] = np.where(nan[None], (means - centers)[:, None, :], Xi[None] - centers[:, None, :])
        if params is not None:
            variances = np.diagonal(self._full_covariances(params), axis1=1, axis2=2)  # (K, D)
            diag = np.arange(D)
            cond[:, diag, diag] = (Wi.T @ nan) * variances
        return filled, cond

    # -- M-step -----------------------------------------------------------------
    def m_step(self, stats, params=None, learn=None):
        """Means and covariances from statistics; raises ``ValueError`` naming ``reg_covar`` if singular.

        ``learn`` (a set of names from ``param_names``) restricts what is re-estimated; the rest is
        taken from ``params``.
        """
        learn_means = learn is None or "means" in learn
        learn_covars = learn is None or "covars" in learn
        if learn_means:
            m = stats.sx / _nk(stats)[:, None]
            means = stats.center + m
        else:
            means = params.means
            m = means - stats.center
        if not learn_covars:
            return self.params_from_covariances(means, params.covariances)
        return self.params_from_covariances(means, self.cov.covariances(stats, m, self.reg_covar))

    def init_params(self, stats):
        """Initial parameters from statistics of initial responsibilities (``statistics(None, ...)``)."""
        return self.m_step(stats)

    def prepare(self, X, lengths=None):
        return X

    def log_prior(self, params):
        return 0.0

    def params_from(self, means, covars):
        """Parameters from ``means`` (K, D) and ``covars`` in the compact shape of the covariance type."""
        means = check_array(means, "means").astype(np.float64)
        K, D = self.n_components or means.shape[0], means.shape[1]
        if means.shape[0] != K:
            raise ValueError(f"means must have shape ({K}, n_features); got {means.shape}")
        return self.params_from_covariances(means, self.cov.check_covariances(covars, K, D, "covars"))

    def check_params(self, params, n_features):
        self.params_from(params.means, params.covariances)
        if params.means.shape[1] != n_features:
            raise ValueError(f"means must have {n_features} columns (n_features); got shape {params.means.shape}")

    def params_from_covariances(self, means, covariances):
        pc = self.cov.precisions_cholesky(covariances, self.reg_covar)
        return GaussianParams(means=means, covariances=covariances, precisions_cholesky=pc)

    def params_from_precisions(self, means, precisions):
        pc = self.cov.precisions_cholesky_from_precisions(precisions)
        cov = self.cov.covariances_from_precisions(precisions)
        return GaussianParams(means=means, covariances=cov, precisions_cholesky=pc)

    # -- collapse (see emkit.collapse) ----------------------------------------------
    def collapsed(self, params, occupancy):
        """Components whose covariance is at the ``reg_covar`` floor, (K,) bool; ``occupancy`` (K,)."""
        K, D = params.means.shape
        covs = np.broadcast_to(self.cov.full_covariances(params.covariances, K, D), (K, D, D))
        w = occupancy / max(occupancy.sum(), np.finfo(np.float64).tiny)
        dm = params.means - w @ params.means
        reference = np.einsum("k,kij->ij", w, covs) + np.einsum("k,ki,kj->ij", w, dm, dm)
        return floor_collapsed(covs, reference, self.reg_covar)

    def split(self, params, j, k):
        """Parameters with component ``k`` re-seeded by splitting component ``j`` along its main axis."""
        K, D = params.means.shape
        delta = main_axis_offset(np.broadcast_to(self.cov.full_covariances(params.covariances, K, D),
                                                 (K, D, D))[j])
        means, covariances = params.means.copy(), np.array(params.covariances, copy=True)
        means[k], means[j] = means[j] + delta, means[j] - delta
        if self.covariance_type != "tied":
            covariances[k] = covariances[j]
        return self.params_from_covariances(means, covariances)

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


@register_family("gaussian")
class Gaussian(GaussianEmission):
    """Multivariate Gaussian per state: ``x | z = k ~ N(means[k], covars[k])``.

    Missing values (NaN) are integrated out exactly.

    Parameters
    ----------
    covariance_type : {"full", "diag", "spherical", "tied"}, default="full"
        Shapes of ``covars``: full (K, D, D), diag (K, D), spherical (K,), tied (D, D).
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance in the M-step.

    Parameters of the states: ``means`` (K, D) and ``covars``; ``learn`` names ``"means"`` and
    ``"covars"``.
    """

    def __init__(self, covariance_type="full", reg_covar=1e-6):
        check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_float(reg_covar, "reg_covar", minimum=0.0)
        super().__init__(None, covariance_type, reg_covar)
