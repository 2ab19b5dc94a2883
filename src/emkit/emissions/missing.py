"""Missing values (NaN) in emission families: shared helpers.

Each family integrates out its own missing coordinates; these helpers group rows by
missingness pattern and give per-component means of what is observed.
"""

from __future__ import annotations

import numpy as np


def has_nan(X):
    """Whether ``X`` holds a NaN (one summing pass when it does not: a finite sum rules NaN out)."""
    if X.dtype.kind != "f":
        return False
    if np.isfinite(X.sum()):
        return False
    return bool(np.isnan(X).any())


def missing_patterns(X):
    """Rows of ``X`` (n, D) with NaN, grouped by missingness pattern; None if there is no NaN.

    Returns
    -------
    idx : ndarray (m,)
        Indices of the rows with at least one NaN, grouped by pattern.
    starts : ndarray (P + 1,)
        Pattern ``p`` holds ``idx[starts[p]:starts[p + 1]]``.
    observed : ndarray (P, D) of bool
        The coordinates each pattern observes.
    """
    if not has_nan(X):
        return None
    nan = np.isnan(X)
    incomplete = nan.any(axis=1)
    if not incomplete.any():
        return None
    idx = np.flatnonzero(incomplete)
    sub = nan[idx]
    if sub.shape[1] <= 62:  # one integer key per pattern
        keys = sub @ (np.int64(1) << np.arange(sub.shape[1], dtype=np.int64))
    else:
        packed = np.ascontiguousarray(np.packbits(sub, axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    starts = np.zeros(first.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(inverse, minlength=first.size), out=starts[1:])
    return idx[order], starts, np.ascontiguousarray(~sub[first])


def component_means(X, weights):
    """Per-component weighted means (K, D) of the observed entries; a coordinate without weight gets the
    mean of its observed entries (0 if none)."""
    nan = np.isnan(X) if X.dtype.kind == "f" else None
    if nan is None or not nan.any():
        Xf = np.asarray(X, dtype=np.float64)
        totals, counts = weights.T @ Xf, np.broadcast_to(weights.sum(axis=0)[:, None], (weights.shape[1], X.shape[1]))
        col = Xf.mean(axis=0)
    else:
        Xf = np.where(nan, 0.0, X)
        obs = (~nan).astype(np.float64)
        totals, counts = weights.T @ Xf, weights.T @ obs
        n_obs = obs.sum(axis=0)
        col = np.where(n_obs > 0, Xf.sum(axis=0) / np.maximum(n_obs, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = totals / counts
    return np.where(counts > 0, means, col[None, :])
