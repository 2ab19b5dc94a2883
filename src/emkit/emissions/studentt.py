"""Student-t emissions: robust, heavy-tailed per-state distributions (ECM).

A state's rows follow a multivariate t with location ``mu``, scale matrix ``Sigma`` (full,
diagonal, spherical or tied, as in the Gaussian family) and degrees of freedom ``nu``:

    log p(x) = lgamma((nu + D) / 2) - lgamma(nu / 2) - D/2 log(nu pi) - 1/2 log|Sigma|
               - (nu + D) / 2 log(1 + delta / nu),      delta = (x - mu)^T Sigma^-1 (x - mu).

It is a Gaussian scale mixture: ``u ~ Gamma(nu/2, rate nu/2)`` and ``x | u ~ N(mu, Sigma / u)``.
EM treats ``u`` as part of the hidden data (ECM, Liu & Rubin 1995): given the state, the
E-step needs ``E[u] = (nu + D) / (nu + delta)`` and ``E[log u] = psi((nu + D)/2) - log((nu + delta)/2)``.
The additive statistics per state are ``sum r``, the moments of the rows weighted by ``r E[u]``
(kept as Gaussian moments about a centre, so they add exactly across chunks) and
``sum r (E[log u] - E[u] + 1)``.  The M-step then maximises the expected complete-data
log-likelihood ``J``:

* ``mu = sum r u x / sum r u`` and ``Sigma = sum r u (x - mu)(x - mu)^T / sum r`` (closed form,
  plus ``reg_covar`` on the diagonal as in the Gaussian family);
* ``nu`` maximises ``N (nu/2 log(nu/2) - nu/2 - lgamma(nu/2)) + nu/2 S`` (concave in ``nu``);
  its root ``log(nu/2) - psi(nu/2) = -S/N`` is found by safeguarded Newton iterations on
  ``log nu`` within ``DF_BOUNDS``, and the step is accepted through
  :func:`emkit.emissions.improving_step`, which halves it until ``J`` does not decrease.

``df`` fixes the degrees of freedom (then only ``mu`` and ``Sigma`` are learned) and
``shared_df`` makes all states share one ``nu``.

Missing values (NaN) are integrated out exactly: a marginal of a multivariate t is a t with the
same degrees of freedom over the observed coordinates ``o``, and given them ``u`` has shape
``(nu + D_o)/2`` and rate ``(nu + delta_o)/2`` while a missing block is conditionally Gaussian
with covariance ``Sigma_m|o / u``; its statistics use the conditional moments of the Gaussian
family (:mod:`emkit.emissions.gaussian`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.special import digamma, gammaln, polygamma

from .._validation import check_array, check_choice, check_float
from ..stats import Stats
from .gaussian import _SINGULAR_MESSAGE, COVARIANCE_TYPES, GaussianEmission, GaussianParams, GaussianStats
from .base import EmissionFamily, improving_step, register_family
from .missing import missing_patterns

#: Range of the learned degrees of freedom: below, the density is too peaked to be useful; above,
#: the t is a Gaussian to within rounding and the likelihood is flat in ``nu``.
DF_BOUNDS = (1e-2, 1e6)
#: Degrees of freedom EM starts from when they are learned.
INITIAL_DF = 10.0
#: Newton iterations on ``log nu`` per M-step: at most this many, stopped when the step is below ``_NEWTON_TOL``.
_NEWTON_MAX_ITER = 50
_NEWTON_TOL = 1e-10


@dataclass(frozen=True)
class StudentTParams:
    """Parameters of K multivariate t distributions.

    Attributes
    ----------
    means : ndarray (K, D)
        Locations.
    covariances : ndarray, compact shape of the covariance type
        Scale matrices ``Sigma`` (the covariance is ``Sigma nu / (nu - 2)`` for ``nu > 2``).
    precisions_cholesky : ndarray, same shape as ``covariances``
        Cholesky factors of the inverse scale matrices (see :class:`GaussianParams`).
    dfs : ndarray (K,)
        Degrees of freedom.
    """

    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    dfs: np.ndarray

    @property
    def gaussian(self):
        """Location and scale as :class:`GaussianParams` (the Gaussian family's machinery works on them)."""
        return GaussianParams(means=self.means, covariances=self.covariances,
                              precisions_cholesky=self.precisions_cholesky)


@dataclass
class StudentTStats(Stats):
    """Additive statistics of a t family.

    Attributes
    ----------
    n : ndarray (K,)
        ``sum_n r_nk``.
    moments : GaussianStats
        Moments of the rows weighted by ``r_nk E[u_nk]`` (its ``n`` is ``sum r u``).
    sdf : ndarray (K,)
        ``sum_n r_nk (E[log u_nk] - E[u_nk] + 1)`` (<= 0; the data's pull on the degrees of freedom).
    """

    n: np.ndarray
    moments: GaussianStats
    sdf: np.ndarray


def df_objective(nu, n, sdf):
    """The part of ``J`` that depends on the degrees of freedom ``nu``: ``n (nu/2 log(nu/2) - nu/2 - lgamma(nu/2)) + nu/2 sdf``."""
    y = 0.5 * nu
    return n * (y * np.log(y) - y - gammaln(y)) + y * sdf


def solve_df(n, sdf, start):
    """The maximiser of :func:`df_objective` for each state by safeguarded Newton on ``log nu``.

    ``log(y) - psi(y) = -sdf / n`` (``y = nu / 2``) has one root; the left side decreases from
    infinity to 0, and its logarithm is nearly linear in ``log y``, so Newton on
    ``log(log y - psi(y)) = log(-sdf / n)`` in ``log y`` converges in a few steps.  Iterates
    stay inside the bracket of the root (bisection when Newton leaves it) and inside
    ``DF_BOUNDS``.

    Returns the maximisers (K,) and the Newton iterations each needed (K,).
    """
    lo0, hi0 = np.log(0.5 * DF_BOUNDS[0]), np.log(0.5 * DF_BOUNDS[1])
    K = len(n)
    out = np.array(start, dtype=np.float64, copy=True)
    iters = np.zeros(K, dtype=np.int64)
    for k in range(K):
        if not n[k] > 0:
            continue
        target = -sdf[k] / n[k]
        if not target > _gap(np.exp(hi0)):  # flatter than the bound allows: nu at the upper bound
            out[k] = DF_BOUNDS[1]
            continue
        if target >= _gap(np.exp(lo0)):
            out[k] = DF_BOUNDS[0]
            continue
        log_target = np.log(target)
        lo, hi = lo0, hi0
        eta = float(np.clip(np.log(0.5 * start[k]) if start[k] > 0 else np.log(0.5 * INITIAL_DF), lo, hi))
        for it in range(1, _NEWTON_MAX_ITER + 1):
            y = np.exp(eta)
            g = _gap(y)
            phi = np.log(g) - log_target
            if phi > 0:  # the gap is too large: the root lies above
                lo = eta
            else:
                hi = eta
            slope = (1.0 - y * float(polygamma(1, y))) / g  # d log(gap) / d log y  (< 0)
            new = eta - phi / slope
            if not (lo < new < hi):
                new = 0.5 * (lo + hi)
            done = abs(new - eta) < _NEWTON_TOL
            eta = new
            iters[k] = it
            if done:
                break
        out[k] = 2.0 * np.exp(eta)
    return np.clip(out, *DF_BOUNDS), iters


def df_step(n, sdf, current):
    """The improving degrees-of-freedom step of the M-step for states with weights ``n`` (K,) and ``sdf`` (K,).

    Newton proposes the maximiser (:func:`solve_df`); the step from ``current`` (in ``log nu``)
    is halved until :func:`df_objective` does not decrease.  Returns the new degrees of freedom
    (K,), the Newton iterations (K,) and the halvings (K,; -1: ``current`` kept).
    """
    current = np.asarray(current, dtype=np.float64)
    proposal, iters = solve_df(n, sdf, current)

    def objective(log_nu):
        return df_objective(np.exp(log_nu), n, sdf)

    log_nu, halvings = improving_step(objective, np.log(current), np.log(proposal))
    nu = np.where(halvings == 0, proposal, np.where(halvings < 0, current, np.exp(log_nu)))  # no round trip
    return np.where(n > 0, nu, current), iters, halvings


def _gap(y):
    """``log(y) - psi(y)`` (> 0, decreasing, about ``1 / (2 y)`` for large ``y``)."""
    return np.log(y) - digamma(y)


@register_family("studentt")
class StudentT(EmissionFamily):
    """Multivariate Student-t emissions (robust clustering and heavy-tailed HMM states).

    Parameters
    ----------
    covariance_type : {"full", "diag", "spherical", "tied"}, default="full"
        Form of the scale matrices (as in the Gaussian family).
    df : float or None, default=None
        Fixed degrees of freedom (> 0) for every state; None learns them.
    shared_df : bool, default=False
        With learned degrees of freedom, one value shared by all states.
    reg_covar : float, default=1e-6
        Added to the diagonal of every scale matrix in the M-step.

    Parameters of the states: ``means`` (K, D), ``covariances`` (the scale matrices, compact
    shape of the covariance type) and ``dfs`` (K,); ``learn`` names ``"means"``, ``"covars"``
    and ``"dfs"``.  Missing values (NaN) are integrated out exactly.
    """

    param_names = ("means", "covars", "dfs")
    attributes = {"means": "means", "covariances": "covariances", "dfs": "dfs"}
    handles_missing = True

    def __init__(self, covariance_type="full", df=None, shared_df=False, reg_covar=1e-6):
        check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
        if df is not None:
            check_float(df, "df", minimum=0.0, include_min=False)
        if not isinstance(shared_df, (bool, np.bool_)):
            raise ValueError(f"shared_df must be True or False; got {shared_df!r}")
        check_float(reg_covar, "reg_covar", minimum=0.0)
        self.covariance_type = covariance_type
        self.df = df
        self.shared_df = shared_df
        self.reg_covar = reg_covar

    @property
    def cov(self):
        return COVARIANCE_TYPES[self.covariance_type]

    @property
    def _gaussian(self):
        return GaussianEmission(self.n_components, self.covariance_type, self.reg_covar)

    def _mahalanobis(self, params, X):
        """Squared Mahalanobis distances (n, K) of rows without NaN."""
        if self.cov.direct:
            return self.cov.mahalanobis(np.asarray(X, dtype=np.float64), params.means, params.precisions_cholesky)
        c = params.means.mean(axis=0)
        return self.cov.mahalanobis(np.subtract(X, c, dtype=np.float64), params.means - c, params.precisions_cholesky)

    def _observed(self, params, X, miss):
        """Terms of the density of the observed coordinates of each row.

        Returns ``delta`` (n, K), the squared Mahalanobis distance over the observed coordinates
        in the marginal scale ``Sigma_oo``; ``log_det`` (n, K), ``-1/2 log det Sigma_oo``; and
        ``d_obs`` (n,) the number of observed coordinates.
        """
        n, D = X.shape
        K = params.means.shape[0]
        full_log_det = self.cov.log_det_cholesky(params.precisions_cholesky, D)
        if miss is None:
            return self._mahalanobis(params, X), np.broadcast_to(full_log_det, (n, K)), np.full(n, float(D))
        idx, starts, observed = miss
        complete = np.ones(n, dtype=bool)
        complete[idx] = False
        delta, log_det, d_obs = np.empty((n, K)), np.empty((n, K)), np.full(n, float(D))
        if complete.any():
            delta[complete] = self._mahalanobis(params, X[complete])
            log_det[complete] = full_log_det
        full = np.asarray(self.cov.full_covariances(params.covariances, K, D))
        full = np.broadcast_to(full, (K, D, D))
        for p in range(len(starts) - 1):
            rows = idx[starts[p]:starts[p + 1]]
            o = np.flatnonzero(observed[p])
            d_obs[rows] = o.size
            if o.size == 0:  # nothing observed: density 1
                delta[rows], log_det[rows] = 0.0, 0.0
                continue
            Xo = X[np.ix_(rows, o)]
            for k in range(K):
                try:
                    L = linalg.cholesky(full[k][np.ix_(o, o)], lower=True)
                except linalg.LinAlgError:
                    raise ValueError(_SINGULAR_MESSAGE.format(reg=self.reg_covar)) from None
                z = linalg.solve_triangular(L, (Xo - params.means[k, o]).T, lower=True)
                delta[rows, k] = np.einsum("ij,ij->j", z, z)
                log_det[rows, k] = -np.log(np.diag(L)).sum()
        return delta, log_det, d_obs

    # -- E-step -------------------------------------------------------------------------------------
    def log_likelihood(self, params, X):
        """``log t(x_n[o] | mu_k[o], Sigma_k[o, o], nu_k)``, (n, K), ``o`` the observed coordinates.

        A marginal of a multivariate t is a t with the same degrees of freedom, so missing
        coordinates (NaN) are integrated out exactly; a row with nothing observed gets 0.
        """
        miss = missing_patterns(X)
        nu = params.dfs
        if miss is None:
            D = X.shape[1]
            out = np.log1p(self._mahalanobis(params, X) / nu)
            out *= -0.5 * (nu + D)
            out += (gammaln(0.5 * (nu + D)) - gammaln(0.5 * nu) - 0.5 * D * (np.log(nu) + np.log(np.pi))
                    + self.cov.log_det_cholesky(params.precisions_cholesky, D))
            return out
        delta, log_det, d_obs = self._observed(params, X, miss)
        d = d_obs[:, None]
        return (gammaln(0.5 * (nu + d)) - gammaln(0.5 * nu) - 0.5 * d * (np.log(nu) + np.log(np.pi)) + log_det
                - 0.5 * (nu + d) * np.log1p(delta / nu))

    def statistics(self, params, X, weights):
        """Statistics of ``X`` (n, D) with responsibilities ``weights`` (n, K).

        With ``params`` None (the seeding pass) the latent scales are taken as 1 (Gaussian
        moments).  For a row with missing coordinates, given its observed ones ``o`` and the
        state: ``u`` has ``E[u] = (nu + D_o) / (nu + delta_o)``, a missing block has conditional
        mean ``mu_m|o`` (as for a Gaussian with covariance ``Sigma``) and
        ``E[u x_m x_m^T] = E[u] mu_m|o mu_m|o^T + Sigma_m|o``.
        """
        n = weights.sum(axis=0, dtype=np.float64)
        if params is None:
            return StudentTStats(n=n, moments=self._gaussian.statistics(None, X, weights), sdf=np.zeros_like(n))
        miss = missing_patterns(X)
        nu = params.dfs
        if miss is None:  # every row has all D coordinates: the shape of u is one number per state
            a = 0.5 * (nu + X.shape[1])
            u = self._mahalanobis(params, X)
        else:
            delta, _, d_obs = self._observed(params, X, miss)
            a = 0.5 * (nu + d_obs[:, None])  # (n, K)
            u = delta
        # u = E[u] = a / ((nu + delta) / 2), in place
        u += nu
        np.divide(2.0 * a, u, out=u)
        # E[log u] - E[u] + 1 = (psi(a) - log a) + (log u - u + 1), the last as log1p(u - 1) - (u - 1)
        um1 = u - 1.0
        g = np.log1p(um1)
        g -= um1
        if miss is None:
            sdf = np.einsum("nk,nk->k", weights, g) + n * (digamma(a) - np.log(a))
        else:
            g += digamma(a) - np.log(a)
            sdf = np.einsum("nk,nk->k", weights, g)
        W = weights * u
        gauss = self._gaussian
        if miss is None:
            moments = gauss.statistics(params.gaussian, X, W)
        else:
            moments = gauss.moments(X, W, params.means, params.gaussian, miss)
            # the moments weigh the conditional covariance by r E[u]; E[u x_m x_m^T] weighs it by r alone
            _, cond = gauss._filled(X, weights - W, np.zeros_like(params.means), params.gaussian, miss)
            moments.sxx = moments.sxx + self.cov.stack([self.cov.conditional(c) for c in cond])
        return StudentTStats(n=n, moments=moments, sdf=np.minimum(sdf, 0.0))

    # -- M-step -------------------------------------------------------------------------------------
    def m_step(self, stats, params=None, learn=None):
        """Location and scale in closed form, degrees of freedom by a checked Newton step.

        ``learn`` (names from ``param_names``) restricts what is re-estimated; the rest is taken
        from ``params``.  A state with no weight keeps its parameters.
        """
        learn = set(self.param_names) if learn is None else set(learn)
        mom = stats.moments
        nk_u = mom.n + 10 * np.finfo(np.float64).eps
        if "means" in learn or params is None:
            m = mom.sx / nk_u[:, None]
            means = mom.center + m
        else:
            means = params.means
            m = means - mom.center
        if "covars" in learn or params is None:
            covariances = self._scale_matrices(stats, m)
        else:
            covariances = params.covariances
        dfs = self._dfs(stats, params, learn)
        empty = ~(stats.n > 0)
        if params is not None and empty.any():
            means = np.where(empty[:, None], params.means, means)
            if self.covariance_type != "tied":
                shape = (-1,) + (1,) * (np.ndim(covariances) - 1)
                covariances = np.where(empty.reshape(shape), params.covariances, covariances)
        pc = self.cov.precisions_cholesky(covariances, self.reg_covar)
        return StudentTParams(means=means, covariances=covariances, precisions_cholesky=pc, dfs=dfs)

    def _scale_matrices(self, stats, m):
        """``sum r u (x - mu)(x - mu)^T / sum r`` in compact form, plus ``reg_covar``."""
        mom = stats.moments
        cov = self.cov.covariances(mom, m, 0.0)  # about sum r u
        tiny = np.finfo(np.float64).tiny
        if self.covariance_type == "tied":
            factor = mom.n.sum() / max(stats.n.sum(), tiny)
            cov = cov * factor
        else:
            factor = mom.n / np.maximum(stats.n, tiny)
            cov = cov * factor.reshape((-1,) + (1,) * (cov.ndim - 1))
        if cov.ndim >= 2 and self.covariance_type in ("full", "tied"):
            idx = np.arange(cov.shape[-1])
            cov[..., idx, idx] += self.reg_covar
        else:
            cov = cov + self.reg_covar
        return cov

    def _dfs(self, stats, params, learn):
        K = len(stats.n)
        if self.df is not None:
            return np.full(K, float(self.df))
        if params is None:
            return np.full(K, INITIAL_DF)
        current = np.asarray(params.dfs, dtype=np.float64)
        if "dfs" not in learn:
            return current
        n, sdf = stats.n, stats.sdf
        if self.shared_df:
            nu, _, _ = df_step(np.array([n.sum()]), np.array([sdf.sum()]), current[:1])
            return np.full(K, nu[0])
        return df_step(n, sdf, current)[0]

    def init_params(self, stats):
        """Location and scale from Gaussian moments of the seeding pass; ``df`` or ``INITIAL_DF`` degrees of freedom."""
        return self.m_step(stats)

    # -- parameters -----------------------------------------------------------------------------------
    def params_from(self, means, covariances, dfs):
        """Parameters from locations (K, D), scale matrices (compact shape) and degrees of freedom (K,)."""
        means = check_array(means, "means")
        K, D = means.shape
        if self.n_components is not None and K != self.n_components:
            raise ValueError(f"means must have shape ({self.n_components}, n_features); got {means.shape}")
        covariances = self.cov.check_covariances(covariances, K, D, "covariances")
        dfs = np.asarray(dfs, dtype=np.float64)
        if dfs.shape != (K,):
            raise ValueError(f"dfs must have shape ({K},); got {dfs.shape}")
        if not np.all(np.isfinite(dfs)) or np.any(dfs <= 0):
            raise ValueError(f"dfs must be positive and finite; got {dfs}")
        pc = self.cov.precisions_cholesky(covariances, self.reg_covar)
        return StudentTParams(means=means, covariances=covariances, precisions_cholesky=pc, dfs=dfs)

    def check_params(self, params, n_features):
        if params.means.shape[1:] != (n_features,):
            raise ValueError(f"means must have shape ({len(params.means)}, {n_features}); got {params.means.shape}")
        self.params_from(params.means, params.covariances, params.dfs)

    # -- collapse (see emkit.collapse) ------------------------------------------------------------------
    def collapsed(self, params, occupancy):
        """States whose scale matrix is at the ``reg_covar`` floor (as for Gaussian covariances)."""
        return self._gaussian.collapsed(params.gaussian, occupancy)

    def split(self, params, j, k):
        """State ``k`` re-seeded by splitting state ``j`` along its main axis; it takes ``j``'s degrees of freedom."""
        g = self._gaussian.split(params.gaussian, j, k)
        dfs = params.dfs.copy()
        dfs[k] = dfs[j]
        return StudentTParams(means=g.means, covariances=g.covariances, precisions_cholesky=g.precisions_cholesky,
                              dfs=dfs)

    # -- the rest ---------------------------------------------------------------------------------------
    def sample(self, params, z, rng):
        """One row per state in ``z`` (n,): a Gaussian draw divided by the square root of a Gamma scale."""
        z = np.asarray(z)
        X = self._gaussian.sample(params.gaussian, z, rng) - params.means[z]
        half = 0.5 * params.dfs[z]
        u = rng.standard_gamma(half) / half
        X /= np.sqrt(u)[:, None]
        X += params.means[z]
        return X

    def n_parameters(self, n_features):
        K, D = self.n_components, n_features
        n_df = 0 if self.df is not None else (1 if self.shared_df else K)
        return K * D + self.cov.n_parameters(K, D) + n_df
