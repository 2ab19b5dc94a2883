"""Gaussian mixture model fitted by EM, with scikit-learn's names and meanings."""

from __future__ import annotations

import os
import warnings

import numpy as np

from sklearn.base import DensityMixin

from .._validation import (check_array, check_choice, check_float, check_int, check_n_features,
                           check_random_state, check_sample_weight)
from ..data import chunk_rows, row_slices
from ..em import map_chunks
from ..emissions.gaussian import COVARIANCE_TYPES, GaussianEmission, GaussianParams, chunk_width
from ..exceptions import ConvergenceWarning
from .._registry import register
from ..sources import ArraySource, DaskSource, TableSource, is_dask_array, open_table
from ..structures import Mixture, MixtureParams
from .base import EMEstimator
from .kmeans import KMeans, assign_observed, kmeans_plusplus, seeding_rows

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


_DISTINCT_PROBE = 5_000


def _n_distinct_at_least(X, k):
    """Whether the rows of ``X`` (a probe of the data) hold at least ``k`` distinct points."""
    return np.unique(X, axis=0).shape[0] >= k


class MixturePredictions:
    """Per-row scores, labels and responsibilities of a fitted mixture, over row chunks in parallel.

    The estimator provides ``_check_X(X)`` and ``_scoring_model() -> (Mixture, MixtureParams)``.
    """

    def _log_resp(self, X):
        mix, params = self._scoring_model()
        rows = chunk_rows(self.n_components, X.shape[1], self.chunk_size)
        parts = map_chunks(lambda s: mix.log_resp(params, X[s]), [(s,) for s in row_slices(X.shape[0], rows)])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def score_samples(self, X):
        """Log-likelihood ``log p(x_n)`` of each row, (n,)."""
        return self._log_resp(self._check_X(X))[0]

    def score(self, X, y=None):
        """Mean log-likelihood per row."""
        return float(self.score_samples(X).mean())

    def predict(self, X):
        """Most probable component of each row, (n,)."""
        return self._log_resp(self._check_X(X))[1].argmax(axis=1)

    def predict_proba(self, X):
        """Posterior probability of each component for each row, (n, K)."""
        return np.exp(self._log_resp(self._check_X(X))[1])


