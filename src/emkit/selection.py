"""Choosing the number of states, and checking that the states are reproducible.

Two tools:

* :func:`select` fits one model per candidate number of states and ranks them by an
  information criterion (BIC, AIC, ICL) or by the log-likelihood of held-out data;
  it returns a :class:`Selection` with a comparison table and the chosen model.
* :func:`match_states`, :func:`align_to` and :func:`state_stability` put the states of
  two fits of the same model into correspondence (state labels are arbitrary: restart 2's
  state 0 may be restart 1's state 2), relabel a fit to match another, and report, per state
  of the best run, how often the other restarts of ``fit`` found that state again.

State distance
--------------
States are compared by the *Hellinger distance* between their emission distributions,
``H = sqrt(1 - BC)`` where ``BC = exp(-D_B)`` is the Bhattacharyya coefficient (the overlap
``integral sqrt(p q)``) and ``D_B`` the Bhattacharyya distance.  ``H`` is a metric, lies in
[0, 1] (0: identical distributions, 1: no overlap) and is invariant to a change of units of
the data, so one threshold suits every model and data set.  Closed forms:

* Gaussian states (GaussianMixture, GaussianHMM, any covariance type; a tied covariance
  is shared by all states):
  ``D_B = (m1 - m2)' S^-1 (m1 - m2) / 8 + log(det S / sqrt(det S1 det S2)) / 2``,
  ``S = (S1 + S2) / 2``.
* KMeans: each cluster is treated as the isotropic Gaussian of hard-EM K-means,
  ``N(centre, s2 I)`` with ``s2 = inertia_ / (n_samples x n_features)``.
* Categorical states: ``BC = sum_s sqrt(p1_s p2_s)`` between emission rows.
* Poisson states (independent features): ``D_B = sum_d (sqrt(l1_d) - sqrt(l2_d))**2 / 2``.
* Autoregressive states ``x_t ~ N(A z_t + b, Q)`` with lagged inputs ``z_t``: the Gaussian
  ``D_B`` averaged over inputs with zero mean and identity second moment, i.e. the mean term
  is ``(tr(dA' S^-1 dA) + db' S^-1 db) / 8``.  This is scale-free only if the series is
  standardised (roughly unit variance per feature).

The distance uses the emission parameters only: mixture weights and transition
probabilities are reported separately by :func:`state_stability`.  The matching itself
(:func:`match_states`) is the assignment (Hungarian algorithm) that minimises the summed
Bhattacharyya distance, i.e. maximises the product of the matched overlaps.

``threshold`` (default 0.2, ``BC >= 0.96``) is the Hellinger distance below which two states
count as "the same state".  For scale: two one-dimensional Gaussians with equal variance
and means ``delta`` standard deviations apart have ``H = sqrt(1 - exp(-delta**2 / 8))``,
so ``H = 0.2`` is about 0.57 standard deviations; a ratio of 1.5 between the standard
deviations alone gives ``H = 0.2`` too.  Restarts that reach the same optimum typically agree to ``H < 0.01``; a
restart that merges or splits states instead has some ``H`` near 1.
"""

from __future__ import annotations

import copy
import numbers
import time
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.special import entr

from ._validation import check_array, check_float, check_int, check_lengths, check_random_state
from .exceptions import CollapseWarning
from .models.classifier import GaussianMixtureClassifier, HMMClassifier
from .models.hmm import ARHMM, BaseHMM, CategoricalHMM, GaussianHMM, PoissonHMM, as_sequences
from .models.kmeans import KMeans
from .models.mixture import GaussianMixture

__all__ = ["CRITERIA", "Selection", "StateMatch", "align_to", "bhattacharyya_matrix", "match_states", "select",
           "state_stability"]

#: Criteria accepted by :func:`select`, and whether lower values are better.
CRITERIA = {"bic": True, "aic": True, "icl": True, "heldout": False, "elbo": False}

_CRITERION_NAMES = {"bic": "BIC", "aic": "AIC", "icl": "ICL", "heldout": "held-out mean log-likelihood per row",
                   "elbo": "evidence lower bound"}

#: Hyperparameters whose value, when an array, has one entry per state.
_STATE_SHAPED_PARAMS = ("startprob_prior", "transmat_prior", "emissionprob_prior")

#: Cap on the Bhattacharyya distance (an overlap of exp(-700) is "none at all").
_MAX_BHATTACHARYYA = 700.0


def _require_pandas(what):
    try:
        import pandas
    except ImportError:
        raise ImportError(f"emkit.selection.{what} needs pandas, an optional dependency of emkit: "
                          "pip install pandas") from None
    return pandas


