"""Classifiers from one generative model per class, combined by Bayes' rule.

Each class ``c`` gets its own density ``p(x | c)`` fitted to that class's training data only —
a Gaussian mixture (:class:`GaussianMixtureClassifier`) or a hidden Markov model over whole
sequences (:class:`HMMClassifier`) — and a prior ``pi_c`` (the class frequencies unless
given).  Bayes' rule then gives

    p(c | x) = pi_c p(x | c) / p(x),        p(x) = sum_c pi_c p(x | c).

Two flags come with every prediction:

* **ambiguous** — the top posterior ``max_c p(c | x)`` is below ``ambiguity_threshold``
  (default 0.9): the point lies where two or more classes overlap;
* **anomalous** — the density ``p(x)`` is below the ``anomaly_quantile`` quantile (default
  1%) of the training densities (for sequences: of the log-density per frame): the point lies
  far from every class, so its label, however confident, is an extrapolation.

The class models are ordinary emkit estimators (``estimators_``, one per entry of
``classes_``): inspect, plot or save them like any other.  With one diagonal component per
class, :class:`GaussianMixtureClassifier` is Gaussian naive Bayes.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import check_classification_targets

from .._validation import check_array, check_float, check_int, check_lengths, check_random_state, check_sample_weight
from ..exceptions import NotFittedError
from .._registry import register
from .hmm import BaseHMM, CategoricalHMM, GaussianHMM, as_sequences
from .mixture import GaussianMixture

#: Below this many rows (frames) in its largest class, the class models are fitted in parallel
#: threads; above it, each fit already spreads its chunks over the cores.
PARALLEL_FIT_ROWS = 50_000


class Classification(NamedTuple):
    """Everything :meth:`classify` computes in one pass over the data.

    Attributes
    ----------
    labels : ndarray (n,)
        The most probable class of each row (or sequence).
    proba : ndarray (n, n_classes)
        Class posteriors ``p(c | x)``, columns in the order of ``classes_``.
    log_density : ndarray (n,)
        ``log p(x)`` (sequences: per frame, ``log p(x) / n_frames``).
    ambiguous : ndarray of bool (n,)
        ``proba.max(axis=1) < ambiguity_threshold``.
    anomalous : ndarray of bool (n,)
        ``log_density < anomaly_threshold_``.
    """

    labels: np.ndarray
    proba: np.ndarray
    log_density: np.ndarray
    ambiguous: np.ndarray
    anomalous: np.ndarray


def _labels(classes):
    """Class labels as plain Python values (for messages and dict keys)."""
    return [c.item() if hasattr(c, "item") else c for c in classes]


def _fit_one(fit, *args):
    """Run one class model's fit in a worker thread, its compiled kernels single-threaded."""
    import numba

    numba.set_num_threads(1)  # per thread: the class fits share the cores
    return fit(*args)


