"""Additive sufficient statistics.

An E-step over a chunk of data returns a :class:`Stats`.  Statistics form a
commutative monoid with scaling: ``zeros_like``, ``+`` and multiplication by a
number.  That single property is what lets one M-step serve batch EM (sum over
chunks), out-of-core EM (sum over the chunks of a file), distributed EM
(tree-reduce over workers) and stochastic EM (convex combination of running
and mini-batch statistics).

Subclasses are dataclasses whose fields are numpy arrays, floats or other
``Stats``.  Fields listed in ``_frame_fields`` are not summed: they describe
the frame in which the others are expressed (for example the centres
Gaussian moments are taken about) and a subclass that has them overrides
:meth:`_align` to bring ``other`` into ``self``'s frame before adding.
"""

from __future__ import annotations

import dataclasses
import functools
import operator

import numpy as np


_STATS_CLASSES = {}


class Stats:
    """Base class of additive sufficient statistics (see module docstring)."""

    _frame_fields: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _STATS_CLASSES[cls.__name__] = cls

    def _summed_fields(self):
        return [f.name for f in dataclasses.fields(self) if f.name not in self._frame_fields]

    def _align(self, other):
        """Return ``other`` expressed in ``self``'s frame (identity by default)."""
        return other

    def __add__(self, other):
        if other is None or (isinstance(other, int) and other == 0):
            return self
        if type(other) is not type(self):
            return NotImplemented
        other = self._align(other)
        changes = {name: _add(getattr(self, name), getattr(other, name)) for name in self._summed_fields()}
        return dataclasses.replace(self, **changes)

    __radd__ = __add__

    def __mul__(self, scale):
        scale = float(scale)
        changes = {name: _scale(getattr(self, name), scale) for name in self._summed_fields()}
        return dataclasses.replace(self, **changes)

    __rmul__ = __mul__

    def zeros_like(self):
        return self * 0.0


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _scale(a, s):
    if a is None:
        return None
    if isinstance(a, Stats):
        return a * s
    return a * s


def reduce_stats(stats_list):
    """Sum statistics in the given order (a fixed order gives reproducible sums)."""
    stats_list = list(stats_list)
    if not stats_list:
        raise ValueError("no statistics to reduce: the data had no chunks")
    return functools.reduce(operator.add, stats_list)


def stats_to_arrays(stats, prefix):
    """Flatten statistics into ``{name: ndarray}`` and a JSON-able description (for model files)."""
    arrays, fields = {}, {}
    for f in dataclasses.fields(stats):
        value = getattr(stats, f.name)
        key = f"{prefix}.{f.name}"
        if isinstance(value, Stats):
            sub_arrays, sub_desc = stats_to_arrays(value, key)
            arrays.update(sub_arrays)
            fields[f.name] = sub_desc
        elif isinstance(value, str):
            fields[f.name] = {"str": value}
        else:
            arrays[key] = np.asarray(value)
            fields[f.name] = "array"
    return arrays, {"class": type(stats).__name__, "fields": fields}


def stats_from_arrays(desc, arrays, prefix):
    """Inverse of :func:`stats_to_arrays`; only registered Stats classes are built."""
    cls = _STATS_CLASSES.get(desc.get("class"))
    if cls is None:
        raise ValueError(f"unknown statistics class {desc.get('class')!r}")
    values = {}
    for name, kind in desc["fields"].items():
        key = f"{prefix}.{name}"
        if isinstance(kind, dict) and "class" in kind:
            values[name] = stats_from_arrays(kind, arrays, key)
        elif isinstance(kind, dict) and "str" in kind:
            values[name] = str(kind["str"])
        else:
            a = arrays[key]
            values[name] = a.item() if a.ndim == 0 else a
    return cls(**values)
