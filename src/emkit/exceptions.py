"""Warnings and errors raised by emkit: scikit-learn's, so that code catching those catches ours."""

from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class ConvergenceWarning(_SklearnConvergenceWarning):
    """EM stopped at ``max_iter`` before the change of the log-likelihood fell below ``tol``."""


class NotFittedError(_SklearnNotFittedError):
    """A method that needs fitted parameters was called on a model that has none."""


class DegenerateDataWarning(UserWarning):
    """The data has fewer distinct points than the model has components."""
