"""Variational emission families: a conjugate prior, a posterior of the same form, and the
expected log-likelihood the variational E-step runs forward-backward on.

``VariationalGaussianEmission``
    Normal-Wishart posterior per state, in hmmlearn's parametrisation: means ``m_k`` (K, D)
    with precision scale ``beta_k``, degrees of freedom ``nu_k`` and *inverse* scale ``S_k``
    (so ``E[Lambda_k] = nu_k S_k^{-1}``).  The covariance type decides the shape of ``S``:
    full (K, D, D), tied (D, D) with one ``nu``, diag (K, D), spherical (K,).  Diagonal and
    spherical ``S`` are treated as diagonal matrices (``s I`` for spherical), as hmmlearn does.
``VariationalCategoricalEmission``
    Dirichlet posterior on each emission row.

Statistics are the ones of the maximum-likelihood families (:mod:`emkit.emissions.gaussian`,
:mod:`emkit.emissions.categorical`), so they add over chunks in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, special

from ..variational import dirichlet_expected_log, dirichlet_kl
from .categorical import CategoricalEmission
from .gaussian import GaussianEmission


@dataclass(frozen=True)
class NormalWishart:
    """Normal-Wishart hyperparameters of K states (a prior or a posterior).

    ``means`` (K, D), ``beta`` (K,), ``dof`` (K,) or a number (tied), ``scale`` (the inverse
    scale, shape of the covariance type: full (K, D, D), tied (D, D), diag (K, D), spherical (K,)).
    """

    means: np.ndarray
    beta: np.ndarray
    dof: np.ndarray
    scale: np.ndarray


@dataclass(frozen=True)
class VariationalGaussianParams:
    """The posterior ``q`` (a :class:`NormalWishart`) and the prior ``p`` of the Gaussian emissions.

    ``expected`` holds the Gaussians at the posterior means and ``E[Lambda]`` (factorised once per
    posterior, used by every E-step chunk); build with
    :meth:`VariationalGaussianEmission.make_params`.
    """

    posterior: NormalWishart
    prior: NormalWishart
    expected: object = None


def _logdet_diag(scale, kind, D):
    """``log |S_k|`` (K,) of diagonal or spherical inverse scales without forming matrices."""
    return D * np.log(scale) if kind == "spherical" else np.log(scale).sum(axis=1)


def _wishart_kl(dof_q, logdet_q, dof_p, logdet_p, trace_pq, D):
    """``KL(Wishart(nu_q, S_q) || Wishart(nu_p, S_p))`` given ``log|S|`` and ``tr(S_p S_q^{-1})``
    (inverse scales ``S``; the same expression as hmmlearn's, with ``log|S/2| = log|S| - D log 2``)."""
    i = np.arange(D)
    ld_q, ld_p = logdet_q - D * np.log(2.0), logdet_p - D * np.log(2.0)
    e_q = -ld_q + special.digamma((dof_q - i) / 2.0).sum()
    log_z_q = -dof_q / 2.0 * ld_q + special.gammaln((dof_q - i) / 2.0).sum()
    log_z_p = -dof_p / 2.0 * ld_p + special.gammaln((dof_p - i) / 2.0).sum()
    return (dof_q - dof_p) / 2.0 * e_q - D * dof_q / 2.0 + dof_q / 2.0 * trace_pq + log_z_p - log_z_q


def _wishart_terms(scale_q, scale_p, delta):
    """``(delta^T S_q^{-1} delta per column, log|S_q|, log|S_p|, tr(S_p S_q^{-1}))`` by Cholesky."""
    cq = linalg.cho_factor(scale_q, lower=True)
    maha = np.einsum("ik,ik->k", delta, linalg.cho_solve(cq, delta))
    logdet_q = 2.0 * np.log(np.diag(cq[0])).sum()
    logdet_p = 2.0 * np.log(np.diag(linalg.cholesky(scale_p, lower=True))).sum()
    return maha if maha.size > 1 else maha[0], logdet_q, logdet_p, np.trace(linalg.cho_solve(cq, scale_p))


class VariationalGaussianEmission:
    """Gaussian emissions with a Normal-Wishart prior, fitted by variational Bayes.

    Parameters
    ----------
    n_components : int
    covariance_type : {"full", "diag", "spherical", "tied"}
    """

    def __init__(self, n_components, covariance_type="full"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.gaussian = GaussianEmission(n_components, covariance_type, reg_covar=0.0)

    def prepare(self, X, lengths=None):
        return X

    def dof_per_state(self, nw):
        return np.broadcast_to(np.asarray(nw.dof, dtype=np.float64), (self.n_components,))

    def expected_covariances(self, nw):
        """``S / nu``: the covariances whose inverse is ``E[Lambda]``, in the compact shape."""
        dof = np.asarray(nw.dof, dtype=np.float64)
        kind = self.covariance_type
        if kind == "full":
            return nw.scale / dof[:, None, None]
        if kind == "diag":
            return nw.scale / dof[:, None]
        return nw.scale / dof  # spherical (K,) / (K,), tied (D, D) / number

    def make_params(self, posterior, prior):
        """:class:`VariationalGaussianParams` with the factorised expected Gaussians."""
        expected = self.gaussian.params_from_covariances(posterior.means, self.expected_covariances(posterior))
        return VariationalGaussianParams(posterior=posterior, prior=prior, expected=expected)

    def expected_log_likelihood(self, params, X):
        """``E_q[log N(x_n | mu_k, Lambda_k^{-1})]`` as an (n, K) array.

        ``= log N(x | m_k, S_k / nu_k) + (sum_i psi((nu_k - i)/2) + D log 2 - D log nu_k) / 2
        - D / (2 beta_k)``: the Gaussian density at the expected precision plus the gap between
        ``E[log|Lambda|]`` and ``log|E[Lambda]|`` and the spread of the mean.
        """
        q = params.posterior
        D = X.shape[1]
        dof = self.dof_per_state(q)
        out = self.gaussian._complete_log_likelihood(params.expected, X)
        i = np.arange(D)
        extra = 0.5 * (special.digamma((dof[:, None] - i) / 2.0).sum(axis=1) + D * np.log(2.0) - D * np.log(dof))
        out += extra - 0.5 * D / q.beta
        return out

    def statistics(self, params, X, weights):
        """Weighted moments (:class:`emkit.emissions.gaussian.GaussianStats`) about the mean of the
        posterior means (about each state's weighted mean when ``params`` is None)."""
        if params is None:
            return self.gaussian.moments(X, weights)
        return self.gaussian._common_moments(X, weights, params.posterior.means.mean(axis=0))

    def m_step(self, stats, params):
        """Posterior = prior + statistics (Normal-Wishart conjugacy), as hmmlearn's update.

        With moments about centres ``c_k``, ``e_k = m_k - c_k = (beta0_k (m0_k - c_k) + sx_k) /
        beta_k`` and ``S_k = S0_k + sxx_k + beta0_k d_k d_k^T - beta_k e_k e_k^T``
        (``d_k = m0_k - c_k``): the usual update, free of the cancellation of raw moments.
        """
        p = params.prior
        kind = self.covariance_type
        n = np.asarray(stats.n, dtype=np.float64)
        c = stats.center
        d = p.means - c
        beta = p.beta + n
        e = (p.beta[:, None] * d + stats.sx) / beta[:, None]
        means = c + e
        if kind in ("full", "tied"):
            outer = (np.einsum("k,ki,kj->kij", p.beta, d, d) - np.einsum("k,ki,kj->kij", beta, e, e))
            if kind == "full":
                scale, dof = p.scale + stats.sxx + outer, p.dof + n
            else:
                scale, dof = p.scale + stats.sxx + outer.sum(axis=0), p.dof + n.sum()
            scale = 0.5 * (scale + np.swapaxes(scale, -1, -2))
        else:
            sq = p.beta[:, None] * d * d - beta[:, None] * e * e
            if kind == "diag":
                scale = p.scale + stats.sxx + sq
            else:
                scale = p.scale + (stats.sxx + sq.sum(axis=1)) / means.shape[1]
            dof = p.dof + n
        return self.make_params(NormalWishart(means=means, beta=beta, dof=dof, scale=scale), p)

    def kl(self, params):
        """``KL(q || p)`` of the Normal-Wishart posterior, as hmmlearn computes it.

        Per state: the KL of the Normals ``N(m_k, (beta_k nu_k W_k)^{-1})`` and
        ``N(m0_k, (beta0_k nu_k W_k)^{-1})`` (``W_k = S_k^{-1}``), plus the KL of the Wisharts
        (once for tied).
        """
        q, p = params.posterior, params.prior
        kind = self.covariance_type
        K, D = q.means.shape
        dof = self.dof_per_state(q)
        delta = q.means - p.means
        if kind in ("diag", "spherical"):
            sq = np.broadcast_to(q.scale[:, None], (K, D)) if kind == "spherical" else q.scale
            sp = np.broadcast_to(p.scale[:, None], (K, D)) if kind == "spherical" else p.scale
            maha = np.sum(delta * delta / sq, axis=1)
            logdet_q, logdet_p = _logdet_diag(q.scale, kind, D), _logdet_diag(p.scale, kind, D)
            trace = np.sum(sp / sq, axis=1)
        elif kind == "full":
            maha, logdet_q, logdet_p, trace = np.empty(K), np.empty(K), np.empty(K), np.empty(K)
            for k in range(K):
                maha[k], logdet_q[k], logdet_p[k], trace[k] = _wishart_terms(q.scale[k], p.scale[k], delta[k][:, None])
        else:  # tied: one inverse scale for every state
            m, lq, lp, tr = _wishart_terms(q.scale, p.scale, delta.T)
            maha, logdet_q, logdet_p, trace = m, np.full(K, lq), np.full(K, lp), np.full(K, tr)
        ratio = p.beta / q.beta
        kl_normal = 0.5 * (D * np.log(1.0 / ratio) + D * ratio - D + p.beta * dof * maha)
        total = float(kl_normal.sum())
        dof_p = np.broadcast_to(np.asarray(p.dof, dtype=np.float64), (K,))
        for k in range(K if kind != "tied" else 1):
            total += _wishart_kl(dof[k], logdet_q[k], dof_p[k], logdet_p[k], trace[k], D)
        return total

    def point_covariances(self, params):
        """Posterior-mean covariances ``S / nu`` in the compact shape (hmmlearn's ``covars_``)."""
        return self.expected_covariances(params.posterior)


@dataclass(frozen=True)
class VariationalCategoricalParams:
    """Dirichlet ``posterior`` and ``prior`` concentrations of each emission row, (K, n_symbols)."""

    posterior: np.ndarray
    prior: np.ndarray


class VariationalCategoricalEmission:
    """Categorical emissions with a Dirichlet prior on each row, fitted by variational Bayes.

    X holds one integer symbol per row (n, 1); -1 marks a missing symbol, which carries no
    evidence (expected log-likelihood 0, no counts).
    """

    def __init__(self, n_components, n_symbols):
        self.n_components = n_components
        self.n_symbols = n_symbols
        self.categorical = CategoricalEmission(n_components, n_symbols)

    def prepare(self, X, lengths=None):
        return self.categorical.prepare(X, lengths)

    def expected_log_likelihood(self, params, symbols):
        out = dirichlet_expected_log(params.posterior).T[symbols]
        missing = symbols < 0
        if missing.any():
            out[missing] = 0.0
        return out

    def statistics(self, params, symbols, weights):
        return self.categorical.statistics(None, symbols, weights)

    def m_step(self, stats, params):
        return VariationalCategoricalParams(posterior=params.prior + stats.counts, prior=params.prior)

    def kl(self, params):
        return dirichlet_kl(params.posterior, params.prior)


