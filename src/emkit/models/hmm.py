"""Hidden Markov models: Gaussian, categorical, Poisson and autoregressive emissions.

Each model is :class:`emkit.structures.MarkovChain` x an emission family, fitted by the
shared EM driver (Baum-Welch).  Names follow hmmlearn (``startprob_``, ``transmat_``,
``means_``, ``covars_``, ``emissionprob_``, ``lambdas_``) and GaussianMixture
(``max_iter``, ``tol``, ``n_init``, ``*_init``).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import validate_data

from .._validation import (check_array, check_choice, check_float, check_int, check_lengths, check_probability_vector,
                           check_random_state, check_stochastic_matrix)
from ..emissions.autoregressive import AREmission
from ..emissions.categorical import CategoricalEmission, CategoricalParams
from ..emissions.gaussian import COVARIANCE_TYPES, GaussianEmission
from ..emissions.poisson import PoissonEmission, PoissonParams
from ..inference import hmm as inference
from .._registry import register
from ..sources import DaskSequenceSource, SequenceSource, is_dask_array
from ..structures import HMMParams, MarkovChain, allowed_mask, check_concentration
from .base import EMEstimator
from .kmeans import assign_observed, kmeans_plusplus, seeding_rows

#: Frames per E-step chunk (chunks hold whole sequences).
HMM_CHUNK_FRAMES = 1 << 15
#: Frames sampled for the k-means++ seeding of the emissions.
INIT_SAMPLE_FRAMES = 200_000
DECODE_ALGORITHMS = ("viterbi", "map")


def as_sequences(X, lengths=None, name="X"):
    """Accept ``X`` (n, D) with ``lengths`` or a list of 2-D arrays; return (X, lengths)."""
    if isinstance(X, (list, tuple)) and len(X) > 0 and lengths is None and all(
            hasattr(x, "shape") or isinstance(x, (list, tuple)) for x in X):
        arrays = [np.asarray(x.to_numpy() if hasattr(x, "to_numpy") else x) for x in X]
        bad = next((i for i, a in enumerate(arrays) if a.ndim != 2), None)
        if bad is not None and any(a.ndim >= 1 and a.size > 1 for a in arrays):
            raise ValueError(f"{name}: each sequence must be a 2-D array (n_steps, n_features); sequence {bad} has "
                             f"shape {arrays[bad].shape} (use x.reshape(-1, 1) for one feature)")
        if all(a.ndim == 2 for a in arrays):
            lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
            if np.any(lengths == 0):
                raise ValueError(f"{name}: every sequence must have at least one row; got an empty one")
            X = np.concatenate(arrays, axis=0)
    return X, lengths


def _per_sequence(X, lengths, out):
    """``out`` (one row per frame) as the sequences came: a list of arrays, one per sequence, when
    ``X`` is a list of sequences; else unchanged (``X`` with ``lengths`` gives one array, as hmmlearn)."""
    if lengths is None and isinstance(X, (list, tuple)) and len(X) > 0 and all(np.ndim(x) == 2 for x in X):
        return np.split(out, np.cumsum([len(x) for x in X])[:-1])
    return out


def _with_masks(startprob, transmat, emission):
    """HMM parameters whose zero probabilities are structural (kept at zero by EM).

    Used for parameters that come from the user (``*_init``, ``from_params``, attributes set by
    hand or loaded); a seeding has no zeros.  Zeros of fitted attributes are structural too,
    which changes nothing: EM cannot move a probability away from exactly 0 (its expected
    counts are then 0) unless a prior above 1 adds mass, and with such a prior EM never makes
    a zero.
    """
    return HMMParams(startprob=startprob, transmat=transmat, emission=emission,
                     startprob_allowed=allowed_mask(startprob), transmat_allowed=allowed_mask(transmat))


class BaseHMM(EMEstimator):
    """Shared machinery of the HMM estimators (not for direct use)."""

    #: attribute name -> parameter field of the emission's params
    _emission_attributes: dict = {}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN marks a missing value, integrated out exactly
        return tags

    # -- hyperparameter checks -------------------------------------------------------------------------
    def _learn_names(self):
        return ("startprob", "transmat") + tuple(self._make_emission(1).param_names)

    def _check_learn(self):
        if self.learn is None:
            return None
        if isinstance(self.learn, str):
            raise ValueError(f"learn must be a set of parameter names such as {{'transmat', 'means'}}, not a string; "
                             f"got {self.learn!r}. Valid names: {sorted(self._learn_names())}")
        learn = set(self.learn)
        bad = learn - set(self._learn_names())
        if bad:
            raise ValueError(f"learn contains unknown parameter names {sorted(bad)}; valid names: "
                             f"{sorted(self._learn_names())}")
        return learn

    def _check_hmm_parameters(self):
        self._check_common()
        self._make_emission(1)  # checks the emission's own hyperparameters
        check_choice(self.algorithm, "algorithm", DECODE_ALGORITHMS)
        K = self.n_components
        for name, shape in (("startprob_prior", (K,)), ("transmat_prior", (K, K))):
            check_concentration(getattr(self, name), name, shape)
        check_float(self.kappa, "kappa", minimum=0.0)
        return self._check_learn()

    # -- data -----------------------------------------------------------------------------------------
    def _validate_X(self, X):
        return check_array(X, "X", allow_nan=True)

    def _prepare(self, X, lengths, reset=False):
        """``(X, lengths)`` validated; ``reset=True`` (fit) records ``n_features_in_`` and the
        column names of a DataFrame (or of the first DataFrame of a list), ``reset=False``
        checks them as scikit-learn does."""
        named = X[0] if isinstance(X, (list, tuple)) and X and hasattr(X[0], "columns") else X
        if hasattr(named, "columns"):  # names are checked before values
            validate_data(self, named, reset=reset, skip_check_array=True)
        X, lengths = as_sequences(X, lengths)
        X = self._validate_X(X)
        if not hasattr(named, "columns"):
            validate_data(self, X, reset=reset, skip_check_array=True)
        lengths = check_lengths(lengths, X.shape[0])
        return X, lengths

    def _source(self, X, lengths, reset=True):
        """A sequence source for ``X`` (array, memory map, list of arrays, or dask array) and ``lengths``."""
        if is_dask_array(X):
            if X.ndim != 2:
                raise ValueError(f"X must be a 2-D dask array; got {X.ndim}-D")
            lengths = check_lengths(lengths, X.shape[0])
            if reset:
                self._set_feature_names(None)
            return DaskSequenceSource(X, lengths, HMM_CHUNK_FRAMES, validate=self._validate_X)
        X, lengths = self._prepare(X, lengths, reset)
        return SequenceSource(X, lengths, HMM_CHUNK_FRAMES)

    # -- EM hooks ------------------------------------------------------------------------------------
    def _em_model(self):
        learn = self._check_learn()
        return MarkovChain(self._make_emission(self._n_features), self.startprob_prior, self.transmat_prior,
                           self.kappa, learn)

    #: Whether the emissions are seeded from k-means++ centres (else drawn at random).
    _kmeans_seeded = True

    def _init_params(self, source, rng):
        """k-means++ seeding on a sample of frames, then one chunked pass: hard states give the
        emission parameters and the start/transition counts."""
        K = self.n_components
        emission = self._make_emission(source.n_features)
        if self._emission_inits_complete() and self.startprob_init is not None and self.transmat_init is not None:
            # every starting value is given: no seeding pass over the data
            return _with_masks(check_probability_vector(self.startprob_init, "startprob_init", K),
                               check_stochastic_matrix(self.transmat_init, "transmat_init", (K, K)),
                               self._apply_emission_inits(None, source.n_features))
        if not self._kmeans_seeded:
            eparams = self._random_emission_params(rng)
            startprob, trans = np.ones(K), np.ones((K, K))
        else:
            sample = emission.seeding_view(source.sample(INIT_SAMPLE_FRAMES, rng))
            centers = kmeans_plusplus(seeding_rows(sample, K)[0], K, rng)[0]
            stats = None
            startprob, trans = np.ones(K), np.ones((K, K))
            for Xc, lens in source.chunks():
                labels = assign_observed(emission.seeding_view(np.asarray(Xc, dtype=np.float64)), centers)
                resp = np.zeros((Xc.shape[0], K))
                resp[np.arange(Xc.shape[0]), labels] = 1.0
                resp[labels < 0] = 1.0 / K  # frames with nothing observed
                part = emission.statistics(None, emission.prepare(Xc, lens), resp)
                stats = part if stats is None else stats + part
                ends = np.cumsum(lens)
                first = labels[ends - lens]
                startprob += np.bincount(first[first >= 0], minlength=K)
                same_seq = np.ones(Xc.shape[0] - 1, dtype=bool)
                same_seq[ends[:-1] - 1] = False
                same_seq &= (labels[:-1] >= 0) & (labels[1:] >= 0)
                np.add.at(trans, (labels[:-1][same_seq], labels[1:][same_seq]), 1.0)
            eparams = emission.init_params(stats)
        startprob = startprob / startprob.sum()
        transmat = trans / trans.sum(axis=1, keepdims=True)
        if self.startprob_init is not None:
            startprob = check_probability_vector(self.startprob_init, "startprob_init", K)
        if self.transmat_init is not None:
            transmat = check_stochastic_matrix(self.transmat_init, "transmat_init", (K, K))
        eparams = self._apply_emission_inits(eparams, source.n_features)
        return _with_masks(startprob, transmat, eparams)

    def _emission_inits_complete(self):
        """Whether every emission parameter has a starting value (``<name>_init``)."""
        return all(getattr(self, a[:-1] + "_init") is not None for a in self._emission_attributes)

    def _set_attributes(self, params):
        self.startprob_ = params.startprob
        self.transmat_ = params.transmat
        for attr, field in self._emission_attributes.items():
            setattr(self, attr, getattr(params.emission, field))

    def _params_from_attributes(self):
        return self._fitted_params()

    def _em_model_for_fitted(self):
        """The latent structure x emission of a fitted model (for inspection and tests)."""
        self._n_features = self.n_features_in_
        return self._em_model()

    # -- fitted parameters (fitted, set by hand, or loaded) ------------------------------------------
    def _fitted_params(self):
        """Validated parameters from the fitted attributes (which users may also set by hand)."""
        self._check_is_fitted(["startprob_", "transmat_"] + list(self._emission_attributes))
        K = self.n_components
        startprob = check_probability_vector(self.startprob_, "startprob_", K)
        transmat = check_stochastic_matrix(self.transmat_, "transmat_", (K, K))
        return _with_masks(startprob, transmat, self._emission_params_from_attributes())

    def _validate_fitted(self):
        self._check_hmm_parameters()
        self._fitted_params()

    @classmethod
    def from_params(cls, startprob, transmat, **kwargs):
        """A ready-to-use model from known parameters (no fitting).

        Keyword arguments that are hyperparameters of the class (``covariance_type``, ...) are
        passed to the constructor; the others are emission parameters named like the fitted
        attributes without the trailing underscore (``means``, ``covars``, ``emissionprob``,
        ``lambdas``, ``coefs``, ``intercepts``).
        """
        names = set(cls._param_names())
        hyper = {k: v for k, v in kwargs.items() if k in names}
        attrs = {k: v for k, v in kwargs.items() if k not in names}
        startprob = np.asarray(startprob, dtype=np.float64)
        hyper.setdefault("n_components", startprob.shape[0] if startprob.ndim == 1 else 1)
        model = cls(**hyper)
        expected = {a[:-1] for a in cls._emission_attributes}
        unknown = set(attrs) - expected
        missing = expected - set(attrs)
        if unknown:
            raise ValueError(f"unknown parameters for {cls.__name__}.from_params: {sorted(unknown)}; "
                             f"emission parameters are {sorted(expected)}")
        if missing:
            raise ValueError(f"{cls.__name__}.from_params needs {sorted(missing)}")
        model.startprob_ = startprob
        model.transmat_ = np.asarray(transmat, dtype=np.float64)
        for name, value in attrs.items():
            setattr(model, name + "_", np.asarray(value))
        model._after_from_params()
        model._validate_fitted()
        return model

    def _after_from_params(self):
        self.n_features_in_ = self._infer_n_features()

    # -- public API -----------------------------------------------------------------------------------
    def fit(self, X, lengths=None, callback=None, *, algorithm="em", batch_size=None, schedule=None, progress=None):
        """Fit by EM (Baum-Welch) with ``n_init`` restarts; returns ``self``.

        Parameters
        ----------
        X : array-like (n, D), or a list of such arrays (one per sequence)
        lengths : array-like of int, optional
            Lengths of the sequences concatenated in ``X`` (sum = n).
        callback : callable, optional
            Called after every iteration with a dict (see :func:`emkit.em.run_em`).
        algorithm : {"em", "stochastic"}, default="em"
            ``"stochastic"``: stochastic (online) EM over mini-batches of whole sequences in
            shuffled order; sequences longer than ``batch_size`` frames are cut into
            subsequences of ``batch_size`` frames (treated as independent).  ``max_iter`` is the
            number of passes.
        batch_size : int, default=1024
            Frames per mini-batch (stochastic EM).
        schedule : StepSchedule, dict or float, optional
            Step sizes of stochastic EM (see :class:`emkit.em.StepSchedule`).
        progress : bool, optional
            Show a progress bar (tqdm) over the iterations of each restart once the fit has run for
            a second.  Default: only when standard error is a terminal.
        """
        self._check_hmm_parameters()
        source = self._source(X, lengths)
        if source.n_rows < self.n_components and self._kmeans_seeded:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                             f"n_samples = {source.n_rows}")
        self._check_inits(source.n_features)
        self._n_features = source.n_features
        self.n_features_in_ = source.n_features
        self._run_restarts(source, callback, algorithm, batch_size, schedule, progress)
        return self

    def partial_fit(self, X, lengths=None, *, schedule=None):
        """Stochastic (online) EM step on a mini-batch of sequences; see :meth:`EMEstimator._partial_fit`.

        Call it on each batch of a stream (for example successive windows of a live recording);
        the model is usable after every call.
        """
        self._check_hmm_parameters()
        source = self._source(X, lengths, reset=not self._has_parameters())
        if not isinstance(source, SequenceSource):
            raise ValueError("partial_fit needs in-memory sequences (an array or a list of arrays)")
        if not self._has_parameters():
            if source.n_rows < self.n_components and self._kmeans_seeded:
                raise ValueError(f"the first partial_fit batch must have at least n_components="
                                 f"{self.n_components} frames; got {source.n_rows}")
            self._check_inits(source.n_features)
        return self._partial_fit(source, schedule)

    def _minibatches(self, source, batch_size, rng):
        """``batches(epoch)``: shuffled batches of whole (sub)sequences of about ``batch_size`` frames."""
        if not isinstance(source, SequenceSource):
            raise ValueError("algorithm='stochastic' needs in-memory sequences or a memory map; "
                             "use algorithm='em' for Dask arrays")
        starts, lens = [], []
        offset = 0
        for L in source.lengths:  # cut long sequences into subsequences
            for s in range(0, int(L), batch_size):
                starts.append(offset + s)
                lens.append(min(batch_size, int(L) - s))
            offset += int(L)
        starts, lens = np.array(starts), np.array(lens)

        def batches(epoch):
            order = rng.permutation(len(lens))
            i = 0
            while i < len(order):
                j, total = i, 0
                while j < len(order) and (total == 0 or total + lens[order[j]] <= batch_size):
                    total += lens[order[j]]
                    j += 1
                pick = np.sort(order[i:j])
                X = np.concatenate([np.asarray(source.X[starts[p]:starts[p] + lens[p]]) for p in pick])
                yield SequenceSource(X, lens[pick], source.frames)
                i = j

        return batches

    def _check_inits(self, n_features):
        K = self.n_components
        if self.startprob_init is not None:
            check_probability_vector(self.startprob_init, "startprob_init", K)
        if self.transmat_init is not None:
            check_stochastic_matrix(self.transmat_init, "transmat_init", (K, K))
        self._apply_emission_inits(None, n_features, check_only=True)

    def _frame_loglik(self, X, lengths, params):
        emission = self._make_emission(X.shape[1])
        return emission.log_likelihood(params.emission, emission.prepare(X, lengths))

    def _checked(self, X, lengths):
        params = self._fitted_params()
        X, lengths = self._prepare(X, lengths, reset=False)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {self.n_features_in_} "
                             "features as input")
        return X, lengths, params, self._frame_loglik(X, lengths, params)

    @staticmethod
    def _require_possible(log_likelihood):
        """States of data that has zero probability under the model are undefined: say so."""
        if not np.isfinite(log_likelihood):
            raise ValueError("X has zero probability under this model (a forbidden start or transition, or an "
                             "impossible emission), so its states are undefined; score(X) returns -inf")

    def score(self, X, lengths=None):
        """Log-likelihood ``log p(X)`` summed over sequences (hmmlearn's meaning)."""
        X, lengths, params, frame = self._checked(X, lengths)
        return inference.forward_backward(params.startprob, params.transmat, frame, lengths).log_likelihood

    def score_sequences(self, X, lengths=None):
        """Log-likelihood ``log p(X_i)`` of each sequence separately, ndarray (n_sequences,).

        ``score`` is their sum; an impossible sequence gets ``-inf``.
        """
        X, lengths, params, frame = self._checked(X, lengths)
        return inference.forward_backward(params.startprob, params.transmat, frame, lengths).seq_log_likelihood

    def score_samples(self, X, lengths=None):
        """``(log p(X), posteriors (n, K))``: the log-likelihood and the smoothed state posteriors."""
        X, lengths, params, frame = self._checked(X, lengths)
        post = inference.forward_backward(params.startprob, params.transmat, frame, lengths)
        self._require_possible(post.log_likelihood)
        return post.log_likelihood, post.posteriors

    def predict_proba(self, X, lengths=None):
        """Smoothed posteriors p(z_t | whole sequence): (n, K), or a list of (T_i, K) arrays when
        ``X`` is a list of sequences."""
        return _per_sequence(X, lengths, self.score_samples(X, lengths)[1])

    def filter(self, X, lengths=None):
        """Causal (filtered) posteriors p(z_t | x_1..x_t): (n, K), or a list of (T_i, K) arrays when
        ``X`` is a list of sequences.  No future data is used."""
        Xc, lengths_c, params, frame = self._checked(X, lengths)
        log_likelihood, filtered = inference.filter(params.startprob, params.transmat, frame, lengths_c)
        self._require_possible(log_likelihood)
        return _per_sequence(X, lengths, filtered)

    def decode(self, X, lengths=None, algorithm=None):
        """Most probable states: ``(log_prob, states (n,))``.

        ``algorithm="viterbi"`` gives the most probable path and its joint log-probability;
        ``"map"`` gives the most probable state at each step and the log-likelihood of X.
        """
        algorithm = check_choice(algorithm or self.algorithm, "algorithm", DECODE_ALGORITHMS)
        X, lengths, params, frame = self._checked(X, lengths)
        if algorithm == "viterbi":
            log_prob, path = inference.viterbi(params.startprob, params.transmat, frame, lengths)
            self._require_possible(log_prob)
            return log_prob, path
        post = inference.forward_backward(params.startprob, params.transmat, frame, lengths)
        self._require_possible(post.log_likelihood)
        return post.log_likelihood, post.posteriors.argmax(axis=1)

    def predict(self, X, lengths=None):
        """Most probable states by ``self.algorithm``: (n,), or a list of (T_i,) arrays when ``X``
        is a list of sequences."""
        return _per_sequence(X, lengths, self.decode(X, lengths)[1])

    def impute(self, X, lengths=None):
        """``X`` with every missing (NaN) entry replaced by its posterior conditional mean, (n, D).

        ``E[x_t,m | X] = sum_k p(z_t = k | X) E[x_t,m | x_t,o, z_t = k]``, with the smoothed
        state posteriors (the whole sequence informs every frame).  Observed entries are
        returned unchanged.  CategoricalHMM returns the most probable symbol instead of a mean.
        """
        X, lengths, params, frame = self._checked(X, lengths)
        emission = self._make_emission(X.shape[1])
        if not hasattr(emission, "conditional_expectations"):
            raise ValueError(f"impute is not available for {type(self).__name__}; GaussianHMM, PoissonHMM and "
                             "CategoricalHMM impute missing values")
        post = inference.forward_backward(params.startprob, params.transmat, frame, lengths)
        self._require_possible(post.log_likelihood)
        out = np.array(X, dtype=np.float64)
        for s in range(0, X.shape[0], HMM_CHUNK_FRAMES):
            part = slice(s, s + HMM_CHUNK_FRAMES)
            nan = np.isnan(out[part])
            if nan.any():
                expected = np.einsum("nk,knd->nd", post.posteriors[part],
                                     emission.conditional_expectations(params.emission, X[part]))
                out[part][nan] = expected[nan]
        return out

    def sample_posterior(self, X, lengths=None, random_state=None):
        """A state path drawn from p(z | X), (n,) (forward filtering, backward sampling)."""
        X, lengths, params, frame = self._checked(X, lengths)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        return inference.sample_posterior_path(params.startprob, params.transmat, frame, lengths, rng)

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """Draw one sequence: ``(X (n_samples, D), states (n_samples,))``."""
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}")
        params = self._fitted_params()
        rng = check_random_state(self.random_state if random_state is None else random_state)
        startprob = params.startprob
        if currstate is not None:
            check_int(currstate, "currstate", minimum=0)
            if currstate >= self.n_components:
                raise ValueError(f"currstate must be < n_components={self.n_components}; got {currstate}")
            startprob = np.eye(self.n_components)[currstate]
        states = inference.sample_states(startprob, params.transmat, int(n_samples), rng)
        emission = self._make_emission(self.n_features_in_)
        return emission.sample(params.emission, states, rng), states

    def _n_parameters(self):
        K = self.n_components
        learn = self._check_learn()
        n = 0
        if learn is None or "startprob" in learn:
            n += K - 1
        if learn is None or "transmat" in learn:
            n += K * (K - 1)
        emission_learned = learn is None or bool(set(learn) & set(self._make_emission(1).param_names))
        if emission_learned:
            n += self._make_emission(self.n_features_in_).n_parameters(self.n_features_in_)
        return n

    def bic(self, X, lengths=None):
        """Bayesian information criterion (lower is better)."""
        n_frames = len(as_sequences(X, lengths)[0])
        return -2 * self.score(X, lengths) + self._n_parameters() * np.log(n_frames)

    def aic(self, X, lengths=None):
        """Akaike information criterion (lower is better)."""
        return -2 * self.score(X, lengths) + 2 * self._n_parameters()