# ================================================================================================
# select
# ================================================================================================
@dataclass(repr=False)
class Selection:
    """Result of :func:`select`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per candidate number of states, best first.  Columns:

        ``n_components``
            The number of states (clusters for KMeans).
        ``<criterion>`` (``bic``, ``aic``, ``icl``, ``heldout`` or ``elbo``)
            The criterion: BIC/AIC/ICL (lower is better), the held-out mean
            log-likelihood per row or the evidence lower bound (higher is better).
        ``entropy`` (ICL only)
            Entropy of the state posteriors, summed over rows (``icl = bic + 2 entropy``).
        ``mean_loglik``
            Mean log-likelihood per row of the data the model was fitted on (for
            ``"heldout"`` the training split).  For KMeans: minus the inertia per row.
        ``n_effective`` (models with ``n_effective_components()``)
            Components of weight above 1% (the others are switched off by the prior).
        ``n_parameters``
            Free parameters counted by the criteria (for KMeans: the centre coordinates).
        ``converged``, ``n_iter``
            From the fitted model (``converged`` is ``None`` for KMeans).
        ``recovered``, ``collapsed``
            Collapsed components re-seeded during the fit, and collapses left unrecovered
            (see ``on_collapse``); ``None`` for KMeans.  ``select`` warns when the best fit
            has an unrecovered collapse, and when the best number of states is at the edge
            of the candidates searched.
        ``fit_seconds``
            Wall time of ``fit``.
        ``rank``
            1 for the best; ties share the better rank.
    best_n_components : int
        ``n_components`` of the first row of ``table`` (the smallest one among ties).
    best_model : estimator
        The fitted model with ``best_n_components``.  For ``"heldout"`` it is refitted on all
        of ``X`` (the scores come from fits on the training split).
    criterion : str
    models : dict of int -> estimator, or None
        With ``return_models=True``: every fitted model, by number of states.  For
        ``"heldout"`` these are the fits on the training split.
    """

    table: object
    best_n_components: int
    best_model: object
    criterion: str
    models: dict | None = field(default=None)

    @property
    def lower_is_better(self):
        """Whether lower criterion values are better (False for ``"heldout"`` and ``"elbo"``)."""
        return CRITERIA[self.criterion]

    def __repr__(self):
        direction = "lower is better" if self.lower_is_better else "higher is better"
        name = _CRITERION_NAMES[self.criterion]
        if isinstance(self.best_model, KMeans) and self.criterion == "heldout":
            name = "held-out score per row (minus the inertia)"
        head = f"Selection: best n_components = {self.best_n_components} by {name} ({direction})"
        columns = ["rank"] + [c for c in self.table.columns if c != "rank"]
        body = self.table[columns].to_string(index=False, float_format=lambda v: f"{v:.6g}")
        models = "" if self.models is None else f"\nmodels: fitted models for n_components = {sorted(self.models)}"
        return f"{head}\n{body}\nbest_model: {self.best_model!r}{models}"

    def __str__(self):
        return self.__repr__()


def _kind(model):
    if isinstance(model, type):
        raise ValueError(f"model must be an estimator instance used as a template, such as {model.__name__}(); "
                         f"got the class {model.__name__} itself")
    if not hasattr(model, "get_params") or not hasattr(model, "fit"):
        raise ValueError(f"model must be an emkit estimator (GaussianMixture, KMeans or an HMM); "
                         f"got {type(model).__name__}")
    if isinstance(model, BaseHMM):
        return "hmm"
    if isinstance(model, KMeans):
        return "kmeans"
    return "mixture"


def _check_n_components(n_components):
    if isinstance(n_components, numbers.Integral) and not isinstance(n_components, (bool, np.bool_)):
        n_components = [n_components]
    if isinstance(n_components, (str, bytes)):
        raise ValueError(f"n_components must be an iterable of positive integers such as range(1, 9); "
                         f"got {n_components!r}")
    try:
        values = list(n_components)
    except TypeError:
        raise ValueError(f"n_components must be an iterable of positive integers such as range(1, 9); "
                         f"got {n_components!r}") from None
    if not values:
        raise ValueError("n_components must hold at least one candidate number of states; got an empty sequence")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise ValueError(f"n_components must hold integers; got {v!r}")
        if v < 1:
            raise ValueError(f"n_components must hold integers >= 1; got {int(v)}")
        out.append(int(v))
    return sorted(set(out))


def _template_params(model, kind):
    """Hyperparameters of the template, refusing those whose shape fixes the number of states."""
    params = model.get_params(deep=False)
    fixed = []
    for name, value in params.items():
        if value is None:
            continue
        if (name.endswith("_init") and name != "n_init") or (name == "init" and not isinstance(value, str)):
            fixed.append(name)
        elif name in _STATE_SHAPED_PARAMS and np.ndim(value) > 0:
            fixed.append(name)
    if fixed:
        raise ValueError(f"model has {', '.join(fixed)} set; such arrays have one entry per state, so select cannot "
                         f"vary the number of states. Set {'it' if len(fixed) == 1 else 'them'} to None (or to a "
                         "scalar for priors) in the template")
    return params


def _make(model, params, kind, k, seed):
    p = dict(params)
    p["n_clusters" if kind == "kmeans" else "n_components"] = k
    if seed is not None:
        p["random_state"] = seed
    return type(model)(**p)


def _fit(est, kind, X, lengths):
    t0 = time.perf_counter()
    if kind == "hmm":
        est.fit(X, lengths)
    else:
        est.fit(X)
    return time.perf_counter() - t0


def _total_loglik(est, kind, X, lengths):
    if kind == "hmm":
        return float(est.score(X, lengths))
    return float(est.score(X)) * (X.shape[0] if kind == "mixture" else 1.0)


def _n_parameters(est, kind, X):
    if kind == "kmeans":
        return int(est.cluster_centers_.size)
    f = getattr(est, "_n_parameters", None)
    try:
        return int(f()) if f is not None else None
    except Exception:  # pragma: no cover - a foreign estimator without a usable count
        return None


def _entropy(resp):
    """``-sum r log r`` over all rows and states (0 log 0 = 0)."""
    return float(entr(np.clip(np.asarray(resp, dtype=np.float64), 0.0, 1.0)).sum()) + 0.0


