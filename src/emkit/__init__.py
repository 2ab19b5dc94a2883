"""emkit: clusters and hidden states by expectation-maximisation."""

from . import datasets
from .exceptions import ConvergenceWarning, NotFittedError
from .io import load_model as load
from .models.hmm import ARHMM, CategoricalHMM, GaussianHMM, PoissonHMM
from .models.kmeans import KMeans
from .models.mixture import GaussianMixture

__version__ = "0.1.0"

__all__ = ["ARHMM", "CategoricalHMM", "GaussianHMM", "PoissonHMM", "ConvergenceWarning", "GaussianMixture", "KMeans", "NotFittedError", "__version__", "datasets", "load"]