_COMMON_DOC = """
    startprob_prior : float or ndarray (K,), default=1.0
        Dirichlet concentration on the start probabilities, >= 1 (1.0 is maximum likelihood;
        below 1 the MAP objective is unbounded at zero probabilities, so it is refused).
        Zeros in ``startprob_init`` (or set by hand) are structural: they stay zero.
    transmat_prior : float or ndarray (K, K), default=1.0
        Dirichlet concentration on each transition row, >= 1; zeros of ``transmat_init`` stay zero.
    kappa : float, default=0.0
        Extra concentration on self-transitions (sticky HMM for behavioural segmentation).
    algorithm : {"viterbi", "map"}, default="viterbi"
        Decoder used by ``predict``.
    learn : set of str, optional
        Parameters the M-step re-estimates, e.g. ``{"transmat", "means"}`` (default: all).
    startprob_init, transmat_init : ndarray, optional
        Starting values; otherwise estimated from a k-means++ seeding.
    n_init : int, default=1
        Restarts (new k-means++ seeding each); the best final objective is kept.
    max_iter : int, default=100
    tol : float, default=1e-4
        EM stops when the log-likelihood (plus log prior) per frame changes by less than ``tol``.
    random_state : None, int or numpy.random.Generator
    verbose : int, default=0
    on_collapse : {"recover", "warn", "raise"}, default="recover"
        What EM does when a state collapses (empty, or its covariance at the ``reg_covar`` floor):
        re-seed it by splitting the most occupied state, only warn, or raise
        :class:`~emkit.exceptions.CollapseError` (see :mod:`emkit.collapse`).  Events are listed
        in ``collapse_events_`` and counted in ``n_recoveries_``.
"""