def _criterion(est, kind, criterion, X, lengths):
    """(value, entropy or None) of bic/aic/icl/elbo on X."""
    if criterion == "elbo":
        return float(est.elbo()), None
    if criterion == "aic":
        return float(est.aic(X, lengths) if kind == "hmm" else est.aic(X)), None
    bic = float(est.bic(X, lengths) if kind == "hmm" else est.bic(X))
    if criterion == "bic":
        return bic, None
    resp = est.predict_proba(X, lengths) if kind == "hmm" else est.predict_proba(X)
    ent = _entropy(resp)
    return bic + 2.0 * ent, ent


def _split(kind, X, lengths, fraction, rng, k_max):
    """Training and held-out parts: ``(X_train, lengths_train, X_test, lengths_test)``."""
    if kind == "hmm":
        n_seq = len(lengths)
        if n_seq < 2:
            raise ValueError("criterion='heldout' for an HMM holds out whole sequences, so it needs at least 2 "
                             f"sequences; got {n_seq}. Pass several sequences (a list of arrays, or X with "
                             "lengths=...), or use criterion='bic'")
        n_test = min(max(1, int(round(fraction * n_seq))), n_seq - 1)
        test = np.zeros(n_seq, dtype=bool)
        test[rng.choice(n_seq, size=n_test, replace=False)] = True
        ends = np.cumsum(lengths)
        starts = ends - lengths
        rows_test = np.concatenate([np.arange(a, b) for a, b, t in zip(starts, ends, test) if t])
        rows_train = np.concatenate([np.arange(a, b) for a, b, t in zip(starts, ends, test) if not t])
        return X[rows_train], lengths[~test], X[rows_test], lengths[test]
    n = X.shape[0]
    if n < 2:
        raise ValueError(f"criterion='heldout' needs at least 2 rows in X; got {n}")
    n_test = min(max(1, int(round(fraction * n))), n - 1)
    if n - n_test < k_max:
        raise ValueError(f"the training split has {n - n_test} rows (heldout_fraction={fraction}), fewer than the "
                         f"largest n_components={k_max}; lower heldout_fraction or the candidates in n_components")
    perm = rng.permutation(n)
    return X[np.sort(perm[n_test:])], None, X[np.sort(perm[:n_test])], None


def parse_candidates(text, name="n_components"):
    """Candidate numbers of states from text: a range ``"2-12"`` or a list ``"2,4,8"``.

    Parameters
    ----------
    text : str
    name : str
        The option's name, for error messages.

    Returns
    -------
    list of int
    """
    try:
        if "-" in text and "," not in text:
            a, b = text.split("-", 1)
            values = list(range(int(a), int(b) + 1))
        else:
            values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be a number, a range like 1-8, or a list like 2,4,8; got {text!r}") from None
    if not values:
        raise ValueError(f"{name} range {text!r} is empty")
    if min(values) < 1:
        raise ValueError(f"{name} must list numbers of states >= 1; got {text!r}")
    return values


