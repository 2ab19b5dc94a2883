"""The fit loop shared by every EM estimator: restarts, warm start, convergence warning."""

from __future__ import annotations

import copy
import warnings

import numpy as np

from .._base import BaseEstimator
from .._progress import ProgressBar
from .._validation import check_choice, check_float, check_int, check_random_state
from ..em import StepSchedule, blas_single_threaded, online_update, run_em, run_stochastic_em, stream_objective
from ..collapse import ON_COLLAPSE
from ..exceptions import CollapseWarning, ConvergenceWarning


def _user_stacklevel():
    """The ``stacklevel`` that points a warning at the first frame outside emkit (the user's call)."""
    import sys

    frame, level = sys._getframe(1), 1
    package = __name__.rsplit(".", 2)[0] + "."
    while frame is not None and (frame.f_globals.get("__name__", "") + ".").startswith(package):
        frame, level = frame.f_back, level + 1
    return level


class EMEstimator(BaseEstimator):
    """Base of estimators fitted by :func:`emkit.em.run_em`.

    Subclasses provide ``_em_model()`` (latent structure x emission), ``_init_params(source, rng)``,
    ``_params_from_attributes()`` and ``_set_attributes(params)``; the data arrives as a source
    (:mod:`emkit.sources`).
    """

    #: Saved in model files when set (see :func:`emkit.io.attribute_types`).
    _optional_attributes = ("init_lower_bounds_",)

    def _check_common(self):
        check_int(self.n_components, "n_components", minimum=1)
        check_float(self.tol, "tol", minimum=0.0)
        check_int(self.max_iter, "max_iter", minimum=1)
        check_int(self.n_init, "n_init", minimum=1)
        check_int(self.verbose, "verbose", minimum=0)
        check_choice(self.on_collapse, "on_collapse", ON_COLLAPSE)

    def _run_restarts(self, source, callback=None, algorithm="em", batch_size=None, schedule=None, progress=None):
        """Run ``n_init`` EM runs (or one warm-started run) and keep the best; ``progress`` as in
        :class:`emkit._progress.ProgressBar`."""
        check_choice(algorithm, "algorithm", ("em", "stochastic"))
        bar = ProgressBar(self.max_iter, progress, callback)
        try:
            # initialisation too: its tiny LAPACK calls (Cholesky solves) take milliseconds each on a
            # multi-threaded BLAS, microseconds on one thread
            with blas_single_threaded():
                return self._run_restarts_with(source, bar, algorithm, batch_size, schedule)
        finally:
            bar.close()

    def _run_restarts_with(self, source, callback, algorithm, batch_size, schedule):
        if algorithm == "stochastic":
            schedule = StepSchedule.make(schedule)
            if batch_size is None:
                batch_size = 1024
            check_int(batch_size, "batch_size", minimum=1)
        rng = check_random_state(self.random_state)
        warm = bool(getattr(self, "warm_start", False)) and getattr(self, "converged_", None) is not None
        n_init = 1 if warm else self.n_init
        model = self._em_model()
        best = None
        runs = []
        for i in range(n_init):
            params = self._params_from_attributes() if warm else self._init_params(source, rng)
            if self.verbose:
                print(f"Initialization {i + 1}")
            if algorithm == "stochastic":
                result = run_stochastic_em(model, params, self._minibatches(source, batch_size, rng),
                                           schedule=schedule, tol=self.tol, max_iter=self.max_iter,
                                           verbose=self.verbose, callback=callback, init_index=i)
            else:
                result = run_em(model, params, source, tol=self.tol, max_iter=self.max_iter, verbose=self.verbose,
                                callback=callback, init_index=i,
                                start_lower_bound=self.lower_bound_ if warm else -np.inf,
                                on_collapse=self.on_collapse)
            if self.verbose:
                print(f"Initialization {i + 1} {'converged' if result.converged else 'did not converge'}: "
                      f"lower bound {result.lower_bound:.8g}")
            runs.append(result)
            if best is None or result.lower_bound > best.lower_bound:
                best = result
        if not best.converged and self.tol > 0 and not any(e.action == "stopped" for e in best.collapse_events):
            warnings.warn("Best performing initialization did not converge. Try different init parameters, "
                          "or increase max_iter, tol, or check for degenerate data.", ConvergenceWarning,
                          stacklevel=_user_stacklevel())
        if best.collapse_events:
            warnings.warn(f"{type(self).__name__}: " + "; ".join(e.describe() for e in best.collapse_events)
                          + f" (on_collapse={self.on_collapse!r}; see collapse_events_)", CollapseWarning,
                          stacklevel=_user_stacklevel())
        self._set_attributes(best.params)
        self.collapse_events_ = [e.as_dict() for e in best.collapse_events]
        self.n_recoveries_ = best.n_recoveries
        self.converged_ = best.converged
        self.n_iter_ = best.n_iter
        self.lower_bound_ = best.lower_bound
        self.lower_bounds_ = list(best.lower_bounds)
        self.init_lower_bounds_ = np.array([r.lower_bound for r in runs])
        self._restart_results = runs
        self._online_state = getattr(best, "online_state", None)
        return model

    # -- online EM ---------------------------------------------------------------------------------
    def _partial_fit(self, source, schedule=None):
        """One step of stochastic (online) EM on a mini-batch; can be called forever on a stream.

        The first call initialises the parameters from its batch (unless the model is already
        fitted); every call folds the batch's statistics into running statistics with step
        ``alpha_i`` from ``schedule`` (:class:`emkit.em.StepSchedule`: ``(i + tau) ** -kappa``,
        0.5 < kappa <= 1, optional forgetting floor) and runs the M-step.  Invalid input raises
        before anything changes.  ``lower_bound_`` is the batch's objective per sample under
        the parameters it arrived to.
        """
        fitted = getattr(self, "n_features_in_", None) is not None and self._has_parameters()
        if fitted and source.n_features != self.n_features_in_:
            raise ValueError(f"X has {source.n_features} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        state = getattr(self, "_online_state", None)
        if (state is not None and state.schedule is not None and schedule is not None
                and StepSchedule.make(schedule) != state.schedule):
            raise ValueError("schedule cannot change between partial_fit calls; start a new model")
        StepSchedule.make(schedule)  # validate before anything changes
        if fitted:
            params = self._params_from_attributes()
        else:
            self._n_features = source.n_features
            rng = getattr(self, "_online_rng", None) or check_random_state(self.random_state)
            self._online_rng = rng
            params = self._init_params(source, rng)
        model = self._em_model_for(source.n_features)
        stats = source.expectation(model, params)
        lower = stream_objective(model)(stats, params)
        params, state = online_update(model, params, state, stats, schedule)
        self._set_attributes(params)
        self._n_features = self.n_features_in_ = source.n_features
        self._online_state = state
        self.lower_bound_ = float(lower)
        self.n_batches_ = state.n_updates
        self.converged_ = False
        self.n_iter_ = state.n_updates
        self.lower_bounds_ = [float(lower)]
        return self

    def _has_parameters(self):
        return all(getattr(self, a, None) is not None for a in self._fitted_attributes[:2])

    def _em_model_for(self, n_features):
        self._n_features = n_features
        return self._em_model()

    def restart_models(self):
        """One fitted copy of this model per restart of the last ``fit``, in run order.

        Each copy has that run's parameters, ``lower_bound_``, ``lower_bounds_``, ``n_iter_``,
        ``converged_`` and ``collapse_events_``; compare them to see whether the states are reproducible
        (see :func:`emkit.selection.match_states`).
        """
        runs = getattr(self, "_restart_results", None)
        if runs is None:
            self._check_is_fitted(["_restart_results"])
        models = []
        for r in runs:
            m = copy.copy(self)
            m._set_attributes(r.params)
            m.lower_bound_, m.lower_bounds_ = r.lower_bound, list(r.lower_bounds)
            m.n_iter_, m.converged_ = r.n_iter, r.converged
            m.collapse_events_, m.n_recoveries_ = [e.as_dict() for e in r.collapse_events], r.n_recoveries
            m._restart_results = None
            models.append(m)
        return models
