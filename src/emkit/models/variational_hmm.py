"""Variational hidden Markov models: Gaussian (four covariance types) and categorical emissions.

Fitted by variational Bayes (:mod:`emkit.variational`): conjugate priors on every parameter,
a factorised posterior ``q(z) q(theta)``, and coordinate ascent on the evidence lower bound --
the EM loop with the posterior hyperparameters in place of point estimates.  Names, priors,
defaults and the lower bound follow hmmlearn's ``VariationalGaussianHMM`` and
``VariationalCategoricalHMM``; the fit loop, restarts, sequences and decoding are emkit's.

A state the data does not need keeps (nearly) only its prior mass: its posterior start and
incoming transition weights stay near the prior concentration, so surplus states end up
(almost) never visited instead of splitting real ones.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_array, check_choice, check_float, check_int
from ..emissions.categorical import CategoricalEmission
from ..emissions.gaussian import COVARIANCE_TYPES, GaussianEmission
from ..emissions.variational import (NormalWishart, VariationalCategoricalEmission, VariationalCategoricalParams,
                                     VariationalGaussianEmission)
from ..io import AttributeType, register
from ..structures import MarkovChain
from ..variational import VariationalHMMParams, VariationalMarkovChain
from .hmm import DECODE_ALGORITHMS, BaseHMM, CategoricalHMM

_F = "fiu"

#: Model-file types of the attributes only variational HMMs have.
_VARIATIONAL_ATTRIBUTE_TYPES = {
    "startprob_prior_": AttributeType(_F, (1,)),
    "startprob_posterior_": AttributeType(_F, (1,)),
    "transmat_prior_": AttributeType(_F, (2,)),
    "transmat_posterior_": AttributeType(_F, (2,)),
    "means_prior_": AttributeType(_F, (2,)),
    "means_posterior_": AttributeType(_F, (2,)),
    "beta_prior_": AttributeType(_F, (1,)),
    "beta_posterior_": AttributeType(_F, (1,)),
    "dof_prior_": AttributeType(_F, (0, 1)),
    "dof_posterior_": AttributeType(_F, (0, 1)),
    "scale_prior_": AttributeType(_F, (1, 2, 3)),
    "scale_posterior_": AttributeType(_F, (1, 2, 3)),
    "emissionprob_prior_": AttributeType(_F, (2,)),
    "emissionprob_posterior_": AttributeType(_F, (2,)),
}

_COMMON_FITTED = ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_")


def _as_float_array(value, name, shape, allow_scalar):
    """``value`` as a float array broadcast to ``shape`` (a number is accepted when ``allow_scalar``)."""
    what = ("a number or " if allow_scalar else "") + f"an array of shape {tuple(shape)}"
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {what} of real numbers; got {value!r}") from None
    if (a.ndim == 0 and not allow_scalar) or (a.ndim and a.shape != tuple(shape)):
        raise ValueError(f"{name} must be {what}; got {'a number' if a.ndim == 0 else f'shape {a.shape}'}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite; got {float(a[~np.isfinite(a)].ravel()[0])}")
    return np.array(np.broadcast_to(a, shape), dtype=np.float64)


def _positive(value, name, shape, *, allow_scalar=True):
    """``value`` as a float array of ``shape`` (a number is broadcast), finite and > 0."""
    a = _as_float_array(value, name, shape, allow_scalar)
    if np.any(a <= 0):
        raise ValueError(f"{name} must be positive; got {float(a[a <= 0].ravel()[0])}")
    return a


def _finite(value, name, shape):
    return _as_float_array(value, name, shape, True)


class _VariationalHMM:
    """What the variational HMMs share (placed before the HMM base class in the MRO)."""

    # hyperparameters of the maximum-likelihood HMMs that variational models do not have
    on_collapse = None  # surplus states are switched off by the prior, not re-seeded
    learn = None
    kappa = 0.0
    startprob_init = None
    transmat_init = None

    _attribute_types = _VARIATIONAL_ATTRIBUTE_TYPES

    def _check_hmm_parameters(self):
        check_int(self.n_components, "n_components", minimum=1)
        check_float(self.tol, "tol", minimum=0.0)
        check_int(self.max_iter, "max_iter", minimum=1)
        check_int(self.n_init, "n_init", minimum=1)
        check_int(self.verbose, "verbose", minimum=0)
        check_choice(self.algorithm, "algorithm", DECODE_ALGORITHMS)
        K = self.n_components
        for name, shape in (("startprob_prior", (K,)), ("transmat_prior", (K, K))):
            if getattr(self, name) is not None:
                _positive(getattr(self, name), name, shape)
        self._check_emission_priors()
        return None

    # -- priors and starting posterior ------------------------------------------------------------
    def _chain_priors(self):
        K = self.n_components
        start = 1.0 / K if self.startprob_prior is None else self.startprob_prior
        trans = 1.0 / K if self.transmat_prior is None else self.transmat_prior
        return _positive(start, "startprob_prior", (K,)), _positive(trans, "transmat_prior", (K, K))

    def _em_model(self):
        return VariationalMarkovChain(self._variational_emission(self._n_features))

    def _init_params(self, source, rng):
        """Seed as the maximum-likelihood HMM does (k-means++ for Gaussians, random emission
        probabilities for symbols), take the state posteriors of that seeding (one pass of
        forward-backward) as the first ``q(z)``, and set ``q(theta)`` = prior + their statistics.
        ``*_posterior_init`` values replace the corresponding seeded hyperparameters."""
        D = source.n_features
        model = VariationalMarkovChain(self._variational_emission(D))
        startprob_prior, transmat_prior = self._chain_priors()
        if self._all_posteriors_given():
            stats = None
        else:
            seeded = BaseHMM._init_params(self, source, rng)
            stats = source.expectation(MarkovChain(self._make_emission(D)), seeded)
        prior = VariationalHMMParams(startprob=startprob_prior, transmat=transmat_prior,
                                     emission=self._emission_prior(stats, source),
                                     startprob_prior=startprob_prior, transmat_prior=transmat_prior)
        params = prior if stats is None else model.m_step(stats, prior)
        return self._apply_posterior_inits(params, D)

    def _apply_posterior_inits(self, params, D):
        K = self.n_components
        changes = {}
        if self.startprob_posterior_init is not None:
            changes["startprob"] = _positive(self.startprob_posterior_init, "startprob_posterior_init", (K,),
                                             allow_scalar=False)
        if self.transmat_posterior_init is not None:
            changes["transmat"] = _positive(self.transmat_posterior_init, "transmat_posterior_init", (K, K),
                                            allow_scalar=False)
        emission = self._apply_emission_posterior_inits(params.emission, D)
        return VariationalHMMParams(startprob=changes.get("startprob", params.startprob),
                                    transmat=changes.get("transmat", params.transmat), emission=emission,
                                    startprob_prior=params.startprob_prior, transmat_prior=params.transmat_prior)

    def _check_inits(self, n_features):
        K = self.n_components
        if self.startprob_posterior_init is not None:
            _positive(self.startprob_posterior_init, "startprob_posterior_init", (K,), allow_scalar=False)
        if self.transmat_posterior_init is not None:
            _positive(self.transmat_posterior_init, "transmat_posterior_init", (K, K), allow_scalar=False)

    def _apply_emission_inits(self, eparams, D, check_only=False):
        return eparams  # the seeding's own emission parameters; posterior inits are applied afterwards

    # -- attributes ---------------------------------------------------------------------------------
    def _set_attributes(self, params):
        self.startprob_prior_ = params.startprob_prior
        self.transmat_prior_ = params.transmat_prior
        self.startprob_posterior_ = params.startprob
        self.transmat_posterior_ = params.transmat
        self.startprob_ = params.point_startprob()
        self.transmat_ = params.point_transmat()
        self._set_emission_attributes(params.emission)

    def _params_from_attributes(self):
        """The posterior and prior from the fitted attributes (validated)."""
        self._check_is_fitted(list(self._fitted_attributes[:4]))
        K = self.n_components
        D = self._infer_n_features()
        return VariationalHMMParams(
            startprob=_positive(self.startprob_posterior_, "startprob_posterior_", (K,), allow_scalar=False),
            transmat=_positive(self.transmat_posterior_, "transmat_posterior_", (K, K), allow_scalar=False),
            emission=self._emission_posterior_from_attributes(D),
            startprob_prior=_positive(self.startprob_prior_, "startprob_prior_", (K,), allow_scalar=False),
            transmat_prior=_positive(self.transmat_prior_, "transmat_prior_", (K, K), allow_scalar=False))

    def _validate_fitted(self):
        self._check_hmm_parameters()
        self._fitted_params()
        self._params_from_attributes()

    def _after_from_params(self):
        raise ValueError(f"{type(self).__name__} is defined by its posterior; fit it, or set the *_posterior_ and "
                         "*_prior_ attributes")

    def elbo(self, X=None, lengths=None):
        """The evidence lower bound (a total over frames, higher is better).

        Without ``X``: the bound the fit reached on its training data, ``lower_bound_`` times the
        number of frames (what ``emkit.select(..., criterion="elbo")`` ranks; it includes every
        normalising constant, so models with different numbers of states compare).  Needs a
        batch fit.  With ``X``: ``log Z - KL(q(theta) || p(theta))`` of ``X`` under the fitted
        posterior (one variational E-step).
        """
        params = self._params_from_attributes()
        if X is None:
            state = getattr(self, "_online_state", None)  # a stochastic fit leaves a step schedule (kept in files)
            if state is not None and state.schedule is not None:
                raise ValueError("elbo() without X needs a batch fit (algorithm='em'); after partial_fit or "
                                 "algorithm='stochastic' pass the data: elbo(X, lengths)")
            return float(self.lower_bound_) * self._n_frames(params)
        X, lengths = self._prepare(X, lengths, reset=False)
        model = VariationalMarkovChain(self._variational_emission(X.shape[1]))
        return float(model.elbo(model.e_step(params, X, lengths), params))

    @staticmethod
    def _occupancy(params):
        """Expected number of frames in each state (K,): posterior start and incoming transition counts."""
        return (params.startprob - params.startprob_prior) + (params.transmat - params.transmat_prior).sum(axis=0)

    def _n_frames(self, params):
        return float(self._occupancy(params).sum())

    def n_effective_components(self, threshold=0.01):
        """Number of states whose share of the expected occupancy (posterior counts, prior removed)
        exceeds ``threshold`` (default 0.01): the states the data keeps."""
        check_float(threshold, "threshold", minimum=0.0, maximum=1.0, include_max=False)
        occupancy = self._occupancy(self._params_from_attributes())
        return int(np.sum(occupancy / occupancy.sum() > threshold))


_VARIATIONAL_DOC = """
    startprob_prior : float or ndarray (K,), default=1/K
        Dirichlet concentration of the start probabilities (any positive value; small values
        let the data switch surplus states off).
    transmat_prior : float or ndarray (K, K), default=1/K
        Dirichlet concentration of each transition row.
    algorithm : {"viterbi", "map"}, default="viterbi"
        Decoder used by ``predict``.
    startprob_posterior_init, transmat_posterior_init : ndarray, optional
        Starting posterior concentrations (otherwise from the seeding).
    n_init : int, default=1
        Restarts (new seeding each); the best final lower bound is kept.
    max_iter : int, default=100
    tol : float, default=1e-6
        Stops when the lower bound per frame changes by less than ``tol``.  Surplus states
        fade slowly (their posterior mass shrinks a little each iteration): a small ``tol``
        lets them reach (near) zero occupancy.
    random_state : None, int or numpy.random.Generator
    verbose : int, default=0
