"""Emission families: the per-state distributions of mixtures and hidden Markov models.

:class:`EmissionFamily` is the public protocol (see :mod:`emkit.emissions.base` for each
method's contract); :func:`register_family` makes a family known by name (CLI, model files);
:func:`improving_step` is the backtracking helper of generalised M-steps.  Built-in families:
:class:`Gaussian`, :class:`Categorical`, :class:`Poisson`, :class:`Autoregressive`; with generalised
M-steps: :class:`VonMises` (angles), :class:`NegativeBinomial` (overdispersed counts).
"""

from .autoregressive import Autoregressive
from .base import (EmissionFamily, check_family, family_names, get_family, improving_step, make_family,
                   register_family)
from .categorical import Categorical
from .gaussian import COVARIANCE_TYPES, Gaussian, GaussianEmission, GaussianParams, GaussianStats
from .negbinom import NegativeBinomial
from .poisson import Poisson
from .studentt import StudentT
from .vonmises import VonMises

__all__ = ["Autoregressive", "COVARIANCE_TYPES", "Categorical", "EmissionFamily", "Gaussian", "GaussianEmission",
           "GaussianParams", "GaussianStats", "NegativeBinomial", "Poisson", "StudentT", "VonMises", "check_family",
           "family_names", "get_family", "improving_step", "make_family", "register_family"]
