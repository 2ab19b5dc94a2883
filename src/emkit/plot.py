"""Plots (matplotlib is imported lazily, with the non-interactive Agg backend when headless).

Every plot of states or clusters colours state/cluster ``k`` with ``state_colors(K)[k]``, so
the same state has the same colour in the scatter, the ethogram, the usage bars and the
dwell-time histograms.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from ._atomic import atomic_path
from .report import _check_states, state_runs, state_statistics  # no matplotlib at import time

__all__ = ["plot_clusters", "plot_criterion", "plot_decision_regions", "plot_durations", "plot_ethogram",
           "plot_ethograms", "plot_lower_bounds", "plot_model", "plot_rates", "uses_priors",
           "plot_state_usage", "plot_transition_matrix", "save_figure", "state_colors", "state_statistics"]


def _plt():
    import matplotlib

    if not matplotlib.get_backend() or "inline" not in matplotlib.get_backend().lower():
        try:
            matplotlib.use("Agg", force=False)
        except Exception:  # a GUI backend is already in use
            pass
    import matplotlib.pyplot as plt

    return plt


def state_colors(K):
    """One colour per state, the same for every plot: a list of ``K`` RGBA tuples.

    States 0-9 take matplotlib's ``tab10`` colours whatever K is, 10-19 their lighter
    ``tab20`` partners, and further states evenly spaced hues.

    Parameters
    ----------
    K : int
        Number of states.

    Returns
    -------
    list of tuple
        RGBA colours, ``colors[k]`` for state ``k``.
    """
    _plt()
    from matplotlib import colormaps

    K = int(K)
    tab20 = colormaps["tab20"]
    base = [tab20(2 * i) for i in range(10)] + [tab20(2 * i + 1) for i in range(10)]
    if K <= len(base):
        return base[:K]
    extra = colormaps["hsv"](np.linspace(0, 1, K - len(base), endpoint=False))
    return base + [tuple(c) for c in extra]


def _state_handles(K, label="state"):
    from matplotlib.patches import Patch

    colors = state_colors(K)
    return [Patch(facecolor=colors[k], edgecolor="none", label=f"{label} {k}") for k in range(K)]


class _NotImported:
    """Stands for a class whose module is not imported: nothing is an instance of it."""


def _loaded(module, *names):
    """The classes ``names`` of the emkit module ``module`` if it is imported, else :class:`_NotImported`
    for each: a model of a module never imported cannot exist, and checking for one imports nothing."""
    mod = sys.modules.get(f"{__package__}.{module}")
    return tuple(_NotImported if mod is None else getattr(mod, name) for name in names)


def _projection(X):
    """Centre (D,) and a (D, 2) basis: the first two features if D <= 2, else the top principal axes
    (of the complete rows: rows with missing values project to NaN and are not drawn)."""
    X = np.asarray(X, dtype=np.float64)
    D = X.shape[1]
    if D == 1:
        return np.zeros(1), np.array([[1.0, 0.0]]), ["x0", "(none)"]
    if D == 2:
        return np.zeros(2), np.eye(2), None
    sample = X[: 100_000]
    sample = sample[~np.isnan(sample).any(axis=1)]
    if sample.shape[0] < 2:
        return np.zeros(D), np.eye(D)[:, :2], None
    center = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - center, full_matrices=False)
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
        Full covariance matrices (``COVARIANCE_TYPES[t].full_covariances`` converts compact ones).
    feature_names : list of str, optional
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib Axes
    """
    plt = _plt()
    from matplotlib.patches import Ellipse

    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64, copy=False)
    center, basis, proj_names = _projection(X)
    Y = (X - center) @ basis if X.shape[1] != 2 else X
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.8))
    K = int(max(labels.max() + 1 if labels.size else 0, 0 if means is None else len(means)))
    colors = np.asarray(state_colors(max(K, 1)))
    ax.scatter(Y[:, 0], Y[:, 1], c=colors[labels], s=10, alpha=0.7, linewidths=0)
    if means is not None:
        M = (np.asarray(means, dtype=np.float64) - center) @ basis if X.shape[1] != 2 else np.asarray(means)
        for k in range(len(M)):
            if not np.all(np.isfinite(M[k])):  # a component not drawn (NaN mean)
                continue
            ax.plot(M[k, 0], M[k, 1], marker="x", color="black", ms=8, mew=2)
            if covariances is not None:
                S = basis.T @ np.asarray(covariances[k], dtype=np.float64) @ basis
                vals, vecs = np.linalg.eigh(S)
                vals = np.maximum(vals, 0)
                angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
                for n_sd in (1, 2):
                    ax.add_patch(Ellipse(M[k], 2 * n_sd * np.sqrt(vals[1]), 2 * n_sd * np.sqrt(vals[0]),
                                         angle=angle, fill=False, lw=1.5 if n_sd == 1 else 0.8,
                                         color=colors[k]))
    names = proj_names or (list(feature_names) if feature_names is not None else ["x0", "x1"])
    if proj_names and X.shape[1] == 1 and feature_names is not None:
        names = [str(feature_names[0]), ""]
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    if title:
        ax.set_title(title)
    ax.autoscale_view()
    return ax


