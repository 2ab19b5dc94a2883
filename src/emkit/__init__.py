"""emkit: clusters and hidden states by expectation-maximisation."""

from . import datasets, selection
from .exceptions import ConvergenceWarning, NotFittedError
from .io import load_model as load
from .models.classifier import GaussianMixtureClassifier, HMMClassifier
from .models.hmm import ARHMM, CategoricalHMM, GaussianHMM, PoissonHMM
from .models.kmeans import KMeans
from .models.mixture import GaussianMixture
from .sources import open_table
from .em import StepSchedule
from .selection import align_to, match_states, select, state_stability

__version__ = "0.1.0"

__all__ = ["ARHMM", "CategoricalHMM", "GaussianHMM", "PoissonHMM", "ConvergenceWarning", "GaussianMixture", "GaussianMixtureClassifier", "HMMClassifier", "KMeans", "NotFittedError", "__version__", "align_to", "datasets",
           "load", "match_states", "open_table", "StepSchedule", "select", "selection", "state_stability"]
