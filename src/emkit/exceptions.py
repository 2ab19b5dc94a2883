"""Warnings and errors raised by emkit."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the change of the log-likelihood fell below ``tol``."""


class NotFittedError(ValueError, AttributeError):
    """A method that needs fitted parameters was called on a model that has none."""


class DegenerateDataWarning(UserWarning):
    """The data has fewer distinct points than the model has components."""
