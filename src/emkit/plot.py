"""Plots (matplotlib is imported lazily, with the non-interactive Agg backend when headless)."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    if not matplotlib.get_backend() or "inline" not in matplotlib.get_backend().lower():
        try:
            matplotlib.use("Agg", force=False)
        except Exception:  # a GUI backend is already in use
            pass
    import matplotlib.pyplot as plt

    return plt


def _projection(X):
    """Centre (D,) and a (D, 2) basis: the first two features if D <= 2, else the top principal axes."""
    X = np.asarray(X, dtype=np.float64)
    D = X.shape[1]
    center = X.mean(axis=0)
    if D == 1:
        return center, np.array([[1.0, 0.0]]), ["x0", "(none)"]
    if D == 2:
        return np.zeros(2), np.eye(2), None
    _, _, vt = np.linalg.svd(X[: 100_000] - center, full_matrices=False)
    return center, vt[:2].T, ["PC 1", "PC 2"]


def plot_clusters(X, labels, *, means=None, covariances=None, feature_names=None, ax=None, title=None):
    """Scatter of the data coloured by label, with each component's 1- and 2-sigma ellipses.

    Parameters
    ----------
    X : ndarray (n, D)
        Data; D > 2 is shown on its first two principal axes.
    labels : ndarray (n,)
    means : ndarray (K, D), optional
    covariances : ndarray (K, D, D), optional
        Full covariance matrices (``emkit.plot.full_covariances`` converts compact ones).
    """
    plt = _plt()
    from matplotlib.patches import Ellipse

    X = np.asarray(X, dtype=np.float64)
    center, basis, proj_names = _projection(X)
    Y = (X - center) @ basis if X.shape[1] != 2 else X
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.8))
    K = int(max(labels.max() + 1, 0 if means is None else len(means)))
    cmap = plt.get_cmap("tab10" if K <= 10 else "tab20")
    ax.scatter(Y[:, 0], Y[:, 1], c=[cmap(int(k) % cmap.N) for k in labels], s=10, alpha=0.7, linewidths=0)
    if means is not None:
        M = (np.asarray(means) - center) @ basis if X.shape[1] != 2 else np.asarray(means)
        for k in range(len(M)):
            ax.plot(M[k, 0], M[k, 1], marker="x", color="black", ms=8, mew=2)
            if covariances is not None:
                S = basis.T @ covariances[k] @ basis
                vals, vecs = np.linalg.eigh(S)
                vals = np.maximum(vals, 0)
                angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
                for n_sd in (1, 2):
                    ax.add_patch(Ellipse(M[k], 2 * n_sd * np.sqrt(vals[1]), 2 * n_sd * np.sqrt(vals[0]),
                                         angle=angle, fill=False, lw=1.5 if n_sd == 1 else 0.8,
                                         color=cmap(k % cmap.N)))
    names = proj_names or (list(feature_names) if feature_names is not None else ["x0", "x1"])
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    if title:
        ax.set_title(title)
    ax.autoscale_view()
    return ax


def plot_lower_bounds(lower_bounds, ax=None):
    """Log-likelihood (lower bound) per EM iteration."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, len(lower_bounds) + 1), lower_bounds, marker="o", ms=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean log-likelihood")
    return ax


def save_figure(ax, path):
    """Save the figure of ``ax`` to ``path`` (format from the extension) and close it."""
    plt = _plt()
    fig = ax.figure
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
