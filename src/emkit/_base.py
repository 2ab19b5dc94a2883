"""Estimator conventions shared by every model, on scikit-learn's own base class: hyperparameters
in ``__init__``, ``get_params``/``set_params``/``clone``, fitted attributes ending in ``_``,
``n_features_in_`` and ``feature_names_in_`` checked as scikit-learn checks them."""

from __future__ import annotations

from sklearn.base import BaseEstimator as _SklearnBaseEstimator
from sklearn.utils.validation import validate_data

from ._validation import check_array
from .exceptions import NotFittedError


class BaseEstimator(_SklearnBaseEstimator):
    """scikit-learn's ``BaseEstimator`` plus model files and emkit's input checks."""

    @classmethod
    def _param_names(cls):
        return cls._get_param_names()

    def save(self, path):
        """Write the fitted model to a safe ``.npz`` model file (see :mod:`emkit.io`); returns the path."""
        from .io import save_model

        return save_model(self, path)

    def _check_is_fitted(self, attributes):
        missing = [a for a in attributes if getattr(self, a, None) is None]
        if missing:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet: call 'fit' with appropriate "
                f"arguments before using this method (missing {', '.join(missing)})."
            )

    def __sklearn_is_fitted__(self):
        return all(getattr(self, a, None) is not None for a in self._fitted_attributes[:2])

    def _check_data(self, X, *, reset, name="X", **check):
        """``X`` checked by :func:`emkit._validation.check_array` (``check`` are its options), with
        scikit-learn's bookkeeping: ``reset=True`` (fit) records ``n_features_in_`` and, for a
        DataFrame with string column names, ``feature_names_in_``; ``reset=False`` (predict,
        score, ...) raises if the number of features differs, or if the column names differ from
        those seen in fit (reordered or renamed columns), and warns if names were seen in fit but
        ``X`` has none (or the other way round)."""
        if hasattr(X, "columns"):  # a DataFrame: its names are checked before its values
            validate_data(self, X, reset=reset, skip_check_array=True)
            return check_array(X, name, **check)
        X = check_array(X, name, **check)
        validate_data(self, X, reset=reset, skip_check_array=True)
        return X

    def _set_feature_names(self, names):
        """Record the column names of data that did not arrive as a DataFrame (a file's header)."""
        if names is None:
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            return
        import numpy as np

        self.feature_names_in_ = np.asarray([str(n) for n in names], dtype=object)
