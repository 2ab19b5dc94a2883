"""The fit loop shared by every EM estimator: restarts, warm start, convergence warning."""

from __future__ import annotations

import copy
import warnings

import numpy as np

from .._base import BaseEstimator
from .._validation import check_float, check_int, check_random_state
from ..em import run_em
from ..exceptions import ConvergenceWarning


class EMEstimator(BaseEstimator):
    """Base of estimators fitted by :func:`emkit.em.run_em`.

    Subclasses provide ``_em_model()`` (latent structure x emission), ``_init_params(source, rng)``,
    ``_params_from_attributes()`` and ``_set_attributes(params)``; the data arrives as a source
    (:mod:`emkit.sources`).
    """

    def _check_common(self):
        check_int(self.n_components, "n_components", minimum=1)
        check_float(self.tol, "tol", minimum=0.0)
        check_int(self.max_iter, "max_iter", minimum=1)
        check_int(self.n_init, "n_init", minimum=1)
        check_int(self.verbose, "verbose", minimum=0)

    def _run_restarts(self, source, callback=None):
        """Run ``n_init`` EM runs (or one warm-started run) and keep the best."""
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
            result = run_em(model, params, source, tol=self.tol, max_iter=self.max_iter, verbose=self.verbose,
                            callback=callback, init_index=i,
                            start_lower_bound=self.lower_bound_ if warm else -np.inf)
            if self.verbose:
                print(f"Initialization {i + 1} {'converged' if result.converged else 'did not converge'}: "
                      f"lower bound {result.lower_bound:.8g}")
            runs.append(result)
            if best is None or result.lower_bound > best.lower_bound:
                best = result
        if not best.converged:
            warnings.warn("Best performing initialization did not converge. Try different init parameters, "
                          "or increase max_iter, tol, or check for degenerate data.", ConvergenceWarning,
                          stacklevel=3)
        self._set_attributes(best.params)
        self.converged_ = best.converged
        self.n_iter_ = best.n_iter
        self.lower_bound_ = best.lower_bound
        self.lower_bounds_ = list(best.lower_bounds)
        self.init_lower_bounds_ = np.array([r.lower_bound for r in runs])
        self._restart_results = runs
        return model

    def restart_models(self):
        """One fitted copy of this model per restart of the last ``fit``, in run order.

        Each copy has that run's parameters, ``lower_bound_``, ``lower_bounds_``, ``n_iter_`` and
        ``converged_``; compare them to see whether the states are reproducible
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
            m._restart_results = None
            models.append(m)
        return models
