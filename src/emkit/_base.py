"""Estimator conventions shared by every model: hyperparameters in ``__init__``,
``get_params``/``set_params``, fitted attributes ending in ``_``."""

from __future__ import annotations

import inspect

from .exceptions import NotFittedError


class BaseEstimator:
    """scikit-learn style parameter handling without depending on scikit-learn."""

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD]

    def get_params(self, deep=True):
        """Hyperparameters as a dict (the arguments of ``__init__``)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set hyperparameters; unknown names raise ``ValueError``."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; valid parameters: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def __repr__(self):
        sig = inspect.signature(type(self).__init__)
        parts = []
        for name, p in sig.parameters.items():
            if name == "self" or p.kind == p.VAR_KEYWORD:
                continue
            value = getattr(self, name, p.default)
            try:
                same = value is p.default or bool(value == p.default)
            except Exception:  # arrays
                same = False
            if not same:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

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