def plot_model(model, X, lengths=None, ax=None, *, feature_names=None, labels=None, max_points=20_000,
               title=None):
    """Data coloured by cluster/state with what the model says about each one.

    Gaussian mixtures and Gaussian HMMs get each component's mean and 1-/2-sigma ellipses,
    K-means its centres, Poisson HMMs a bar chart of their rates per state
    (:func:`plot_rates`); AR-HMMs show the data coloured by
    decoded state; a categorical HMM (no feature space) gets a heat map of its emission
    probabilities.  Data with more than two features are projected on their first two
    principal axes; rows with a missing value (NaN) are not drawn.

    Parameters
    ----------
    model : fitted GaussianMixture, KMeans or emkit HMM
    X : array-like (n, D), or a list of per-sequence arrays for an HMM
    lengths : array-like of int, optional
        Sequence lengths (HMMs only).
    ax : matplotlib Axes, optional
    feature_names : list of str, optional
    labels : array-like (n,), optional
        Labels/states to colour by; default ``model.predict(X)`` (``predict(X, lengths)``
        for HMMs).
    max_points : int, default=20000
        At most this many points (a fixed random subset) are drawn.
    title : str, optional

    Returns
    -------
    matplotlib Axes
    """
    ARHMM, BaseHMM, CategoricalHMM, GaussianHMM, PoissonHMM = _loaded(
        "models.hmm", "ARHMM", "BaseHMM", "CategoricalHMM", "GaussianHMM", "PoissonHMM")
    (KMeans,), (GaussianMixture,), (MixtureModel,) = (_loaded("models.kmeans", "KMeans"),
                                                      _loaded("models.mixture", "GaussianMixture"),
                                                      _loaded("models.generic", "MixtureModel"))
    (CategoricalEmission,), (GaussianEmission,), (PoissonEmission,) = (
        _loaded("emissions.categorical", "CategoricalEmission"), _loaded("emissions.gaussian", "GaussianEmission"),
        _loaded("emissions.poisson", "PoissonEmission"))

    name = type(model).__name__
    family = model._family() if isinstance(model, (MixtureModel, BaseHMM)) and hasattr(model, "_family") else None
    if isinstance(model, CategoricalHMM) or isinstance(family, CategoricalEmission):
        E = np.asarray(model.emissionprob_)
        return _heatmap(E, ax=ax, xlabel="symbol", ylabel="state", title=title or f"{name}: emission probabilities")
    if not isinstance(model, (GaussianMixture, KMeans, BaseHMM, MixtureModel)):
        raise TypeError(f"plot_model supports emkit's GaussianMixture, MixtureModel, KMeans and HMM models; got {name}")
    if feature_names is None and hasattr(X, "columns"):
        feature_names = [str(c) for c in X.columns]
    if isinstance(model, BaseHMM):
        from .models.hmm import as_sequences

        X, lengths = as_sequences(X, lengths)
    X = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
    if family is not None:
        model._fitted_params()  # the family of the fitted parameters
        family = model._family()
    if labels is None:
        labels = model.predict(X, lengths) if isinstance(model, BaseHMM) else model.predict(X)
    labels = np.asarray(labels)
    if labels.shape[0] != X.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries for {X.shape[0]} rows of X")
    if X.dtype.kind == "f" and not np.isfinite(X).all():  # rows with missing values have no place in the plane
        complete = np.isfinite(X).all(axis=1)
        X, labels = X[complete], labels[complete]
    means = covs = None
    if isinstance(model, (GaussianMixture, GaussianHMM)):
        from .emissions.gaussian import COVARIANCE_TYPES

        means = np.asarray(model.means_, dtype=np.float64)
        K, D = means.shape
        attr = "covariances_" if isinstance(model, GaussianMixture) else "covars_"
        covs = COVARIANCE_TYPES[model.covariance_type].full_covariances(
            np.asarray(getattr(model, attr), dtype=np.float64), K, D)
        detail = f" ({model.covariance_type})"
    elif isinstance(family, GaussianEmission):
        means = np.asarray(model.means_, dtype=np.float64)
        K, D = means.shape
        covs = family.cov.full_covariances(np.asarray(model.covars_, dtype=np.float64), K, D)
        detail = f" ({family!r})"
    elif isinstance(model, KMeans):
        means, detail = np.asarray(model.cluster_centers_, dtype=np.float64), ""
    elif isinstance(model, PoissonHMM) or isinstance(family, PoissonEmission):
        return plot_rates(model, feature_names=feature_names, ax=ax, title=title)
    elif family is not None:
        detail = f" ({family!r})"
    else:
        detail = f" (order {model.order})" if isinstance(model, ARHMM) else ""
    K = int(model.n_clusters if isinstance(model, KMeans) else model.n_components)
    word = "state" if isinstance(model, BaseHMM) else ("cluster" if isinstance(model, KMeans) else "component")
    if X.shape[1] == 1:
        weights = getattr(model, "weights_", None)
        return _plot_1d(X[:, 0], labels, K, means=means, covariances=covs, weights=weights, ax=ax, word=word,
                        xlabel=str(feature_names[0]) if feature_names is not None else "x0",
                        title=title or f"{name}, K={K}{detail}")
    if (means is not None and callable(getattr(model, "n_effective_components", None))
            and getattr(model, "weights_", None) is not None):
        off = np.asarray(model.weights_) <= 0.01  # components the prior switched off are not drawn
        means = np.where(off[:, None], np.nan, means)
        detail = f" ({model.covariance_type}, {int((~off).sum())} effective)"
    if X.shape[0] > max_points:
        idx = np.sort(np.random.default_rng(0).choice(X.shape[0], size=max_points, replace=False))
        X, labels = X[idx], labels[idx]
    ax = plot_clusters(X, labels, means=means, covariances=covs, feature_names=feature_names, ax=ax,
                       title=title or f"{name}, K={K}{detail}")
    if K <= 12:
        ax.legend(handles=_state_handles(K, word), loc="best", fontsize=8, framealpha=0.8)
    return ax