class _BayesClassifier(ClassifierMixin, BaseEstimator):
    """Class priors, Bayes' rule, the two flags and parallel class fits (not for direct use).

    Subclasses define ``_member_log_likelihood(model, data) -> (n,)`` and ``_units(data)``
    (the per-item divisor of the log-density: 1 for rows, the frame count for sequences).
    """

    _member_attribute = "estimators_"  # model files store the fitted class models

    def save(self, path):
        """Write the fitted classifier, class models included, to a safe ``.npz`` model file."""
        from ..io import save_model

        return save_model(self, path)

    # -- checks ------------------------------------------------------------------------------------
    def _check_flag_parameters(self):
        check_float(self.ambiguity_threshold, "ambiguity_threshold", minimum=0.0, maximum=1.0)
        check_float(self.anomaly_quantile, "anomaly_quantile", minimum=0.0, maximum=1.0)
        if self.n_jobs is not None:
            check_int(self.n_jobs, "n_jobs", minimum=1)

    @staticmethod
    def _check_targets(y, n, unit):
        if y is None:
            raise ValueError(f"this classifier requires y to be passed, but the target y is None: give one class "
                             f"label per {unit}")
        y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(f"A column-vector y was passed when a 1d array was expected (shape {y.shape}); it is "
                          "used as a 1-D array of labels",
                          DataConversionWarning, stacklevel=3)
            y = y[:, 0]
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},), one class label per {unit}; got shape {y.shape}")
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if classes.dtype == object and all(isinstance(c, str) for c in classes):
            classes = classes.astype(str)  # text labels: a plain string array (storable without pickling)
        return classes, y_idx.reshape(-1)

    def _class_prior(self, weights, classes):
        """``priors`` validated, or the class frequencies ``weights / weights.sum()``."""
        if self.priors is None:
            return weights / weights.sum()
        p = np.asarray(self.priors, dtype=np.float64)
        C = len(classes)
        if p.shape != (C,):
            raise ValueError(f"priors must have one entry per class, shape ({C},) for classes "
                             f"{_labels(classes)}; got shape {p.shape}")
        if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-8:
            raise ValueError(f"priors must be non-negative and sum to 1; got {p.tolist()}")
        return p

    @property
    def n_iter_(self):
        """EM iterations of each class model, ndarray (n_classes,)."""
        self._check_fitted()
        return np.array([m.n_iter_ for m in self.estimators_])

    def _check_fitted(self):
        if getattr(self, "estimators_", None) is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet: call 'fit' with "
                                 "appropriate arguments before using this method.")

    def _validate_fitted(self):
        """Check fitted attributes read from a model file against each other."""
        C = len(self.classes_)
        if len(self.estimators_) != C:
            raise ValueError(f"{type(self).__name__} has {C} classes but {len(self.estimators_)} class models")
        for name in ("class_prior_", "class_count_"):
            if np.shape(getattr(self, name)) != (C,):
                raise ValueError(f"{name} must have shape ({C},); got {np.shape(getattr(self, name))}")
        p = np.asarray(self.class_prior_, dtype=np.float64)
        if np.any(p < 0) or abs(p.sum() - 1.0) > 1e-8:
            raise ValueError("class_prior_ must be a probability vector")

    # -- fitting -------------------------------------------------------------------------------------
    def _seeds(self, n):
        rng = check_random_state(self.random_state)
        return [int(s) for s in rng.integers(2**32, size=n)]

    def _fit_members(self, jobs, largest):
        """Run ``fit(*args)`` for each ``(fit, *args)`` in ``jobs``; return the results in order.

        Classes are fitted in parallel threads when ``n_jobs`` asks for it, or (``n_jobs=None``)
        when the largest class has fewer than :data:`PARALLEL_FIT_ROWS` rows, where a single fit
        cannot use more than one core.  Each class has its own seed, so the result does not
        depend on the number of threads.
        """
        from ..em import n_threads, parallel_kernels_threadsafe

        n_jobs = self.n_jobs
        if n_jobs is None:
            n_jobs = n_threads() if largest < PARALLEL_FIT_ROWS else 1
        n_jobs = min(n_jobs, len(jobs))
        if n_jobs > 1 and not parallel_kernels_threadsafe():
            n_jobs = 1
        if n_jobs <= 1:
            return [job[0](*job[1:]) for job in jobs]
        from threadpoolctl import threadpool_limits

        # BLAS single-threaded for the whole parallel section (entered once, here, not per thread)
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_jobs) as pool:
            return list(pool.map(lambda job: _fit_one(*job), jobs))

    def _class_components(self, classes, default=None):
        """The number of components (states) of each class, a list in the order of ``classes``."""
        nc = self.n_components
        if nc is None:
            return [default] * len(classes)
        if not isinstance(nc, dict):
            return [check_int(nc, "n_components", minimum=1)] * len(classes)
        labels = _labels(classes)
        missing = [c for c in labels if c not in nc]
        extra = [k for k in nc if k not in set(labels)]
        if missing or extra:
            raise ValueError(f"n_components must be an int or a dict with one entry per class {labels}; "
                             + (f"missing {missing}" if missing else f"unknown classes {extra}"))
        return [check_int(nc[c], f"n_components[{c!r}]", minimum=1) for c in labels]

    def _class_weights(self, classes, y_idx, sw=None):
        """Rows (or summed weights) per class and the class priors, checked before any fit."""
        C = len(classes)
        weights = np.bincount(y_idx, minlength=C).astype(np.float64) if sw is None else \
            np.bincount(y_idx, weights=sw, minlength=C)
        return weights, self._class_prior(weights, classes)

    def _assemble(self, estimators, data, n_features, classes, y_idx, sw=None):
        """Finish a fit from the fitted class models: priors, counts and the anomaly threshold."""
        self.class_count_, self.class_prior_ = self._class_weights(classes, y_idx, sw)
        self.estimators_ = list(estimators)
        self.classes_ = classes
        self.n_features_in_ = n_features
        self._set_anomaly_threshold(data)
        return self

    def _set_anomaly_threshold(self, data):
        density = self._log_density(self._joint_log_likelihood(data), data)
        self.anomaly_threshold_ = float(np.quantile(density, self.anomaly_quantile))

    # -- Bayes' rule -------------------------------------------------------------------------------------
    def _joint_log_likelihood(self, data):
        """``log pi_c + log p(x | c)``, ndarray (n, n_classes)."""
        with np.errstate(divide="ignore"):
            log_prior = np.log(np.asarray(self.class_prior_, dtype=np.float64))
        cols = [self._member_log_likelihood(m, data) for m in self.estimators_]
        return np.column_stack(cols) + log_prior

    def _log_density(self, joint, data):
        return logsumexp(joint, axis=1) / self._units(data)

    @staticmethod
    def _normalise(joint):
        total = logsumexp(joint, axis=1, keepdims=True)
        bad = np.flatnonzero(~np.isfinite(total[:, 0]))
        if bad.size:
            raise ValueError(f"item {bad[0]} of X has zero probability under every class model, so its class "
                             "posteriors are undefined")
        return joint - total

    def _classify(self, data):
        joint = self._joint_log_likelihood(data)
        log_proba = self._normalise(joint)
        proba = np.exp(log_proba)
        density = self._log_density(joint, data)
        return Classification(labels=self.classes_[joint.argmax(axis=1)], proba=proba, log_density=density,
                              ambiguous=proba.max(axis=1) < self.ambiguity_threshold,
                              anomalous=density < self.anomaly_threshold_)


