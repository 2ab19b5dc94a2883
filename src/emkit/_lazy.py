"""Modules imported on first use.

The compiled kernels (and numba with them, about half a second of imports, plus compilation or
cache loading per kernel) are loaded only when a computation needs them; small problems take
numpy paths (:mod:`emkit.inference._numpy_kernels`) and never import numba.
"""

from __future__ import annotations

import importlib


class LazyModule:
    """Stands for the module ``name`` and imports it on the first attribute access.

    ``_k = LazyModule("emkit.inference._kernels")`` then ``_k.kernel(...)`` as with the module.
    """

    __slots__ = ("_name", "_module")

    def __init__(self, name):
        self._name = name
        self._module = None

    def __getattr__(self, attr):
        module = self._module
        if module is None:
            module = importlib.import_module(self._name)
            self._module = module
        return getattr(module, attr)

    def __repr__(self):
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"