def plot_rates(model, *, feature_names=None, ax=None, title=None):
    """Poisson rates per state: one group of bars per feature, one bar per state.

    Parameters
    ----------
    model : fitted PoissonHMM
    feature_names : list of str, optional
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib Axes
    """
    plt = _plt()
    L = np.asarray(model.lambdas_, dtype=np.float64)
    K, D = L.shape
    names = [str(f) for f in feature_names] if feature_names is not None else [f"x{j}" for j in range(D)]
    if ax is None:
        _, ax = plt.subplots(figsize=(min(max(4.5, 0.35 * K * D + 2.0), 14), 3.8))
    colors = state_colors(K)
    width = 0.8 / K
    x = np.arange(D)
    for k in range(K):
        ax.bar(x - 0.4 + (k + 0.5) * width, L[k], width, color=colors[k], edgecolor="black", linewidth=0.3,
               label=f"state {k}")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30 if D > 6 else 0, ha="right" if D > 6 else "center")
    ax.set_ylabel("rate (expected count per step)")
    ax.set_title(title or f"{type(model).__name__}, K={K}: rates per state")
    if K <= 12:
        ax.legend(fontsize=8, frameon=False, ncol=min(K, 6))
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def _plot_1d(x, labels, K, *, means=None, covariances=None, weights=None, ax=None, word="state", xlabel="x0",
             title=None):
    """One feature: histogram stacked by label, with each Gaussian component's scaled density."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    x = np.asarray(x, dtype=np.float64)
    colors = state_colors(K)
    edges = np.histogram_bin_edges(x, bins=min(60, max(10, int(np.sqrt(x.size)))))
    groups = [x[labels == k] for k in range(K)]
    ax.hist(groups, bins=edges, stacked=True, color=colors, alpha=0.5, label=[f"{word} {k}" for k in range(K)])
    if means is not None:
        means = np.asarray(means, dtype=np.float64)[:, 0]
        for k in range(K):
            ax.axvline(means[k], color=colors[k], lw=1.2, ls="--")
        if covariances is not None:
            sd = np.sqrt(np.maximum(np.asarray(covariances, dtype=np.float64)[:, 0, 0], 1e-300))
            w = np.asarray(weights, dtype=np.float64) if weights is not None else \
                np.bincount(labels, minlength=K) / labels.size
            grid = np.linspace(edges[0], edges[-1], 400)
            scale = x.size * (edges[1] - edges[0])
            for k in range(K):
                dens = w[k] * np.exp(-0.5 * ((grid - means[k]) / sd[k]) ** 2) / (sd[k] * np.sqrt(2 * np.pi))
                ax.plot(grid, scale * dens, color=colors[k], lw=1.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if title:
        ax.set_title(title)
    if K <= 12:
        ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def _heatmap(M, ax=None, *, xlabel="", ylabel="", title=None, vmax=None, fmt="{:.2f}", color_ticks=None):
    """Heat map of a non-negative matrix with its values written in the cells."""
    plt = _plt()
    M = np.asarray(M, dtype=np.float64)
    R, C = M.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(min(max(3.8, 0.55 * C + 2.2), 12), min(max(3.2, 0.5 * R + 1.4), 10)))
    vmax = float(vmax if vmax is not None else max(1.0, np.nanmax(M)))
    im = ax.imshow(M, cmap="Blues", vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if max(R, C) <= 16:
        size = 9 if max(R, C) <= 8 else 7
        for i in range(R):
            for j in range(C):
                v = M[i, j]
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=size,
                        color="white" if v > 0.6 * vmax else "black")
    step_r, step_c = max(1, R // 20), max(1, C // 20)
    ax.set_xticks(np.arange(0, C, step_c))
    ax.set_yticks(np.arange(0, R, step_r))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if color_ticks:
        colors = state_colors(max(R, C))
        for labels, ticks in ((ax.get_xticklabels(), range(0, C, step_c)),
                              (ax.get_yticklabels(), range(0, R, step_r))):
            for lab, k in zip(labels, ticks):
                lab.set_color(colors[int(k)])
                lab.set_fontweight("bold")
    if title:
        ax.set_title(title)
    return ax


def plot_transition_matrix(transmat, ax=None, *, title="Transition matrix"):
    """Heat map of a transition matrix with the probabilities written in the cells.

    Parameters
    ----------
    transmat : array-like (K, K)
        Row-stochastic matrix, ``transmat[i, j] = p(z_{t+1} = j | z_t = i)``.
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib Axes
    """
    T = np.asarray(transmat, dtype=np.float64)
    if T.ndim != 2 or T.shape[0] != T.shape[1]:
        raise ValueError(f"transmat must be a square (K, K) matrix; got shape {T.shape}")
    ax = _heatmap(T, ax=ax, xlabel="to state", ylabel="from state", title=title, vmax=1.0, color_ticks=True)
    return ax


def plot_state_usage(states, n_states=None, ax=None, *, label="state"):
    """Fraction of time (frames) spent in each state, as a bar chart.

    Parameters
    ----------
    states : array-like of int (n,)
    n_states : int, optional
        Number of states K (default ``max(states) + 1``).
    ax : matplotlib Axes, optional
    label : str, default="state"
        What a state is called on the axis ("cluster", "component", ...).

    Returns
    -------
    matplotlib Axes
    """
    plt = _plt()
    states, _, K = _check_states(states, None, n_states)
    usage = np.bincount(states, minlength=K) / states.shape[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(min(max(3.6, 0.45 * K + 1.8), 12), 3.2))
    x = np.arange(K)
    ax.bar(x, usage, color=state_colors(K), edgecolor="black", linewidth=0.4)
    if K <= 20:
        for k in range(K):
            ax.text(k, usage[k], f"{100 * usage[k]:.1f}%", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x if K <= 30 else np.arange(0, K, max(1, K // 20)))
    ax.set_xlim(-0.6, K - 0.4)
    ax.set_ylim(0, max(usage.max() * 1.18, 0.05))
    ax.set_xlabel(label)
    ax.set_ylabel("fraction of time" if label == "state" else "fraction of samples")
    ax.set_title(f"{label.capitalize()} usage")
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def plot_durations(states, lengths=None, n_states=None, fps=None):
    """Dwell-time histograms, one panel per state, and a last panel of survival curves.

    A run ends at a change of state or at the end of a sequence: runs never cross
    sequence boundaries.  The histogram panels share the x axis; long-tailed dwell times get
    logarithmic bins.  The survival panel shows, for every state, the fraction of visits
    lasting longer than t.

    Parameters
    ----------
    states : array-like of int (n,), or a list of per-sequence arrays
    lengths : array-like of int, optional
        Lengths of the sequences concatenated in ``states``.
    n_states : int, optional
    fps : float, optional
        Frames per second: durations in seconds (else in frames).

    Returns
    -------
    matplotlib Figure
    """
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    states, lengths, K = _check_states(states, lengths, n_states)
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second; got {fps!r}")
    dt = 1.0 / fps if fps else 1.0
    unit = "s" if fps else "frames"
    run_states, _, run_lengths = state_runs(states, lengths)
    cols = min(K + 1, 4)
    rows = int(np.ceil((K + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols + 0.4, 2.3 * rows + 0.2), squeeze=False)
    axes = axes.ravel()
    colors = state_colors(K)
    top = int(run_lengths.max())
    log = top > 150
    if log:  # bin [a, b) holds the integer durations a..b-1
        edges = np.unique(np.floor(np.logspace(0, np.log10(top + 1), 30)))
        edges = np.append(edges, top + 1) if edges[-1] <= top else edges
    else:
        width = max(1, int(np.ceil(top / 40)))
        edges = np.arange(0.5, top + width + 0.5, width)
    surv = axes[K]
    for k in range(K):
        ax = axes[k]
        d = run_lengths[run_states == k]
        ax.set_title(f"state {k}: {d.size} visits" + (f", mean {d.mean() * dt:.3g} {unit}" if d.size else ""),
                     fontsize=9, color=colors[k])
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xlim(edges[0] * dt, edges[-1] * dt)
        ax.set_xlabel(f"dwell time ({unit})", fontsize=8)
        if k % cols == 0:
            ax.set_ylabel("visits", fontsize=8)
        if log:
            ax.set_xscale("log")
        if d.size == 0:
            continue
        ax.hist(d * dt, bins=edges * dt, histtype="stepfilled", color=colors[k], alpha=0.5, edgecolor=colors[k])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        x = np.sort(d) * dt
        surv.step(np.concatenate([[edges[0] * dt], x]), np.concatenate([[1.0], 1.0 - np.arange(1, x.size + 1) / x.size]),
                  where="post", color=colors[k], lw=1.5)
    surv.set_title("survival", fontsize=9)
    surv.set_xlabel(f"dwell time ({unit})", fontsize=8)
    surv.set_ylabel("fraction of visits longer", fontsize=8)
    surv.set_ylim(0, 1.02)
    surv.spines[["top", "right"]].set_visible(False)
    if log:
        from matplotlib.ticker import NullFormatter

        surv.set_xscale("log")
        for ax in axes[:K + 1]:
            ax.xaxis.set_minor_formatter(NullFormatter())
    for ax in axes[K + 1:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_ethogram(states, X=None, lengths=None, time=None, n_states=None, feature_names=None, max_traces=6,
                  sequence=0, window=None, fps=None):
    """The decoded states as a coloured band over time, under the data trace(s).

    Parameters
    ----------
    states : array-like of int (n,), or a list of per-sequence arrays
    X : array-like (n, D), optional
        Data; the first ``max_traces`` features are drawn above the state band (several
        features are each scaled to their range and stacked).  Without X only the band is drawn.
    lengths : array-like of int, optional
        Lengths of the sequences concatenated in ``states`` (and ``X``).
    time : array-like, optional
        Time of each frame: length n (all sequences) or the length of the shown sequence.
        Default: frame index within the sequence.
    n_states : int, optional
    feature_names : list of str, optional
    max_traces : int, default=6
    sequence : int, default=0
        Which sequence to show.
    window : (int, int), optional
        Show only frames ``start:stop`` of that sequence (a zoom into a long recording).
    fps : float, optional
        Frames per second: without ``time``, the time axis is in seconds.

    Returns
    -------
    matplotlib Figure
        Two stacked axes sharing x (traces above, states below), or one axes without X.
    """
    plt = _plt()
    if isinstance(X, (list, tuple)) and lengths is None and len(X) and np.ndim(X[0]) == 2:
        if feature_names is None and hasattr(X[0], "columns"):
            feature_names = [str(c) for c in X[0].columns]
        X = np.concatenate([np.asarray(x) for x in X])
    if X is not None and feature_names is None and hasattr(X, "columns"):
        feature_names = [str(c) for c in X.columns]
    states, lengths, K = _check_states(states, lengths, n_states)
    n = states.shape[0]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    if isinstance(sequence, bool) or not isinstance(sequence, (int, np.integer)) or not 0 <= sequence < len(lengths):
        raise ValueError(f"sequence must be an integer in 0..{len(lengths) - 1}; got {sequence!r}")
    a, b = int(bounds[sequence]), int(bounds[sequence + 1])
    s = states[a:b]
    if time is None and fps is not None:
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number of frames per second; got {fps!r}")
        t, xlabel = np.arange(b - a, dtype=np.float64) / fps, "time (s)"
    elif time is None:
        t, xlabel = np.arange(b - a, dtype=np.float64), "frame"
    else:
        time = np.asarray(time, dtype=np.float64).ravel()
        if time.shape[0] == n:
            t = time[a:b]
        elif time.shape[0] == b - a:
            t = time
        else:
            raise ValueError(f"time must have {n} entries (all frames) or {b - a} (sequence {sequence}); "
                             f"got {time.shape[0]}")
        xlabel = "time"
    if window is not None:
        w0, w1 = (int(w) for w in window)
        w0, w1 = max(0, w0), min(b - a, w1)
        if w1 <= w0:
            raise ValueError(f"window must select at least one frame of the {b - a} in sequence {sequence}; "
                             f"got {tuple(window)}")
        s, t = s[w0:w1], t[w0:w1]
        a, b = a + w0, a + w1
    seq = f"sequence {sequence} of {len(lengths)}" if len(lengths) > 1 else ""
    zoom = f"frames {w0}–{w1 - 1}" if window is not None else ""
    dt = float(np.median(np.diff(t))) if t.shape[0] > 1 else 1.0
    edges = np.append(t, t[-1] + dt)
    if X is not None:
        X = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
        if X.ndim == 1:
            X = X[:, None]
        if X.shape[0] != n:
            raise ValueError(f"X has {X.shape[0]} rows but states has {n} entries")
        fig, (ax_tr, ax_st) = plt.subplots(2, 1, sharex=True, figsize=(10, 4.6),
                                           gridspec_kw={"height_ratios": [4, 1], "hspace": 0.06})
        D = X.shape[1]
        m = max(1, min(int(max_traces), D))
        names = [str(f) for f in feature_names] if feature_names is not None else [f"x{j}" for j in range(D)]
        Xs = np.asarray(X[a:b, :m], dtype=np.float64)
        integer = bool(np.all(Xs[np.isfinite(Xs)] == np.round(Xs[np.isfinite(Xs)])))
        style = {"lw": 0.8, "color": "0.15", "drawstyle": "steps-post" if integer else "default"}
        if m == 1:
            ax_tr.plot(t, Xs[:, 0], **style)
            ax_tr.set_ylabel(names[0])
            if integer:
                from matplotlib.ticker import MaxNLocator

                ax_tr.yaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            lo, hi = np.nanmin(Xs, axis=0), np.nanmax(Xs, axis=0)
            span = np.where(hi > lo, hi - lo, 1.0)
            for j in range(m):
                ax_tr.plot(t, (Xs[:, j] - lo[j]) / span[j] * 0.85 + (m - 1 - j), **style)
            ax_tr.set_yticks(np.arange(m) + 0.425)
            ax_tr.set_yticklabels(names[:m][::-1])
            ax_tr.set_ylim(-0.15, m)
            ax_tr.tick_params(axis="y", length=0)
        more = f" (first {m} of {D} features)" if D > m else ""
        ax_tr.set_title(", ".join(p for p in ("Ethogram" + more, seq, zoom) if p))
        ax_tr.spines[["top", "right"]].set_visible(False)
    else:
        fig, ax_st = plt.subplots(figsize=(10, 2.0))
        if seq or zoom:
            ax_st.set_title(", ".join(p for p in ("States", seq, zoom) if p))
    colors = state_colors(K)
    run_states, run_starts, run_lengths = state_runs(s)
    for k in range(K):
        sel = run_states == k
        if not np.any(sel):
            continue
        x0 = edges[run_starts[sel]]
        widths = edges[run_starts[sel] + run_lengths[sel]] - x0
        ax_st.broken_barh(list(zip(x0, widths)), (0, 1), facecolors=colors[k], edgecolors="none")
    ax_st.set_ylim(0, 1)
    ax_st.set_yticks([])
    ax_st.set_ylabel("state", rotation=0, ha="right", va="center")
    ax_st.set_xlim(edges[0], edges[-1])
    ax_st.set_xlabel(xlabel)
    if K <= 20 and X is not None:
        ax_st.legend(handles=_state_handles(K), loc="upper center", bbox_to_anchor=(0.5, -0.75),
                     ncol=min(K, 10), frameon=False, fontsize=8, handlelength=1.2, columnspacing=1.2)
    elif K <= 20:
        ax_st.legend(handles=_state_handles(K), loc="center left", bbox_to_anchor=(1.01, 0.5),
                     ncol=int(np.ceil(K / 4)), frameon=False, fontsize=8, handlelength=1.2, columnspacing=1.0)
    return fig


def plot_ethograms(states, lengths=None, names=None, fps=None, n_states=None, ax=None):
    """The decoded states of every sequence as coloured bands, one row per sequence.

    Parameters
    ----------
    states : array-like of int (n,), or a list of per-sequence arrays
    lengths : array-like of int, optional
        Lengths of the sequences concatenated in ``states``.
    names : list of str, optional
        One name per sequence (row labels); default ``sequence 0, 1, ...``.
    fps : float, optional
        Frames per second: the time axis is in seconds (else in frames).
    n_states : int, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Figure
    """
    plt = _plt()
    states, lengths, K = _check_states(states, lengths, n_states)
    S = len(lengths)
    if names is None:
        names = [f"sequence {i}" for i in range(S)]
    names = [str(n) for n in names]
    if len(names) != S:
        raise ValueError(f"names has {len(names)} entries for {S} sequences")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second; got {fps!r}")
    dt = 1.0 / fps if fps else 1.0
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 1.0 + 0.38 * max(S, 2)))
    fig = ax.figure
    colors = state_colors(K)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    for i in range(S):
        run_states, run_starts, run_lengths = state_runs(states[bounds[i]:bounds[i + 1]])
        for k in range(K):
            sel = run_states == k
            if np.any(sel):
                ax.broken_barh(list(zip(run_starts[sel] * dt, run_lengths[sel] * dt)), (S - 1 - i + 0.1, 0.8),
                               facecolors=colors[k], edgecolors="none")
    ax.set_yticks(np.arange(S) + 0.5)
    ax.set_yticklabels(names[::-1], fontsize=8 if S > 12 else 9)
    ax.set_ylim(0, S)
    ax.set_xlim(0, lengths.max() * dt)
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.set_title(f"Ethogram: {S} recording{'s' if S != 1 else ''}")
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.tick_params(axis="y", length=0)
    if K <= 20:
        ax.legend(handles=_state_handles(K), loc="center left", bbox_to_anchor=(1.01, 0.5),
                  ncol=int(np.ceil(K / max(4, 2 * S))), frameon=False, fontsize=8, handlelength=1.2)
    return fig


def _table_column(table, name):
    return np.asarray(table[name])


def _table_columns(table):
    return [str(c) for c in (table.columns if hasattr(table, "columns") else table.keys())]


_LOWER = ("bic", "aic", "aicc", "icl", "inertia")
_HIGHER = ("heldout", "loglik", "log_likelihood", "likelihood", "score", "lower_bound", "elbo")


def _higher_is_better(criterion):
    c = str(criterion).lower()
    if any(c == w or c.startswith(w + "_") for w in _LOWER):
        return False
    return any(w in c for w in _HIGHER)


def _criterion_columns(table):
    """Criterion columns of a selection table, known names only (bic, aic, icl, heldout, ...)."""
    out = []
    for c in _table_columns(table):
        lc = c.lower()
        if lc == "n_components":
            continue
        if any(lc == w or lc.startswith(w + "_") for w in _LOWER) or any(w in lc for w in _HIGHER):
            values = np.asarray(table[c])
            if values.dtype.kind in "fiu":
                out.append(c)
    return out


def _best_position(table, criterion, higher_is_better=None):
    """Row position of the best finite value of ``criterion``, or None."""
    v = np.asarray(table[criterion], dtype=np.float64)
    if not np.any(np.isfinite(v)):
        return None
    hib = _higher_is_better(criterion) if higher_is_better is None else higher_is_better
    masked = np.where(np.isfinite(v), v, -np.inf if hib else np.inf)
    return int(np.argmax(masked) if hib else np.argmin(masked))


def plot_criterion(table, criterion=None, ax=None, *, higher_is_better=None):
    """A model-selection criterion versus the number of components, best marked.

    Parameters
    ----------
    table : pandas.DataFrame or dict of columns
        With an ``n_components`` column and the criterion column.  Several rows per K
        (e.g. restarts or folds) are drawn as points, with a line through the best per K.
    criterion : str, optional
        Column to plot; default the first of the known criteria present (``bic``, ``aic``,
        ``icl``, ``heldout``, ...).
    ax : matplotlib Axes, optional
    higher_is_better : bool, optional
        Default: minimum is best for bic/aic/icl (and other names), maximum for names with
        "heldout", "loglik", "likelihood" or "score".

    Returns
    -------
    matplotlib Axes
    """
    plt = _plt()
    cols = _table_columns(table)
    if "n_components" not in cols:
        raise ValueError(f"table must have an 'n_components' column; got columns {cols}")
    if criterion is None:
        found = _criterion_columns(table)
        if not found:
            raise ValueError(f"no criterion column (bic, aic, icl, heldout, ...) among {cols}; pass criterion=")
        criterion = found[0]
    if criterion not in cols:
        raise ValueError(f"criterion {criterion!r} is not a column of the table (columns {cols})")
    hib = _higher_is_better(criterion) if higher_is_better is None else bool(higher_is_better)
    k = np.asarray(table["n_components"], dtype=np.float64)
    v = np.asarray(table[criterion], dtype=np.float64)
    ok = np.isfinite(k) & np.isfinite(v)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.6))
    ks = np.unique(k[ok])
    best_per_k = np.array([(v[ok][k[ok] == kk].max() if hib else v[ok][k[ok] == kk].min()) for kk in ks])
    if ok.sum() > ks.size:
        ax.scatter(k[ok], v[ok], s=14, color="0.55", alpha=0.7, zorder=2, label="all fits")
    ax.plot(ks, best_per_k, marker="o", ms=5, color="#1f77b4", zorder=3)
    pos = _best_position({"c": np.where(ok, v, np.nan)}, "c", hib)
    if pos is not None:
        ax.plot(k[pos], v[pos], marker="*", ms=16, color="#d62728", mec="black", mew=0.6, zorder=4, ls="none",
                label=f"best: K={int(k[pos]) if k[pos] == int(k[pos]) else k[pos]}")
        ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel("number of components K")
    ax.set_ylabel(criterion)
    ax.set_title(f"{criterion} ({'higher' if hib else 'lower'} is better)")
    if ks.size and np.all(ks == np.round(ks)) and ks.size <= 30:
        ax.set_xticks(ks)
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def uses_priors(model):
    """Whether a model's EM maximises a log posterior (priors on) rather than the log-likelihood."""
    if float(getattr(model, "kappa", 0.0) or 0.0) != 0.0:
        return True
    for name in ("startprob_prior", "transmat_prior", "emissionprob_prior"):
        value = getattr(model, name, None)
        if value is not None and np.any(np.asarray(value, dtype=np.float64) != 1.0):
            return True
    return np.any(np.asarray(getattr(model, "lambdas_weight", 0.0), dtype=np.float64) != 0.0)


