"""Generic estimators over any emission family: :class:`MixtureModel` and :class:`HMM`.

``MixtureModel(n_components, emission=...)`` is :class:`emkit.structures.Mixture` and
``HMM(n_components, emission=...)`` is :class:`emkit.structures.MarkovChain` over an
:class:`emkit.emissions.EmissionFamily` instance (or a registered family name), fitted by the
same EM driver as the named estimators, with everything they have: restarts, warm starts,
stochastic EM and ``partial_fit``, out-of-core and Dask sources, ``lengths`` or lists of
sequences, collapse handling, model files.  The fitted parameters are ``emission_params_``
(the family's parameters object) and, as attributes, the arrays the family declares in
``attributes`` with a trailing underscore (``means_``, ``lambdas_``, ...).

Seeding (unless ``emission_init`` gives every emission parameter): k-means++ centres are
drawn on ``family.seeding_view`` of a sample of the rows, every row is assigned to its nearest
centre, and ``family.init_params`` turns the statistics of those hard assignments
(``family.statistics(None, ...)``) into parameters.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import DensityMixin

from .._validation import check_choice, check_probability_vector, check_random_state, check_sample_weight
from ..data import chunk_rows, row_slices
from ..emissions.base import check_family
from .._registry import register
from ..sources import ArraySource, DaskSource, TableSource, is_dask_array, open_table
from ..structures import Mixture, MixtureParams
from .base import EMEstimator
from .hmm import _COMMON_DOC, BaseHMM, as_sequences
from .kmeans import KMeans, assign_observed, kmeans_plusplus, seeding_rows
from .mixture import GaussianMixture, MixturePredictions

INIT_PARAMS = ("k-means++", "kmeans", "random", "random_from_data")


class _FamilyMixin:
    """The emission family of a generic estimator: checked, bound to ``n_components``, configured."""

    #: the hyperparameter holding the family (model files store it by registered name)
    _family_param = "emission"

    def _base_family(self):
        return check_family(self.emission).with_components(self.n_components)

    def _family(self):
        """The family the model uses: configured from the data of the last fit, else the base family."""
        fam = getattr(self, "_fit_family", None)
        return fam if fam is not None else self._base_family()

    def _configure(self, X):
        """Fix the data-dependent settings of the family from ``X`` (validated by it)."""
        self._fit_family = None
        self._fit_family = self._base_family().configured(X)

    @property
    def _emission_attributes(self):
        return {f"{name}_": field for name, field in check_family(self.emission).attributes.items()}

    @classmethod
    def _family_attribute_names(cls, family):
        """Fitted attribute names a model file holds for ``family`` (see :mod:`emkit.io`)."""
        return tuple(f"{name}_" for name in family.attributes)

    @property
    def emission_params_(self):
        """The fitted emission parameters (the family's parameters object)."""
        return self._emission_params_from_attributes()

    def _emission_params_from_attributes(self):
        base = self._base_family()
        arrays = {}
        for attr in self._emission_attributes:
            value = getattr(self, attr, None)
            if value is None:
                self._check_is_fitted([attr])
            arrays[attr[:-1]] = value
        params = base.params_from(**arrays)
        family = base.configured_for(params)
        n_features = getattr(self, "n_features_in_", None)
        family.check_params(params, family.n_features_of(params) if n_features is None else n_features)
        old = self.__dict__.get("_fit_family")
        if not (type(old) is type(family) and old.n_components == family.n_components and repr(old) == repr(family)):
            self._fit_family = family  # kept when unchanged: predicting does not change the estimator
        return params

    def _emission_inits(self, n_features):
        """Starting emission parameters from ``emission_init`` (None if not given); a dict of arrays
        named as the family's attributes.  Parameters it leaves out come from the seeding."""
        if self.emission_init is None:
            return None
        names = set(check_family(self.emission).attributes)
        if not isinstance(self.emission_init, dict):
            raise ValueError(f"emission_init must be a dict of starting arrays named {sorted(names)}; got "
                             f"{type(self.emission_init).__name__}")
        unknown = set(self.emission_init) - names
        if unknown:
            raise ValueError(f"emission_init has unknown names {sorted(unknown)}; the family's parameters are "
                             f"{sorted(names)}")
        return dict(self.emission_init)

    def _emission_inits_complete(self):
        return self.emission_init is not None and set(self.emission_init) == set(
            check_family(self.emission).attributes)

    def _apply_emission_inits(self, eparams, n_features, check_only=False):
        given = self._emission_inits(n_features)
        if given is None:
            return None if check_only else eparams
        family = self._family()
        arrays = {} if eparams is None else family.params_arrays(eparams)
        if check_only and set(given) != set(family.attributes):
            return None  # checked together with the seeding
        arrays.update(given)
        params = family.params_from(**arrays)
        family.check_params(params, n_features)
        return None if check_only else params


def _kmeans_seed_labels(family, sample, K, rng, init, sample_weight=None):
    """Centres (K, D') in the family's seeding view of ``sample`` by ``init``; None for random responsibilities."""
    view = family.seeding_view(sample)
    seeds, seed_sw = seeding_rows(np.asarray(view, dtype=np.float64), K, sample_weight)
    if init == "kmeans":
        return KMeans(K, n_init=1, random_state=rng).fit(seeds, sample_weight=seed_sw).cluster_centers_
    if init == "k-means++":
        return kmeans_plusplus(seeds, K, rng, seed_sw)[0]
    if init == "random_from_data":
        return np.asarray(seeds[rng.choice(seeds.shape[0], size=K, replace=False)], dtype=np.float64)
    return None


class _CheckedMixture(Mixture):
    """A Mixture whose E-step validates each chunk with the family (data read from files or Dask)."""

    def e_step(self, params, X, sample_weight=None):
        return super().e_step(params, self.emission.check_data(X), sample_weight)


@register
class MixtureModel(_FamilyMixin, MixturePredictions, DensityMixin, EMEstimator):
    """Mixture of any emission family, fitted by EM.

    ``p(x) = sum_k weights[k] p(x | params_k)`` with ``p(x | params_k)`` from ``emission``.

    Parameters
    ----------
    n_components : int, default=1
    emission : EmissionFamily or str, default="gaussian"
        An emission family instance (``emkit.emissions.Poisson()``, a family of your own) or the
        name of a registered family (default hyperparameters).
    tol : float, default=1e-3
        EM stops when the objective (mean log-likelihood per sample, plus the family's log prior
        per sample) changes by less than ``tol``; ``tol=0`` runs exactly ``max_iter`` iterations.
    max_iter : int, default=100
    n_init : int, default=1
        Restarts (a new seeding each); the run with the highest final objective is kept.
    init_params : {"k-means++", "kmeans", "random", "random_from_data"}, default="k-means++"
        Initial responsibilities: nearest k-means++ centre, K-means labels, random
        responsibilities, or nearest of K random rows -- on the family's ``seeding_view``.
    weights_init : ndarray (K,), optional
    emission_init : dict of ndarray, optional
        Starting emission parameters named as the family's ``attributes`` (for example
        ``{"means": ..., "covars": ...}``); those left out come from the seeding.
    random_state : None, int or numpy.random.Generator
    warm_start : bool, default=False
        Start ``fit`` from the last fitted parameters (one run, no restarts).
    verbose : int, default=0
    chunk_size : int, optional
        Rows per E-step chunk.
    init_sample_size : int, default=500_000
        Seeding looks at a uniform random sample of at most this many rows.
    on_collapse : {"recover", "warn", "raise"}, default="recover"
        What EM does when a component collapses (see :mod:`emkit.collapse`); a family that cannot
        split a component (no ``split``) reports instead of recovering.

    Attributes
    ----------
    weights_ : ndarray (K,)
    emission_params_ : the family's parameters object
    <name>_ : ndarray
        One per entry of the family's ``attributes`` (``means_``, ``covars_``, ``lambdas_``, ...).
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_, collapse_events_, n_recoveries_
    """

    _fitted_attributes = ("weights_", "converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_")

    def __init__(self, n_components=1, *, emission="gaussian", tol=1e-3, max_iter=100, n_init=1,
                 init_params="k-means++", weights_init=None, emission_init=None, random_state=None,
                 warm_start=False, verbose=0, chunk_size=None, init_sample_size=500_000, on_collapse="recover"):
        self.n_components = n_components
        self.emission = emission
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.emission_init = emission_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.chunk_size = chunk_size
        self.init_sample_size = init_sample_size
        self.on_collapse = on_collapse

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    # -- validation ---------------------------------------------------------------------------
    def _check_parameters(self):
        self._check_common()
        check_choice(self.init_params, "init_params", INIT_PARAMS)
        family = self._base_family()
        if getattr(family, "needs_sequences", False):
            raise ValueError(f"emission {family!r} models sequences (each frame depends on the frames before it); "
                             "use emkit.HMM for it, not a mixture")
        return family

    def _check_inits(self, n_features):
        K = self.n_components
        if self.weights_init is not None:
            check_probability_vector(self.weights_init, "weights_init", K)
        self._apply_emission_inits(None, n_features, check_only=True)

    # -- data ------------------------------------------------------------------------------------
    def _source(self, X, sample_weight, reset=True):
        """A data source (array, memory map, file path, opened table or dask array), checked by the family."""
        shape = getattr(X, "shape", None)
        D = int(shape[1]) if shape is not None and len(shape) == 2 else int(getattr(X, "n_features", 1) or 1)
        rows = chunk_rows(self.n_components, D, self.chunk_size)
        if isinstance(X, (str, os.PathLike)):
            if sample_weight is not None:
                raise ValueError("sample_weight cannot be combined with a file path; weight the rows in memory")
            X = open_table(X)
        if isinstance(X, (ArraySource, TableSource)) or is_dask_array(X):
            source = X if not is_dask_array(X) else DaskSource(X, sample_weight, rows=rows)
            source.rows = rows
            if reset:
                self.n_features_in_ = source.n_features
                self._set_feature_names(getattr(source, "feature_names", None))
            self._check_chunks = True
            return source
        X = self._check_data(X, reset=reset, min_samples=1, allow_nan=True)
        X = self._family().check_data(X)
        sw = check_sample_weight(sample_weight, X.shape[0])
        self._check_chunks = False
        return ArraySource(X, sw, rows)

    def _minibatches(self, source, batch_size, rng):
        return GaussianMixture._minibatches(self, source, batch_size, rng)

    # -- EM hooks ---------------------------------------------------------------------------------
    def _em_model(self):
        family = self._family()
        return _CheckedMixture(family) if getattr(self, "_check_chunks", False) else Mixture(family)

    def _em_model_for(self, n_features):
        return self._em_model()

    def _init_params(self, source, rng):
        K = self.n_components
        family = self._family()
        weights = None if self.weights_init is None else check_probability_vector(self.weights_init,
                                                                                 "weights_init", K)
        if self._emission_inits_complete() and weights is not None:
            return MixtureParams(weights=weights, emission=self._apply_emission_inits(None, source.n_features))
        X, sw = source.sample(self.init_sample_size, rng)
        X = family.check_data(X)
        centers = _kmeans_seed_labels(family, X, K, rng, self.init_params, sw)
        if centers is None:
            resp = rng.uniform(size=(X.shape[0], K))
            resp /= resp.sum(axis=1, keepdims=True)
        else:
            labels = assign_observed(np.asarray(family.seeding_view(X), dtype=np.float64), centers)
            resp = np.zeros((X.shape[0], K))
            resp[np.arange(X.shape[0]), labels] = 1.0
            resp[labels < 0] = 1.0 / K  # rows with nothing observed
        if sw is not None:
            resp = resp * sw[:, None]
        stats = family.statistics(None, family.prepare(X, None), resp)
        eparams = family.init_params(stats)
        if weights is None:
            nk = resp.sum(axis=0) + 10 * np.finfo(np.float64).eps
            weights = nk / nk.sum()
        return MixtureParams(weights=weights, emission=self._apply_emission_inits(eparams, source.n_features))

    def _set_attributes(self, params):
        self.weights_ = params.weights
        for attr, field in self._emission_attributes.items():
            setattr(self, attr, getattr(params.emission, field))

    def _params_from_attributes(self):
        return self._fitted_params()

    def _has_parameters(self):
        return getattr(self, "weights_", None) is not None

    def _fitted_params(self):
        self._check_is_fitted(["weights_"] + list(self._emission_attributes))
        K = self.n_components
        weights = check_probability_vector(self.weights_, "weights_", K)
        return MixtureParams(weights=weights, emission=self._emission_params_from_attributes())

    def _validate_fitted(self):
        self._check_parameters()
        self._fitted_params()

    # -- public API ---------------------------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None, callback=None, *, algorithm="em", batch_size=None, schedule=None,
            progress=None):
        """Fit by EM (``n_init`` restarts, best kept); returns ``self``.

        ``X`` is an array (n, D), a memory map, a file path, :func:`emkit.open_table` or a dask
        array, as for :class:`emkit.GaussianMixture`; ``sample_weight``, ``callback``,
        ``algorithm`` ("em" or "stochastic"), ``batch_size``, ``schedule`` and ``progress`` as there.
        """
        self._fit(X, sample_weight, callback, algorithm, batch_size, schedule, progress)
        return self

    def _fit(self, X, sample_weight, callback, algorithm="em", batch_size=None, schedule=None, progress=None):
        self._check_parameters()
        self._fit_family = None
        source = self._source(X, sample_weight)
        n_rows = getattr(source, "n_rows", None)
        if n_rows is not None and n_rows < self.n_components:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                             f"n_samples = {n_rows}")
        self._configure(source.X if isinstance(source, (ArraySource, DaskSource)) else source.sample(
            self.init_sample_size, np.random.default_rng(0))[0])
        self._check_inits(source.n_features)
        self.n_features_in_ = source.n_features
        self._run_restarts(source, callback, algorithm, batch_size, schedule, progress)
        return source

    def partial_fit(self, X, y=None, sample_weight=None, *, schedule=None):
        """Stochastic (online) EM step on the mini-batch ``X`` (see :meth:`EMEstimator._partial_fit`)."""
        self._check_parameters()
        fitted = self._has_parameters()
        if fitted:
            self._fitted_params()  # the family of the fitted parameters
        source = self._source(X, sample_weight, reset=not fitted)
        if not fitted:
            if source.n_rows < self.n_components:
                raise ValueError(f"the first partial_fit batch must have at least n_components={self.n_components} "
                                 f"rows; got {source.n_rows}")
            self._configure(source.X)
            self._check_inits(source.n_features)
        return self._partial_fit(source, schedule)

    def fit_predict(self, X, y=None, sample_weight=None, callback=None):
        """Fit and return the labels of ``X`` under the fitted model (equal to ``fit(X).predict(X)``)."""
        source = self._fit(X, sample_weight, callback)
        return np.concatenate([self._log_resp(np.asarray(Xc))[1].argmax(axis=1) for Xc, _ in source.chunks()])

    def _check_X(self, X):
        self._fitted_params()
        X = self._check_data(X, reset=False, allow_nan=True)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return self._family().check_data(X)

    def _scoring_model(self):
        """``(model, params)`` for the per-row scores of :class:`MixturePredictions`."""
        return Mixture(self._family()), self._fitted_params()

    def impute(self, X):
        """``X`` with every missing (NaN) entry replaced by its posterior conditional mean, (n, D).

        Available when the family has ``conditional_expectations``.
        """
        X = self._check_X(X)
        params = self._fitted_params()
        family = self._family()
        if not hasattr(family, "conditional_expectations"):
            raise ValueError(f"impute is not available for emission {family!r}: the family has no "
                             "conditional_expectations")
        mix = Mixture(family)
        out = np.array(X, dtype=np.float64)
        rows = chunk_rows(self.n_components, X.shape[1], self.chunk_size)
        for s in row_slices(X.shape[0], rows):
            nan = np.isnan(out[s])
            if nan.any():
                resp = mix.responsibilities(params, X[s])[1]
                expected = np.einsum("nk,knd->nd", resp, family.conditional_expectations(params.emission, X[s]))
                out[s][nan] = expected[nan]
        return out

    def sample(self, n_samples=1):
        """Draw ``n_samples`` rows; returns ``(X (n, D), labels (n,))`` sorted by component."""
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}")
        params = self._fitted_params()
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, params.weights)
        z = np.repeat(np.arange(self.n_components), counts)
        return self._family().sample(params.emission, z, rng), z

    def _n_parameters(self):
        self._fitted_params()
        return self.n_components - 1 + self._family().n_parameters(self.n_features_in_)

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        X = self._check_X(X)
        return -2 * self._log_resp(X)[0].sum() + self._n_parameters() * np.log(X.shape[0])

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        X = self._check_X(X)
        return -2 * self._log_resp(X)[0].sum() + 2 * self._n_parameters()

    @classmethod
    def from_params(cls, weights, emission="gaussian", **arrays):
        """A ready-to-use mixture from known parameters: ``weights`` (K,) and the family's arrays by name."""
        weights = np.asarray(weights, dtype=np.float64)
        model = cls(n_components=weights.shape[0] if weights.ndim == 1 else 1, emission=emission)
        expected = set(check_family(emission).attributes)
        if set(arrays) != expected:
            raise ValueError(f"MixtureModel.from_params needs the emission parameters {sorted(expected)}; got "
                             f"{sorted(arrays)}")
        model.weights_ = weights
        for name, value in arrays.items():
            setattr(model, name + "_", np.asarray(value))
        params = model._emission_params_from_attributes()
        model.n_features_in_ = model._family().n_features_of(params)
        model._validate_fitted()
        return model


