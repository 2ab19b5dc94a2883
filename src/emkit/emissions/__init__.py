"""Emission families: the per-state distributions of mixtures and hidden Markov models.

:class:`EmissionFamily` is the public protocol (see :mod:`emkit.emissions.base` for each
method's contract); :func:`register_family` makes a family known by name (CLI, model files);
:func:`improving_step` is the backtracking helper of generalised M-steps.  Built-in families:
:class:`Gaussian`, :class:`Categorical`, :class:`Poisson`, :class:`Autoregressive`; with generalised
M-steps: :class:`VonMises` (angles), :class:`NegativeBinomial` (overdispersed counts).  Each family's
module is imported when the family is first used (by its name here or its registered name), so a
model with one family does not import the others.
"""

import importlib

from .base import (EmissionFamily, check_family, family_names, get_family, improving_step, make_family,
                   register_family)

#: public name -> module defining it; a family's module is imported on first use (see __getattr__)
_LAZY = {"Autoregressive": "autoregressive", "Categorical": "categorical", "COVARIANCE_TYPES": "gaussian",
         "Gaussian": "gaussian", "GaussianEmission": "gaussian", "GaussianParams": "gaussian",
         "GaussianStats": "gaussian", "NegativeBinomial": "negbinom", "Poisson": "poisson", "StudentT": "studentt",
         "VonMises": "vonmises"}

__all__ = ["Autoregressive", "COVARIANCE_TYPES", "Categorical", "EmissionFamily", "Gaussian", "GaussianEmission",
           "GaussianParams", "GaussianStats", "NegativeBinomial", "Poisson", "StudentT", "VonMises", "check_family",
           "family_names", "get_family", "improving_step", "make_family", "register_family"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