def select(model, X, n_components=range(1, 9), *, criterion="bic", lengths=None, n_init=None,
           heldout_fraction=0.2, random_state=None, return_models=False, y=None):
    """Fit one model per candidate number of states and rank them.

    Parameters
    ----------
    model : estimator
        An estimator used as a template (it is not modified): GaussianMixture, KMeans,
        GaussianHMM, CategoricalHMM, PoissonHMM or ARHMM.  Every candidate is built as
        ``type(model)(**{**model.get_params(), "n_components": k})`` (``n_clusters`` for
        KMeans).  Hyperparameters with one entry per state (``means_init``, array priors,
        ...) are refused.
    X : array-like (n, D), or a list of arrays (n_i, D) (one per sequence, HMMs only)
    n_components : iterable of int, default=range(1, 9)
        Candidate numbers of states, each >= 1 (a single int is accepted).
    criterion : {"bic", "aic", "icl", "heldout", "elbo"}, default="bic"
        * ``"bic"``, ``"aic"``: the models' own ``bic``/``aic`` on ``X`` (lower is better).
        * ``"icl"``: integrated completed likelihood, ``bic + 2 * entropy`` where
          ``entropy = -sum_n sum_k r_nk log r_nk`` of the state posteriors ``r``
          (``predict_proba``).  For HMMs the smoothed marginal posteriors
          ``p(z_t | X)`` are used: the usual approximation, which sums the per-frame
          entropies and so over-states the entropy of the posterior over whole state
          paths (by the mutual information between frames).
        * ``"elbo"``: the evidence lower bound of a variational model on ``X`` (its ``elbo()``,
          with the constants that depend on the number of components; higher is better), for
          :class:`~emkit.BayesianGaussianMixture` and other models with a variational posterior.
          Such models also switch surplus components off, so the table gains ``n_effective``
          (components of weight above 1%).
        * ``"heldout"``: fit on a training split, report the mean log-likelihood per row of
          the held-out split (higher is better).  Mixtures and KMeans hold out a random
          ``heldout_fraction`` of the rows; HMMs hold out whole sequences (a random
          ``heldout_fraction`` of them, at least one, and at least one kept for training),
          so they need at least 2 sequences.  For KMeans the score is minus the inertia per
          held-out row, which keeps improving as K grows, so it mostly picks the largest
          candidate: prefer ``GaussianMixture(covariance_type="spherical")``.
    lengths : array-like of int, optional
        Sequence lengths for HMMs (sum = n).  Not accepted for mixtures and KMeans.
    n_init : int, optional
        Restarts per fit; overrides the template's ``n_init``.
    heldout_fraction : float in (0, 1), default=0.2
        Share of rows (mixtures) or sequences (HMMs) held out by ``"heldout"``.
    random_state : None, int or numpy.random.Generator
        Seeds the held-out split and, when the template's own ``random_state`` is None,
        the fits (one seed per candidate, drawn from it; the ``"heldout"`` refit of the best
        candidate reuses its seed).
    return_models : bool, default=False
        Keep every fitted model in ``Selection.models``.
    y : array-like (n,) or (n_sequences,), optional
        Class labels, with a :class:`~emkit.GaussianMixtureClassifier` or
        :class:`~emkit.HMMClassifier` template (one label per sequence): the number of
        components (states) is then chosen for each class separately, on that class's rows
        (sequences).  The table gains a ``class`` column (each class's candidates ranked among
        themselves), ``best_n_components`` is a dict ``{class: K}`` and ``best_model`` the
        classifier built from each class's best model (``models``: ``{class: {K: model}}``).

    Returns
    -------
    Selection
        ``table`` (one row per candidate, best first), ``best_n_components``,
        ``best_model``, ``criterion`` and ``models``.

    Raises
    ------
    ImportError
        If pandas is not installed.
    ValueError
        For an unknown ``criterion``, empty or non-positive ``n_components``, KMeans with a
        likelihood criterion, ``heldout`` with a single HMM sequence, and the like.

    Examples
    --------
    >>> sel = select(GaussianMixture(covariance_type="full"), X, range(1, 7))   # doctest: +SKIP
    >>> sel.best_n_components, sel.table                                       # doctest: +SKIP
    """
    pd = _require_pandas("select")
    if isinstance(model, (GaussianMixtureClassifier, HMMClassifier)):
        return _select_per_class(model, X, y, n_components, lengths, criterion=criterion, n_init=n_init,
                                 heldout_fraction=heldout_fraction, random_state=random_state,
                                 return_models=return_models)
    if y is not None:
        raise ValueError(f"y is only used with a classifier template (GaussianMixtureClassifier or "
                         f"HMMClassifier: one choice per class); {type(model).__name__} is unsupervised, so pass "
                         "y=None")
    kind = _kind(model)
    if not isinstance(criterion, str) or criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {list(CRITERIA)}; got {criterion!r}")
    candidates = _check_n_components(n_components)
    if criterion == "elbo" and not callable(getattr(model, "elbo", None)):
        raise ValueError(f"criterion='elbo' needs a model with a variational lower bound (an elbo() method, such as "
                         f"BayesianGaussianMixture); {type(model).__name__} has none: use 'bic', 'aic', 'icl' or "
                         "'heldout'")
    if criterion in ("bic", "aic", "icl") and not getattr(model, "_has_information_criteria", True):
        raise ValueError(f"criterion={criterion!r} needs a point estimate, which {type(model).__name__} does not "
                         "have (it fits a posterior); use criterion='elbo' or 'heldout'")
    if kind == "kmeans" and criterion != "heldout":
        raise ValueError(f"criterion={criterion!r} needs a likelihood, which KMeans does not define; use "
                         "criterion='heldout' (held-out inertia) or GaussianMixture(covariance_type='spherical')")
    heldout_fraction = check_float(heldout_fraction, "heldout_fraction", minimum=0.0, maximum=1.0,
                                   include_min=False, include_max=False)
    if n_init is not None:
        n_init = check_int(n_init, "n_init", minimum=1)
    if not isinstance(return_models, (bool, np.bool_)):
        raise ValueError(f"return_models must be True or False; got {return_models!r}")
    rng = check_random_state(random_state)

    params = _template_params(model, kind)
    if n_init is not None:
        params["n_init"] = n_init

    if kind == "hmm":
        X, lengths = as_sequences(X, lengths)
        X = check_array(X, "X", dtype=None, allow_nan=True)
        lengths = check_lengths(lengths, X.shape[0])
        if isinstance(model, CategoricalHMM) and params.get("n_features") is None and X.dtype.kind in "iuf":
            # fix the alphabet from all the data, so that a training split missing a symbol still scores the rest
            params["n_features"] = int(np.nanmax(X)) + 1
    else:
        if lengths is not None:
            raise ValueError(f"lengths is only used for HMMs; {type(model).__name__} treats the rows of X as "
                             "independent, so pass lengths=None")
        X = check_array(X, "X", allow_nan=True)  # KMeans refuses NaN itself
        if X.shape[0] < candidates[-1]:
            raise ValueError(f"n_components holds {candidates[-1]}, more than the {X.shape[0]} rows of X")

    own_seed = params.get("random_state") is not None
    drawn = {k: int(rng.integers(2**32)) for k in candidates}  # always drawn, so the split does not depend on it
    seeds = {k: (None if own_seed else drawn[k]) for k in candidates}
    # the split is drawn after the seeds, so the fits do not depend on heldout_fraction
    if criterion == "heldout":
        X_fit, len_fit, X_test, len_test = _split(kind, X, lengths, heldout_fraction, rng, candidates[-1])
    else:
        X_fit, len_fit = X, lengths

    rows, models = [], {}
    for k in candidates:
        est = _make(model, params, kind, k, seeds[k])
        seconds = _fit(est, kind, X_fit, len_fit)
        row = {"n_components": k}
        if criterion == "heldout":
            n_test = X_test.shape[0]
            row["heldout"] = _total_loglik(est, kind, X_test, len_test) / n_test
        else:
            value, ent = _criterion(est, kind, criterion, X_fit, len_fit)
            row[criterion] = value
            if criterion == "icl":
                row["entropy"] = ent
        row["mean_loglik"] = _total_loglik(est, kind, X_fit, len_fit) / X_fit.shape[0]
        if callable(getattr(est, "n_effective_components", None)):
            row["n_effective"] = int(est.n_effective_components())
        row["n_parameters"] = _n_parameters(est, kind, X_fit)
        conv = getattr(est, "converged_", None)
        row["converged"] = None if conv is None else bool(conv)
        n_iter = getattr(est, "n_iter_", None)
        row["n_iter"] = None if n_iter is None else int(n_iter)
        events = getattr(est, "collapse_events_", None)
        row["recovered"] = None if events is None else int(est.n_recoveries_)
        row["collapsed"] = None if events is None else sum(e["action"] != "recovered" for e in events)
        row["fit_seconds"] = seconds
        rows.append(row)
        models[k] = est

    table = pd.DataFrame(rows)
    values = table[criterion].astype(float)
    if values.isna().all():
        raise ValueError(f"every candidate gave an undefined (NaN) {criterion}; check X and the model")
    table["rank"] = values.rank(method="min", ascending=CRITERIA[criterion], na_option="bottom").astype(int)
    table = table.sort_values(["rank", "n_components"], kind="stable").reset_index(drop=True)
    for col in ("n_parameters", "n_iter", "recovered", "collapsed"):
        if col in table and table[col].notna().all():
            table[col] = table[col].astype(int)
    if criterion == "heldout":
        table.attrs["n_train"] = int(X_fit.shape[0])
        table.attrs["n_test"] = int(X_test.shape[0])

    best_k = int(table["n_components"].iloc[0])
    _warn_about_choice(table, best_k, candidates, criterion)
    if criterion == "heldout":
        best_model = _make(model, params, kind, best_k, seeds[best_k])
        _fit(best_model, kind, X, lengths)
    else:
        best_model = models[best_k]
    return Selection(table=table, best_n_components=best_k, best_model=best_model, criterion=criterion,
                     models=models if return_models else None)