"""

_VARIATIONAL_ATTRS_DOC = """
    startprob_posterior_, transmat_posterior_ : ndarray (K,), (K, K)
        Posterior Dirichlet concentrations; ``startprob_prior_``, ``transmat_prior_`` the priors used.
    startprob_, transmat_ : ndarray
        Posterior means (used by ``score``, ``decode``, ``predict``, ``filter``, ``sample``).
    lower_bound_ : float
        Evidence lower bound per frame before the last update (``lower_bounds_``: every iteration).
    converged_, n_iter_, n_features_in_
"""


@register
class VariationalGaussianHMM(_VariationalHMM, BaseHMM):
    __doc__ = """HMM with Gaussian emissions fitted by variational Bayes (Normal-Wishart priors).

    Parameters and the lower bound follow hmmlearn's ``VariationalGaussianHMM``, with one
    difference: the lower bound includes the Gaussian constant ``-D/2 log(2 pi)`` per frame
    (hmmlearn leaves it out), so it is a true bound on ``log p(X)``, comparable with other
    models' log-likelihoods.  Missing values (NaN) are not supported.

    Parameters
    ----------
    n_components : int
    covariance_type : {"full", "diag", "spherical", "tied"}, default="full"
    means_prior : float, ndarray (D,) or (K, D), default: the mean of the data
    beta_prior : float or ndarray (K,), default=1.0
        Precision scale of the Normal prior of the means.
    dof_prior : float or ndarray (K,), default=n_features
        Wishart degrees of freedom (> n_features - 1); one number for "tied".
    scale_prior : float or ndarray, default=1e-3
        Wishart inverse scale: a number (times the identity) or the covariance type's shape,
        full (K, D, D), tied (D, D), diag (K, D), spherical (K,).
    means_posterior_init, beta_posterior_init, dof_posterior_init, scale_posterior_init : optional
        Starting posterior hyperparameters (shapes of the fitted attributes).
