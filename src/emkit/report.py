"""State statistics and a self-contained HTML report of a fitted model.

:func:`state_statistics` summarises a decoded state sequence (usage, dwell times, visits,
transition counts) without letting runs cross sequence boundaries.  :func:`write_report`
writes one HTML file (inline CSS, figures embedded as base64 PNG) describing a fitted
:class:`~emkit.GaussianMixture`, :class:`~emkit.KMeans` or any HMM of emkit.

Nothing here imports matplotlib at module import time.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
import os
from collections import namedtuple

import numpy as np

from ._atomic import atomic_path

__all__ = ["StateStatistics", "state_runs", "state_statistics", "write_report"]

StateStatistics = namedtuple("StateStatistics", ["usage", "mean_duration", "visits", "transition_counts"])
StateStatistics.__doc__ = """Summary of a state sequence (see :func:`state_statistics`).

usage : ndarray (K,)
    Fraction of frames spent in each state (sums to 1).
mean_duration : ndarray (K,)
    Mean dwell time (run length, in frames) of each state; NaN for a state never visited.
visits : ndarray (K,) of int
    Number of runs (separate visits) of each state.
transition_counts : ndarray (K, K) of int
    ``[i, j]`` = number of frames t with ``z_t = i`` and ``z_{t+1} = j`` inside one sequence
    (self-transitions on the diagonal; off-diagonal entries count state switches).