def _select_per_class(model, X, y, n_components, lengths, **kwargs):
    """:func:`select` for a classifier: one selection per class, on its rows (or sequences)."""
    pd = _require_pandas("select")
    rng = check_random_state(kwargs.pop("random_state"))
    if isinstance(model, HMMClassifier):
        X, lengths = model._sequences(X, lengths)
        classes, y_idx = model._check_targets(y, len(lengths), "sequence")
        template, data = model._member(None, model.random_state, X), (X, lengths)
        row_class = np.repeat(y_idx, lengths)
        parts = [(X[row_class == i], lengths[y_idx == i]) for i in range(len(classes))]
    else:
        if lengths is not None:
            raise ValueError("lengths is only used with an HMMClassifier template; pass lengths=None")
        X = check_array(X, "X")
        classes, y_idx = model._check_targets(y, X.shape[0], "row of X")
        template, data = model._member(1, model.random_state), X
        parts = [(X[y_idx == i], None) for i in range(len(classes))]
    model._class_weights(classes, y_idx)  # bad priors fail before any fit
    tables, best, fitted, models = [], {}, [], {}
    for label, (Xc, lc) in zip((c.item() if hasattr(c, "item") else c for c in classes), parts):
        sel = select(template, Xc, n_components, lengths=lc, random_state=rng, **kwargs)
        tables.append(sel.table.assign(**{"class": label})[["class", *sel.table.columns]])
        best[label] = sel.best_n_components
        fitted.append(sel.best_model)
        models[label] = sel.models
    clf = copy.deepcopy(model).set_params(n_components=best)
    clf._check_flag_parameters()
    clf._assemble(fitted, data, X.shape[1], classes, y_idx)
    return Selection(table=pd.concat(tables, ignore_index=True), best_n_components=best, best_model=clf,
                     criterion=kwargs["criterion"], models=models if kwargs["return_models"] else None)


def _warn_about_choice(table, best_k, candidates, criterion):
    """Warn when the best K is at the edge of the range searched, or its fit had a collapse."""
    if len(candidates) > 1 and best_k == candidates[-1]:
        warnings.warn(f"the best n_components by {criterion} is {best_k}, the largest candidate searched: a larger "
                      "number may be better still; extend the range", UserWarning, stacklevel=3)
    elif len(candidates) > 1 and best_k == candidates[0] and best_k > 1:
        warnings.warn(f"the best n_components by {criterion} is {best_k}, the smallest candidate searched: a "
                      "smaller number may be better still; extend the range", UserWarning, stacklevel=3)
    collapsed = table["collapsed"].iloc[0]
    if collapsed is not None and collapsed == collapsed and collapsed > 0:  # None/NaN for KMeans
        warnings.warn(f"the fit with the best n_components={best_k} has {int(collapsed)} collapsed "
                      "component(s) that were not recovered (column 'collapsed'); its score may come from a "
                      "likelihood spike on repeated points", CollapseWarning, stacklevel=3)


