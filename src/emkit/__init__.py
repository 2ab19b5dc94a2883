"""emkit: clusters and hidden states by expectation-maximisation.

The public names are imported on first use (``emkit.GaussianMixture``, ``from emkit import
KMeans``), so ``import emkit`` is fast and scikit-learn, which the estimators are built on, is
imported with the first estimator.  Submodules (``emkit.plot``, ``emkit.inference``, ...) load
the same way.
"""

import importlib

__version__ = "0.1.0"

#: public name -> submodule defining it (a new public name is added here and in ``__all__``)
_PUBLIC = {
    "ARHMM": "models.hmm", "CategoricalHMM": "models.hmm", "GaussianHMM": "models.hmm", "PoissonHMM": "models.hmm",
    "GaussianMixtureClassifier": "models.classifier", "HMMClassifier": "models.classifier",
    "KMeans": "models.kmeans", "GaussianMixture": "models.mixture",
    "BayesianGaussianMixture": "models.bayesian_mixture", "HMM": "models.generic", "MixtureModel": "models.generic",
    "ConvergenceWarning": "exceptions", "NotFittedError": "exceptions",
    "open_table": "sources", "StepSchedule": "em",
    "align_to": "selection", "match_states": "selection", "select": "selection", "state_stability": "selection",
    "VariationalGaussianHMM": "models.variational_hmm", "VariationalCategoricalHMM": "models.variational_hmm",
}

__all__ = ["ARHMM", "BayesianGaussianMixture", "CategoricalHMM", "GaussianHMM", "HMM", "MixtureModel", "PoissonHMM",
           "ConvergenceWarning", "GaussianMixture",
           "GaussianMixtureClassifier", "HMMClassifier", "KMeans", "NotFittedError", "__version__", "align_to",
           "datasets", "load", "match_states", "open_table", "StepSchedule", "select", "selection",
           "state_stability", "VariationalCategoricalHMM", "VariationalGaussianHMM"]


def load(path):
    """Read a model file written by ``model.save(path)`` (see :func:`emkit.io.load_model`)."""
    from .io import load_model

    return load_model(path)


def _import_public():
    """Import every module that defines a public name (and so register every estimator class)."""
    for module in sorted(set(_PUBLIC.values())):
        importlib.import_module(f".{module}", __name__)


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