def plot_lower_bounds(lower_bounds, ax=None, *, model=None):
    """The EM objective per iteration: mean log-likelihood, or log posterior when priors are on.

    Parameters
    ----------
    lower_bounds : sequence of float
        E.g. ``model.lower_bounds_``.
    ax : matplotlib Axes, optional
    model : fitted estimator, optional
        The model the values come from: the axis says "log posterior" when its priors are
        on (``kappa``, Dirichlet or rate priors), else "log-likelihood".

    Returns
    -------
    matplotlib Axes
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, len(lower_bounds) + 1), lower_bounds, marker="o", ms=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean log posterior" if model is not None and uses_priors(model) else "mean log-likelihood")
    return ax


def save_figure(ax, path):
    """Save the figure of ``ax`` (an Axes or a Figure) to ``path`` and close it.

    The format follows the extension (``.png``, ``.svg``, ``.pdf``, ...).  The file is written to
    a temporary file in the same folder and moved into place when complete.

    Returns
    -------
    path
    """
    plt = _plt()
    fig = ax if hasattr(ax, "savefig") else ax.figure
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tight_layout cannot fit every layout
        fig.tight_layout()
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or None
    try:
        with atomic_path(path) as tmp:  # written whole or not at all
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format=fmt)
    finally:
        plt.close(fig)
    return path


def plot_decision_regions(classifier, X, y=None, ax=None, *, feature_names=None, resolution=200,
                          max_points=20_000, title=None):
    """Class regions of a fitted :class:`~emkit.GaussianMixtureClassifier`, flags marked.

    The background shows the predicted class at every point of a grid, pale grey where the
    prediction is ambiguous (top posterior below ``ambiguity_threshold``); a dashed line
    encloses where the density is above the anomaly threshold. Points are coloured by ``y``
    (or by their predicted class); ambiguous points are ringed in black and anomalous points
    drawn as red crosses. Data with more than two features are shown on their first two
    principal axes, and the regions are those of the plane through the mean of ``X`` spanned
    by these axes.

    Parameters
    ----------
    classifier : fitted GaussianMixtureClassifier
    X : array-like (n, D)
    y : array-like (n,), optional
        True labels (values from ``classifier.classes_``) to colour the points by.
    ax : matplotlib Axes, optional
    feature_names : list of str, optional
    resolution : int, default=200
        Grid points per axis.
    max_points : int, default=20000
        At most this many points (a fixed random subset) are drawn.
    title : str, optional

    Returns
    -------
    matplotlib Axes
    """
    from .models.classifier import GaussianMixtureClassifier

    if not isinstance(classifier, GaussianMixtureClassifier):
        raise TypeError(f"plot_decision_regions needs a fitted GaussianMixtureClassifier; got "
                        f"{type(classifier).__name__}")
    plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if feature_names is None and hasattr(X, "columns"):
        feature_names = [str(c) for c in X.columns]
    X = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X, dtype=np.float64)
    classes = classifier.classes_
    if y is not None:
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},), one label per row of X; got {y.shape}")
        unknown = np.setdiff1d(y, classes)
        if unknown.size:
            raise ValueError(f"y holds labels the classifier does not know: {unknown[:5].tolist()}")
    if X.shape[0] > max_points:
        idx = np.sort(np.random.default_rng(0).choice(X.shape[0], size=max_points, replace=False))
        X, y = X[idx], None if y is None else y[idx]
    D = X.shape[1]
    center, basis, proj_names = _projection(X)
    if D == 1:  # one feature: the classes as bands along it, points jittered vertically
        Y = np.column_stack([X[:, 0], np.random.default_rng(0).uniform(0, 1, X.shape[0])])
    else:
        Y = X if D == 2 else (X - center) @ basis
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    pad = 0.15 * np.maximum(hi - lo, 1e-9)
    u = np.linspace(lo[0] - pad[0], hi[0] + pad[0], int(resolution))
    v = np.linspace(lo[1] - pad[1], hi[1] + pad[1], int(resolution))
    U, V = np.meshgrid(u, v)
    grid = np.column_stack([U.ravel(), V.ravel()])
    Xg = grid[:, :1] if D == 1 else (grid if D == 2 else center + grid @ basis.T)
    out = classifier.classify(Xg)
    C = len(classes)
    colors = np.asarray(state_colors(max(C, 1)))
    image = colors[out.proba.argmax(axis=1)].copy()
    image[:, 3] = 0.35
    image[out.ambiguous] = (0.6, 0.6, 0.6, 0.35)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.imshow(image.reshape(len(v), len(u), 4), origin="lower", extent=(u[0], u[-1], v[0], v[-1]), aspect="auto",
              interpolation="nearest")
    if D != 1:
        ax.contour(U, V, out.log_density.reshape(U.shape), levels=[classifier.anomaly_threshold_], colors="black",
                   linestyles="--", linewidths=1)
    points = classifier.classify(X)
    idx = np.searchsorted(classes, y) if y is not None else points.proba.argmax(axis=1)
    ax.scatter(Y[:, 0], Y[:, 1], c=colors[idx], s=12, linewidths=0, alpha=0.9)
    amb, ano = points.ambiguous & ~points.anomalous, points.anomalous
    ax.scatter(Y[amb, 0], Y[amb, 1], s=40, facecolors="none", edgecolors="black", linewidths=1)
    ax.scatter(Y[ano, 0], Y[ano, 1], s=40, marker="x", color="red", linewidths=1.5)
    handles = [Patch(facecolor=colors[k], label=str(classes[k])) for k in range(C)] if C <= 12 else []
    handles += [Patch(facecolor=(0.6, 0.6, 0.6, 0.5), label=f"ambiguous (p < {classifier.ambiguity_threshold:g})"),
                Line2D([], [], marker="o", ls="", mfc="none", mec="black", label=f"ambiguous ({int(amb.sum())})"),
                Line2D([], [], marker="x", ls="", color="red", label=f"anomalous ({int(ano.sum())})")]
    if D != 1:
        handles.append(Line2D([], [], ls="--", color="black", label=f"density at the {classifier.anomaly_quantile:g} "
                                                                       "quantile"))
    ax.legend(handles=handles, loc="best", fontsize=7, framealpha=0.8)
    if D == 1:
        names = [str(feature_names[0]) if feature_names is not None else "x0", ""]
        ax.set_yticks([])
    else:
        names = proj_names or (list(feature_names) if feature_names is not None else ["x0", "x1"])
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(title or f"GaussianMixtureClassifier: {C} classes")
    return ax