# ================================================================================================
# State matching
# ================================================================================================
class StateMatch(NamedTuple):
    """Result of :func:`match_states`.

    Attributes
    ----------
    perm : ndarray of int (K,)
        ``other``'s state ``perm[k]`` corresponds to the reference's state ``k``.
    distances : ndarray (K,)
        Hellinger distance in [0, 1] between reference state ``k`` and ``other``'s state
        ``perm[k]`` (see the module docstring).
    """

    perm: np.ndarray
    distances: np.ndarray


def _n_states(model):
    return int(model.n_clusters if isinstance(model, KMeans) else model.n_components)


def _diag_or_full(cov_type, cov, K, D):
    """Covariances as variances (K, D) for diag/spherical, or full matrices (K, D, D)."""
    cov = np.asarray(cov, dtype=np.float64)
    if cov_type == "spherical":
        return "diag", np.repeat(cov.reshape(K, 1), D, axis=1)
    if cov_type == "diag":
        return "diag", cov.reshape(K, D)
    if cov_type == "tied":
        return "full", np.broadcast_to(cov.reshape(D, D), (K, D, D))
    return "full", cov.reshape(K, D, D)


def _emission(model):
    """The family and parameters of a fitted model's state distributions."""
    if isinstance(model, KMeans):
        model._check_is_fitted(["cluster_centers_", "inertia_"])
        centers = np.asarray(model.cluster_centers_, dtype=np.float64)
        K, D = centers.shape
        labels = getattr(model, "labels_", None)
        n = len(labels) if labels is not None else K
        s2 = float(model.inertia_) / max(n * D, 1)
        scale = float(np.mean(centers ** 2)) + 1.0
        s2 = max(s2, 1e-12 * scale)
        return ("gaussian", centers, "diag", np.full((K, D), s2))
    if isinstance(model, GaussianMixture):
        model._check_is_fitted(["weights_", "means_", "covariances_"])
        means = np.asarray(model.means_, dtype=np.float64)
        K, D = means.shape
        return ("gaussian", means) + _diag_or_full(model.covariance_type, model.covariances_, K, D)
    if isinstance(model, GaussianHMM):
        model._fitted_params()
        means = np.asarray(model.means_, dtype=np.float64)
        K, D = means.shape
        return ("gaussian", means) + _diag_or_full(model.covariance_type, model.covars_, K, D)
    if isinstance(model, CategoricalHMM):
        model._fitted_params()
        return ("categorical", np.asarray(model.emissionprob_, dtype=np.float64))
    if isinstance(model, PoissonHMM):
        model._fitted_params()
        return ("poisson", np.asarray(model.lambdas_, dtype=np.float64))
    if isinstance(model, ARHMM):
        model._fitted_params()
        coefs = np.asarray(model.coefs_, dtype=np.float64)
        intercepts = np.asarray(model.intercepts_, dtype=np.float64)
        weights = np.concatenate([coefs, intercepts[:, :, None]], axis=2)  # (K, D, p*D + 1)
        return ("ar", weights, np.asarray(model.covars_, dtype=np.float64))
    raise ValueError(f"state matching supports GaussianMixture, KMeans, GaussianHMM, CategoricalHMM, PoissonHMM "
                     f"and ARHMM; got {type(model).__name__}")


def _logdet_spd(S):
    L = np.linalg.cholesky(S)
    return 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1), L


def _bhattacharyya_gaussian_full(m1, c1, m2, c2):
    """(K1, K2) Bhattacharyya distances between N(m1_i, c1_i) and N(m2_j, c2_j), full covariances.

    ``m`` may also be regression weights (K, D, P): then the mean term is ``tr(dW' S^-1 dW)``.
    """
    ld1 = _logdet_spd(c1)[0]
    ld2 = _logdet_spd(c2)[0]
    out = np.empty((m1.shape[0], m2.shape[0]))
    for i in range(m1.shape[0]):
        ldS, L = _logdet_spd((c1[i][None] + c2) / 2.0)  # (K2,), (K2, D, D)
        delta = m1[i][None] - m2  # (K2, D) or (K2, D, P)
        if delta.ndim == 2:
            delta = delta[:, :, None]
        y = np.linalg.solve(L, delta)  # L^-1 delta, so |y|^2 = delta' S^-1 delta
        maha = (y ** 2).sum(axis=(1, 2))
        out[i] = maha / 8.0 + 0.5 * (ldS - 0.5 * (ld1[i] + ld2))
    return out


def _bhattacharyya_gaussian_diag(m1, v1, m2, v2):
    S = (v1[:, None] + v2[None]) / 2.0  # (K1, K2, D)
    delta = m1[:, None] - m2[None]
    maha = (delta ** 2 / S).sum(axis=-1)
    ld = np.log(S).sum(axis=-1) - 0.5 * (np.log(v1).sum(axis=-1)[:, None] + np.log(v2).sum(axis=-1)[None])
    return maha / 8.0 + 0.5 * ld


def _to_full(kind, cov):
    return cov if kind == "full" else np.stack([np.diag(v) for v in cov])