""" + _VARIATIONAL_DOC + """
    Attributes
    ----------
    means_posterior_, beta_posterior_, dof_posterior_, scale_posterior_
        Normal-Wishart posterior (``*_prior_``: the prior used).
    means_ : ndarray (K, D)
        Posterior means of the state means.
    covars_ : ndarray, compact shape
        ``scale_posterior_ / dof_posterior_``: full (K, D, D), tied (D, D), diag (K, D), spherical (K,).
""" + _VARIATIONAL_ATTRS_DOC

    _emission_attributes = {"means_": "means", "covars_": "covariances"}
    means_init = covars_init = None  # the seeding's (posterior inits are applied afterwards)
    _fitted_attributes = ("startprob_posterior_", "transmat_posterior_", "startprob_prior_", "transmat_prior_",
                          "means_posterior_", "beta_posterior_", "dof_posterior_", "scale_posterior_",
                          "means_prior_", "beta_prior_", "dof_prior_", "scale_prior_",
                          "startprob_", "transmat_", "means_", "covars_") + _COMMON_FITTED

    def __init__(self, n_components=1, *, covariance_type="full", startprob_prior=None, transmat_prior=None,
                 means_prior=None, beta_prior=None, dof_prior=None, scale_prior=None, algorithm="viterbi",
                 startprob_posterior_init=None, transmat_posterior_init=None, means_posterior_init=None,
                 beta_posterior_init=None, dof_posterior_init=None, scale_posterior_init=None, n_init=1,
                 max_iter=100, tol=1e-6, random_state=None, verbose=0):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.means_prior = means_prior
        self.beta_prior = beta_prior
        self.dof_prior = dof_prior
        self.scale_prior = scale_prior
        self.algorithm = algorithm
        self.startprob_posterior_init = startprob_posterior_init
        self.transmat_posterior_init = transmat_posterior_init
        self.means_posterior_init = means_posterior_init
        self.beta_posterior_init = beta_posterior_init
        self.dof_posterior_init = dof_posterior_init
        self.scale_posterior_init = scale_posterior_init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    def _validate_X(self, X):
        X = check_array(X, "X", allow_nan=True)
        if np.isnan(X).any():
            raise ValueError(f"X contains NaN: {type(self).__name__} does not model missing values; drop or impute "
                             "them (GaussianHMM integrates them out)")
        return X

    def _make_emission(self, n_features):
        """The Gaussian family at point estimates (seeding, scoring, decoding, sampling)."""
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        return GaussianEmission(self.n_components, self.covariance_type, 1e-6)

    def _variational_emission(self, n_features):
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        return VariationalGaussianEmission(self.n_components, self.covariance_type)

    def _all_posteriors_given(self):
        return all(v is not None for v in (self.startprob_posterior_init, self.transmat_posterior_init,
                                           self.means_posterior_init, self.beta_posterior_init,
                                           self.dof_posterior_init, self.scale_posterior_init))

    def _check_emission_priors(self):
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        for name in ("beta_prior", "dof_prior"):
            value = getattr(self, name)
            if value is not None and np.ndim(value) > 1:
                raise ValueError(f"{name} must be a number or a 1-D array; got shape {np.shape(value)}")
        if self.covariance_type == "tied" and self.dof_prior is not None and np.ndim(self.dof_prior) != 0:
            raise ValueError(f"dof_prior must be a number for covariance_type='tied'; got shape "
                             f"{np.shape(self.dof_prior)}")

    def _scale_shape(self, D):
        return COVARIANCE_TYPES[self.covariance_type].compact_shape(self.n_components, D)

    def _dof_shape(self):
        return () if self.covariance_type == "tied" else (self.n_components,)

    def _check_scale(self, value, name, D):
        shape = self._scale_shape(D)
        a = np.asarray(value, dtype=np.float64)
        if a.ndim == 0 and name.endswith("prior"):
            a = float(_positive(a, name, ()))
            if self.covariance_type in ("full", "tied"):
                return np.array(np.broadcast_to(np.eye(D) * a, shape))
            return np.full(shape, a)
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape} for covariance_type={self.covariance_type!r}; got "
                             f"shape {a.shape}")
        if self.covariance_type in ("diag", "spherical"):
            return _positive(a, name, shape, allow_scalar=False)
        COVARIANCE_TYPES[self.covariance_type].check_covariances(a, self.n_components, D, name)
        return np.array(a)

    def _check_means(self, value, D):
        K = self.n_components
        if np.ndim(value) != 2:
            raise ValueError(f"means_posterior_init must have shape ({K}, {D}); got shape {np.shape(value)}")
        return _finite(value, "means_posterior_init", (K, D))

    def _check_dof(self, value, name, D):
        dof = _positive(value, name, self._dof_shape())
        if np.any(dof <= D - 1):
            raise ValueError(f"{name} must be greater than n_features - 1 = {D - 1} (a Wishart distribution); "
                             f"got {np.min(dof)!r}")
        return dof if dof.ndim else float(dof)

    def _emission_prior(self, stats, source):
        K, D = self.n_components, source.n_features
        if self.means_prior is not None:
            m0 = _finite(self.means_prior if np.ndim(self.means_prior) != 1 else np.broadcast_to(
                self.means_prior, (K, D)), "means_prior", (K, D))
        else:
            if stats is None:
                total, n = np.zeros(D), 0.0
                for Xc, _ in source.chunks():
                    Xc = np.asarray(Xc, dtype=np.float64)
                    total += Xc.sum(axis=0)
                    n += Xc.shape[0]
                mean = total / n
            else:
                e = stats.emission
                mean = (e.n @ e.center + e.sx.sum(axis=0)) / e.n.sum()
            m0 = np.broadcast_to(mean, (K, D)).copy()
        beta0 = _positive(1.0 if self.beta_prior is None else self.beta_prior, "beta_prior", (K,))
        dof0 = self._check_dof(D if self.dof_prior is None else self.dof_prior, "dof_prior", D)
        scale0 = self._check_scale(1e-3 if self.scale_prior is None else self.scale_prior, "scale_prior", D)
        prior = NormalWishart(means=m0, beta=beta0, dof=dof0, scale=scale0)
        return self._variational_emission(D).make_params(prior, prior)

    def _apply_emission_posterior_inits(self, eparams, D):
        q = eparams.posterior
        K = self.n_components
        means = q.means if self.means_posterior_init is None else self._check_means(self.means_posterior_init, D)
        beta = q.beta if self.beta_posterior_init is None else _positive(self.beta_posterior_init,
                                                                         "beta_posterior_init", (K,))
        dof = q.dof if self.dof_posterior_init is None else self._check_dof(self.dof_posterior_init,
                                                                           "dof_posterior_init", D)
        scale = q.scale if self.scale_posterior_init is None else self._check_scale(self.scale_posterior_init,
                                                                                    "scale_posterior_init", D)
        return self._variational_emission(D).make_params(NormalWishart(means=means, beta=beta, dof=dof, scale=scale),
                                                         eparams.prior)

    def _check_inits(self, n_features):
        super()._check_inits(n_features)
        K, D = self.n_components, n_features
        if self.means_posterior_init is not None:
            self._check_means(self.means_posterior_init, D)
        if self.beta_posterior_init is not None:
            _positive(self.beta_posterior_init, "beta_posterior_init", (K,))
        if self.dof_posterior_init is not None:
            self._check_dof(self.dof_posterior_init, "dof_posterior_init", D)
        if self.scale_posterior_init is not None:
            self._check_scale(self.scale_posterior_init, "scale_posterior_init", D)

    def _set_emission_attributes(self, eparams):
        q, p = eparams.posterior, eparams.prior
        self.means_posterior_, self.beta_posterior_ = q.means, q.beta
        self.dof_posterior_, self.scale_posterior_ = q.dof, q.scale
        self.means_prior_, self.beta_prior_, self.dof_prior_, self.scale_prior_ = p.means, p.beta, p.dof, p.scale
        self.means_ = q.means
        self.covars_ = self._variational_emission(q.means.shape[1]).point_covariances(eparams)

    def _emission_posterior_from_attributes(self, D):
        K = self.n_components

        def nw(kind):
            means = _finite(getattr(self, f"means_{kind}_"), f"means_{kind}_", (K, D))
            return NormalWishart(means=means, beta=_positive(getattr(self, f"beta_{kind}_"), f"beta_{kind}_", (K,)),
                                 dof=self._check_dof(getattr(self, f"dof_{kind}_"), f"dof_{kind}_", D),
                                 scale=self._check_scale(getattr(self, f"scale_{kind}_"), f"scale_{kind}_", D))

        return self._variational_emission(D).make_params(nw("posterior"), nw("prior"))

    def _emission_params_from_attributes(self):
        K = self.n_components
        means = check_array(self.means_, "means_").astype(np.float64)
        if means.shape[0] != K:
            raise ValueError(f"means_ must have shape ({K}, n_features); got {means.shape}")
        covars = COVARIANCE_TYPES[self.covariance_type].check_covariances(self.covars_, K, means.shape[1], "covars_")
        return self._make_emission(means.shape[1]).params_from_covariances(means, covars)

    def _infer_n_features(self):
        return np.asarray(self.means_posterior_).shape[1]


@register
class VariationalCategoricalHMM(_VariationalHMM, CategoricalHMM):
    __doc__ = """HMM with categorical emissions fitted by variational Bayes (Dirichlet priors).

    X holds one integer symbol per row, shape (n, 1); NaN or -1 marks a missing symbol, which
    carries no evidence.  Parameters and the lower bound follow hmmlearn's
    ``VariationalCategoricalHMM``.

    Parameters
    ----------
    n_components : int
    n_features : int, optional
        Number of symbols; inferred as ``max(X) + 1`` when fitting if not given.
    emissionprob_prior : float or ndarray (K, n_features), default=1/n_features
        Dirichlet concentration of each emission row.
    emissionprob_posterior_init : ndarray (K, n_features), optional