"""


# -- state sequences ----------------------------------------------------------------------------------
def _check_states(states, lengths=None, n_states=None):
    """Validate a state sequence; returns (states int64 (n,), lengths (S,), K)."""
    from ._validation import check_lengths

    if isinstance(states, (list, tuple)) and lengths is None and len(states) > 0 and all(
            np.ndim(s) == 1 for s in states):
        parts = [np.asarray(s) for s in states]
        lengths = np.array([p.shape[0] for p in parts], dtype=np.int64)
        states = np.concatenate(parts) if parts else np.zeros(0)
    states = np.asarray(states)
    if states.ndim == 2 and 1 in states.shape:
        states = states.ravel()
    if states.ndim != 1:
        raise ValueError(f"states must be a 1-D array of state indices; got shape {states.shape}")
    if states.size == 0:
        raise ValueError("states must hold at least one frame")
    if states.dtype.kind not in "iu":
        if states.dtype.kind in "fb" and np.all(np.isfinite(states)) and np.all(states == np.round(states)):
            states = states.astype(np.int64)
        else:
            raise ValueError(f"states must hold integer state indices; got dtype {states.dtype}")
    states = states.astype(np.int64, copy=False)
    if states.min() < 0:
        raise ValueError(f"states must be >= 0; got {int(states.min())}")
    lengths = check_lengths(lengths, states.shape[0])
    top = int(states.max()) + 1
    if n_states is None:
        K = top
    else:
        if isinstance(n_states, bool) or not isinstance(n_states, (int, np.integer)) or n_states < 1:
            raise ValueError(f"n_states must be a positive integer; got {n_states!r}")
        K = int(n_states)
        if top > K:
            raise ValueError(f"states holds state {top - 1}, outside 0..{K - 1} of n_states={K}")
    return states, lengths, K


def state_runs(states, lengths=None):
    """Split a state sequence into runs (maximal stretches of one state within one sequence).

    Parameters
    ----------
    states : array-like of int (n,), or a list of 1-D arrays (one per sequence)
    lengths : array-like of int, optional
        Lengths of the sequences concatenated in ``states``; a run never crosses from one
        sequence into the next, even when both sides hold the same state.

    Returns
    -------
    run_states : ndarray (R,)
        The state of each run.
    run_starts : ndarray (R,)
        Index of the first frame of each run in ``states``.
    run_lengths : ndarray (R,)
        Length of each run in frames.
    """
    states, lengths, _ = _check_states(states, lengths)
    n = states.shape[0]
    new = np.ones(n, dtype=bool)
    new[1:] = states[1:] != states[:-1]
    new[np.cumsum(lengths)[:-1]] = True
    run_starts = np.flatnonzero(new)
    run_lengths = np.diff(np.append(run_starts, n))
    return states[run_starts], run_starts, run_lengths


def state_statistics(states, lengths=None, n_states=None):
    """Usage, mean dwell time, visits and transition counts of a state sequence.

    Parameters
    ----------
    states : array-like of int (n,), or a list of 1-D arrays (one per sequence)
        Decoded states, e.g. ``model.predict(X, lengths)``.
    lengths : array-like of int, optional
        Lengths of the concatenated sequences; runs and transitions never cross a boundary.
    n_states : int, optional
        Number of states K (default ``max(states) + 1``); unvisited states get usage 0,
        0 visits and a NaN mean duration.

    Returns
    -------
    StateStatistics
        A named tuple ``(usage (K,), mean_duration (K,), visits (K,), transition_counts (K, K))``.

    Examples
    --------
    >>> s = state_statistics([0, 0, 1, 1, 1, 0], lengths=[3, 3], n_states=2)
    >>> s.visits.tolist(), s.mean_duration.tolist()
    ([2, 2], [1.5, 1.5])
    """
    states, lengths, K = _check_states(states, lengths, n_states)
    n = states.shape[0]
    usage = np.bincount(states, minlength=K) / n
    run_states, _, run_lengths = state_runs(states, lengths)
    visits = np.bincount(run_states, minlength=K).astype(np.int64)
    total = np.bincount(run_states, weights=run_lengths, minlength=K)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_duration = np.where(visits > 0, total / np.maximum(visits, 1), np.nan)
    inside = np.ones(max(n - 1, 0), dtype=bool)  # pair (t, t+1) lies inside one sequence
    boundaries = np.cumsum(lengths)[:-1]
    inside[boundaries - 1] = False
    src, dst = states[:-1][inside], states[1:][inside]
    counts = np.bincount(src * K + dst, minlength=K * K).reshape(K, K).astype(np.int64)
    return StateStatistics(usage, mean_duration, visits, counts)


# -- model introspection ------------------------------------------------------------------------------
def _kind(model):
    from .models.hmm import BaseHMM
    from .models.kmeans import KMeans
    from .models.generic import MixtureModel
    from .models.mixture import GaussianMixture

    if isinstance(model, BaseHMM):
        return "hmm"
    if isinstance(model, (GaussianMixture, MixtureModel)):
        return "mixture"
    if isinstance(model, KMeans):
        return "kmeans"
    raise TypeError(f"write_report supports emkit's GaussianMixture, KMeans and HMM models; got {type(model).__name__}")


def _n_states(model):
    return int(model.n_clusters if hasattr(model, "n_clusters") else model.n_components)


def _prepare_data(model, X, lengths, feature_names):
    """Array X, lengths (S,), feature names; accepts DataFrames and lists of sequences."""
    from ._validation import check_lengths
    from .models.hmm import as_sequences

    if feature_names is None and hasattr(X, "columns"):
        feature_names = [str(c) for c in X.columns]
    if isinstance(X, (list, tuple)) and lengths is None:
        if feature_names is None and len(X) and hasattr(X[0], "columns"):
            feature_names = [str(c) for c in X[0].columns]
        X, lengths = as_sequences(X, lengths)
    X = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}")
    lengths = check_lengths(lengths, X.shape[0])
    if feature_names is None:
        from .models.hmm import CategoricalHMM

        feature_names = ["symbol"] if isinstance(model, CategoricalHMM) else [f"x{j}" for j in range(X.shape[1])]
    feature_names = [str(f) for f in feature_names]
    if len(feature_names) != X.shape[1]:
        raise ValueError(f"feature_names has {len(feature_names)} names for {X.shape[1]} features")
    return X, lengths, feature_names


def _full_covariances(model, attr):
    from .emissions.gaussian import COVARIANCE_TYPES

    K, D = np.asarray(model.means_).shape
    return np.asarray(COVARIANCE_TYPES[model.covariance_type].full_covariances(
        np.asarray(getattr(model, attr), dtype=np.float64), K, D))


# -- HTML helpers -------------------------------------------------------------------------------------
def _e(text):
    return html.escape(str(text), quote=True)


def _fmt(x, digits=4):
    """A number as short text."""
    if x is None:
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):d}"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v != 0 and (abs(v) >= 1e9 or abs(v) < 1e-3):
        return f"{v:.{digits - 1}e}"
    if v == int(v):
        return f"{int(v):d}"
    if abs(v) >= 10 ** (digits - 1):  # large values (log-likelihoods, BIC): keep one decimal
        return f"{v:.1f}"
    return f"{v:.{digits}g}"


def _param_text(value):
    if value is None:
        return "None"
    if isinstance(value, np.ndarray) or (isinstance(value, (list, tuple)) and np.ndim(value) > 1):
        a = np.asarray(value)
        if a.size <= 6:
            return np.array2string(a, precision=4, separator=", ")
        return f"array of shape {a.shape}"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(map(repr, value))) + "}"
    if isinstance(value, np.random.Generator):
        return "numpy Generator"
    return repr(value)


def _table(header, rows, *, row_header=True, css_class=None, highlight=None, caption=None):
    """An HTML table; ``header`` and cells are plain text (escaped here), numbers formatted."""
    cls = f' class="{_e(css_class)}"' if css_class else ""
    out = [f"<table{cls}>"]
    if caption:
        out.append(f"<caption>{_e(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>")
    out.append("<tbody>")
    for i, row in enumerate(rows):
        tr = ' class="best"' if highlight is not None and i == highlight else ""
        cells = []
        for j, cell in enumerate(row):
            text = cell if isinstance(cell, str) else _fmt(cell)
            tag = "th" if row_header and j == 0 else "td"
            num = "" if isinstance(cell, (str, bool, np.bool_)) else ' class="num"'
            cells.append(f"<{tag}{num}>{_e(text)}</{tag}>")
        out.append(f"<tr{tr}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _matrix_table(M, row_label, col_names, caption=None):
    M = np.asarray(M)
    rows = [[f"{row_label} {k}"] + [float(v) for v in M[k]] for k in range(M.shape[0])]
    return _table([""] + list(col_names), rows, caption=caption)


def _figure_png(fig_or_ax, dpi=100):
    """PNG bytes of a matplotlib Figure (or of an Axes' figure); the figure is closed."""
    from .plot import _plt

    plt = _plt()
    fig = fig_or_ax if hasattr(fig_or_ax, "savefig") else fig_or_ax.figure
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    finally:
        plt.close(fig)
    return buf.getvalue()


def _img(fig_or_ax, alt, caption=None):
    data = base64.b64encode(_figure_png(fig_or_ax)).decode("ascii")
    out = f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
    if caption:
        out += f"<figcaption>{_e(caption)}</figcaption>"
    return out + "</figure>"


def _section(sid, heading, body):
    return f'<section id="{_e(sid)}">\n<h2>{_e(heading)}</h2>\n' + "\n".join(body) + "\n</section>"


def _note(text):
    return f'<p class="note">{_e(text)}</p>'


_CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --bg: #ffffff; --head: #f3f5f9; --best: #fff3c4; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; }
header, main, footer { max-width: 1100px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; border-bottom: 1px solid var(--line); }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 8px; }
nav { margin: 8px 0 12px; }
nav a { color: #2c5fb3; text-decoration: none; margin-right: 14px; }
nav a:hover { text-decoration: underline; }
.subtitle, .note, figcaption, footer { color: var(--muted); }
.warn { color: #8a1c1c; background: #fdecec; border: 1px solid #f3c4c4; padding: 6px 10px; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: 2px 0 6px; color: var(--fg); }
th, td { border: 1px solid var(--line); padding: 3px 9px; text-align: left; vertical-align: top; }
thead th { background: var(--head); }
tbody th { background: #fafbfc; font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.best td, tr.best th { background: var(--best); }
.scroll { overflow-x: auto; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
code { font-family: SFMono-Regular, Consolas, monospace; font-size: 12px; }
footer { border-top: 1px solid var(--line); margin-top: 30px; padding-top: 10px; padding-bottom: 24px;
         font-size: 12px; }
"""


#: Sequences longer than twice this get a second, zoomed ethogram of their first frames.
_ZOOM_FRAMES = 1000


# -- sections -----------------------------------------------------------------------------------------
def _summary_section(model, kind, X, lengths, feature_names):
    from . import __version__

    name = type(model).__name__
    n, D = X.shape
    K = _n_states(model)
    rows = [["model", name], ["states / components" if kind == "hmm" else "components", K],
            ["samples (frames)" if kind == "hmm" else "samples", n]]
    if kind == "hmm":
        rows.append(["sequences", len(lengths)])
    rows.append(["features", f"{D} ({', '.join(feature_names)})" if D <= 12 else str(D)])
    if kind == "kmeans":
        rows.append(["inertia (sum of squared distances)", float(model.inertia_)])
        rows.append(["inertia on these data", -float(model.score(X))])
        rows.append(["iterations", int(model.n_iter_)])
    elif callable(getattr(model, "elbo", None)):  # a variational posterior: an ELBO and effective components
        rows.append(["evidence lower bound (ELBO, higher is better)", float(model.elbo())])
        rows.append(["lower bound per frame (lower_bound_)" if kind == "hmm" else
                     "lower bound as scikit-learn defines it", float(model.lower_bound_)])
        if callable(getattr(model, "n_effective_components", None)):
            rows.append(["effective components (weight > 0.01)", int(model.n_effective_components())])
        rows.append(["converged", bool(model.converged_)])
        rows.append(["iterations", int(model.n_iter_)])
    else:
        if kind == "hmm":
            total = float(model.score(X, lengths))
            bic, aic = float(model.bic(X, lengths)), float(model.aic(X, lengths))
        else:
            total = float(model.score(X)) * n
            bic, aic = float(model.bic(X)), float(model.aic(X))
        rows.append(["log-likelihood", total])
        rows.append(["log-likelihood per sample", total / n])
        rows.append(["free parameters", int(model._n_parameters())])
        rows.append(["BIC (lower is better)", bic])
        rows.append(["AIC (lower is better)", aic])
        rows.append(["converged", bool(model.converged_)])
        rows.append(["EM iterations", int(model.n_iter_)])
        lb = getattr(model, "lower_bound_", None)
        if lb is not None:
            rows.append(["final lower bound (training objective)", float(lb)])
    rows.append(["emkit version", __version__])
    body = [_table(["quantity", "value"], rows, caption="Fit")]
    params = model.get_params(deep=False)
    prow = [[k, _param_text(v)] for k, v in params.items()]
    body.append(_table(["hyperparameter", "value"], prow, caption="Hyperparameters"))
    return _section("summary", "Summary", ['<div class="grid">'] + body + ["</div>"])


def _parameters_section(model, kind, feature_names):
    from .models.hmm import ARHMM, CategoricalHMM, GaussianHMM, PoissonHMM
    from .plot import _heatmap

    K = _n_states(model)
    body = []
    label = "state" if kind == "hmm" else ("cluster" if kind == "kmeans" else "component")
    if kind == "mixture":
        body.append(_table([label, "weight"], [[f"{label} {k}", float(w)] for k, w in enumerate(model.weights_)],
                           caption="Mixture weights"))
    if kind == "hmm":
        body.append(_table([label, "start probability"],
                           [[f"{label} {k}", float(p)] for k, p in enumerate(model.startprob_)],
                           caption="Start probabilities"))
    grid = ['<div class="grid">'] + body + ["</div>"]
    body = grid
    if kind == "kmeans":
        body.append(_matrix_table(model.cluster_centers_, label, feature_names, caption="Cluster centres"))
    if hasattr(model, "emission_params_"):  # MixtureModel, HMM: the arrays the emission family declares
        params = model.emission_params_
        family = model._family()
        body.append(f"<p>Emission family: <code>{_e(repr(family))}</code></p>")
        for name, value in family.params_arrays(params).items():
            a = np.asarray(value, dtype=np.float64)
            if a.ndim == 2 and a.shape[0] == K:
                cols = feature_names if a.shape[1] == len(feature_names) else \
                    [f"{name}[{j}]" for j in range(a.shape[1])]
                body.append('<div class="scroll">' + _matrix_table(a, label, cols, caption=name) + "</div>")
            else:
                body.append(f"<p><code>{_e(name)}</code>: array of shape {a.shape}</p>")
    elif kind == "mixture" or isinstance(model, GaussianHMM):
        attr = "covariances_" if kind == "mixture" else "covars_"
        full = _full_covariances(model, attr)
        body.append(_matrix_table(model.means_, label, feature_names, caption="Means"))
        var = np.diagonal(full, axis1=1, axis2=2)
        body.append(_matrix_table(var, label, feature_names,
                                  caption=f"Variances (covariance diagonals; "
                                          f"covariance_type={model.covariance_type!r})"))
        body.append(_matrix_table(np.sqrt(np.maximum(var, 0)), label, feature_names, caption="Standard deviations"))
        if model.covariance_type in ("full", "tied"):
            body.append(_correlations(full, label, feature_names, tied=model.covariance_type == "tied"))
    if isinstance(model, PoissonHMM):
        body.append(_matrix_table(model.lambdas_, label, feature_names, caption="Poisson rates (lambdas)"))
    if isinstance(model, CategoricalHMM):
        E = np.asarray(model.emissionprob_)
        body.append('<div class="scroll">' + _matrix_table(E, label, [f"symbol {j}" for j in range(E.shape[1])],
                                                         caption="Emission probabilities") + "</div>")
        body.append(_img(_heatmap(E, xlabel="symbol", ylabel="state", title="Emission probabilities"),
                         "heat map of the emission probabilities"))
    if isinstance(model, ARHMM):
        body.append(_matrix_table(model.intercepts_, label, feature_names, caption="Intercepts b"))
        p, D = int(model.order), len(feature_names)
        cols = [f"{f} (t−{lag})" for lag in range(1, p + 1) for f in feature_names]
        coefs = np.asarray(model.coefs_)
        rows = [[f"{label} {k} → {feature_names[i]}"] + [float(v) for v in coefs[k, i]]
                for k in range(K) for i in range(D)]
        body.append('<div class="scroll">' + _table(["state → output"] + cols, rows,
                                                    caption="Autoregressive coefficients A (lag 1 first)") + "</div>")
        covd = np.diagonal(np.asarray(model.covars_), axis1=1, axis2=2)
        body.append(_matrix_table(covd, label, feature_names, caption="Noise variances (diagonal of Q)"))
    return _section("parameters", "Parameters", body)


def _correlations(full, label, feature_names, tied=False):
    """Correlation matrices of full (or tied) covariances, one table per state."""
    sd = np.sqrt(np.maximum(np.diagonal(full, axis1=1, axis2=2), 1e-300))
    corr = full / (sd[:, :, None] * sd[:, None, :])
    tables = []
    for k in range(1 if tied else full.shape[0]):
        cap = "Correlations (tied: every state)" if tied else f"Correlations, {label} {k}"
        rows = [[name] + [float(v) for v in corr[k, i]] for i, name in enumerate(feature_names)]
        tables.append(_table([""] + list(feature_names), rows, caption=cap))
    return '<div class="grid scroll">' + "\n".join(tables) + "</div>"


def _selection_columns(table):
    from .plot import _criterion_columns

    return _criterion_columns(table)


def _selection_section(selection, model=None):
    from .plot import _best_position, _table_column, plot_criterion

    cols = [str(c) for c in (selection.columns if hasattr(selection, "columns") else selection.keys())]
    if "n_components" not in cols:
        raise ValueError(f"selection must have an 'n_components' column; got columns {cols}")
    crits = _selection_columns(selection)
    data = {c: np.asarray(_table_column(selection, c)) for c in cols}
    nrows = len(data["n_components"])
    best = _best_position(selection, crits[0]) if crits else None
    rows = []
    for i in range(nrows):
        row = []
        for c in cols:
            v = data[c][i]
            row.append(v if isinstance(v, (int, float, np.integer, np.floating, bool, np.bool_)) else str(v))
        rows.append(row)
    body = []
    if crits:
        body.append(_note(f"Best row by {crits[0]} highlighted."))
    if best is not None and model is not None and int(data["n_components"][best]) != _n_states(model):
        text = (f"Warning: this model has K={_n_states(model)} states, but the selection table's best by "
                f"{crits[0]} is K={int(data['n_components'][best])}.")
        body.append(f'<p class="warn">{_e(text)}</p>')
    body.append('<div class="scroll">' + _table(cols, rows, row_header=False, highlight=best,
                                                caption="Model selection") + "</div>")
    figs = [_img(plot_criterion(selection, c), f"{c} versus number of components") for c in crits[:4]]
    body.append('<div class="grid">' + "".join(figs) + "</div>")
    return _section("selection", "Model selection", body)


def _states_section(model, kind, X, lengths, states, feature_names, sequence_names=None, fps=None):
    from .plot import plot_durations, plot_ethogram, plot_ethograms, plot_state_usage, plot_transition_matrix

    K = _n_states(model)
    st = state_statistics(states, lengths, n_states=K)
    counts = np.bincount(states, minlength=K)
    body = []
    if kind != "hmm":
        label = "cluster" if kind == "kmeans" else "component"
        rows = [[f"{label} {k}", int(counts[k]), float(st.usage[k])] for k in range(K)]
        table = _table([label, "samples", "fraction"], rows, caption=f"{label.capitalize()} usage (hard assignments)")
        body.append('<div class="grid">' + table + _img(plot_state_usage(states, n_states=K, label=label),
                                                        f"bar chart of {label} usage") + "</div>")
        return _section("states", "Cluster usage" if kind == "kmeans" else "Component usage", body)
    algo = getattr(model, "algorithm", "viterbi")
    unit = "s" if fps else "frames"
    body.append(_note(f"States decoded with algorithm={algo!r}. Durations are run lengths in {unit}"
                      + (f" ({fps:g} frames per second)" if fps else "") + "; runs never cross sequence boundaries."))
    scale = 1.0 / fps if fps else 1.0
    rows = [[f"state {k}", int(counts[k]), float(st.usage[k]), int(st.visits[k]), float(st.mean_duration[k] * scale)]
            for k in range(K)]
    table = _table(["state", "frames", "fraction of time", "visits", f"mean duration ({unit})"], rows,
                   caption="State usage")
    body.append('<div class="grid">' + table + _img(plot_state_usage(states, n_states=K), "bar chart of state usage")
                + "</div>")
    T = np.asarray(model.transmat_)
    body.append("<h3>Transitions</h3>")
    body.append('<div class="grid"><div class="scroll">'
                + _matrix_table(T, "from", [f"to {j}" for j in range(K)], caption="Transition matrix (fitted)")
                + _matrix_table(st.transition_counts, "from", [f"to {j}" for j in range(K)],
                                caption="Transition counts (decoded states)")
                + "</div>" + _img(plot_transition_matrix(T), "heat map of the transition matrix") + "</div>")
    body.append("<h3>Ethogram</h3>")
    first = f"sequence 0 of {len(lengths)}" if sequence_names is None else str(sequence_names[0])
    seq_note = f" ({first})" if len(lengths) > 1 else ""
    X_trace = X.astype(np.float64) if X.dtype.kind != "f" else X
    if len(lengths) > 1:
        body.append(_img(plot_ethograms(states, lengths, names=sequence_names, fps=fps, n_states=K),
                         "decoded states of every sequence over time",
                         caption=f"Decoded states of all {len(lengths)} sequences."))
    body.append(_img(plot_ethogram(states, X_trace, lengths=lengths, fps=fps, n_states=K,
                                   feature_names=feature_names),
                     "decoded states over time under the data", caption=f"Decoded states under the data{seq_note}."))
    if lengths[0] > _ZOOM_FRAMES * 2:
        body.append(_img(plot_ethogram(states, X_trace, lengths=lengths, fps=fps, n_states=K,
                                       feature_names=feature_names, window=(0, _ZOOM_FRAMES)),
                         "decoded states over the first frames",
                         caption=f"Zoom: the first {_ZOOM_FRAMES} frames{seq_note}."))
    body.append("<h3>Dwell times</h3>")
    body.append(_img(plot_durations(states, lengths, n_states=K, fps=fps), "histograms of state dwell times"))
    return _section("states", "States", body)


def _fit_section(model, kind):
    from .plot import plot_lower_bounds

    lbs = getattr(model, "lower_bounds_", None)
    if kind == "kmeans" or not lbs:
        body = [_note(f"{type(model).__name__} records no per-iteration log-likelihood; "
                      f"{_fmt(int(model.n_iter_))} iterations were run.")]
        return _section("fit", "Fit", body)
    from .plot import uses_priors

    ax = plot_lower_bounds(lbs, model=model)
    posterior = uses_priors(model)
    ax.set_title(f"EM: {'log posterior' if posterior else 'log-likelihood'} per iteration")
    if kind == "hmm":
        ax.set_ylabel(f"{'log posterior' if posterior else 'log-likelihood'} per frame")
    body = [_note(f"{'Converged' if model.converged_ else 'Did not converge'} after {int(model.n_iter_)} "
                  f"iterations (best of n_init={getattr(model, 'n_init', 1)} runs)."),
            _img(ax, "log-likelihood per EM iteration")]
    return _section("fit", "Fit", body)


def _clusters_section(model, kind, X, lengths, feature_names, states):
    from .plot import plot_model

    ax = plot_model(model, X, lengths=lengths, feature_names=feature_names, labels=states)
    if kind == "hmm":
        heading, alt = "States in feature space", "data coloured by decoded state"
    else:
        heading, alt = "Clusters", "data coloured by cluster"
    note = []
    if X.shape[1] > 2 and type(model).__name__ != "PoissonHMM":
        note = [_note(f"{X.shape[1]} features shown on their first two principal axes.")]
    return _section("clusters", heading, note + [_img(ax, alt)])


def _tables_section(tables):
    body = []
    for caption, table in tables.items():
        cols = [str(c) for c in (table.columns if hasattr(table, "columns") else table.keys())]
        data = [np.asarray(table[c]) for c in cols]
        n = len(data[0]) if data else 0
        rows = [[_cell(data[j][i]) for j in range(len(cols))] for i in range(n)]
        body.append('<div class="scroll">' + _table(cols, rows, row_header=False, caption=str(caption)) + "</div>")
    return _section("tables", "Per sequence", body)


def _cell(v):
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    return v if isinstance(v, (int, float, bool)) else str(v)


# -- the report ---------------------------------------------------------------------------------------
def write_report(model, X, path, lengths=None, feature_names=None, selection=None, title=None, *,
                 sequence_names=None, fps=None, tables=None):
    """Write a self-contained HTML report of a fitted model.

    The file has no external resources: CSS is inline and every figure is a base64 PNG
    ``data:`` URI, so it can be mailed or archived as is.

    Parameters
    ----------
    model : fitted GaussianMixture, KMeans, GaussianHMM, CategoricalHMM, PoissonHMM or ARHMM
    X : array-like (n, D), a DataFrame, or (HMMs) a list of per-sequence arrays
        The data to describe (usually the training data).
    path : str or path-like
        Output ``.html`` file; missing parent directories are created.
    lengths : array-like of int, optional
        Sequence lengths for HMMs (sum = n); ignored by mixtures and K-means.
    feature_names : list of str, optional
        Defaults to the DataFrame's columns, else ``x0, x1, ...``.
    selection : pandas.DataFrame or dict of columns, optional
        A model-selection table with an ``n_components`` column and one or more criterion
        columns (``bic``, ``aic``, ``icl``, ``heldout``, ...).  Adds the ``selection`` section.
    title : str, optional
    sequence_names : list of str, optional
        One name per sequence (HMMs), shown in the ethogram of every sequence.
    fps : float, optional
        Frames per second: durations and ethogram times in seconds.
    tables : dict of caption -> pandas.DataFrame (or dict of columns), optional
        Further tables (e.g. usage and dwell times per recording), in a ``tables`` section.

    Returns
    -------
    path : str
        The path written.

    Notes
    -----
    Sections (each an element with a stable ``id``): ``summary``, ``parameters``,
    ``selection`` (only with ``selection``), ``states``, ``fit`` and, except for
    CategoricalHMM, ``clusters``.  For HMMs, ``states`` holds usage, visits and mean dwell
    time per state, the transition matrix (table and heat map), an ethogram of the first
    sequence and dwell-time histograms; for mixtures and K-means it shows usage only.
    """
    from .models.hmm import CategoricalHMM

    kind = _kind(model)
    if kind != "hmm" and lengths is not None:
        lengths = None
    X, lengths, feature_names = _prepare_data(model, X, lengths, feature_names)
    if kind == "hmm":
        states = np.asarray(model.predict(X, lengths))
    else:
        states = np.asarray(model.predict(X))
    name = type(model).__name__
    title = title or f"emkit report: {name}, K={_n_states(model)}"

    sections = [("summary", "Summary", _summary_section(model, kind, X, lengths, feature_names)),
                ("parameters", "Parameters", _parameters_section(model, kind, feature_names))]
    if selection is not None:
        sections.append(("selection", "Selection", _selection_section(selection, model)))
    if sequence_names is not None and kind == "hmm" and len(sequence_names) != len(lengths):
        raise ValueError(f"sequence_names has {len(sequence_names)} names for {len(lengths)} sequences")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second; got {fps!r}")
    sections.append(("states", "States" if kind == "hmm" else "Usage",
                     _states_section(model, kind, X, lengths, states, feature_names, sequence_names, fps)))
    if tables:
        sections.append(("tables", "Per sequence", _tables_section(tables)))
    if not isinstance(model, CategoricalHMM):
        sections.append(("clusters", "Feature space" if kind == "hmm" else "Clusters",
                         _clusters_section(model, kind, X, lengths, feature_names, states)))
    sections.append(("fit", "Fit", _fit_section(model, kind)))

    from . import __version__

    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    nav = " ".join(f'<a href="#{_e(sid)}">{_e(label)}</a>' for sid, label, _ in sections)
    subtitle = f"{name} fitted to {X.shape[0]} samples × {X.shape[1]} features"
    if kind == "hmm" and len(lengths) > 1:
        subtitle += f" in {len(lengths)} sequences"
    doc = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="emkit {_e(__version__)}">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="subtitle">{_e(subtitle)}</p>',
        f"<nav>{nav}</nav>",
        "</header>",
        "<main>",
        *[body for _, _, body in sections],
        "</main>",
        f"<footer>Generated by emkit {_e(__version__)} on {_e(stamp)}.</footer>",
        "</body>",
        "</html>",
        "",
    ])
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:  # whole or not at all
        f.write(doc)
    return path
