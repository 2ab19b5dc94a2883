"""The estimator classes that model files can name, filled by :func:`register` as their modules load.

Kept apart from :mod:`emkit.io` (reading and writing model files) so that defining and fitting an
estimator does not import the file code.
"""

_REGISTRY = {}


def register(cls):
    """Class decorator: make an estimator class loadable from model files."""
    _REGISTRY[cls.__name__] = cls
    return cls