def bhattacharyya_matrix(reference, other):
    """Bhattacharyya distances between every state of ``reference`` and every state of ``other``.

    Parameters
    ----------
    reference, other : fitted estimators of the same class

    Returns
    -------
    ndarray (K_reference, K_other)
        ``D_B >= 0`` (capped at 700); the Hellinger distance is ``sqrt(1 - exp(-D_B))``.
    """
    e1, e2 = _emission(reference), _emission(other)
    family = e1[0]
    if family == "gaussian":
        _, m1, k1, c1 = e1
        _, m2, k2, c2 = e2
        if k1 == "diag" and k2 == "diag":
            db = _bhattacharyya_gaussian_diag(m1, c1, m2, c2)
        else:
            db = _bhattacharyya_gaussian_full(m1, _to_full(k1, c1), m2, _to_full(k2, c2))
    elif family == "categorical":
        bc = np.sqrt(e1[1]) @ np.sqrt(e2[1]).T
        with np.errstate(divide="ignore"):
            db = -np.log(np.clip(bc, 0.0, 1.0))
    elif family == "poisson":
        db = 0.5 * ((np.sqrt(e1[1])[:, None] - np.sqrt(e2[1])[None]) ** 2).sum(axis=-1)
    else:  # autoregressive
        db = _bhattacharyya_gaussian_full(e1[1], e1[2], e2[1], e2[2])
    return np.clip(np.nan_to_num(db, nan=_MAX_BHATTACHARYYA, posinf=_MAX_BHATTACHARYYA), 0.0, _MAX_BHATTACHARYYA)


def _check_pair(reference, other):
    if type(reference) is not type(other):
        raise ValueError(f"reference and other must be models of the same class; got {type(reference).__name__} "
                         f"and {type(other).__name__}")
    k1, k2 = _n_states(reference), _n_states(other)
    if k1 != k2:
        raise ValueError(f"reference and other must have the same number of states; got {k1} and {k2}")
    f1, f2 = getattr(reference, "n_features_in_", None), getattr(other, "n_features_in_", None)
    if f1 is not None and f2 is not None and f1 != f2:
        raise ValueError(f"reference and other must have the same number of features; got {f1} and {f2}")
    if isinstance(reference, ARHMM) and reference.order != other.order:
        raise ValueError(f"reference and other must have the same AR order; got {reference.order} and {other.order}")
    if isinstance(reference, CategoricalHMM):
        s1, s2 = np.shape(reference.emissionprob_), np.shape(other.emissionprob_)
        if s1 != s2:
            raise ValueError(f"reference and other must have the same alphabet; emissionprob_ shapes {s1} and {s2}")


def match_states(reference, other):
    """Put the states of two fits of the same model into correspondence.

    The assignment (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`)
    minimises the summed Bhattacharyya distance between matched emission distributions
    (it maximises the product of their overlaps); see the module docstring for the
    distance of each model family.

    Parameters
    ----------
    reference, other : fitted estimators
        Same class, same number of states and features (GaussianMixture, KMeans,
        GaussianHMM, CategoricalHMM, PoissonHMM or ARHMM).

    Returns
    -------
    StateMatch
        ``(perm, distances)``: ``perm`` (K,) int, ``other``'s state ``perm[k]`` matches the
        reference's state ``k``; ``distances`` (K,) the Hellinger distances in [0, 1] of
        the matched pairs.  ``align_to(reference, other)`` relabels ``other`` accordingly.
    """
    _check_pair(reference, other)
    db = bhattacharyya_matrix(reference, other)
    from scipy.optimize import linear_sum_assignment  # imported here: scipy.optimize is slow to import

    rows, cols = linear_sum_assignment(db)
    perm = np.empty(db.shape[0], dtype=np.int64)
    perm[rows] = cols
    d = db[np.arange(db.shape[0]), perm]
    return StateMatch(perm=perm, distances=np.sqrt(-np.expm1(-d)))


def _check_perm(perm, K):
    perm = np.asarray(perm)
    if perm.shape != (K,) or perm.dtype.kind not in "iu" or not np.array_equal(np.sort(perm), np.arange(K)):
        raise ValueError(f"perm must be a permutation of 0..{K - 1} (an integer array of shape ({K},)); got {perm!r}")
    return perm.astype(np.int64)


def _permute_rows(obj, name, perm, K):
    value = getattr(obj, name, None)
    if value is None:
        return
    a = np.asarray(value)
    if a.ndim >= 1 and a.shape[0] == K:
        setattr(obj, name, a[perm].copy())