@register
class HMM(_FamilyMixin, BaseHMM):
    __doc__ = """Hidden Markov model with any emission family, fitted by EM (Baum-Welch).

    Parameters
    ----------
    n_components : int, default=1
    emission : EmissionFamily or str, default="gaussian"
        An emission family instance (``emkit.emissions.Poisson()``, a family of your own) or the
        name of a registered family (default hyperparameters).
    emission_init : dict of ndarray, optional
        Starting emission parameters named as the family's ``attributes``; those left out come
        from the k-means++ seeding.
""" + _COMMON_DOC + """
    ``learn`` names for the emission are the family's ``param_names``.

    Attributes
    ----------
    startprob_ : ndarray (K,)
    transmat_ : ndarray (K, K)
    emission_params_ : the family's parameters object
    <name>_ : ndarray
        One per entry of the family's ``attributes`` (``means_``, ``covars_``, ``lambdas_``, ...).
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_, collapse_events_, n_recoveries_
    """

    _fitted_attributes = ("startprob_", "transmat_", "converged_", "n_iter_", "lower_bound_", "lower_bounds_",
                          "n_features_in_")

    def __init__(self, n_components=1, *, emission="gaussian", startprob_prior=1.0, transmat_prior=1.0, kappa=0.0,
                 algorithm="viterbi", learn=None, startprob_init=None, transmat_init=None, emission_init=None,
                 n_init=1, max_iter=100, tol=1e-4, random_state=None, verbose=0, on_collapse="recover"):
        self.n_components = n_components
        self.emission = emission
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.kappa = kappa
        self.algorithm = algorithm
        self.learn = learn
        self.startprob_init = startprob_init
        self.transmat_init = transmat_init
        self.emission_init = emission_init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.on_collapse = on_collapse

    def _learn_names(self):
        return ("startprob", "transmat") + tuple(check_family(self.emission).param_names)

    def _make_emission(self, n_features):
        return self._family()

    def _validate_X(self, X):
        return self._family().check_data(X)

    def _configure_from(self, X, lengths):
        if is_dask_array(X):
            self._configure(X)
            return
        Xc, _ = as_sequences(X, lengths)
        self._fit_family = None
        self._configure(self._base_family().check_data(Xc))

    def fit(self, X, lengths=None, callback=None, **kwargs):
        self._check_hmm_parameters()
        self._configure_from(X, lengths)
        return super().fit(X, lengths, callback, **kwargs)

    def partial_fit(self, X, lengths=None, **kwargs):
        self._check_hmm_parameters()
        if self._has_parameters():
            self._fitted_params()
        else:
            self._configure_from(X, lengths)
        return super().partial_fit(X, lengths, **kwargs)

    def _infer_n_features(self):
        return self._family().n_features_of(self._emission_params_from_attributes())

    @classmethod
    def from_params(cls, startprob, transmat, emission="gaussian", **arrays):
        """A ready-to-use HMM from known parameters: ``startprob``, ``transmat`` and the family's arrays by
        name (``means=..., covars=...``); ``emission`` a family instance or name."""
        startprob = np.asarray(startprob, dtype=np.float64)
        model = cls(n_components=startprob.shape[0] if startprob.ndim == 1 else 1, emission=emission)
        expected = set(check_family(emission).attributes)
        if set(arrays) != expected:
            raise ValueError(f"HMM.from_params needs the emission parameters {sorted(expected)}; got {sorted(arrays)}")
        model.startprob_ = startprob
        model.transmat_ = np.asarray(transmat, dtype=np.float64)
        for name, value in arrays.items():
            setattr(model, name + "_", np.asarray(value))
        model.n_features_in_ = model._infer_n_features()
        model._validate_fitted()
        return model


__all__ = ["HMM", "MixtureModel"]