@register
class GaussianMixture(MixturePredictions, DensityMixin, EMEstimator):
    """Gaussian mixture model.

    A drop-in for ``sklearn.mixture.GaussianMixture``: same parameters, attributes and
    methods, plus ``fit(X, sample_weight=...)``, ``lower_bounds_`` for every
    covariance type and a progress ``callback``.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        EM stops when the mean log-likelihood per sample changes by less than ``tol``;
        ``tol=0`` runs exactly ``max_iter`` iterations.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonal of every covariance.
    max_iter : int, default=100
    n_init : int, default=1
        Restarts; the run with the highest final lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How responsibilities are initialised: K-means labels, nearest k-means++ centre,
        random responsibilities, or nearest of K random rows.
    weights_init : ndarray (K,), optional
    means_init : ndarray (K, D), optional
    precisions_init : ndarray, optional
        Shape (K,) spherical, (D, D) tied, (K, D) diag, (K, D, D) full.
    random_state : None, int or numpy.random.Generator
    warm_start : bool, default=False
        Start ``fit`` from the last fitted parameters (one run, no restarts).
    verbose : int, default=0
    verbose_interval : int, default=10
        Accepted for scikit-learn compatibility.
    chunk_size : int, optional
        Rows per E-step chunk (memory beyond the data is O(chunk_size x K)).
    init_sample_size : int, default=500_000
        Initialisation (k-means, k-means++, ...) looks at a uniform random sample of at most
        this many rows; EM itself always uses every row.
    on_collapse : {"recover", "warn", "raise"}, default="recover"
        What EM does when a component collapses (empty, or its covariance at the ``reg_covar``
        floor, as on a set of identical points): re-seed it by splitting the most occupied
        component, only warn, or raise :class:`~emkit.exceptions.CollapseError` (see
        :mod:`emkit.collapse`).  ``lower_bounds_`` is monotone between recoveries.

    Attributes
    ----------
    weights_ : ndarray (K,)
    means_ : ndarray (K, D)
    covariances_ : ndarray (compact shape, see ``precisions_init``)
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood per sample at the last E-step of the best run.
    lower_bounds_ : list of float
        The lower bound at every iteration of the best run (a recovery starts a new segment).
    collapse_events_ : list of dict
        Collapses in the best run: ``iteration``, ``component``, ``reason``, ``action``
        ("recovered", "warned", "stopped") and ``source`` (the component split to re-seed it).
    n_recoveries_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray (n_features_in_,) of str
        Column names, when fitted on a DataFrame or a file with a header; checked by ``predict``,
        ``score`` and the like, and kept in model files.
    """

    _fitted_attributes = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_", "converged_",
                          "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_")

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6, max_iter=100,
                 n_init=1, init_params="kmeans", weights_init=None, means_init=None, precisions_init=None,
                 random_state=None, warm_start=False, verbose=0, verbose_interval=10, chunk_size=None,
                 init_sample_size=500_000, on_collapse="recover"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.chunk_size = chunk_size
        self.init_sample_size = init_sample_size
        self.on_collapse = on_collapse

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN marks a missing value, integrated out exactly
        return tags

    # -- validation -------------------------------------------------------------------
    def _check_parameters(self, source):
        self._check_parameters_basic()
        check_int(self.init_sample_size, "init_sample_size", minimum=1)
        K, D = self.n_components, source.n_features
        n_rows = getattr(source, "n_rows", None)
        if n_rows is not None and n_rows < K:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {K}, "
                             f"n_samples = {n_rows}")
        if self.weights_init is not None:
            w = check_array(self.weights_init, "weights_init", ndim=1).astype(np.float64)
            if w.shape != (K,):
                raise ValueError(f"weights_init must have shape ({K},); got {w.shape}")
            if np.any(w < 0) or np.any(w > 1):
                raise ValueError(f"weights_init must be in [0, 1]; got min {w.min():.5g}, max {w.max():.5g}")
            if not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
                raise ValueError(f"weights_init must sum to 1; got sum {w.sum():.6g}")
        if self.means_init is not None:
            m = check_array(self.means_init, "means_init")
            if m.shape != (K, D):
                raise ValueError(f"means_init must have shape ({K}, {D}) (n_components, n_features); got {m.shape}")
        if self.precisions_init is not None:
            COVARIANCE_TYPES[self.covariance_type].check_precisions(self.precisions_init, K, D)

    # -- EM hooks -------------------------------------------------------------------------
    def _em_model(self):
        return Mixture(GaussianEmission(self.n_components, self.covariance_type, self.reg_covar))

    def _init_resp_stats(self, X, sw, rng, model):
        """Initial parameters from initial responsibilities (scikit-learn's scheme)."""
        stats = self._init_statistics(X, sw, rng, model)
        weights = stats.n + 10 * np.finfo(np.float64).eps
        return weights / weights.sum(), model.emission.m_step(stats)

    def _init_statistics(self, X, sw, rng, model):
        """Gaussian statistics of the initial responsibilities (``init_params``) of the rows ``X``."""
        K = self.n_components
        n = X.shape[0]
        seeds, seed_sw = seeding_rows(X, K, sw)  # X itself when it has no NaN
        if self.init_params == "kmeans":
            km = KMeans(K, n_init=1, random_state=rng).fit(seeds, sample_weight=seed_sw)
            labels = km.labels_ if seeds is X else assign_observed(X, km.cluster_centers_)
        elif self.init_params == "k-means++":
            centers = kmeans_plusplus(seeds, K, rng, seed_sw)[0]
            labels = assign_observed(X, centers)
        elif self.init_params == "random_from_data":
            centers = np.asarray(seeds[rng.choice(seeds.shape[0], size=K, replace=False)], dtype=np.float64)
            labels = assign_observed(X, centers)
        else:
            labels = None
        emission = model.emission

        def one(Xc, swc, start):
            if labels is None:
                resp = rng_resp[start:start + Xc.shape[0]]
            else:
                lab = labels[start:start + Xc.shape[0]]
                resp = np.zeros((Xc.shape[0], K))
                resp[np.arange(Xc.shape[0]), lab] = 1.0
                resp[lab < 0] = 1.0 / K  # rows with nothing observed
            if swc is not None:
                resp = resp * swc[:, None]
            return emission.moments(Xc, resp)

        if labels is None:
            rng_resp = rng.uniform(size=(n, K))
            rng_resp /= rng_resp.sum(axis=1, keepdims=True)
        rows = chunk_rows(K, X.shape[1], self.chunk_size)
        parts = map_chunks(one, [(X[s], None if sw is None else sw[s], s.start) for s in row_slices(n, rows)])
        return sum(parts[1:], parts[0])

    def _init_params(self, source, rng):
        X, sw = source.sample(self.init_sample_size, rng)
        model = self._em_model()
        emission = model.emission
        needs_resp = self.weights_init is None or self.means_init is None or self.precisions_init is None
        if needs_resp:
            weights, eparams = self._init_resp_stats(X, sw, rng, model)
        else:
            weights, eparams = None, None
        if self.weights_init is not None:
            weights = np.array(self.weights_init, dtype=np.float64)
        means = eparams.means if self.means_init is None else np.array(self.means_init, dtype=np.float64)
        if self.precisions_init is not None:
            precisions = COVARIANCE_TYPES[self.covariance_type].check_precisions(self.precisions_init,
                                                                                self.n_components, means.shape[1])
            eparams = emission.params_from_precisions(means, precisions)
        else:
            eparams = emission.params_from_covariances(means, eparams.covariances)
        return MixtureParams(weights=weights, emission=eparams)

    def _params_from_attributes(self):
        return self._fitted_params()[1]

    def _set_attributes(self, params):
        cov = COVARIANCE_TYPES[self.covariance_type]
        self.weights_ = params.weights
        self.means_ = params.emission.means
        self.covariances_ = params.emission.covariances
        self.precisions_cholesky_ = params.emission.precisions_cholesky
        self.precisions_ = cov.precisions(self.precisions_cholesky_)

    # -- public API -------------------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None, callback=None, *, algorithm="em", batch_size=None, schedule=None,
            progress=None):
        """Fit by EM (``n_init`` restarts, best kept); returns ``self``.

        Parameters
        ----------
        X : array-like (n, D), memory map, file path, table source or dask array
            In-memory data; or data larger than memory: a memory map
            (``np.load(path, mmap_mode="r")``), a path to a ``.npy``/CSV/Parquet/HDF5 file, or
            :func:`emkit.open_table` (column selection) -- read chunk by chunk on every EM
            iteration, never whole; or a ``dask.array`` -- statistics are computed on the
            Dask workers and only parameters and statistics travel.
        sample_weight : array-like (n,), optional
            Non-negative weights: a row of weight 2 counts like two copies of it.
        callback : callable, optional
            Called after every EM iteration with a dict (``init``, ``iteration``,
            ``lower_bound``, ``change``, ``seconds``, ``params``).
        algorithm : {"em", "stochastic"}, default="em"
            ``"stochastic"``: stochastic (online) EM over shuffled mini-batches of ``batch_size``
            rows; ``max_iter`` is then the number of passes over the data and ``tol`` applies to
            the change of the per-pass objective.
        batch_size : int, default=1024
            Rows per mini-batch (stochastic EM).
        schedule : StepSchedule, dict or float, optional
            Step sizes of stochastic EM (see :class:`emkit.em.StepSchedule`).
        progress : bool, optional
            Show a progress bar (tqdm) over the iterations of each restart once the fit has run for
            a second.  Default: only when standard error is a terminal.
        """
        self._fit(X, sample_weight, callback, algorithm, batch_size, schedule, progress)
        return self

    def partial_fit(self, X, y=None, sample_weight=None, *, schedule=None):
        """Stochastic (online) EM step on the mini-batch ``X``; see :meth:`EMEstimator._partial_fit`.

        Call it on each batch of a stream, forever if need be; the model is usable after every call.
        """
        self._check_parameters_basic()
        source = self._source(X, sample_weight, reset=not self._has_parameters())
        if getattr(self, "weights_", None) is None and source.n_rows < self.n_components:
            raise ValueError(f"the first partial_fit batch must have at least n_components={self.n_components} "
                             f"rows; got {source.n_rows}")
        return self._partial_fit(source, schedule)

    def _check_parameters_basic(self):
        self._check_common()
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_float(self.reg_covar, "reg_covar", minimum=0.0)
        check_choice(self.init_params, "init_params", INIT_PARAMS)

    def _minibatches(self, source, batch_size, rng):
        """``batches(epoch)``: shuffled mini-batches of an array or memory map; file chunks in order."""
        rows = source.rows
        if isinstance(source, ArraySource):
            n, sw = source.n_rows, source.sample_weight

            def batches(epoch):
                perm = rng.permutation(n)
                for s in range(0, n, batch_size):
                    idx = np.sort(perm[s:s + batch_size])
                    yield ArraySource(source.X[idx], None if sw is None else sw[idx], rows)
        elif isinstance(source, TableSource):
            def batches(epoch):
                for Xc, _ in source.chunks():
                    for s in range(0, Xc.shape[0], batch_size):
                        yield ArraySource(Xc[s:s + batch_size], None, rows)
        else:
            raise ValueError("algorithm='stochastic' needs an array, a memory map or a file; "
                             "use algorithm='em' for Dask arrays")
        return batches

    def _source(self, X, sample_weight, reset=True):
        """A data source for ``X``: an array, memory map, file path, opened table or dask array.

        ``reset=True`` records ``n_features_in_`` and the feature names (a DataFrame's columns,
        a file's header) of a fit.
        """
        D = self._n_features_hint(X)
        # per-chunk temporaries: (rows, K*D) projections and, for full/tied at small D, (rows, D(D+1)/2) products
        rows = chunk_rows(chunk_width(self.covariance_type, self.n_components, D), D, self.chunk_size)
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
            return source
        X = self._check_data(X, reset=reset, min_samples=1, allow_nan=True)
        sw = check_sample_weight(sample_weight, X.shape[0])
        return ArraySource(X, sw, rows)

    @staticmethod
    def _n_features_hint(X):
        shape = getattr(X, "shape", None)
        if shape is not None and len(shape) == 2:
            return int(shape[1])
        n = getattr(X, "n_features", None)
        return int(n) if n is not None else 1

    def _fit(self, X, sample_weight, callback, algorithm="em", batch_size=None, schedule=None, progress=None):
        source = self._source(X, sample_weight)
        self._check_parameters(source)
        probe, _ = source.sample(_DISTINCT_PROBE, np.random.default_rng(0))
        few = not _n_distinct_at_least(probe, self.n_components)
        if few and isinstance(source, ArraySource) and source.n_rows > probe.shape[0]:
            few = not _n_distinct_at_least(np.asarray(source.X), self.n_components)  # settle it on all rows
        if few:
            warnings.warn(f"X has fewer distinct points than n_components={self.n_components}; some components "
                          "will be duplicates", ConvergenceWarning, stacklevel=3)
        self.n_features_in_ = source.n_features
        model = self._run_restarts(source, callback, algorithm, batch_size, schedule, progress)
        return source, model

    def fit_predict(self, X, y=None, sample_weight=None, callback=None):
        """Fit and return the labels of ``X`` under the fitted model (equal to ``fit(X).predict(X)``)."""
        source, _ = self._fit(X, sample_weight, callback)
        return np.concatenate([self._log_resp(Xc)[1].argmax(axis=1) for Xc, _ in source.chunks()])

    def _fitted_params(self):
        self._check_is_fitted(["weights_", "means_", "precisions_cholesky_"])
        self._validate_fitted()
        emission = GaussianEmission(self.n_components, self.covariance_type, self.reg_covar)
        return emission, MixtureParams(weights=np.asarray(self.weights_, dtype=np.float64),
                                       emission=GaussianParams(np.asarray(self.means_, dtype=np.float64),
                                                               np.asarray(self.covariances_, dtype=np.float64),
                                                               np.asarray(self.precisions_cholesky_,
                                                                          dtype=np.float64)))

    def _validate_fitted(self):
        """Check that fitted attributes (set by hand or read from a file) are consistent."""
        self._check_parameters_basic()
        K = self.n_components
        means = np.asarray(self.means_, dtype=np.float64)
        if means.ndim != 2 or means.shape[0] != K:
            raise ValueError(f"means_ must have shape ({K}, n_features); got {means.shape}")
        if not np.all(np.isfinite(means)):
            raise ValueError("means_ must be finite; got NaN or infinity")
        D = means.shape[1]
        cov = COVARIANCE_TYPES[self.covariance_type]
        shape = cov.compact_shape(K, D)
        for name in ("covariances_", "precisions_", "precisions_cholesky_"):
            a = np.asarray(getattr(self, name), dtype=np.float64)
            if a.shape != shape:
                raise ValueError(f"{name} must have shape {shape} for covariance_type={self.covariance_type!r}; "
                                 f"got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} must be finite; got NaN or infinity")
        pc = np.asarray(self.precisions_cholesky_, dtype=np.float64)
        diagonal = pc if pc.ndim < 2 or self.covariance_type == "diag" else np.diagonal(pc, axis1=-2, axis2=-1)
        if np.any(diagonal <= 0):
            raise ValueError("precisions_cholesky_ must have a positive diagonal (upper Cholesky factors of the "
                             "precisions)")
        w = np.asarray(self.weights_, dtype=np.float64)
        if w.shape != (K,):
            raise ValueError(f"weights_ must have shape ({K},); got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
            raise ValueError(f"weights_ must be non-negative and sum to 1; got min {np.min(w):.6g}, "
                             f"sum {np.sum(w):.10g}")

    def _check_X(self, X):
        self._check_is_fitted(["weights_", "means_", "precisions_cholesky_"])
        X = self._check_data(X, reset=False, allow_nan=True)
        check_n_features(X, self.means_.shape[1])
        return X

    def _scoring_model(self):
        """``(model, params)`` that give the per-row log-likelihoods and responsibilities of ``_log_resp``."""
        emission, params = self._fitted_params()
        return Mixture(emission), params

    def impute(self, X):
        """``X`` with every missing (NaN) entry replaced by its posterior conditional mean, (n, D).

        ``E[x_m | x_o] = sum_k p(k | x_o) E[x_m | x_o, k]``: the conditional means of the
        components, weighted by the responsibilities given the observed entries.  Observed
        entries are returned unchanged; a row with nothing observed gets the mixture mean.
        """
        X = self._check_X(X)
        emission, params = self._fitted_params()
        mix = Mixture(emission)
        out = np.array(X, dtype=np.float64)
        rows = chunk_rows(self.n_components, X.shape[1], self.chunk_size)
        for s in row_slices(X.shape[0], rows):
            nan = np.isnan(out[s])
            if nan.any():
                resp = mix.responsibilities(params, X[s])[1]
                expected = np.einsum("nk,knd->nd", resp, emission.conditional_expectations(params.emission, X[s]))
                out[s][nan] = expected[nan]
        return out

    def sample(self, n_samples=1):
        """Draw ``n_samples`` rows; returns ``(X (n, D), labels (n,))`` sorted by component."""
        self._check_is_fitted(["weights_", "means_"])
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}")
        emission, params = self._fitted_params()
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, params.weights)
        z = np.repeat(np.arange(self.n_components), counts)
        return emission.sample(params.emission, z, rng), z

    def _n_parameters(self):
        D = self.means_.shape[1]
        emission = GaussianEmission(self.n_components, self.covariance_type, self.reg_covar)
        return self.n_components - 1 + emission.n_parameters(D)

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        X = self._check_X(X)
        return -2 * self._log_resp(X)[0].sum() + self._n_parameters() * np.log(X.shape[0])

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        X = self._check_X(X)
        return -2 * self._log_resp(X)[0].sum() + 2 * self._n_parameters()
