"""Small real data sets bundled with emkit.

The data files live next to this module and are read with
:mod:`importlib.resources`, so they work from wheels, zip imports and
editable installs alike.

Available data sets
-------------------
faithful
    Old Faithful geyser eruptions (R ``datasets::faithful``): 272 rows,
    columns ``eruptions`` and ``waiting`` (minutes). See
    :func:`load_faithful`.

Examples
--------
>>> from emkit.datasets import load_faithful, list_datasets
>>> ds = load_faithful()
>>> ds.data.shape
(272, 2)
>>> ds.feature_names
['eruptions', 'waiting']
>>> sorted(list_datasets())
['faithful']
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Callable

import numpy as np

__all__ = ["Dataset", "list_datasets", "load", "load_faithful"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A bundled data set.

    Parameters
    ----------
    data : numpy.ndarray or pandas.DataFrame
        The observations, one row per sample. A float64 array of shape
        ``(n_samples, n_features)``, or a :class:`pandas.DataFrame` with
        columns ``feature_names`` when loaded with ``as_frame=True``.
    feature_names : list of str
        Column names, in the order of the columns of `data`.
    description : str
        Full description and provenance of the data set.
    name : str
        Short name of the data set, as accepted by :func:`load`.

    Notes
    -----
    Instances are frozen (attributes cannot be reassigned), but `data`
    itself is a fresh, writable copy on every load, so modifying it does
    not affect later loads.
    """

    data: Any = field(repr=False)
    feature_names: list[str]
    description: str = field(repr=False)
    name: str

    @property
    def shape(self) -> tuple[int, int]:
        """tuple of int : ``(n_samples, n_features)`` of `data`."""
        return tuple(self.data.shape)  # type: ignore[return-value]

    def __repr__(self) -> str:
        n, p = self.shape
        return (
            f"Dataset(name={self.name!r}, n_samples={n}, n_features={p}, "
            f"feature_names={self.feature_names!r})"
        )


# ---------------------------------------------------------------------------
# File access
# ---------------------------------------------------------------------------


def _read_text(filename: str) -> str:
    """Return the text of a data file shipped in this package."""
    return resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _read_csv(filename: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Parse a numeric CSV with a one-line header (cached, read-only array)."""
    text = _read_text(filename)
    header, _, body = text.partition("\n")
    names = tuple(h.strip() for h in header.split(","))
    arr = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    if arr.shape[1] != len(names):
        raise RuntimeError(
            f"corrupt data file {filename!r}: header has {len(names)} columns, "
            f"data has {arr.shape[1]}"
        )
    arr.setflags(write=False)
    return names, arr


@lru_cache(maxsize=None)
def _read_description(filename: str) -> str:
    return _read_text(filename)


def _to_frame(arr: np.ndarray, columns: list[str]):
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise ImportError(
            "as_frame=True requires pandas, which is not installed. "
            "Install it with `pip install pandas` (or `pip install emkit[io]`), "
            "or call the loader with as_frame=False to get a NumPy array."
        ) from exc
    return pd.DataFrame(arr, columns=list(columns))


# ---------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------


def load_faithful(as_frame: bool = False) -> Dataset:
    """Load the Old Faithful geyser data (R ``datasets::faithful``).

    Waiting time between eruptions and the duration of the eruption for
    the Old Faithful geyser in Yellowstone National Park, Wyoming, USA.
    The data are clearly bimodal, which makes them a standard test case
    for two-component Gaussian mixtures and K-means.

    Parameters
    ----------
    as_frame : bool, default False
        If True, `data` is a :class:`pandas.DataFrame` with columns
        ``eruptions`` and ``waiting`` (both float64). Requires pandas.

    Returns
    -------
    Dataset
        With ``name='faithful'``, ``feature_names=['eruptions', 'waiting']``,
        `data` of shape ``(272, 2)`` and float64 dtype, and `description`
        holding the provenance notes.

    Raises
    ------
    ImportError
        If ``as_frame=True`` and pandas is not installed.

    Notes
    -----
    Columns:

    ``eruptions``
        Eruption duration in minutes (recorded to three decimals).
    ``waiting``
        Waiting time to the next eruption, in whole minutes.

    The values are exactly those of R's ``faithful`` data frame; its
    column means are 3.487783 and 70.89706 and its (``ddof=1``) standard
    deviations 1.141371 and 13.59497.

    References
    ----------
    .. [1] Härdle, W. (1991). *Smoothing Techniques with Implementation
       in S*. New York: Springer.
    .. [2] Azzalini, A. and Bowman, A. W. (1990). A look at some data on
       the Old Faithful geyser. *Applied Statistics*, 39, 357-365.

    Examples
    --------
    >>> from emkit.datasets import load_faithful
    >>> ds = load_faithful()
    >>> ds.data[:2]
    array([[ 3.6, 79. ],
           [ 1.8, 54. ]])
    >>> round(float(ds.data[:, 1].mean()), 5)
    70.89706
    """
    names, arr = _read_csv("faithful.csv")
    feature_names = list(names)
    data = arr.copy()  # writable, independent of the cache
    if as_frame:
        data = _to_frame(data, feature_names)
    return Dataset(
        data=data,
        feature_names=feature_names,
        description=_read_description("README.txt"),
        name="faithful",
    )


# name -> (loader, one-line description)
_REGISTRY: dict[str, tuple[Callable[..., Dataset], str]] = {
    "faithful": (
        load_faithful,
        "Old Faithful geyser: 272 eruptions, duration and waiting time "
        "to next eruption (minutes); R datasets::faithful.",
    ),
}


def list_datasets() -> dict[str, str]:
    """List the bundled data sets.

    Returns
    -------
    dict of str to str
        Maps each name accepted by :func:`load` to a one-line description.

    Examples
    --------
    >>> from emkit.datasets import list_datasets
    >>> "faithful" in list_datasets()
    True
    """
    return {name: desc for name, (_, desc) in _REGISTRY.items()}


def load(name: str, as_frame: bool = False) -> Dataset:
    """Load a bundled data set by name.

    Parameters
    ----------
    name : str
        Name of the data set (case-insensitive); see :func:`list_datasets`.
    as_frame : bool, default False
        If True, return the data as a :class:`pandas.DataFrame`.

    Returns
    -------
    Dataset
        The loaded data set.

    Raises
    ------
    ValueError
        If `name` is not the name of a bundled data set.

    Examples
    --------
    >>> from emkit.datasets import load
    >>> load("faithful").data.shape
    (272, 2)
    """
    key = name.strip().lower() if isinstance(name, str) else name
    try:
        loader, _ = _REGISTRY[key]
    except (KeyError, TypeError):
        valid = ", ".join(repr(n) for n in sorted(_REGISTRY))
        raise ValueError(
            f"unknown dataset {name!r}; valid names are: {valid}"
        ) from None
    return loader(as_frame=as_frame)