@register
class GaussianMixtureClassifier(_BayesClassifier):
    """Bayes classifier with one Gaussian mixture per class.

    ``fit(X, y)`` fits a :class:`~emkit.GaussianMixture` to the rows of each class;
    ``predict_proba`` combines them by Bayes' rule with the class priors.  With
    ``n_components=1, covariance_type="diag"`` this is Gaussian naive Bayes: scikit-learn's
    ``GaussianNB(var_smoothing=s)`` gives the same probabilities when
    ``reg_covar = s * X.var(axis=0).max()``.

    Parameters
    ----------
    n_components : int or dict, default=1
        Components of every class mixture, or ``{class label: n_components}`` with an entry for
        every class (see :func:`emkit.select` with ``y=`` to choose them by BIC).
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    priors : array-like (n_classes,), optional
        Class priors in the order of ``classes_`` (the sorted labels); default: the class
        frequencies in the training data (weighted by ``sample_weight``).
    reg_covar, tol, max_iter, n_init, init_params
        Passed to every class's :class:`~emkit.GaussianMixture`.
    ambiguity_threshold : float in [0, 1], default=0.9
        A row is ambiguous when its top class posterior is below this.
    anomaly_quantile : float in [0, 1], default=0.01
        A row is anomalous when its density ``p(x)`` is below this quantile of the training
        rows' densities (so about 1% of the training rows are anomalous at the default).
    n_jobs : int, optional
        Threads fitting class models at once; default: emkit's thread count (the CPUs, or
        ``EMKIT_NUM_THREADS``) when the classes are small (below :data:`PARALLEL_FIT_ROWS`
        rows), else one (each fit then runs its chunks in parallel itself).
    random_state : None, int or numpy.random.Generator
        Seeds one independent seed per class.

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
        The sorted class labels.
    estimators_ : list of GaussianMixture
        The fitted mixture of each class, in the order of ``classes_``.
    class_prior_ : ndarray (n_classes,)
    class_count_ : ndarray (n_classes,)
        Training rows (or summed sample weights) per class.
    anomaly_threshold_ : float
        The ``anomaly_quantile`` quantile of ``log p(x)`` over the training rows.
    n_features_in_ : int
    """

    _fitted_attributes = ("classes_", "class_prior_", "class_count_", "anomaly_threshold_", "n_features_in_")

    def __init__(self, n_components=1, *, covariance_type="full", priors=None, reg_covar=1e-6, tol=1e-3,
                 max_iter=100, n_init=1, init_params="kmeans", ambiguity_threshold=0.9, anomaly_quantile=0.01,
                 n_jobs=None, random_state=None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.priors = priors
        self.reg_covar = reg_covar
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.ambiguity_threshold = ambiguity_threshold
        self.anomaly_quantile = anomaly_quantile
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _member(self, k, seed):
        return GaussianMixture(k, covariance_type=self.covariance_type, reg_covar=self.reg_covar, tol=self.tol,
                               max_iter=self.max_iter, n_init=self.n_init, init_params=self.init_params,
                               random_state=seed)

    def fit(self, X, y, sample_weight=None):
        """Fit one Gaussian mixture per class; returns ``self``.

        Parameters
        ----------
        X : array-like (n, D)
        y : array-like (n,)
            Class labels (numbers or strings).
        sample_weight : array-like (n,), optional
            Row weights, passed to the class mixtures and counted in the class frequencies.
        """
        self._check_flag_parameters()
        X = check_array(X, "X")
        classes, y_idx = self._check_targets(y, X.shape[0], "row of X")
        sw = check_sample_weight(sample_weight, X.shape[0])
        ks = self._class_components(classes)
        self._class_weights(classes, y_idx, sw)
        counts = np.bincount(y_idx, minlength=len(classes))
        for i, (c, k, n) in enumerate(zip(_labels(classes), ks, counts)):
            if n < k:
                raise ValueError(f"class {c!r} has {n} rows, fewer than its n_components={k}")
            if sw is not None and not np.any(sw[y_idx == i] > 0):
                raise ValueError(f"class {c!r} has zero total sample_weight, so no model can be fitted to it; "
                                 "drop its rows or give them positive weights")
        members = [self._member(k, s) for k, s in zip(ks, self._seeds(len(classes)))]
        jobs = []
        for i, m in enumerate(members):
            rows = y_idx == i
            jobs.append((m.fit, X[rows], None, None if sw is None else sw[rows]))
        return self._assemble(self._fit_members(jobs, int(counts.max())), X, X.shape[1], classes, y_idx, sw)

    # -- prediction --------------------------------------------------------------------------------------
    def _member_log_likelihood(self, model, X):
        return model.score_samples(X)

    @staticmethod
    def _units(X):
        return 1.0

    def _X(self, X):
        self._check_fitted()
        X = check_array(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return X

    def classify(self, X):
        """Labels, class posteriors, log-densities and both flags in one pass: a :class:`Classification`."""
        return self._classify(self._X(X))

    def predict(self, X):
        """The most probable class of each row, ndarray (n,) of labels from ``classes_``."""
        joint = self._joint_log_likelihood(self._X(X))
        return self.classes_[joint.argmax(axis=1)]

    def predict_log_proba(self, X):
        """``log p(c | x)``, ndarray (n, n_classes)."""
        return self._normalise(self._joint_log_likelihood(self._X(X)))

    def predict_proba(self, X):
        """Class posteriors ``p(c | x)``, ndarray (n, n_classes); rows sum to 1."""
        return np.exp(self.predict_log_proba(X))

    def score_samples(self, X):
        """``log p(x) = log sum_c pi_c p(x | c)`` of each row, ndarray (n,)."""
        return logsumexp(self._joint_log_likelihood(self._X(X)), axis=1)

    def is_ambiguous(self, X):
        """Rows whose top class posterior is below ``ambiguity_threshold``, bool ndarray (n,)."""
        return self.predict_proba(X).max(axis=1) < self.ambiguity_threshold

    def is_anomalous(self, X):
        """Rows whose density ``log p(x)`` is below ``anomaly_threshold_``, bool ndarray (n,)."""
        return self.score_samples(X) < self.anomaly_threshold_


@register
class HMMClassifier(_BayesClassifier):
    """Bayes classifier of whole sequences with one hidden Markov model per class.

    A copy of ``template`` (any emkit HMM: GaussianHMM, CategoricalHMM, PoissonHMM, ARHMM) is
    fitted to the sequences of each class; a new sequence goes to the class whose model, times
    its prior, explains it best — the classic recipe for activity and spoken-word recognition.

    Parameters
    ----------
    template : emkit HMM, optional
        Unfitted model copied for every class (its hyperparameters are kept; when its
        ``random_state`` is None each copy gets a seed drawn from ``random_state``).
        Default: ``GaussianHMM(n_components=2)``.  A CategoricalHMM without ``n_features``
        gets the alphabet of all the training data, so every class scores every symbol.
    n_components : int or dict, optional
        States of every class model, or ``{class label: n_states}`` (see :func:`emkit.select`
        with ``y=``); default: the template's.
    priors : array-like (n_classes,), optional
        Class priors in the order of ``classes_``; default: the class frequencies (sequences).
    ambiguity_threshold : float in [0, 1], default=0.9
        A sequence is ambiguous when its top class posterior is below this.
    anomaly_quantile : float in [0, 1], default=0.01
        A sequence is anomalous when its log-density per frame, ``log p(x) / n_frames``, is below
        this quantile of the training sequences' values (per frame, so long and short sequences
        compare).
    n_jobs : int, optional
        Threads fitting class models at once (default: as :class:`GaussianMixtureClassifier`).
    random_state : None, int or numpy.random.Generator

    Attributes
    ----------
    classes_, class_prior_, class_count_ (sequences per class), anomaly_threshold_, n_features_in_
    estimators_ : list of HMMs
        The fitted model of each class, in the order of ``classes_``.
    """

    _fitted_attributes = ("classes_", "class_prior_", "class_count_", "anomaly_threshold_", "n_features_in_")

    def __init__(self, template=None, *, n_components=None, priors=None, ambiguity_threshold=0.9, anomaly_quantile=0.01,
                 n_jobs=None, random_state=None):
        self.template = template
        self.n_components = n_components
        self.priors = priors
        self.ambiguity_threshold = ambiguity_threshold
        self.anomaly_quantile = anomaly_quantile
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _template(self):
        t = GaussianHMM(n_components=2) if self.template is None else self.template
        if not isinstance(t, BaseHMM):
            raise ValueError("template must be an emkit HMM (GaussianHMM, CategoricalHMM, PoissonHMM or ARHMM); "
                             f"got {type(t).__name__}")
        return t

    @staticmethod
    def _sequences(X, lengths):
        X, lengths = as_sequences(X, lengths)
        X = check_array(X, "X", dtype=None)
        return X, check_lengths(lengths, X.shape[0])

    def fit(self, X, y, lengths=None):
        """Fit one HMM per class; returns ``self``.

        Parameters
        ----------
        X : list of arrays (T_i, D), or array (sum T_i, D) with ``lengths``
        y : array-like (n_sequences,)
            One class label per sequence.
        lengths : array-like of int, optional
            Lengths of the sequences concatenated in ``X``.
        """
        self._check_flag_parameters()
        X, lengths = self._sequences(X, lengths)
        classes, y_idx = self._check_targets(y, len(lengths), "sequence")
        ks = self._class_components(classes)
        self._class_weights(classes, y_idx)
        row_class = np.repeat(y_idx, lengths)
        jobs, frames = [], []
        for i, (k, seed) in enumerate(zip(ks, self._seeds(len(classes)))):
            frames.append(int(lengths[y_idx == i].sum()))
            jobs.append((self._member(k, seed, X).fit, X[row_class == i], lengths[y_idx == i]))
        return self._assemble(self._fit_members(jobs, max(frames)), (X, lengths), X.shape[1], classes, y_idx)

    def _member(self, k, seed, X):
        """An unfitted copy of the template with ``k`` states (None: the template's) and ``seed``
        (unless the template has its own ``random_state``)."""
        template = self._template()
        params = template.get_params()
        if isinstance(template, CategoricalHMM) and params.get("n_features") is None:
            params["n_features"] = int(np.max(X)) + 1  # one alphabet for every class
        if k is not None:
            params["n_components"] = k
        if params.get("random_state") is None:
            params["random_state"] = seed
        return type(template)(**params)

    # -- prediction --------------------------------------------------------------------------------------
    @staticmethod
    def _member_log_likelihood(model, data):
        return model.score_sequences(*data)

    @staticmethod
    def _units(data):
        return data[1]

    def _data(self, X, lengths):
        self._check_fitted()
        X, lengths = self._sequences(X, lengths)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return X, lengths

    def classify(self, X, lengths=None):
        """Labels, posteriors, log-densities per frame and both flags per sequence: a :class:`Classification`."""
        return self._classify(self._data(X, lengths))

    def predict(self, X, lengths=None):
        """The most probable class of each sequence, ndarray (n_sequences,)."""
        joint = self._joint_log_likelihood(self._data(X, lengths))
        return self.classes_[joint.argmax(axis=1)]

    def predict_log_proba(self, X, lengths=None):
        """``log p(c | sequence)``, ndarray (n_sequences, n_classes)."""
        return self._normalise(self._joint_log_likelihood(self._data(X, lengths)))

    def predict_proba(self, X, lengths=None):
        """Class posteriors of each sequence, ndarray (n_sequences, n_classes)."""
        return np.exp(self.predict_log_proba(X, lengths))

    def score_samples(self, X, lengths=None):
        """``log p(sequence)`` under the class mixture, ndarray (n_sequences,) (not per frame)."""
        return logsumexp(self._joint_log_likelihood(self._data(X, lengths)), axis=1)

    def score(self, X, y, lengths=None, sample_weight=None):
        """Accuracy of ``predict(X, lengths)`` against ``y`` (one label per sequence)."""
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self.predict(X, lengths), sample_weight=sample_weight)

    def is_ambiguous(self, X, lengths=None):
        """Sequences whose top class posterior is below ``ambiguity_threshold``, bool (n_sequences,)."""
        return self.predict_proba(X, lengths).max(axis=1) < self.ambiguity_threshold

    def is_anomalous(self, X, lengths=None):
        """Sequences whose log-density per frame is below ``anomaly_threshold_``, bool (n_sequences,)."""
        data = self._data(X, lengths)
        return self._log_density(self._joint_log_likelihood(data), data) < self.anomaly_threshold_
