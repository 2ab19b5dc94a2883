"""Variational Bayesian Gaussian mixture, with scikit-learn's names, updates and lower bound.

The model is scikit-learn's ``BayesianGaussianMixture``: a Dirichlet-process (stick-breaking) or
Dirichlet prior on the weights and a Gaussian-Wishart prior on each component's mean and
precision; the posterior is approximated by a factorised ``q(z) q(weights) q(means, precisions)``
fitted by coordinate ascent on the evidence lower bound (ELBO).

It runs on the same engine as :class:`~emkit.GaussianMixture`.  The variational E-step
computes responsibilities from the *expected* log weights and log densities under ``q`` and
returns the Gaussian family's additive statistics (``N_k``, ``sum r x``, ``sum r x x^T``) plus
``sum r log r``; the variational M-step maps the statistics to the posterior hyperparameters.
Because the statistics add up, batch, out-of-core (files, memory maps), Dask and stochastic
variational inference (``partial_fit``, ``algorithm="stochastic"``: the running statistics of
stochastic EM scaled to the number of rows seen, the step schedule of
:class:`emkit.em.StepSchedule`) all work as for ``GaussianMixture``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, gammaln

from .._validation import check_array, check_choice, check_float, check_int
from ..emissions.gaussian import COVARIANCE_TYPES, GaussianEmission, GaussianParams, _check_spd
from ..emissions.missing import has_nan
from ..inference.mixture import MixtureStats, normalize_log_resp
from ..io import AttributeType, register
from ..structures import Mixture
from .mixture import INIT_PARAMS, GaussianMixture

_EPS10 = 10 * np.finfo(np.float64).eps

WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")

#: Default weight above which a component counts as effective (see ``n_effective_components``).
EFFECTIVE_WEIGHT = 0.01

_NAN_MESSAGE = ("BayesianGaussianMixture does not handle missing values (NaN) in X; impute or drop them first "
                "(GaussianMixture integrates missing values out exactly)")


@dataclass(frozen=True)
class VariationalPriors:
    """The priors of a Bayesian Gaussian mixture (scikit-learn's fitted ``*_prior_`` attributes)."""

    weight_concentration_prior_type: str
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: object  # (D, D) full/tied, (D,) diag, float spherical


@dataclass(frozen=True)
class VariationalParams:
    """Parameters of ``q``: weight concentrations, Gaussian-Wishart hyperparameters.

    ``weight_concentration`` is (K,) for a Dirichlet distribution prior and (2, K) (the Beta
    parameters of each stick) for a Dirichlet process prior; ``degrees_of_freedom`` is (K,), a
    number for tied covariances; ``emission`` holds the means, the covariances normalised by the
    degrees of freedom and their precision Cholesky factors, as scikit-learn defines them.
    """

    weight_concentration: np.ndarray
    mean_precision: np.ndarray
    degrees_of_freedom: object
    emission: GaussianParams


@dataclass
class VariationalMixtureStats(MixtureStats):
    """:class:`MixtureStats` plus ``resp_log_resp``: sum over rows of ``w_n sum_k r_nk log r_nk``.

    ``log_likelihood`` is the sum of ``w_n log sum_k exp(E_q[log pi_k + log N(x_n | k)])``.
    """

    resp_log_resp: float = 0.0


def _log_wishart_norm(degrees_of_freedom, log_det_precisions_chol, n_features):
    """scikit-learn's log Wishart normaliser (without its ``log pi`` term), per component."""
    dof = np.asarray(degrees_of_freedom, dtype=np.float64)
    return -(dof * log_det_precisions_chol + dof * n_features * 0.5 * math.log(2.0)
             + np.sum(gammaln(0.5 * (dof - np.arange(n_features)[:, None])), 0))


def stick_breaking_weights(a, b):
    """Expected weights of a truncated stick-breaking process with Beta(a_k, b_k) sticks, normalised."""
    total = a + b
    w = a / total * np.hstack((1.0, np.cumprod(b / total)[:-1]))
    return w / w.sum()


class VariationalMixture(Mixture):
    """Mixture structure with the variational E- and M-steps of a Bayesian Gaussian mixture.

    A model in the sense of :mod:`emkit.em`: ``e_step`` returns
    :class:`VariationalMixtureStats`, ``m_step`` the posterior hyperparameters,
    ``objective`` the lower bound as scikit-learn defines it (a total, not per sample:
    the ELBO up to constants, with ``q(z)`` from the E-step and ``q(parameters)`` after the
    M-step), and ``stream_objective`` the mean expected log normaliser per sample (what
    stochastic passes and ``partial_fit`` report).
    """

    def __init__(self, emission, priors):
        super().__init__(emission)
        self.priors = priors
        self._last = None  # (stats, params): objective() and m_step() of the same stats share one M-step

    # -- E-step ---------------------------------------------------------------------------
    def log_weights(self, params):
        """``E_q[log pi_k]``, (K,)."""
        wc = params.weight_concentration
        if self.priors.weight_concentration_prior_type == "dirichlet_process":
            a, b = wc[0], wc[1]
            digamma_sum = digamma(a + b)
            return digamma(a) - digamma_sum + np.hstack((0.0, np.cumsum(digamma(b) - digamma_sum)[:-1]))
        return digamma(wc) - digamma(np.sum(wc))

    def component_terms(self, params):
        """Per-component offset of ``E_q[log N(x | k)]`` from the Gaussian log density at the means_/precisions_."""
        D = params.emission.means.shape[1]
        dof = np.asarray(params.degrees_of_freedom, dtype=np.float64)
        log_lambda = D * math.log(2.0) + np.sum(digamma(0.5 * (dof - np.arange(D)[:, None])), 0)
        return -0.5 * D * np.log(dof) + 0.5 * (log_lambda - D / params.mean_precision)

    def log_joint(self, params, X):
        """``E_q[log pi_k] + E_q[log N(x_n | mu_k, Lambda_k)]``, (n, K)."""
        if has_nan(X):
            raise ValueError(_NAN_MESSAGE)
        lp = self.emission.log_likelihood(params.emission, X)
        lp += self.component_terms(params) + self.log_weights(params)
        return lp

    def e_step(self, params, X, sample_weight=None):
        joint = self.log_joint(params, X)
        resp = joint.copy()
        log_norm = np.empty(resp.shape[0])
        normalize_log_resp(resp, log_norm)
        # sum_k r log r = sum_k r (joint - log_norm), row by row
        rlr = np.einsum("nk,nk->n", resp, joint) - log_norm
        if sample_weight is None:
            ll, rlr, n = float(log_norm.sum()), float(rlr.sum()), float(X.shape[0])
        else:
            resp *= sample_weight[:, None]
            ll, rlr, n = float(sample_weight @ log_norm), float(sample_weight @ rlr), float(sample_weight.sum())
        return VariationalMixtureStats(resp=resp.sum(axis=0),
                                       emission=self.emission.statistics(params.emission, X, resp),
                                       log_likelihood=ll, n_samples=n, resp_log_resp=rlr)

    # -- M-step ---------------------------------------------------------------------------
    def m_step(self, stats, params=None):
        if self._last is not None and self._last[0] is stats:
            return self._last[1]
        post = self.posterior(stats.emission)
        self._last = (stats, post)
        return post

    def posterior(self, gstats):
        """Posterior hyperparameters from Gaussian statistics (scikit-learn's variational M-step)."""
        pr = self.priors
        cov = self.emission.cov
        K = gstats.n.shape[0]
        nk = gstats.n + _EPS10
        m = gstats.sx / nk[:, None]  # component means relative to the statistics' centre
        xk = gstats.center + m
        sk = cov.covariances(gstats, m, self.emission.reg_covar)  # about xk, plus reg_covar
        if pr.weight_concentration_prior_type == "dirichlet_process":
            wc = np.stack((1.0 + nk, pr.weight_concentration + np.hstack((np.cumsum(nk[::-1])[-2::-1], 0.0))))
        else:
            wc = pr.weight_concentration + nk
        mean_precision = pr.mean_precision + nk
        means = (pr.mean_precision * pr.mean + nk[:, None] * xk) / mean_precision[:, None]
        diff = xk - pr.mean
        shrink = pr.mean_precision / mean_precision  # (K,)
        name = cov.name
        if name == "full":
            dof = pr.degrees_of_freedom + nk
            covariances = (pr.covariance + nk[:, None, None] * sk
                           + (nk * shrink)[:, None, None] * (diff[:, :, None] * diff[:, None, :]))
            covariances /= dof[:, None, None]
        elif name == "tied":
            dof = pr.degrees_of_freedom + nk.sum() / K
            covariances = (pr.covariance + sk * nk.sum() / K
                           + pr.mean_precision / K * np.dot((nk / mean_precision) * diff.T, diff))
            covariances /= dof
        elif name == "diag":
            dof = pr.degrees_of_freedom + nk
            covariances = pr.covariance + nk[:, None] * (sk + shrink[:, None] * np.square(diff))
            covariances /= dof[:, None]
        else:
            dof = pr.degrees_of_freedom + nk
            covariances = pr.covariance + nk * (sk + shrink * np.mean(np.square(diff), 1))
            covariances /= dof
        return VariationalParams(weight_concentration=wc, mean_precision=mean_precision, degrees_of_freedom=dof,
                                 emission=self.emission.params_from_covariances(means, covariances))

    # -- objectives -----------------------------------------------------------------------
    def lower_bound(self, resp_log_resp, params):
        """scikit-learn's lower bound: ``-sum r log r`` minus the log normalisers of ``q``'s factors."""
        D = params.emission.means.shape[1]
        K = params.mean_precision.shape[0]
        log_det = (self.emission.cov.log_det_cholesky(params.emission.precisions_cholesky, D)
                   - 0.5 * D * np.log(params.degrees_of_freedom))
        wishart = _log_wishart_norm(params.degrees_of_freedom, log_det, D)
        log_wishart = K * float(np.sum(wishart)) if self.emission.cov.name == "tied" else float(np.sum(wishart))
        wc = params.weight_concentration
        if self.priors.weight_concentration_prior_type == "dirichlet_process":
            log_norm_weight = -float(np.sum(betaln(wc[0], wc[1])))
        else:
            log_norm_weight = float(gammaln(np.sum(wc)) - np.sum(gammaln(wc)))
        return (-resp_log_resp - log_wishart - log_norm_weight
                - 0.5 * D * float(np.sum(np.log(params.mean_precision))))

    def prior_normalizers(self, n_components, n_features):
        """The log normalisers of the priors, which scikit-learn's bound leaves out (they depend on K).

        ``K (log B(W_0, nu_0) + D/2 log beta_0)`` (the Wishart normaliser as scikit-learn writes it,
        ``K`` times for tied covariances as in its bound) plus the weight prior's: ``log Gamma(K
        gamma) - K log Gamma(gamma)`` (Dirichlet) or ``K log gamma`` (the K Beta(1, gamma) sticks).
        """
        pr, K, D = self.priors, n_components, n_features
        cp = np.asarray(pr.covariance, dtype=np.float64)
        name = self.emission.cov.name
        if name in ("full", "tied"):
            log_det_cov = 2.0 * np.sum(np.log(np.diag(np.linalg.cholesky(cp))))
        elif name == "diag":
            log_det_cov = float(np.sum(np.log(cp)))
        else:
            log_det_cov = D * math.log(float(cp))
        wishart = float(np.sum(_log_wishart_norm(pr.degrees_of_freedom, -0.5 * log_det_cov, D)))
        if pr.weight_concentration_prior_type == "dirichlet_process":
            weights = K * math.log(pr.weight_concentration)
        else:
            weights = float(gammaln(K * pr.weight_concentration) - K * gammaln(pr.weight_concentration))
        return K * (wishart + 0.5 * D * math.log(pr.mean_precision)) + weights

    def elbo(self, lower_bound, params):
        """The evidence lower bound with every constant, from scikit-learn's ``lower_bound``.

        ``lower_bound + prior_normalizers - N D/2 log(2 pi)``: with it, bounds of models with
        different numbers of components are comparable (and for one component and no ``reg_covar``
        it is the exact log evidence).
        """
        K, D = params.emission.means.shape
        n = float(np.sum(params.mean_precision - self.priors.mean_precision)) - K * _EPS10
        return lower_bound + self.prior_normalizers(K, D) - 0.5 * n * D * math.log(2.0 * math.pi)

    def objective(self, stats, params):
        return self.lower_bound(stats.resp_log_resp, self.m_step(stats, params))

    def stream_objective(self, stats, params):
        return stats.log_likelihood / stats.n_samples


class _DataMoments:
    """A one-pass model whose statistics are the data's weighted mean and scatter (for default priors)."""

    def __init__(self):
        self.emission = GaussianEmission(1, "full")

    def e_step(self, center, X, sample_weight=None):
        if has_nan(X):
            raise ValueError(_NAN_MESSAGE)
        w = np.ones((X.shape[0], 1)) if sample_weight is None else np.asarray(sample_weight, np.float64)[:, None]
        return self.emission.moments(X, w, center)


def _data_mean_covariance(source, rng):
    """Weighted mean (D,) and covariance (D, D) (``ddof=1``) of every row of ``source``, in one pass."""
    X, _ = source.sample(10_000, rng)
    center = np.asarray(X, dtype=np.float64).mean(axis=0)
    if not np.all(np.isfinite(center)):
        raise ValueError(_NAN_MESSAGE)
    s = source.expectation(_DataMoments(), center)
    n = float(s.n[0])
    if not n > 1.0:
        raise ValueError(f"the default mean_prior and covariance_prior are the data's mean and covariance, which "
                         f"need more than one sample (got n_samples = {n:g}); give mean_prior and covariance_prior")
    d = s.sx[0] / n
    mean = s.center[0] + d
    cov = (s.sxx[0] - n * np.outer(d, d)) / (n - 1.0)
    return mean, 0.5 * (cov + cov.T)


@register
class BayesianGaussianMixture(GaussianMixture):
    """Variational Bayesian Gaussian mixture: the data decide how many components to keep.

    A drop-in for ``sklearn.mixture.BayesianGaussianMixture`` (same parameters, updates,
    attributes and lower bound) on emkit's engine: ``fit`` takes arrays, memory maps, files
    and Dask arrays, ``sample_weight``, ``algorithm="stochastic"`` and ``partial_fit``
    (stochastic variational inference), a progress ``callback``, and keeps ``lower_bounds_``.

    Give it more components than you expect: with a Dirichlet-process prior and a small
    ``weight_concentration_prior`` the surplus components get weights near zero
    (:meth:`n_effective_components` counts the others).

    Parameters
    ----------
    n_components : int, default=1
        Upper bound on the number of components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Stops when the lower bound (a total over the rows, as in scikit-learn) changes by less.
    reg_covar : float, default=1e-6
    max_iter : int, default=100
    n_init : int, default=1
        Restarts; the run with the highest lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        Initial responsibilities, as in :class:`~emkit.GaussianMixture`.
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, default="dirichlet_process"
        Stick-breaking (Dirichlet process, truncated at ``n_components``) or a symmetric
        Dirichlet prior on the weights.
    weight_concentration_prior : float, optional
        Concentration (gamma); default ``1 / n_components``.  Smaller switches off more components.
    mean_precision_prior : float, optional
        Precision (beta) of the prior on the means, relative to the component precision; default 1.
    mean_prior : array (n_features,), optional
        Prior mean of the means; default the data's mean.
    degrees_of_freedom_prior : float, optional
        Wishart degrees of freedom, > n_features - 1; default n_features.
    covariance_prior : float or array, optional
        Prior covariance: (D, D) full/tied, (D,) diag, a number spherical; default the data's
        covariance (diag: variances; spherical: their mean).
    random_state, warm_start, verbose, verbose_interval
        As in :class:`~emkit.GaussianMixture`.
    chunk_size : int, optional
        Rows per E-step chunk.
    init_sample_size : int, default=500_000
        Initialisation looks at a random sample of at most this many rows.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_
        Expected weights and the Gaussian-Wishart posterior's means and normalised covariances
        (scikit-learn's definitions).
    weight_concentration_ : tuple of two ndarrays (K,) or ndarray (K,)
        Beta parameters of the sticks (Dirichlet process) or the Dirichlet concentrations.
        (A model read from a file holds the pair as a (2, K) array.)
    mean_precision_ : ndarray (K,)
    degrees_of_freedom_ : ndarray (K,) or float (tied)
    weight_concentration_prior_, mean_precision_prior_, mean_prior_, degrees_of_freedom_prior_,
    covariance_prior_
        The priors used (defaults filled in from the data).
    lower_bound_ : float
        scikit-learn's lower bound (the ELBO up to constants, a total over the rows) at the last
        iteration of the best run; for ``partial_fit`` and ``algorithm="stochastic"``, the mean
        expected log normaliser per sample instead (see :class:`VariationalMixture`).
    lower_bounds_ : list of float
        The lower bound at every iteration of the best run (never decreases).
    converged_, n_iter_, n_features_in_, feature_names_in_
    """

    _fitted_attributes = GaussianMixture._fitted_attributes + (
        "weight_concentration_", "mean_precision_", "degrees_of_freedom_", "weight_concentration_prior_",
        "mean_precision_prior_", "mean_prior_", "degrees_of_freedom_prior_", "covariance_prior_")
    _attribute_types = {
        "weight_concentration_": AttributeType("fiu", (1, 2)),
        "mean_precision_": AttributeType("fiu", (1,)),
        "degrees_of_freedom_": AttributeType("fiu", (0, 1)),
        "weight_concentration_prior_": AttributeType("fiu", (0,)),
        "mean_precision_prior_": AttributeType("fiu", (0,)),
        "mean_prior_": AttributeType("fiu", (1,)),
        "degrees_of_freedom_prior_": AttributeType("fiu", (0,)),
        "covariance_prior_": AttributeType("fiu", (0, 1, 2)),
    }

    #: surplus components are switched off by the prior, not re-seeded
    on_collapse = None

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6, max_iter=100,
                 n_init=1, init_params="kmeans", weight_concentration_prior_type="dirichlet_process",
                 weight_concentration_prior=None, mean_precision_prior=None, mean_prior=None,
                 degrees_of_freedom_prior=None, covariance_prior=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, chunk_size=None, init_sample_size=500_000):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.chunk_size = chunk_size
        self.init_sample_size = init_sample_size

    # sklearn's GaussianMixture-only hyperparameters, absent here
    weights_init = means_init = precisions_init = None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    # -- validation -------------------------------------------------------------------
    def _check_parameters_basic(self):
        check_int(self.n_components, "n_components", minimum=1)
        check_float(self.tol, "tol", minimum=0.0)
        check_int(self.max_iter, "max_iter", minimum=1)
        check_int(self.n_init, "n_init", minimum=1)
        check_int(self.verbose, "verbose", minimum=0)
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_float(self.reg_covar, "reg_covar", minimum=0.0)
        check_choice(self.init_params, "init_params", INIT_PARAMS)
        check_choice(self.weight_concentration_prior_type, "weight_concentration_prior_type", WEIGHT_PRIOR_TYPES)
        for name in ("weight_concentration_prior", "mean_precision_prior"):
            if getattr(self, name) is not None:
                check_float(getattr(self, name), name, minimum=0.0, include_min=False)
        if self.degrees_of_freedom_prior is not None:
            check_float(self.degrees_of_freedom_prior, "degrees_of_freedom_prior")

    def _check_parameters(self, source):
        """Check the hyperparameters against the data and fill in the priors (scikit-learn's ``*_prior_``)."""
        super()._check_parameters(source)
        self._set_priors(source)

    def _set_priors(self, source):
        K, D = self.n_components, source.n_features
        wcp = 1.0 / K if self.weight_concentration_prior is None else float(self.weight_concentration_prior)
        mpp = 1.0 if self.mean_precision_prior is None else float(self.mean_precision_prior)
        if self.degrees_of_freedom_prior is None:
            dfp = float(D)
        else:
            dfp = float(self.degrees_of_freedom_prior)
            if not dfp > D - 1.0:
                raise ValueError(f"degrees_of_freedom_prior must be greater than n_features - 1 = {D - 1}; "
                                 f"got {dfp:.3f}")
        mean = cov = None
        if self.mean_prior is not None:
            mean = check_array(self.mean_prior, "mean_prior", ndim=1).astype(np.float64)
            if mean.shape != (D,):
                raise ValueError(f"mean_prior must have shape ({D},) (n_features,); got {mean.shape}")
        name = self.covariance_type
        if self.covariance_prior is not None:
            cp = self.covariance_prior
            if name in ("full", "tied"):
                cp = check_array(cp, "covariance_prior", ndim=2).astype(np.float64)
                if cp.shape != (D, D):
                    raise ValueError(f"covariance_prior must have shape ({D}, {D}) for covariance_type={name!r}; "
                                     f"got {cp.shape}")
                cp = _check_spd(cp, "covariance_prior")
            elif name == "diag":
                cp = check_array(cp, "covariance_prior", ndim=1).astype(np.float64)
                if cp.shape != (D,):
                    raise ValueError(f"covariance_prior must have shape ({D},) for covariance_type='diag'; "
                                     f"got {cp.shape}")
                if np.any(cp <= 0):
                    raise ValueError("covariance_prior must be positive for covariance_type='diag'")
            else:
                cp = check_float(cp, "covariance_prior", minimum=0.0, include_min=False)
        else:
            cp = None
        if mean is None or cp is None:
            data_mean, data_cov = _data_mean_covariance(source, np.random.default_rng(0))
            mean = data_mean if mean is None else mean
            if cp is None:
                cp = {"full": data_cov, "tied": data_cov, "diag": np.diag(data_cov).copy(),
                      "spherical": float(np.diag(data_cov).mean())}[name]
        self.weight_concentration_prior_ = wcp
        self.mean_precision_prior_ = mpp
        self.mean_prior_ = mean
        self.degrees_of_freedom_prior_ = dfp
        self.covariance_prior_ = cp

    def _priors(self):
        return VariationalPriors(self.weight_concentration_prior_type, float(self.weight_concentration_prior_),
                                 float(self.mean_precision_prior_), np.asarray(self.mean_prior_, dtype=np.float64),
                                 float(self.degrees_of_freedom_prior_),
                                 np.asarray(self.covariance_prior_, dtype=np.float64))

    # -- EM hooks -------------------------------------------------------------------------
    def _em_model(self):
        return VariationalMixture(GaussianEmission(self.n_components, self.covariance_type, self.reg_covar),
                                  self._priors())

    def _init_params(self, source, rng):
        X, sw = source.sample(self.init_sample_size, rng)
        model = self._em_model()
        return model.posterior(self._init_statistics(X, sw, rng, model))

    def _params_from_attributes(self):
        self._validate_fitted()
        wc = self.weight_concentration_
        wc = np.asarray(wc if not isinstance(wc, tuple) else np.stack(wc), dtype=np.float64)
        return VariationalParams(
            weight_concentration=wc, mean_precision=np.asarray(self.mean_precision_, dtype=np.float64),
            degrees_of_freedom=np.asarray(self.degrees_of_freedom_, dtype=np.float64),
            emission=GaussianParams(np.asarray(self.means_, dtype=np.float64),
                                    np.asarray(self.covariances_, dtype=np.float64),
                                    np.asarray(self.precisions_cholesky_, dtype=np.float64)))

    def _set_attributes(self, params):
        cov = COVARIANCE_TYPES[self.covariance_type]
        wc = params.weight_concentration
        if self.weight_concentration_prior_type == "dirichlet_process":
            self.weight_concentration_ = (wc[0], wc[1])
            self.weights_ = stick_breaking_weights(wc[0], wc[1])
        else:
            self.weight_concentration_ = wc
            self.weights_ = wc / np.sum(wc)
        self.mean_precision_ = params.mean_precision
        dof = params.degrees_of_freedom
        self.degrees_of_freedom_ = float(dof) if np.ndim(dof) == 0 else dof
        self.means_ = params.emission.means
        self.covariances_ = params.emission.covariances
        self.precisions_cholesky_ = params.emission.precisions_cholesky
        self.precisions_ = cov.precisions(self.precisions_cholesky_)

    def _validate_fitted(self):
        super()._validate_fitted()
        K = self.n_components
        wc = self.weight_concentration_
        wc = np.asarray(wc if not isinstance(wc, tuple) else np.stack(wc), dtype=np.float64)
        shape = (2, K) if self.weight_concentration_prior_type == "dirichlet_process" else (K,)
        if wc.shape != shape or not np.all(np.isfinite(wc)) or np.any(wc <= 0):
            raise ValueError(f"weight_concentration_ must be positive with shape {shape} for "
                             f"weight_concentration_prior_type={self.weight_concentration_prior_type!r}")
        mp = np.asarray(self.mean_precision_, dtype=np.float64)
        if mp.shape != (K,) or not np.all(np.isfinite(mp)) or np.any(mp <= 0):
            raise ValueError(f"mean_precision_ must be positive with shape ({K},)")
        D = np.shape(self.means_)[1]
        dof = np.asarray(self.degrees_of_freedom_, dtype=np.float64)
        dshape = () if self.covariance_type == "tied" else (K,)
        if dof.shape != dshape or not np.all(np.isfinite(dof)) or np.any(dof <= D - 1):
            raise ValueError(f"degrees_of_freedom_ must have shape {dshape} and be > n_features - 1")
        for name in ("mean_prior_", "covariance_prior_"):
            if getattr(self, name, None) is None:
                self._check_is_fitted([name])

    def _scoring_model(self):
        return self._em_model(), self._params_from_attributes()

    def _check_X(self, X):
        X = super()._check_X(X)
        if has_nan(X):
            raise ValueError(_NAN_MESSAGE)
        return X

    # -- public API -------------------------------------------------------------------------
    def partial_fit(self, X, y=None, sample_weight=None, *, schedule=None):
        """Stochastic variational inference step on the mini-batch ``X`` (see :meth:`GaussianMixture.partial_fit`).

        The first batch also fixes the default priors (the batch's mean and covariance).
        """
        if not self._has_parameters():
            self._check_parameters_basic()
            source = self._source(X, sample_weight, reset=True)
            if source.n_rows < self.n_components:
                raise ValueError(f"the first partial_fit batch must have at least n_components="
                                 f"{self.n_components} rows; got {source.n_rows}")
            self._set_priors(source)
        return super().partial_fit(X, sample_weight=sample_weight, schedule=schedule)

    def elbo(self):
        """Evidence lower bound of the training data, with all the constants ``lower_bound_`` leaves out.

        ``lower_bound_`` is scikit-learn's bound, which drops terms that depend on the number of
        components (the priors' normalisers); ``elbo()`` adds them back (and ``-N D/2 log 2 pi``),
        so that models with different ``n_components`` can be compared: this is what
        ``emkit.select(..., criterion="elbo")`` ranks (higher is better).  Needs a batch fit
        (``algorithm="em"``): stochastic fits and ``partial_fit`` do not compute the bound.
        """
        self._check_is_fitted(["lower_bound_", "mean_precision_"])
        state = getattr(self, "_online_state", None)  # a stochastic fit leaves a step schedule (kept in model files)
        if state is not None and state.schedule is not None:
            raise ValueError("elbo() needs a batch fit (fit with algorithm='em'); after partial_fit or "
                             "algorithm='stochastic' lower_bound_ is the mean expected log normaliser of a batch")
        return float(self._em_model().elbo(float(self.lower_bound_), self._params_from_attributes()))

    def n_effective_components(self, threshold=EFFECTIVE_WEIGHT):
        """Number of components whose weight exceeds ``threshold`` (default 0.01)."""
        self._check_is_fitted(["weights_"])
        check_float(threshold, "threshold", minimum=0.0, maximum=1.0, include_max=False)
        return int(np.sum(np.asarray(self.weights_) > threshold))

    def impute(self, X):
        raise ValueError(_NAN_MESSAGE)

    #: ``emkit.select`` refuses "bic", "aic" and "icl" for this model before fitting anything
    _has_information_criteria = False

    def bic(self, X):
        """Not defined for a variational posterior; compare models by ``lower_bound_`` (criterion "elbo")."""
        raise ValueError("BayesianGaussianMixture has no BIC (it has a posterior, not a point estimate); compare "
                         "models by lower_bound_ (emkit.select criterion='elbo')")

    def aic(self, X):
        """Not defined for a variational posterior; compare models by ``lower_bound_`` (criterion "elbo")."""
        raise ValueError("BayesianGaussianMixture has no AIC (it has a posterior, not a point estimate); compare "
                         "models by lower_bound_ (emkit.select criterion='elbo')")
