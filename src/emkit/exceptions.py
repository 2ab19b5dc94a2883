"""Warnings and errors raised by emkit: scikit-learn's, so that code catching those catches ours."""

from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class ConvergenceWarning(_SklearnConvergenceWarning):
    """EM stopped at ``max_iter`` before the change of the log-likelihood fell below ``tol``."""


class NotFittedError(_SklearnNotFittedError):
    """A method that needs fitted parameters was called on a model that has none."""


class DegenerateDataWarning(UserWarning):
    """The data has fewer distinct points than the model has components."""


class CollapseWarning(ConvergenceWarning):
    """A component or state collapsed during EM (see ``on_collapse`` and ``collapse_events_``)."""


class CollapseError(ValueError):
    """A component or state collapsed during EM and ``on_collapse="raise"`` was asked for."""