""" + _VARIATIONAL_DOC + """
    Attributes
    ----------
    emissionprob_posterior_, emissionprob_prior_ : ndarray (K, n_features)
    emissionprob_ : ndarray (K, n_features)
        Posterior means of the emission probabilities.
""" + _VARIATIONAL_ATTRS_DOC

    _emission_attributes = {"emissionprob_": "emissionprob"}
    _fitted_attributes = ("startprob_posterior_", "transmat_posterior_", "startprob_prior_", "transmat_prior_",
                          "emissionprob_posterior_", "emissionprob_prior_", "startprob_", "transmat_",
                          "emissionprob_") + _COMMON_FITTED
    emissionprob_init = None

    def __init__(self, n_components=1, *, n_features=None, startprob_prior=None, transmat_prior=None,
                 emissionprob_prior=None, algorithm="viterbi", startprob_posterior_init=None,
                 transmat_posterior_init=None, emissionprob_posterior_init=None, n_init=1, max_iter=100, tol=1e-6,
                 random_state=None, verbose=0):
        self.n_components = n_components
        self.n_features = n_features
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.emissionprob_prior = emissionprob_prior
        self.algorithm = algorithm
        self.startprob_posterior_init = startprob_posterior_init
        self.transmat_posterior_init = transmat_posterior_init
        self.emissionprob_posterior_init = emissionprob_posterior_init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    def _make_emission(self, n_features):
        """The categorical family at point estimates (seeding, scoring, decoding, sampling)."""
        return CategoricalEmission(self.n_components, self._n_symbols() or 1)

    def _variational_emission(self, n_features):
        return VariationalCategoricalEmission(self.n_components, self._n_symbols())

    def _all_posteriors_given(self):
        return all(v is not None for v in (self.startprob_posterior_init, self.transmat_posterior_init,
                                           self.emissionprob_posterior_init))

    def _check_emission_priors(self):
        if self.emissionprob_prior is not None and np.ndim(self.emissionprob_prior) not in (0, 2):
            raise ValueError("emissionprob_prior must be a positive number or an array of shape "
                             f"(n_components, n_features); got shape {np.shape(self.emissionprob_prior)}")

    def _emission_prior(self, stats, source):
        K, S = self.n_components, self._n_symbols()
        prior = _positive(1.0 / S if self.emissionprob_prior is None else self.emissionprob_prior,
                          "emissionprob_prior", (K, S))
        return VariationalCategoricalParams(posterior=prior, prior=prior)

    def _apply_emission_posterior_inits(self, eparams, D):
        if self.emissionprob_posterior_init is None:
            return eparams
        post = _positive(self.emissionprob_posterior_init, "emissionprob_posterior_init",
                         (self.n_components, self._n_symbols()), allow_scalar=False)
        return VariationalCategoricalParams(posterior=post, prior=eparams.prior)

    def _check_inits(self, n_features):
        super()._check_inits(n_features)
        if self.emissionprob_posterior_init is not None:
            _positive(self.emissionprob_posterior_init, "emissionprob_posterior_init",
                      (self.n_components, self._n_symbols()), allow_scalar=False)

    def _set_emission_attributes(self, eparams):
        self.emissionprob_posterior_ = eparams.posterior
        self.emissionprob_prior_ = eparams.prior
        self.emissionprob_ = eparams.posterior / eparams.posterior.sum(axis=1, keepdims=True)

    def _emission_posterior_from_attributes(self, D):
        shape = (self.n_components, self._n_symbols())
        return VariationalCategoricalParams(
            posterior=_positive(self.emissionprob_posterior_, "emissionprob_posterior_", shape, allow_scalar=False),
            prior=_positive(self.emissionprob_prior_, "emissionprob_prior_", shape, allow_scalar=False))

    def _infer_n_features(self):
        self._fitted_n_symbols = np.asarray(self.emissionprob_posterior_).shape[1]
        return 1
