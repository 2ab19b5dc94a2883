"""Autoregressive Gaussian emissions of order p (the model behind behavioural "syllables").

In state k, ``x_t ~ N(A_k [x_{t-1}; ...; x_{t-p}] + b_k, Q_k)``.  The first ``p`` frames of
every sequence have no complete history: they are conditioned on and carry no emission evidence
(their per-state log-likelihood is 0, so their state is inferred from the transitions alone).

Missing values (NaN): a frame whose current value or any of its ``p`` lags has a NaN carries no
emission evidence either (log-likelihood 0, no contribution to the statistics); its state is
carried through by the transitions.  This is exact for the frames it scores but discards the
observed coordinates of incomplete frames.

The regression moments are taken about a centre ``c`` (the mean of the chunk's frames): the
targets are ``x_t - c`` and the regressors ``x_{t-l} - c``, so data far from the origin loses
no precision; moments about different centres are re-centred exactly before they are added,
and the M-step turns the centred intercept back into ``b_k = b'_k + c - sum_l A_kl c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from ..collapse import floor_collapsed, main_axis_offset
from .._validation import check_float, check_int
from ..stats import Stats
from .base import EmissionFamily, register_family
from .gaussian import COVARIANCE_TYPES, LOG_2PI, _precision_cholesky_from_covariance


@dataclass(frozen=True)
class ARParams:
    """AR parameters.

    Attributes
    ----------
    coefs : ndarray (K, D, p*D)
        ``[A_k1, ..., A_kp]`` side by side: lag 1 first.
    intercepts : ndarray (K, D)
    covars : ndarray (K, D, D)
    precisions_cholesky : ndarray (K, D, D)
    """

    coefs: np.ndarray
    intercepts: np.ndarray
    covars: np.ndarray
    precisions_cholesky: np.ndarray


@dataclass(frozen=True)
class ARData:
    """Targets ``Y`` (T, D), regressors ``Z`` (T, p*D + 1) (lags then 1) and ``valid`` (T,) frames."""

    Y: np.ndarray
    Z: np.ndarray
    valid: np.ndarray


@dataclass
class ARStats(Stats):
    """Weighted regression moments per state about a centre ``c`` (D,).

    With ``u = [x_{t-1} - c; ...; x_{t-p} - c; 1]`` and ``v = x_t - c``: ``n`` (K,),
    ``szz = sum w u u^T`` (K, P, P), ``szy = sum w u v^T`` (K, P, D), ``syy = sum w v v^T``
    (K, D, D); ``center`` is a frame field (not summed).
    """

    n: np.ndarray
    szz: np.ndarray
    szy: np.ndarray
    syy: np.ndarray
    center: np.ndarray = None
    _frame_fields = ("center",)

    def _align(self, other):
        if other.center is self.center or np.array_equal(other.center, self.center):
            return other
        return other.recentered(self.center)

    def recentered(self, center):
        """The same moments about ``center`` (D,), exactly (``u`` and ``v`` shift by ``self.center - center``)."""
        center = np.asarray(center, dtype=np.float64)
        delta = self.center - center  # (D,)
        P = self.szz.shape[1]
        dz = np.zeros(P)
        dz[:P - 1] = np.tile(delta, (P - 1) // delta.size)
        su = self.szz[:, :, P - 1]  # (K, P): sum w u (the last regressor is 1)
        sv = self.szy[:, P - 1, :]  # (K, D): sum w v
        n = self.szz[:, P - 1, P - 1]
        szz = self.szz + su[:, :, None] * dz[None, None, :] + dz[None, :, None] * su[:, None, :] \
            + n[:, None, None] * np.outer(dz, dz)[None]
        szy = self.szy + su[:, :, None] * delta[None, None, :] + dz[None, :, None] * sv[:, None, :] \
            + n[:, None, None] * np.outer(dz, delta)[None]
        syy = self.syy + sv[:, :, None] * delta[None, None, :] + delta[None, :, None] * sv[:, None, :] \
            + n[:, None, None] * np.outer(delta, delta)[None]
        return ARStats(n=self.n.copy(), szz=szz, szy=szy, syy=syy, center=center)


def _lag_center(center, P):
    """The centre of the regressors ``[c; ...; c; 0]`` (P,): the constant regressor is not shifted."""
    out = np.zeros(P)
    out[:P - 1] = np.tile(center, (P - 1) // max(center.size, 1))
    return out


def lag_matrix(X, lengths, order):
    """Regressors (T, order*D + 1) and the mask of frames with a full history in their sequence."""
    T, D = X.shape
    Z = np.zeros((T, order * D + 1))
    Z[:, -1] = 1.0
    valid = np.ones(T, dtype=bool)
    start = 0
    for L in lengths:
        for lag in range(1, order + 1):
            if L > lag:
                Z[start + lag:start + L, (lag - 1) * D:lag * D] = X[start:start + L - lag]
        valid[start:start + min(order, L)] = False
        start += L
    return Z, valid


class AREmission(EmissionFamily):
    """Autoregressive Gaussian emission family, full noise covariance (the engine of ARHMM; see
    :class:`Autoregressive`).

    Parameters
    ----------
    n_components : int
    order : int
        Number of lags p.
    reg_covar : float
        Added to the diagonal of each noise covariance.
    """

    param_names = ("coefs", "covars")
    attributes = {"coefs": "coefs", "intercepts": "intercepts", "covars": "covars"}
    handles_missing = True
    #: the likelihood of a frame depends on the frames before it: sequences only (an HMM, not a mixture)
    needs_sequences = True

    def __init__(self, n_components, order=1, reg_covar=1e-6):
        self.n_components = n_components
        self.order = order
        self.reg_covar = reg_covar

    def prepare(self, X, lengths):
        X = np.asarray(X, dtype=np.float64)
        nan = np.isnan(X)
        if nan.any():  # incomplete frames (current value or lags) carry no evidence
            X = np.where(nan, 0.0, X)
            Z, valid = lag_matrix(X, lengths, self.order)
            incomplete = nan.any(axis=1)
            bad, _ = lag_matrix(incomplete[:, None].astype(np.float64), lengths, self.order)
            valid &= ~incomplete & ~bad[:, :-1].any(axis=1)
            return ARData(Y=X, Z=Z, valid=valid)
        Z, valid = lag_matrix(X, lengths, self.order)
        return ARData(Y=X, Z=Z, valid=valid)

    def _weights(self, W):
        return np.asarray(W, dtype=np.float64)

    def log_likelihood(self, params, data):
        T, D = data.Y.shape
        out = np.zeros((T, self.n_components))
        idx = np.flatnonzero(data.valid)
        if idx.size == 0:
            return out
        Y, Z = data.Y[idx], data.Z[idx]
        for k in range(self.n_components):
            W = np.concatenate([params.coefs[k], params.intercepts[k][:, None]], axis=1)  # (D, P)
            r = (Y - Z @ W.T) @ params.precisions_cholesky[k]
            out[idx, k] = (-0.5 * (D * LOG_2PI + np.einsum("ij,ij->i", r, r))
                           + np.log(np.diag(params.precisions_cholesky[k])).sum())
        return out

    def statistics(self, params, data, weights):
        w = weights * data.valid[:, None]
        K = w.shape[1]
        P, D = data.Z.shape[1], data.Y.shape[1]
        center = data.Y[data.valid].mean(axis=0) if data.valid.any() else np.zeros(D)
        Y = data.Y - center
        Z = data.Z - _lag_center(center, P)
        szz, szy, syy = np.empty((K, P, P)), np.empty((K, P, D)), np.empty((K, D, D))
        for k in range(K):
            Zw = Z * w[:, k:k + 1]
            szz[k] = Zw.T @ Z
            szy[k] = Zw.T @ Y
            syy[k] = (Y * w[:, k:k + 1]).T @ Y
        return ARStats(n=w.sum(axis=0), szz=szz, szy=szy, syy=syy, center=center)

    def m_step(self, stats, params=None, learn=None):
        learn_coefs = learn is None or "coefs" in learn
        learn_covars = learn is None or "covars" in learn
        K, P, D = stats.szy.shape
        pD = P - 1
        center = np.zeros(D) if stats.center is None else np.asarray(stats.center, dtype=np.float64)
        lag_center = _lag_center(center, P)[:pD]
        coefs = np.empty((K, D, pD))
        intercepts = np.empty((K, D))
        covars = np.empty((K, D, D))
        for k in range(K):
            if learn_coefs:
                A = stats.szz[k]
                ridge = 1e-10 * max(np.trace(A) / P, 1e-300)
                try:
                    Wt = linalg.solve(A + ridge * np.eye(P), stats.szy[k], assume_a="pos")
                except (linalg.LinAlgError, ValueError):
                    Wt = linalg.lstsq(A, stats.szy[k])[0]
                W = Wt.T  # in centred coordinates: v = A u + b'
            else:
                A = params.coefs[k]
                W = np.concatenate([A, (params.intercepts[k] - center + A @ lag_center)[:, None]], axis=1)
            coefs[k] = W[:, :pD]
            intercepts[k] = W[:, pD] + center - W[:, :pD] @ lag_center
            if learn_covars:
                n = max(stats.n[k], 10 * np.finfo(np.float64).eps)
                WS = W @ stats.szy[k]
                Q = (stats.syy[k] - WS - WS.T + W @ stats.szz[k] @ W.T) / n
                Q = 0.5 * (Q + Q.T)
                Q[np.diag_indices(D)] += self.reg_covar
                covars[k] = Q
            else:
                covars[k] = params.covars[k]
        pc = np.stack([_precision_cholesky_from_covariance(c, self.reg_covar) for c in covars])
        return ARParams(coefs=coefs, intercepts=intercepts, covars=covars, precisions_cholesky=pc)

    def init_params(self, stats):
        return self.m_step(stats)

    def params_from_arrays(self, coefs, intercepts, covars):
        """Parameters from arrays already checked (the precision factors computed)."""
        covars = np.asarray(covars, dtype=np.float64)
        pc = np.stack([_precision_cholesky_from_covariance(c, self.reg_covar) for c in covars])
        return ARParams(coefs=np.asarray(coefs, dtype=np.float64), intercepts=np.asarray(intercepts, dtype=np.float64),
                        covars=covars, precisions_cholesky=pc)

    def params_from(self, coefs, intercepts, covars):
        """Parameters from ``coefs`` (K, D, order*D), ``intercepts`` (K, D) and ``covars`` (K, D, D), checked."""
        intercepts = np.asarray(intercepts, dtype=np.float64)
        if intercepts.ndim != 2:
            raise ValueError(f"intercepts must have shape (n_components, n_features); got {intercepts.shape}")
        K, D = self.n_components or intercepts.shape[0], intercepts.shape[1]
        out = []
        for name, value, shape in (("coefs", coefs, (K, D, self.order * D)), ("intercepts", intercepts, (K, D)),
                                   ("covars", covars, (K, D, D))):
            a = np.asarray(value, dtype=np.float64)
            if a.shape != shape:
                raise ValueError(f"{name} must have shape {shape}; got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} must be finite")
            out.append(a)
        out[2] = COVARIANCE_TYPES["full"].check_covariances(out[2], K, D, "covars")
        return self.params_from_arrays(*out)

    def n_features_of(self, params):
        return params.intercepts.shape[1]

    def check_params(self, params, n_features):
        self.params_from(params.coefs, params.intercepts, params.covars)
        if params.intercepts.shape[1] != n_features:
            raise ValueError(f"intercepts must have {n_features} columns (n_features); got {params.intercepts.shape}")

    def collapsed(self, params, occupancy):
        """States whose noise covariance is at the ``reg_covar`` floor, (K,) bool; ``occupancy`` (K,)."""
        w = occupancy / max(occupancy.sum(), np.finfo(np.float64).tiny)
        return floor_collapsed(params.covars, np.einsum("k,kij->ij", w, params.covars), self.reg_covar)

    def split(self, params, j, k):
        """Parameters with state ``k`` re-seeded as a copy of state ``j``, intercepts moved apart."""
        delta = main_axis_offset(params.covars[j])
        coefs, intercepts, covars = params.coefs.copy(), params.intercepts.copy(), params.covars.copy()
        coefs[k], covars[k] = coefs[j], covars[j]
        intercepts[k], intercepts[j] = intercepts[j] + delta, intercepts[j] - delta
        return self.params_from_arrays(coefs, intercepts, covars)

    def sample(self, params, z, rng):
        """One sequence for the state path ``z``; lags before the start are taken as zero."""
        D = params.intercepts.shape[1]
        p = self.order
        X = np.zeros((len(z) + p, D))
        chol = np.stack([linalg.cholesky(c, lower=True) for c in params.covars])
        for t, k in enumerate(z):
            lags = X[t:t + p][::-1].ravel()  # x_{t-1}, ..., x_{t-p}
            X[t + p] = params.coefs[k] @ lags + params.intercepts[k] + chol[k] @ rng.standard_normal(D)
        return X[p:]

    def n_parameters(self, n_features):
        D = n_features
        return self.n_components * (D * (self.order * D + 1) + D * (D + 1) // 2)


@register_family("autoregressive")
class Autoregressive(AREmission):
    """Autoregressive Gaussian of order p per state (HMMs only):
    ``x_t | z_t = k ~ N(A_k [x_{t-1}; ...; x_{t-p}] + b_k, Q_k)``.

    The first ``order`` frames of each sequence are conditioned on (no emission evidence); a
    frame with a NaN in it or in its lags carries no evidence either.

    Parameters
    ----------
    order : int, default=1
    reg_covar : float, default=1e-6

    Parameters of the states: ``coefs`` (K, D, order*D), lag 1 first; ``intercepts`` (K, D);
    ``covars`` (K, D, D).  ``learn`` names ``"coefs"`` (A and b) and ``"covars"``.
    """

    def __init__(self, order=1, reg_covar=1e-6):
        check_int(order, "order", minimum=1)
        check_float(reg_covar, "reg_covar", minimum=0.0)
        super().__init__(None, order, reg_covar)
