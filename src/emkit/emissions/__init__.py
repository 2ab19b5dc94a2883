"""Emission families: each computes per-state log-likelihoods, additive statistics and an M-step."""

from .gaussian import COVARIANCE_TYPES, GaussianEmission, GaussianParams, GaussianStats
from .studentt import StudentT

__all__ = ["COVARIANCE_TYPES", "GaussianEmission", "GaussianParams", "GaussianStats", "StudentT"]