@register
class GaussianHMM(BaseHMM):
    __doc__ = """HMM with Gaussian emissions.

    Parameters
    ----------
    n_components : int
    covariance_type : {"full", "diag", "spherical", "tied"}, default="diag"
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance in the M-step.
    means_init : ndarray (K, D), optional
    covars_init : ndarray, optional
        In GaussianMixture's compact shapes: spherical (K,), diag (K, D), full (K, D, D), tied (D, D).
""" + _COMMON_DOC + """
    Attributes
    ----------
    startprob_ : ndarray (K,)
    transmat_ : ndarray (K, K)
    means_ : ndarray (K, D)
    covars_ : ndarray, compact shape (as set; never expanded)
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_
    feature_names_in_ : ndarray of str
        Column names, when fitted on a DataFrame (or a list of DataFrames); checked at prediction.
    collapse_events_ : list of dict
        Collapses in the best run (see ``on_collapse``); ``n_recoveries_`` counts the recoveries.
    """

    _emission_attributes = {"means_": "means", "covars_": "covariances"}
    _fitted_attributes = ("startprob_", "transmat_", "means_", "covars_", "converged_", "n_iter_", "lower_bound_",
                          "lower_bounds_", "n_features_in_")

    def __init__(self, n_components=1, *, covariance_type="diag", reg_covar=1e-6, startprob_prior=1.0,
                 transmat_prior=1.0, kappa=0.0, algorithm="viterbi", learn=None, startprob_init=None,
                 transmat_init=None, means_init=None, covars_init=None, n_init=1, max_iter=100, tol=1e-4,
                 random_state=None, verbose=0, on_collapse="recover"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.kappa = kappa
        self.algorithm = algorithm
        self.learn = learn
        self.startprob_init = startprob_init
        self.transmat_init = transmat_init
        self.means_init = means_init
        self.covars_init = covars_init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.on_collapse = on_collapse

    def _make_emission(self, n_features):
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_float(self.reg_covar, "reg_covar", minimum=0.0)
        return GaussianEmission(self.n_components, self.covariance_type, self.reg_covar)

    def _apply_emission_inits(self, eparams, D, check_only=False):
        K = self.n_components
        cov = COVARIANCE_TYPES[self.covariance_type]
        means = covars = None
        if self.means_init is not None:
            means = check_array(self.means_init, "means_init").astype(np.float64)
            if means.shape != (K, D):
                raise ValueError(f"means_init must have shape ({K}, {D}); got {means.shape}")
        if self.covars_init is not None:
            covars = cov.check_covariances(self.covars_init, K, D, "covars_init")
        if check_only:
            return None
        emission = self._make_emission(D)
        return emission.params_from_covariances(eparams.means if means is None else means,
                                                eparams.covariances if covars is None else covars)

    def _emission_params_from_attributes(self):
        K = self.n_components
        means = check_array(self.means_, "means_").astype(np.float64)
        if means.shape[0] != K:
            raise ValueError(f"means_ must have shape ({K}, n_features); got {means.shape}")
        covars = COVARIANCE_TYPES[self.covariance_type].check_covariances(self.covars_, K, means.shape[1], "covars_")
        return self._make_emission(means.shape[1]).params_from_covariances(means, covars)

    def _infer_n_features(self):
        return np.asarray(self.means_).shape[1]


@register
class CategoricalHMM(BaseHMM):
    __doc__ = """HMM with categorical emissions: X holds integer symbols, shape (n, 1), as in hmmlearn.

    Parameters
    ----------
    n_components : int
    n_features : int, optional
        Number of symbols; inferred as ``max(X) + 1`` when fitting if not given.
    emissionprob_prior : float or ndarray (K, n_features), default=1.0
        Dirichlet concentration on each emission row, >= 1 (1.0 is maximum likelihood).
    emissionprob_init : ndarray (K, n_features), optional
""" + _COMMON_DOC + """
    Attributes
    ----------
    startprob_, transmat_
    emissionprob_ : ndarray (K, n_features)
    """

    _emission_attributes = {"emissionprob_": "emissionprob"}
    _fitted_attributes = ("startprob_", "transmat_", "emissionprob_", "converged_", "n_iter_", "lower_bound_",
                          "lower_bounds_", "n_features_in_")

    def __init__(self, n_components=1, *, n_features=None, emissionprob_prior=1.0, startprob_prior=1.0,
                 transmat_prior=1.0, kappa=0.0, algorithm="viterbi", learn=None, startprob_init=None,
                 transmat_init=None, emissionprob_init=None, n_init=1, max_iter=100, tol=1e-4, random_state=None,
                 verbose=0, on_collapse="recover"):
        self.n_components = n_components
        self.n_features = n_features
        self.emissionprob_prior = emissionprob_prior
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.kappa = kappa
        self.algorithm = algorithm
        self.learn = learn
        self.startprob_init = startprob_init
        self.transmat_init = transmat_init
        self.emissionprob_init = emissionprob_init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.on_collapse = on_collapse

    def _n_symbols(self):
        n = getattr(self, "_fitted_n_symbols", None) or self.n_features
        if n is None and getattr(self, "emissionprob_", None) is not None:
            n = np.asarray(self.emissionprob_).shape[1]
        return n

    def _make_emission(self, n_features):
        n_symbols = self._n_symbols()
        if n_symbols is not None:
            check_concentration(self.emissionprob_prior, "emissionprob_prior", (self.n_components, n_symbols))
        return CategoricalEmission(self.n_components, n_symbols or 1, self.emissionprob_prior)

    def _validate_X(self, X):
        return self._make_emission(1).check_data(X)

    def fit(self, X, lengths=None, callback=None, **kwargs):
        self._set_alphabet(X, lengths)
        return super().fit(X, lengths, callback, **kwargs)

    def partial_fit(self, X, lengths=None, **kwargs):
        if self._n_symbols() is None:
            self._set_alphabet(X, lengths)
        return super().partial_fit(X, lengths, **kwargs)

    def _set_alphabet(self, X, lengths):
        if self.n_features is not None:
            check_int(self.n_features, "n_features", minimum=1)
        if self.n_features is not None:
            self._fitted_n_symbols = self.n_features
            return
        unset = CategoricalEmission(self.n_components, None)  # only checks symbols and fixes the alphabet
        if not is_dask_array(X):  # a dask array's largest symbol is computed without reading it whole here
            X = unset.check_data(as_sequences(X, lengths)[0])
        self._fitted_n_symbols = unset.configured(X).n_symbols

    _kmeans_seeded = False

    def impute(self, X, lengths=None):
        """``X`` (n, 1) with every missing symbol (NaN or -1) replaced by its most probable value given
        the whole sequence: ``argmax_j sum_k p(z_t = k | X) emissionprob_[k, j]``; integers."""
        X, lengths, params, frame = self._checked(X, lengths)
        post = inference.forward_backward(params.startprob, params.transmat, frame, lengths)
        self._require_possible(post.log_likelihood)
        out = X.copy()
        missing = X[:, 0] < 0
        if missing.any():
            out[missing, 0] = (post.posteriors[missing] @ params.emission.emissionprob).argmax(axis=1)
        return out

    def _random_emission_params(self, rng):
        return CategoricalParams(emissionprob=rng.dirichlet(np.ones(self._n_symbols()), size=self.n_components))

    def _apply_emission_inits(self, eparams, D, check_only=False):
        if self.emissionprob_init is None:
            return eparams
        e = check_stochastic_matrix(self.emissionprob_init, "emissionprob_init",
                                    (self.n_components, self._n_symbols()))
        return None if check_only else CategoricalParams(emissionprob=e, allowed=allowed_mask(e))

    def _emission_params_from_attributes(self):
        e = np.asarray(self.emissionprob_, dtype=np.float64)
        e = check_stochastic_matrix(e, "emissionprob_", (self.n_components, e.shape[1] if e.ndim == 2 else -1))
        if self.n_features is not None and e.shape[1] != self.n_features:
            raise ValueError(f"emissionprob_ must have n_features={self.n_features} columns (one per symbol); "
                             f"got shape {e.shape}")
        self._fitted_n_symbols = e.shape[1]  # the fitted attributes define the alphabet
        return CategoricalParams(emissionprob=e, allowed=allowed_mask(e))

    def _infer_n_features(self):
        self._fitted_n_symbols = np.asarray(self.emissionprob_).shape[1]
        return 1


@register
class PoissonHMM(BaseHMM):
    __doc__ = """HMM with Poisson emissions: X holds non-negative integer counts, shape (n, D).

    Parameters
    ----------
    n_components : int
    lambdas_prior, lambdas_weight : float, default=0.0
        Gamma prior on the rates (hmmlearn's meaning); 0 and 0 is maximum likelihood.
    lambdas_init : ndarray (K, D), optional
""" + _COMMON_DOC + """
    Attributes
    ----------
    startprob_, transmat_
    lambdas_ : ndarray (K, D)
    """

    _emission_attributes = {"lambdas_": "lambdas"}
    _fitted_attributes = ("startprob_", "transmat_", "lambdas_", "converged_", "n_iter_", "lower_bound_",
                          "lower_bounds_", "n_features_in_")

    def __init__(self, n_components=1, *, lambdas_prior=0.0, lambdas_weight=0.0, startprob_prior=1.0,
                 transmat_prior=1.0, kappa=0.0, algorithm="viterbi", learn=None, startprob_init=None,
                 transmat_init=None, lambdas_init=None, n_init=1, max_iter=100, tol=1e-4, random_state=None,
                 verbose=0, on_collapse="recover"):
        self.n_components = n_components
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.kappa = kappa
        self.algorithm = algorithm
        self.learn = learn
        self.startprob_init = startprob_init
        self.transmat_init = transmat_init
        self.lambdas_init = lambdas_init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.on_collapse = on_collapse

    def _make_emission(self, n_features):
        check_float(self.lambdas_prior, "lambdas_prior", minimum=0.0)
        check_float(self.lambdas_weight, "lambdas_weight", minimum=0.0)
        return PoissonEmission(self.n_components, self.lambdas_prior, self.lambdas_weight)

    def _validate_X(self, X):
        return self._make_emission(1).check_data(X)

    def _apply_emission_inits(self, eparams, D, check_only=False):
        if self.lambdas_init is None:
            return eparams
        lam = check_array(self.lambdas_init, "lambdas_init").astype(np.float64)
        if lam.shape != (self.n_components, D):
            raise ValueError(f"lambdas_init must have shape ({self.n_components}, {D}); got {lam.shape}")
        if np.any(lam < 0):
            raise ValueError("lambdas_init must be non-negative")
        return None if check_only else PoissonParams(lambdas=lam)

    def _emission_params_from_attributes(self):
        lam = check_array(self.lambdas_, "lambdas_").astype(np.float64)
        if lam.shape[0] != self.n_components or np.any(lam < 0):
            raise ValueError(f"lambdas_ must be a non-negative array of shape ({self.n_components}, n_features)")
        return PoissonParams(lambdas=lam)

    def _infer_n_features(self):
        return np.asarray(self.lambdas_).shape[1]


@register
class ARHMM(BaseHMM):
    __doc__ = """HMM with autoregressive Gaussian emissions of order p.

    In state k, ``x_t ~ N(A_k [x_{t-1}; ...; x_{t-p}] + b_k, Q_k)``.  The first ``order``
    frames of each sequence are conditioned on: they carry no emission evidence.

    Parameters
    ----------
    n_components : int
    order : int, default=1
    reg_covar : float, default=1e-6
    coefs_init : ndarray (K, D, order*D), optional
    intercepts_init : ndarray (K, D), optional
    covars_init : ndarray (K, D, D), optional
""" + _COMMON_DOC + """
    ``learn`` names for the emission are ``"coefs"`` (A and b together) and ``"covars"``.

    Attributes
    ----------
    startprob_, transmat_
    coefs_ : ndarray (K, D, order*D)
        ``[A_k1, ..., A_kp]``, lag 1 first.
    intercepts_ : ndarray (K, D)
    covars_ : ndarray (K, D, D)
    """

    _emission_attributes = {"coefs_": "coefs", "intercepts_": "intercepts", "covars_": "covars"}
    _fitted_attributes = ("startprob_", "transmat_", "coefs_", "intercepts_", "covars_", "converged_", "n_iter_",
                          "lower_bound_", "lower_bounds_", "n_features_in_")

    def __init__(self, n_components=1, *, order=1, reg_covar=1e-6, startprob_prior=1.0, transmat_prior=1.0,
                 kappa=0.0, algorithm="viterbi", learn=None, startprob_init=None, transmat_init=None,
                 coefs_init=None, intercepts_init=None, covars_init=None, n_init=1, max_iter=100, tol=1e-4,
                 random_state=None, verbose=0, on_collapse="recover"):
        self.n_components = n_components
        self.order = order
        self.reg_covar = reg_covar
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.kappa = kappa
        self.algorithm = algorithm
        self.learn = learn
        self.startprob_init = startprob_init
        self.transmat_init = transmat_init
        self.coefs_init = coefs_init
        self.intercepts_init = intercepts_init
        self.covars_init = covars_init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.on_collapse = on_collapse

    def _source(self, X, lengths, reset=True):
        source = super()._source(X, lengths, reset)
        if np.all(np.asarray(source.lengths) <= self.order):
            raise ValueError(f"every sequence has at most order={self.order} frames, so none has a frame with a "
                             "full history to fit the autoregression on; lower order or pass longer sequences")
        return source

    def _make_emission(self, n_features):
        check_int(self.order, "order", minimum=1)
        check_float(self.reg_covar, "reg_covar", minimum=0.0)
        return AREmission(self.n_components, self.order, self.reg_covar)

    def _check_emission_arrays(self, coefs, intercepts, covars, D, suffix):
        K, p = self.n_components, self.order
        out = []
        for name, value, shape in ((f"coefs{suffix}", coefs, (K, D, p * D)), (f"intercepts{suffix}", intercepts, (K, D)),
                                   (f"covars{suffix}", covars, (K, D, D))):
            if value is None:
                out.append(None)
                continue
            a = np.asarray(value, dtype=np.float64)
            if a.shape != shape:
                raise ValueError(f"{name} must have shape {shape}; got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} must be finite")
            out.append(a)
        if out[2] is not None:
            out[2] = COVARIANCE_TYPES["full"].check_covariances(out[2], K, D, f"covars{suffix}")
        return out

    def _apply_emission_inits(self, eparams, D, check_only=False):
        coefs, intercepts, covars = self._check_emission_arrays(self.coefs_init, self.intercepts_init,
                                                                self.covars_init, D, "_init")
        if check_only:
            return None
        return self._make_emission(D).params_from_arrays(eparams.coefs if coefs is None else coefs,
                                                         eparams.intercepts if intercepts is None else intercepts,
                                                         eparams.covars if covars is None else covars)

    def _emission_params_from_attributes(self):
        D = np.asarray(self.intercepts_).shape[-1]
        coefs, intercepts, covars = self._check_emission_arrays(self.coefs_, self.intercepts_, self.covars_, D, "_")
        return self._make_emission(D).params_from_arrays(coefs, intercepts, covars)

    def _infer_n_features(self):
        return np.asarray(self.intercepts_).shape[1]