def align_to(reference, other, perm=None):
    """A copy of ``other`` with its states relabelled to match ``reference``.

    Parameters
    ----------
    reference : fitted estimator
    other : fitted estimator
        Same class and number of states as ``reference``; not modified.
    perm : array-like of int (K,), optional
        Use this matching (``other``'s state ``perm[k]`` becomes state ``k``) instead of
        :func:`match_states`.

    Returns
    -------
    estimator
        A deep copy of ``other`` whose state ``k`` is ``other``'s state ``perm[k]``: the
        same model, so ``other.predict(X) == perm[aligned.predict(X)]`` and the
        likelihoods are unchanged.  Permuted: ``weights_``, ``means_``, ``covariances_``,
        ``precisions_``, ``precisions_cholesky_`` (mixtures; not when tied);
        ``startprob_``, ``transmat_`` (rows and columns) and the emission attributes
        (HMMs; ``covars_`` not when tied); ``cluster_centers_`` and ``labels_`` (KMeans);
        and state-shaped ``*_init`` and prior hyperparameters.
    """
    if perm is None:
        perm = match_states(reference, other).perm
    else:
        _check_pair(reference, other)
        _emission(other)  # fitted?
    K = _n_states(other)
    perm = _check_perm(perm, K)
    out = copy.deepcopy(other)
    if isinstance(out, KMeans):
        _permute_rows(out, "cluster_centers_", perm, K)
        if getattr(out, "labels_", None) is not None:
            inv = np.argsort(perm)
            out.labels_ = inv[np.asarray(out.labels_)]
        if not isinstance(out.init, str):
            _permute_rows(out, "init", perm, K)
        return out
    tied = getattr(out, "covariance_type", None) == "tied"
    if isinstance(out, GaussianMixture):
        names = ["weights_", "means_", "weights_init", "means_init"]
        if not tied:
            names += ["covariances_", "precisions_", "precisions_cholesky_", "precisions_init"]
        for name in names:
            _permute_rows(out, name, perm, K)
        return out
    # HMMs
    for name in ("startprob_", "startprob_init"):
        _permute_rows(out, name, perm, K)
    for name in ("transmat_", "transmat_init"):
        value = getattr(out, name, None)
        if value is not None:
            setattr(out, name, np.asarray(value)[np.ix_(perm, perm)].copy())
    if np.ndim(out.startprob_prior) == 1:
        out.startprob_prior = np.asarray(out.startprob_prior)[perm].copy()
    if np.ndim(out.transmat_prior) == 2:
        out.transmat_prior = np.asarray(out.transmat_prior)[np.ix_(perm, perm)].copy()
    if isinstance(out, CategoricalHMM) and np.ndim(out.emissionprob_prior) == 2:
        out.emissionprob_prior = np.asarray(out.emissionprob_prior)[perm].copy()
    for attr in out._emission_attributes:
        if tied and attr == "covars_":
            continue
        _permute_rows(out, attr, perm, K)
        _permute_rows(out, attr[:-1] + "_init", perm, K)
    return out


def state_stability(model, *, threshold=0.2, others=None):
    """How reproducibly the restarts of ``fit`` found each state of the best run.

    Every other restart (from ``model.restart_models()``, the best run itself excluded) is
    matched to ``model`` with :func:`match_states`.

    Parameters
    ----------
    model : fitted estimator
        Fitted with ``n_init >= 2`` (GaussianMixture or an HMM; KMeans keeps no restarts).
    threshold : float in (0, 1], default=0.2
        Hellinger distance at or below which a matched state counts as found again
        (0.2 is an overlap ``BC >= 0.96``; see the module docstring).
    others : list of fitted estimators, optional
        Compare with these models (e.g. fits on bootstrap samples or with other seeds)
        instead of the restarts.

    Returns
    -------
    pandas.DataFrame
        One row per state of ``model``, with columns:

        ``state``
        ``stability``
            Fraction of the other restarts whose matched state lies within ``threshold``.
        ``mean_distance``, ``max_distance``
            Mean and largest matched Hellinger distance over the other restarts.
        ``weight``, ``weight_sd`` (mixtures)
            The state's weight in ``model``, and the standard deviation of the matched
            weight over all runs (``model`` included).
        ``self_transition``, ``self_transition_sd`` (HMMs)
            The same for the self-transition probability ``transmat_[k, k]``.

        ``attrs`` holds ``threshold``, ``n_restarts`` (runs compared) and ``lower_bounds``
        (their final lower bounds).
    """
    pd = _require_pandas("state_stability")
    threshold = check_float(threshold, "threshold", minimum=0.0, maximum=1.0, include_min=False)
    if others is None:
        if isinstance(model, KMeans):
            raise ValueError("state_stability needs the restarts of fit, which KMeans does not keep; pass "
                             "others=[...] (other KMeans fits), or use GaussianMixture(covariance_type='spherical')")
        if not hasattr(model, "restart_models"):
            raise ValueError(f"state_stability supports GaussianMixture and the HMMs; got {type(model).__name__}")
        runs = model.restart_models()
        if len(runs) < 2:
            raise ValueError(f"state_stability compares the restarts of fit, but {type(model).__name__} was fitted "
                             f"with a single run (n_init={getattr(model, 'n_init', 1)}, or warm_start); refit with "
                             "n_init >= 2")
        bounds = np.array([r.lower_bound_ for r in runs])
        best = int(np.argmax(bounds))  # the run fit kept (first of equal maxima)
        others = [r for i, r in enumerate(runs) if i != best]
    else:
        others = list(others)
        if not others:
            raise ValueError("others must hold at least one fitted model")
    K = _n_states(model)
    matches = [match_states(model, o) for o in others]
    dist = np.array([m.distances for m in matches])  # (R, K)
    table = {"state": np.arange(K), "stability": (dist <= threshold).mean(axis=0),
             "mean_distance": dist.mean(axis=0), "max_distance": dist.max(axis=0)}

    def spread(own, values):
        all_values = np.vstack([own[None], values])
        return own, all_values.std(axis=0)

    if isinstance(model, GaussianMixture):
        own = np.asarray(model.weights_, dtype=np.float64)
        vals = np.array([np.asarray(o.weights_)[m.perm] for o, m in zip(others, matches)])
        table["weight"], table["weight_sd"] = spread(own, vals)
    elif isinstance(model, BaseHMM):
        own = np.diag(np.asarray(model.transmat_, dtype=np.float64)).copy()
        vals = np.array([np.diag(np.asarray(o.transmat_))[m.perm] for o, m in zip(others, matches)])
        table["self_transition"], table["self_transition_sd"] = spread(own, vals)
    df = pd.DataFrame(table)
    df.attrs["threshold"] = threshold
    df.attrs["n_restarts"] = len(others)
    df.attrs["lower_bounds"] = [float(getattr(o, "lower_bound_", np.nan)) for o in others]
    return df
