"""The ``emkit`` command line.

Subcommands: ``fit``, ``predict``, ``score``, ``select``, ``plot``, ``report``, ``classify fit``,
``classify predict``, ``segment`` (in :mod:`emkit.behavior.command`), ``info``, ``datasets``.  One set of option names everywhere: ``--model``, ``-k/--n-components``,
``--columns``, ``--sequence-column``, ``--data``, ``-o/--output``, ``--example``, ``--json``,
``--seed``.  User errors print one line on stderr and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

from ._atomic import Outputs

MODELS = {
    "gmm": "GaussianMixture",
    "bayesian-gmm": "BayesianGaussianMixture",
    "kmeans": "KMeans",
    "gaussian-hmm": "GaussianHMM",
    "categorical-hmm": "CategoricalHMM",
    "poisson-hmm": "PoissonHMM",
    "arhmm": "ARHMM",
    "variational-gaussian-hmm": "VariationalGaussianHMM",
    "variational-categorical-hmm": "VariationalCategoricalHMM",
    "mixture": "MixtureModel",
    "hmm": "HMM",
}
HMM_MODELS = ("gaussian-hmm", "categorical-hmm", "poisson-hmm", "arhmm", "variational-gaussian-hmm",
              "variational-categorical-hmm", "hmm")
#: models that take any emission family (--emission NAME)
GENERIC_MODELS = ("mixture", "hmm")


class UserError(Exception):
    """An error in what the user asked for: printed as one line."""


# -- data --------------------------------------------------------------------------------------------
class Data:
    """A table read for the CLI: X (n, D), feature names, sequence lengths and ids, and its source."""

    def __init__(self, X, names, lengths, ids, source, feature_names=None):
        self.X, self.names, self.lengths, self.ids, self.source = X, names, lengths, ids, source
        #: the column names when the data names its columns (a header), else None
        self.feature_names = feature_names
        self.fps = None


def _columns(args):
    value = getattr(args, "columns", None)
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def load_data(args, model=None):
    """Data from ``--example`` or a file (``args.data``), with column and sequence selection."""
    from . import datasets
    from .io import read_table
    from .sources import open_table

    columns = _columns(args)
    example = getattr(args, "example", None)
    if example:
        ds = datasets.load(example)
        X, names = ds.data, list(ds.feature_names)
        if columns:
            missing = [c for c in columns if c not in names]
            if missing:
                raise UserError(f"column {missing[0]!r} not in example {example!r} (columns: {', '.join(names)})")
            idx = [names.index(c) for c in columns]
            X, names = X[:, idx], columns
        if getattr(args, "sequence_column", None):
            raise UserError("--sequence-column cannot be used with --example")
        return Data(X, names, None, None, f"example:{example}", feature_names=names)
    path = getattr(args, "data", None)
    if not path:
        raise UserError("no data given: pass a data file (CSV, TSV, .npy, Parquet or HDF5) or --example NAME")
    seq_col = getattr(args, "sequence_column", None)
    origin = "--columns"
    remembered = getattr(model, "feature_names_in_", None) if model is not None else None
    if columns is None and remembered is not None:
        columns, origin = [str(c) for c in remembered], "the model file"
    if columns is not None and seq_col is not None and str(seq_col) in columns:
        raise UserError(f"the sequence column {seq_col!r} cannot also be a feature column ({origin})")
    X, names, lengths, ids = read_table(path, columns, sequence_column=seq_col, key=getattr(args, "key", None))
    if columns is None:
        X, names, origin = _drop_counters(X, names, lengths, args.command)
    if model is not None and hasattr(model, "n_features_in_") and not _is_categorical(model):
        if X.shape[1] != model.n_features_in_:
            raise UserError(f"{path} has {X.shape[1]} feature columns ({', '.join(names)}) but the model was fitted "
                            f"on {model.n_features_in_}; choose them with --columns")
    feature_names = open_table(path, names, key=getattr(args, "key", None)).feature_names
    fitted_names = None if model is None else getattr(model, "feature_names_in_", None)
    if fitted_names is not None and feature_names is not None and list(feature_names) != list(fitted_names):
        raise UserError(f"{path} has the columns {', '.join(feature_names)} but the model was fitted on "
                        f"{', '.join(fitted_names)} (in this order); choose them with --columns")
    print(f"emkit {args.command}: columns used: {', '.join(names)} (from {origin})"
          + (f"; sequences from column {seq_col!r}" if seq_col is not None else ""), file=sys.stderr)
    data = Data(X, names, lengths, ids, path, feature_names=feature_names)
    data.fps = _fps(args)
    return data


def _fps(args):
    fps = getattr(args, "fps", None)
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise UserError(f"--fps must be a positive number of frames per second; got {fps}")
    return fps


def _drop_counters(X, names, lengths, command):
    """Leave out columns that look like a row index or frame counter (integers increasing by one).

    Returns X, names and where the columns came from (for the message printed by every command).
    """
    from .io import counter_columns

    counter = counter_columns(X, lengths) if X.shape[1] > 1 else []
    if not counter or len(counter) == X.shape[1]:
        return X, names, "every numeric column"
    dropped = [names[j] for j in counter]
    print(f"emkit {command}: left out {', '.join(repr(d) for d in dropped)}: "
          f"{'it looks' if len(dropped) == 1 else 'they look'} like a row index or frame counter "
          "(integers increasing by one); name the columns with --columns to use it", file=sys.stderr)
    keep = [j for j in range(X.shape[1]) if j not in counter]
    return X[:, keep], [names[j] for j in keep], "every numeric column but counters"


def _is_categorical(model):
    return type(model).__name__ in ("CategoricalHMM", "VariationalCategoricalHMM")


def _is_hmm(model):
    hmm = sys.modules.get("emkit.models.hmm")  # not imported yet: no model is an HMM (and it is not imported for that)
    return hmm is not None and isinstance(model, hmm.BaseHMM)


def _load_model(path):
    from .io import load_model

    return load_model(path)


# -- model building ------------------------------------------------------------------------------------
def build_model(args):
    import emkit

    cls = getattr(emkit, MODELS[args.model])
    k = args.n_components
    common = dict(n_init=args.n_init, max_iter=args.max_iter, random_state=args.seed)
    if args.tol is not None:
        common["tol"] = args.tol
    if args.model == "kmeans":
        common.pop("tol", None)
        return cls(k, **common)
    if args.model in ("gmm", "bayesian-gmm"):
        return cls(k, covariance_type=args.covariance_type or "full", **common)
    if args.model in GENERIC_MODELS:
        emission = _emission(args)
        return cls(k, emission=emission, **common) if args.model == "mixture" else \
            cls(k, emission=emission, kappa=args.kappa, **common)
    if getattr(args, "emission", None) is not None or getattr(args, "emission_param", None):
        raise UserError(f"--emission and --emission-param go with --model mixture or --model hmm, not {args.model}")
    if args.model.startswith("variational-"):
        if args.kappa:
            raise UserError("--kappa applies to maximum-likelihood HMMs; the variational HMMs have no sticky prior")
        if args.model == "variational-gaussian-hmm":
            return cls(k, covariance_type=args.covariance_type or "diag", **common)
        return cls(k, **common)
    hmm = dict(kappa=args.kappa, **common)
    if args.model == "gaussian-hmm":
        return cls(k, covariance_type=args.covariance_type or "diag", **hmm)
    if args.model == "arhmm":
        return cls(k, order=args.order, **hmm)
    return cls(k, **hmm)


def _emission(args):
    """The emission family of ``--emission NAME`` with ``--emission-param KEY=VALUE`` hyperparameters."""
    from .emissions import make_family

    if not args.emission:
        raise UserError(f"--model {args.model} needs --emission NAME (one of {', '.join(_family_names())})")
    params = {}
    for item in args.emission_param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--emission-param must be KEY=VALUE; got {item!r}")
        params[key.strip()] = _plain_value(value.strip())
    if args.covariance_type is not None:
        params.setdefault("covariance_type", args.covariance_type)
    if args.order != 1:
        params.setdefault("order", args.order)
    try:
        return make_family(args.emission, **params)
    except (TypeError, ValueError) as exc:
        raise UserError(f"--emission {args.emission}: {exc}") from None


def _family_names():
    from .emissions import family_names

    return family_names()


def _plain_value(text):
    """A hyperparameter from the command line: an integer, a number, true/false/none, or the text itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _fit(model, data, quiet=False):
    progress = False if quiet else None  # a bar on a terminal
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        if _is_hmm(model):
            X = data.X.astype(np.int64) if _is_categorical(model) else data.X
            model.fit(X, data.lengths, progress=progress)
        elif type(model).__name__ == "KMeans":
            model.fit(data.X)
        else:
            model.fit(data.X, progress=progress)
        seconds = time.perf_counter() - t0
    model._set_feature_names(data.feature_names)
    return seconds, [str(w.message) for w in caught]


def _X_for(model, X):
    return X.astype(np.int64) if _is_categorical(model) else X


def _labels(model, data):
    if _is_hmm(model):
        return model.predict(_X_for(model, data.X), data.lengths)
    return model.predict(data.X)


# -- summaries --------------------------------------------------------------------------------------------
def describe(model, data, labels):
    """Human lines and a JSON-able dict describing a fitted model on data."""
    from .emissions.gaussian import COVARIANCE_TYPES

    name = type(model).__name__
    K = model.n_clusters if name == "KMeans" else model.n_components
    counts = np.bincount(labels, minlength=K)
    info = {"model": name, "n_components": int(K), "n_samples": int(data.X.shape[0]), "features": list(data.names),
            "counts": counts.tolist()}
    lines = [f"emkit {name} on {data.source}: {data.X.shape[0]} rows x {data.X.shape[1]} features "
             f"({', '.join(data.names)})" + (f", {len(data.lengths)} sequences" if data.lengths is not None else "")]
    if name == "KMeans":
        info.update(inertia=float(model.inertia_), n_iter=int(model.n_iter_), centers=model.cluster_centers_.tolist())
        lines.append(f"  inertia {model.inertia_:.6g} after {model.n_iter_} iterations")
        lines.append("  cluster  n      " + "  ".join(f"{n:>10s}" for n in data.names))
        for k in range(K):
            lines.append(f"  {k:>7d}  {counts[k]:<6d} " + "  ".join(f"{c:>10.4g}" for c in model.cluster_centers_[k]))
        return lines, info
    X = _X_for(model, data.X)
    status = f"  {'converged' if model.converged_ else 'NOT converged'} after {model.n_iter_} iterations; "
    if callable(getattr(model, "elbo", None)):  # a variational posterior: an ELBO, not a likelihood
        elbo = model.elbo()
        info.update(elbo=elbo, lower_bound=float(model.lower_bound_), converged=bool(model.converged_),
                    n_iter=int(model.n_iter_))
        lines.append(status + f"evidence lower bound {elbo:.6g}")
        if callable(getattr(model, "n_effective_components", None)):
            effective = model.n_effective_components()
            info.update(n_effective_components=effective, effective_weight_threshold=0.01)
            lines[-1] += f"; {effective} of {K} components effective (weight > 0.01)"
    else:
        if _is_hmm(model):
            total = float(model.score(X, data.lengths))
            bic, aic = float(model.bic(X, data.lengths)), float(model.aic(X, data.lengths))
        else:
            total = float(model.score(X) * X.shape[0])
            bic, aic = float(model.bic(X)), float(model.aic(X))
        info.update(log_likelihood=total, mean_log_likelihood=total / X.shape[0], bic=bic, aic=aic,
                    converged=bool(model.converged_), n_iter=int(model.n_iter_))
        lines.append(status + f"log-likelihood {total:.6g} ({total / X.shape[0]:.4f} per row); BIC {bic:.2f}; "
                     f"AIC {aic:.2f}")
    if name in ("GaussianMixture", "BayesianGaussianMixture", "GaussianHMM", "VariationalGaussianHMM"):
        hmm_like = name in ("GaussianHMM", "VariationalGaussianHMM")
        cov_type = model.covariance_type
        covars = model.covars_ if hmm_like else model.covariances_
        full = COVARIANCE_TYPES[cov_type].full_covariances(np.asarray(covars), K, model.means_.shape[1])
        sds = np.sqrt(np.diagonal(full, axis1=1, axis2=2))
        weight = counts / counts.sum() if hmm_like else model.weights_
        info.update(covariance_type=cov_type, weights=np.asarray(weight).tolist(), means=model.means_.tolist())
        lines.append(f"  covariance {cov_type}")
        lines.append(f"  {'state' if hmm_like else 'component':>9s}  {'weight':>6s}  n     "
                     + "  ".join(f"{n:>18s}" for n in data.names))
        for k in range(K):
            cells = "  ".join(f"{m:>9.4g} ± {s:<6.3g}" for m, s in zip(model.means_[k], sds[k]))
            lines.append(f"  {k:>9d}  {weight[k]:.3f}  {counts[k]:<5d} {cells}")
    elif name == "PoissonHMM":
        info["lambdas"] = model.lambdas_.tolist()
        lines.append("  state  n      " + "  ".join(f"{n:>10s}" for n in data.names))
        for k in range(K):
            lines.append(f"  {k:>5d}  {counts[k]:<6d} " + "  ".join(f"{v:>10.4g}" for v in model.lambdas_[k]))
    elif name in ("CategoricalHMM", "VariationalCategoricalHMM"):
        info["emissionprob"] = model.emissionprob_.tolist()
        S = model.emissionprob_.shape[1]
        lines.append("  state  n      " + "  ".join(f"{'p(' + str(s) + ')':>7s}" for s in range(S)))
        for k in range(K):
            lines.append(f"  {k:>5d}  {counts[k]:<6d} " + "  ".join(f"{v:>7.3f}" for v in model.emissionprob_[k]))
    elif name in ("MixtureModel", "HMM"):
        params = model.emission_params_
        family = model._family()
        arrays = family.params_arrays(params)
        info.update(emission=type(family).family_name, emission_params=family.hyperparameters(),
                    **{k: np.asarray(v).tolist() for k, v in arrays.items()})
        if name == "MixtureModel":
            info["weights"] = model.weights_.tolist()
        lines.append(f"  emission {family!r}")
        for key, value in arrays.items():
            value = np.asarray(value)
            if value.ndim == 2 and value.shape[0] == K:
                lines.append(f"  {key}:")
                for k in range(K):
                    lines.append(f"  {k:>5d}  {counts[k]:<6d} " + "  ".join(f"{v:>10.4g}" for v in value[k]))
            else:
                lines.append(f"  {key}: shape {value.shape}")
    elif name == "ARHMM":
        info.update(intercepts=model.intercepts_.tolist(), coefs=model.coefs_.tolist())
        lines.append("  state  n      intercept")
        for k in range(K):
            lines.append(f"  {k:>5d}  {counts[k]:<6d} " + "  ".join(f"{v:>9.4g}" for v in model.intercepts_[k]))
    if _is_hmm(model):
        from .report import state_statistics

        st = state_statistics(labels, data.lengths, K)
        fps = getattr(data, "fps", None)
        duration = st.mean_duration / fps if fps else st.mean_duration
        info.update(transmat=model.transmat_.tolist(), usage=st.usage.tolist(),
                    mean_duration=[None if not np.isfinite(v) else float(v) for v in duration],
                    duration_unit="s" if fps else "frames")
        lines.append(f"  state  usage  mean duration ({'s' if fps else 'frames'}){' ' * (4 if fps else 0)}"
                     "  self-transition")
        for k in range(K):
            lines.append(f"  {k:>5d}  {st.usage[k]:.3f}  {duration[k]:>22.4g}  {model.transmat_[k, k]:.4f}")
    return lines, info


# -- commands --------------------------------------------------------------------------------------------
def _emit(args, lines, info):
    if args.json:
        print(json.dumps(info, indent=2, default=_json_default))
    else:
        print("\n".join(lines))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _write_main_plot(model, data, labels, path):
    from .plot import plot_ethogram, plot_ethograms, plot_model, save_figure

    if _is_hmm(model) and data.lengths is not None and len(data.lengths) > 1:
        fig = plot_ethograms(labels, data.lengths, names=[str(i) for i in data.ids], fps=data.fps,
                             n_states=model.n_components)
        return save_figure(fig, path)
    if _is_hmm(model):
        fig = plot_ethogram(labels, data.X, data.lengths, n_states=model.n_components, feature_names=data.names,
                            fps=data.fps)
        return save_figure(fig, path)
    ax = plot_model(model, data.X, feature_names=data.names, labels=labels)
    return save_figure(ax, path)


def _output_dir(args):
    return _make_folder(args.output or "emkit-out")


def _make_folder(out):
    """Create the output folder ``out`` (and its parents) or say in one line why it cannot be."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"-o/--output {out} is a file, not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        reason = "a part of the path is a file, not a folder" if isinstance(exc, (NotADirectoryError, FileExistsError)) \
            else (exc.strerror or str(exc))
        raise UserError(f"-o/--output {out}: cannot create the folder: {reason}") from None
    return out


def _wrote(outputs):
    """Lines saying which files were written and which existing ones they replaced."""
    lines = ["  wrote " + ", ".join(outputs.written)]
    if outputs.overwritten:
        lines.append("  replaced existing " + ", ".join(outputs.overwritten))
    return lines


def cmd_fit(args):
    data = load_data(args)
    model = build_model(args)
    seconds, warns = _fit(model, data, quiet=args.json)
    labels = _labels(model, data)
    lines, info = describe(model, data, labels)
    out = _output_dir(args)
    files = {"labels": os.path.join(out, "labels.csv"), "model": os.path.join(out, "model.npz"),
             "plot": os.path.join(out, "ethogram.png" if _is_hmm(model) else "clusters.png")}
    with Outputs() as outputs:  # all three appear together or not at all
        _write_labels(outputs.path(files["labels"]), labels, data)
        model.save(outputs.path(files["model"]))
        _write_main_plot(model, data, labels, outputs.path(files["plot"]))
    info.update(seconds=seconds, warnings=warns, files=files, overwritten=outputs.overwritten)
    lines[0] += f", fitted in {seconds:.2f}s"
    lines += [f"  warning: {w}" for w in warns]
    lines += _wrote(outputs)
    _emit(args, lines, info)
    return 0


def _write_labels(path, labels, data, posteriors=None, prefix="p", features=None):
    from .io import write_table

    cols = {}
    if data.lengths is not None:
        cols["sequence"] = np.repeat(np.array(data.ids, dtype=object), data.lengths)
        cols["frame"] = np.concatenate([np.arange(L) for L in data.lengths])
    if getattr(data, "fps", None):
        frame = cols["frame"] if "frame" in cols else np.arange(len(labels))
        cols["time_s"] = frame / data.fps
    if features is not None:  # the data with missing values filled in
        for j, name in enumerate(data.names):
            cols[name] = features[:, j]
    cols["label"] = np.asarray(labels, dtype=np.int64)
    if posteriors is not None:
        for k in range(posteriors.shape[1]):
            cols[f"{prefix}{k}"] = posteriors[:, k]
    return write_table(path, cols)


def cmd_predict(args):
    model = _load_model(args.model_file)
    data = load_data(args, model)
    X = _X_for(model, data.X)
    labels = _labels(model, data)
    post = None
    if args.posteriors or args.causal:
        if not _is_hmm(model) and args.causal:
            raise UserError("--causal applies to hidden Markov models only")
        if type(model).__name__ == "KMeans":
            raise UserError("--posteriors is not available for KMeans (hard assignments)")
        if _is_hmm(model):
            post = model.filter(X, data.lengths) if args.causal else model.predict_proba(X, data.lengths)
            if args.causal:
                labels = post.argmax(axis=1)
        else:
            post = model.predict_proba(X)
    filled = None
    if args.impute:
        if not hasattr(model, "impute"):
            raise UserError(f"--impute needs a model of missing values (GaussianMixture or an HMM); "
                            f"{type(model).__name__} has none")
        filled = model.impute(X, data.lengths) if _is_hmm(model) else model.impute(X)
    path = args.output or "labels.csv"
    with Outputs() as outputs:
        _write_labels(outputs.path(path), labels, data, post, features=filled)
    info = {"model": type(model).__name__, "n_samples": int(X.shape[0]), "output": path,
            "causal": bool(args.causal), "counts": np.bincount(labels).tolist(), "overwritten": outputs.overwritten}
    info["imputed"] = 0 if filled is None else int(np.isnan(np.asarray(X, dtype=np.float64)).sum())
    what = "labels" + (", posteriors" if post is not None else "") + (" and imputed data" if filled is not None else "")
    _emit(args, [f"wrote {X.shape[0]} rows of {what} to {path}"
                 + (" (replaced the existing file)" if outputs.overwritten else "")], info)
    return 0


def cmd_score(args):
    model = _load_model(args.model_file)
    data = load_data(args, model)
    X = _X_for(model, data.X)
    name = type(model).__name__
    if name == "KMeans":
        inertia = -model.score(X)
        info = {"model": name, "n_samples": int(X.shape[0]), "inertia": float(inertia)}
        _emit(args, [f"{name}: inertia {inertia:.6g} on {X.shape[0]} rows"], info)
        return 0
    if callable(getattr(model, "elbo", None)) and not _is_hmm(model):  # no likelihood: the posterior's expectations
        mean = float(model.score(X))
        info = {"model": name, "n_samples": int(X.shape[0]), "score": mean}
        _emit(args, [f"{name}: score {mean:.5f} per row (log-normaliser of the variational responsibilities) "
                     f"on {X.shape[0]} rows"], info)
        return 0
    if _is_hmm(model):
        if data.lengths is None:
            print(f"emkit score: no --sequence-column: the {X.shape[0]} rows are scored as one sequence",
                  file=sys.stderr)
        total = float(model.score(X, data.lengths))
        bic, aic = float(model.bic(X, data.lengths)), float(model.aic(X, data.lengths))
    else:
        total = float(model.score(X) * X.shape[0])
        bic, aic = float(model.bic(X)), float(model.aic(X))
    info = {"model": name, "n_samples": int(X.shape[0]), "log_likelihood": total,
            "mean_log_likelihood": total / X.shape[0], "bic": bic, "aic": aic}
    _emit(args, [f"{name}: log-likelihood {total:.6g} ({total / X.shape[0]:.5f} per row), BIC {bic:.2f}, "
                 f"AIC {aic:.2f} on {X.shape[0]} rows"], info)
    return 0


def _parse_range(text):
    from .selection import parse_candidates

    try:
        return parse_candidates(text, "-k/--n-components")
    except ValueError as exc:
        raise UserError(str(exc)) from None


def cmd_select(args):
    from .plot import plot_criterion, save_figure
    from .selection import select

    data = load_data(args)
    ks = _parse_range(args.n_components)
    args.n_components = ks[0]
    template = build_model(args)
    X = _X_for(template, data.X)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = select(template, X, ks, criterion=args.criterion, lengths=data.lengths, random_state=args.seed)
    seconds = time.perf_counter() - t0
    out = _output_dir(args)
    table_path, model_path, plot_path = (os.path.join(out, n) for n in ("selection.csv", "model.npz", "criterion.png"))
    result.best_model._set_feature_names(data.feature_names)
    with Outputs() as outputs:
        result.table.to_csv(outputs.path(table_path), index=False)
        result.best_model.save(outputs.path(model_path))
        save_figure(plot_criterion(result.table, args.criterion), outputs.path(plot_path))
    info = {"criterion": args.criterion, "best_n_components": int(result.best_n_components), "seconds": seconds,
            "table": result.table.to_dict(orient="records"), "warnings": sorted({str(w.message) for w in caught}),
            "files": {"table": table_path, "model": model_path, "plot": plot_path},
            "overwritten": outputs.overwritten}
    lines = [f"emkit select {type(template).__name__} on {data.source}, K in {ks[0]}..{ks[-1]}, "
             f"criterion {args.criterion} ({seconds:.1f}s):", result.table.to_string(index=False),
             f"best K = {result.best_n_components}"] + _wrote(outputs)
    _emit(args, lines, info)
    return 0


PLOT_KINDS = ("model", "ethogram", "transitions", "durations", "usage", "loglik")


def cmd_plot(args):
    from . import plot as P

    model = _load_model(args.model_file)
    kinds = PLOT_KINDS if args.kind == "all" else tuple(k.strip() for k in args.kind.split(","))
    bad = [k for k in kinds if k not in PLOT_KINDS]
    if bad:
        raise UserError(f"unknown plot kind {bad[0]!r}; choose from {', '.join(PLOT_KINDS)} or all")
    hmm = _is_hmm(model)
    needs_data = [k for k in kinds if k in ("model", "ethogram", "durations", "usage")]
    data = load_data(args, model) if needs_data else None
    labels = _labels(model, data) if data is not None else None
    out = _output_dir(args)
    K = model.n_clusters if type(model).__name__ == "KMeans" else model.n_components
    with Outputs() as outputs:  # every plot appears, or none
        for kind in kinds:
            if kind in ("ethogram", "transitions", "durations") and not hmm:
                continue
            if kind == "loglik" and not hasattr(model, "lower_bounds_"):
                continue
            path = os.path.join(out, f"{kind}.{args.format}")
            if kind == "model":
                obj = P.plot_model(model, _X_for(model, data.X), data.lengths, feature_names=data.names, labels=labels)
            elif kind == "ethogram" and data.lengths is not None and len(data.lengths) > 1:
                obj = P.plot_ethograms(labels, data.lengths, names=[str(i) for i in data.ids], fps=data.fps, n_states=K)
            elif kind == "ethogram":
                obj = P.plot_ethogram(labels, data.X, data.lengths, fps=data.fps, n_states=K, feature_names=data.names)
            elif kind == "transitions":
                obj = P.plot_transition_matrix(model.transmat_)
            elif kind == "durations":
                obj = P.plot_durations(labels, data.lengths, n_states=K, fps=data.fps)
            elif kind == "usage":
                obj = P.plot_state_usage(labels, n_states=K)
            else:
                obj = P.plot_lower_bounds(model.lower_bounds_, model=model)
            P.save_figure(obj, outputs.path(path))
    _emit(args, _wrote(outputs), {"files": outputs.written, "overwritten": outputs.overwritten})
    return 0


def cmd_report(args):
    from .report import write_report

    model = _load_model(args.model_file)
    data = load_data(args, model)
    selection = None
    if args.selection:
        try:
            import pandas as pd
        except ImportError:
            raise UserError("--selection needs pandas: pip install 'emkit[io]'") from None
        if not os.path.exists(args.selection):
            raise FileNotFoundError(f"selection table not found: {args.selection}")
        selection = pd.read_csv(args.selection)
    path = args.output or "report.html"
    if os.path.dirname(path):
        _make_folder(os.path.dirname(path))  # missing parent folders are created, as by write_report
    with Outputs() as outputs:
        write_report(model, _X_for(model, data.X), outputs.path(path), lengths=data.lengths,
                     feature_names=data.names, selection=selection, fps=data.fps,
                     sequence_names=[str(i) for i in data.ids] if data.ids is not None else None)
    _emit(args, [f"wrote {path}" + (" (replaced the existing file)" if outputs.overwritten else "")],
          {"report": path, "overwritten": outputs.overwritten})
    return 0


def cmd_info(args):
    from .io import read_model_file

    model, meta, arrays = read_model_file(args.model_file)
    shapes = {k[5:]: list(a.shape) for k, a in arrays.items() if k.startswith("attr:")}
    info = {"file": args.model_file, "class": meta["class"], "format_version": meta["format_version"],
            "emkit_version": meta.get("emkit_version"), "params": meta["params"], "attributes": shapes}
    lines = [f"{args.model_file}: emkit {meta['class']} (model format {meta['format_version']}, "
             f"written by emkit {meta.get('emkit_version')})", "  hyperparameters:"]
    lines += [f"    {k} = {v!r}" for k, v in meta["params"].items()
              if not (isinstance(v, dict) and "__family__" in v)]
    family = getattr(model, "_family", None)
    if family is not None:  # a generic estimator: its emission family
        family = family()
        info["emission"] = {"family": type(family).family_name, "params": family.hyperparameters()}
        lines.insert(1, f"  emission family: {type(family).family_name} {family!r}")
    lines.append("  fitted attributes:")
    for k, shape in shapes.items():
        value = getattr(model, k)
        text = f"shape {tuple(shape)}" if shape else repr(value)
        lines.append(f"    {k}: {text}")
    members = getattr(model, "estimators_", None)
    if members is not None:  # a classifier: one fitted model per class
        info["class_models"] = {str(c): repr(m) for c, m in zip(model.classes_, members)}
        lines.append("  class models:")
        lines += [f"    {c}: {m}" for c, m in info["class_models"].items()]
    _emit(args, lines, info)
    return 0


# -- classify ------------------------------------------------------------------------------------------
def _labelled_data(args, label_required):
    """Features, sequence lengths and ids, and the labels (one per row, or per sequence) of a table.

    The feature columns are ``--columns`` or every column but the label and sequence columns.
    """
    from .io import _read_column, read_table

    path = args.data
    if getattr(args, "example", None):
        raise UserError("--example data has no class labels: pass a labelled data file")
    if not path:
        raise UserError("no data given: pass a data file (CSV, TSV, .npy, Parquet or HDF5)")
    label_col, seq_col = args.label_column, args.sequence_column
    labels = None
    columns = _columns(args)
    if label_col is not None:
        try:
            labels, names_all = _read_column(path, label_col, None)
        except ValueError:
            if label_required:
                raise UserError(f"label column {label_col!r} not found in {path}") from None
            label_col = None
    if columns is None and label_col is not None:
        skip = {str(label_col), str(seq_col)}
        columns = [n for i, n in enumerate(names_all) if n not in skip and str(i) not in skip]
    X, names, lengths, ids = read_table(path, columns, sequence_column=seq_col)
    if labels is not None and lengths is not None:  # one label per sequence: constant within it
        starts = np.cumsum(lengths) - lengths
        for s, L, i in zip(starts, lengths, ids):
            if np.any(labels[s:s + L] != labels[s]):
                raise UserError(f"the label column {label_col!r} changes within sequence {i!r}; a sequence "
                                "classifier needs one label per sequence")
        labels = labels[starts]
    return Data(X, names, lengths, ids, path), labels


def _build_classifier(args):
    import emkit

    if args.model in ("kmeans", "bayesian-gmm", "mixture"):
        raise UserError(f"classify supports --model gmm or an HMM (including --model hmm --emission NAME); "
                        f"got --model {args.model}")
    flags = dict(ambiguity_threshold=args.ambiguity_threshold, anomaly_quantile=args.anomaly_quantile)
    if args.model == "gmm":
        return emkit.GaussianMixtureClassifier(args.n_components, covariance_type=args.covariance_type or "full",
                                               n_init=args.n_init, max_iter=args.max_iter, random_state=args.seed,
                                               **({} if args.tol is None else {"tol": args.tol}), **flags)
    if not args.sequence_column:
        raise UserError(f"--model {args.model} classifies whole sequences: give --sequence-column")
    return emkit.HMMClassifier(build_model(args), random_state=args.seed, **flags)


def _classification_table(clf, data, out):
    """Columns of the predictions file: one row per row of data, or per sequence for HMMs."""
    cols = {}
    if data.lengths is not None:
        cols["sequence"] = np.array(data.ids, dtype=object)
        cols["n_frames"] = np.asarray(data.lengths)
    cols["label"] = np.asarray(out.labels)
    for k, c in enumerate(clf.classes_):
        cols[f"p_{c}"] = out.proba[:, k]
    cols["log_density_per_frame" if data.lengths is not None else "log_density"] = out.log_density
    cols["ambiguous"] = out.ambiguous.astype(np.int64)
    cols["anomalous"] = out.anomalous.astype(np.int64)
    return cols


def _classify(clf, data):
    from .models.classifier import HMMClassifier

    X = _X_for(clf.estimators_[0], data.X)
    return clf.classify(X, data.lengths) if isinstance(clf, HMMClassifier) else clf.classify(X)


def cmd_classify_fit(args):
    import emkit
    from .io import write_table

    data, y = _labelled_data(args, label_required=True)
    ks = _parse_range(args.n_components)
    args.n_components = ks[0]
    clf = _build_classifier(args)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if data.lengths is not None and args.model == "gmm":
            raise UserError("--sequence-column classifies whole sequences: choose an HMM --model")
        X = data.X if args.model == "gmm" else _X_for(clf._template(), data.X)
        extra = {} if args.model == "gmm" else {"lengths": data.lengths}
        if len(ks) > 1:
            clf = emkit.select(clf, X, ks, criterion="bic", y=y, random_state=args.seed, **extra).best_model
        else:
            clf.fit(X, y, **extra)
    seconds = time.perf_counter() - t0
    out = _classify(clf, data)
    accuracy = float(np.mean(out.labels == np.asarray(y).astype(clf.classes_.dtype)))
    outdir = _output_dir(args)
    files = {"model": os.path.join(outdir, "model.npz"), "predictions": os.path.join(outdir, "predictions.csv")}
    if args.model == "gmm":
        files["plot"] = os.path.join(outdir, "regions.png")
    with Outputs() as outputs:  # all appear together or not at all
        clf.save(outputs.path(files["model"]))
        write_table(outputs.path(files["predictions"]), _classification_table(clf, data, out))
        if args.model == "gmm":
            from .plot import plot_decision_regions, save_figure

            save_figure(plot_decision_regions(clf, data.X, y, feature_names=data.names), outputs.path(files["plot"]))
    unit = "sequences" if data.lengths is not None else "rows"
    K = [m.n_components for m in clf.estimators_]
    info = {"model": type(clf).__name__, "classes": clf.classes_.tolist(), "n_components": K,
            "class_prior": clf.class_prior_.tolist(), "class_count": clf.class_count_.tolist(),
            "training_accuracy": accuracy, "ambiguous": int(out.ambiguous.sum()), "anomalous": int(out.anomalous.sum()),
            "anomaly_threshold": clf.anomaly_threshold_, "seconds": seconds,
            "warnings": sorted({str(w.message) for w in caught}), "files": files, "overwritten": outputs.overwritten}
    lines = [f"emkit {type(clf).__name__} on {data.source}: {len(y)} {unit}, {data.X.shape[1]} features "
             f"({', '.join(data.names)}), fitted in {seconds:.2f}s",
             "  class  prior   count  components"]
    lines += [f"  {str(c):>5s}  {p:.3f}  {int(n):>6d}  {k}" for c, p, n, k in
              zip(clf.classes_, clf.class_prior_, clf.class_count_, K)]
    lines.append(f"  training accuracy {accuracy:.4f}; ambiguous {int(out.ambiguous.sum())} "
                 f"(top posterior < {clf.ambiguity_threshold:g}); anomalous {int(out.anomalous.sum())} "
                 f"(density below the {clf.anomaly_quantile:g} quantile)")
    lines += [f"  warning: {w}" for w in info["warnings"]]
    lines += _wrote(outputs)
    _emit(args, lines, info)
    return 0


def cmd_classify_predict(args):
    from .io import write_table
    from .models.classifier import _BayesClassifier

    clf = _load_model(args.model_file)
    if not isinstance(clf, _BayesClassifier):
        raise UserError(f"{args.model_file} holds a {type(clf).__name__}, not a classifier; fit one with "
                        "'emkit classify fit'")
    hmm = type(clf).__name__ == "HMMClassifier"
    if hmm and not args.sequence_column:
        raise UserError("this model classifies whole sequences: give --sequence-column")
    data, y = _labelled_data(args, label_required=False)
    if data.X.shape[1] != clf.n_features_in_:
        raise UserError(f"{data.source} has {data.X.shape[1]} feature columns ({', '.join(data.names)}) but the "
                        f"model was fitted on {clf.n_features_in_}; choose them with --columns")
    out = _classify(clf, data)
    path = args.output or "predictions.csv"
    with Outputs() as outputs:
        write_table(outputs.path(path), _classification_table(clf, data, out))
    info = {"model": type(clf).__name__, "n": int(len(out.labels)), "output": path, "overwritten": outputs.overwritten,
            "ambiguous": int(out.ambiguous.sum()), "anomalous": int(out.anomalous.sum()),
            "counts": {str(c): int(np.sum(out.labels == c)) for c in clf.classes_}}
    line = (f"wrote {len(out.labels)} predictions to {path}{' (replaced the existing file)' if outputs.overwritten else ''}"
            f": {info['ambiguous']} ambiguous, {info['anomalous']} anomalous")
    if y is not None:
        info["accuracy"] = float(np.mean(out.labels.astype(str) == np.asarray(y).astype(str)))
        line += f"; accuracy {info['accuracy']:.4f} against column {args.label_column!r}"
    _emit(args, [line], info)
    return 0


def cmd_datasets(args):
    from . import datasets

    items = datasets.list_datasets()
    _emit(args, [f"{name:12s} {desc}" for name, desc in items.items()], items)
    return 0


# -- parser ----------------------------------------------------------------------------------------------
def _add_data_options(p, positional=True):
    if positional:
        p.add_argument("data_pos", nargs="?", metavar="DATA", help="data file: CSV, TSV, .npy, Parquet or HDF5")
    p.add_argument("--data", metavar="FILE", help="data file (CSV, TSV, .npy, Parquet or HDF5)")
    p.add_argument("--example", metavar="NAME", help="an embedded dataset instead of a file (see 'emkit datasets')")
    p.add_argument("--columns", metavar="x,y,z", help="comma-separated feature columns (names or 0-based indices)")
    p.add_argument("--sequence-column", metavar="NAME", help="column holding a sequence id (HMMs: one sequence per id)")
    p.add_argument("--key", metavar="NAME", help="HDF5 files: the dataset to read")
    p.add_argument("--fps", type=float, default=None,
                   help="frames per second: durations, times, plots and tables in seconds")


#: The covariance types of ``emkit.emissions.gaussian.COVARIANCE_TYPES``, named here so that building the
#: parser (``emkit --help``) imports no compiled code
COVARIANCE_TYPE_NAMES = ("diag", "full", "spherical", "tied")


def _add_model_options(p, k_help="number of components/states/clusters"):
    p.add_argument("--model", choices=list(MODELS), default="gmm", help="model to fit (default gmm)")
    p.add_argument("-k", "--n-components", default="2", help=k_help)
    p.add_argument("--covariance-type", choices=COVARIANCE_TYPE_NAMES, default=None,
                   help="gmm and gaussian-hmm (defaults: full for gmm, diag for gaussian-hmm)")
    p.add_argument("--order", type=int, default=1, help="arhmm: autoregressive order (default 1)")
    p.add_argument("--emission", metavar="NAME", default=None,
                   help="mixture and hmm: the emission family by registered name (built in: gaussian, categorical, "
                        "poisson, autoregressive, and the families emkit.emissions adds; a family of your own is "
                        "registered with emkit.emissions.register_family)")
    p.add_argument("--emission-param", metavar="KEY=VALUE", action="append", default=None,
                   help="mixture and hmm: a hyperparameter of the emission family, e.g. covariance_type=diag or "
                        "df=5 (repeat for several; numbers, true/false and none are converted)")
    p.add_argument("--kappa", type=float, default=0.0, help="HMMs: sticky self-transition prior weight")
    p.add_argument("--n-init", type=int, default=1, help="restarts; the best is kept")
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--tol", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="random seed")


def _add_flag_options(p):
    p.add_argument("--ambiguity-threshold", type=float, default=0.9,
                   help="ambiguous when the top class posterior is below this (default 0.9)")
    p.add_argument("--anomaly-quantile", type=float, default=0.01,
                   help="anomalous when the density is below this quantile of the training densities (default 0.01)")


def _model_command(sub, name, help_text, func):
    """A subcommand that takes a model file first, then data (``--data``/``--example``) and ``--json``."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("model_file", metavar="MODEL")
    _add_data_options(p, positional=False)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=func)
    return p


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _Parser(prog="emkit", description="Fit clusters and hidden states by EM.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("fit", help="fit a model; write labels, the model file and a plot")
    _add_data_options(p)
    _add_model_options(p)
    p.add_argument("-o", "--output", default="emkit-out", help="output directory (default emkit-out)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_fit)

    p = _model_command(sub, "predict", "labels (and posteriors) of data under a saved model", cmd_predict)
    p.add_argument("--posteriors", action="store_true", help="also write the posterior of every state")
    p.add_argument("--causal", action="store_true", help="HMMs: filtered posteriors, using no future data")
    p.add_argument("--impute", action="store_true",
                   help="also write the data with missing values (empty cells, NaN) replaced by their posterior "
                        "conditional means")
    p.add_argument("-o", "--output", help="output file, .csv/.tsv or .parquet (default labels.csv)")

    _model_command(sub, "score", "log-likelihood, BIC and AIC of data under a saved model", cmd_score)

    p = sub.add_parser("select", help="choose the number of components by BIC, AIC, ICL or held-out likelihood")
    _add_data_options(p)
    _add_model_options(p, k_help="candidates: a range like 1-8 or a list like 2,4,8 (default 1-8)")
    p.set_defaults(n_components="1-8")
    p.add_argument("--criterion", choices=("bic", "aic", "icl", "heldout", "elbo"), default="bic",
                   help="bic, aic, icl (lower is better), heldout or elbo (higher is better; --model bayesian-gmm)")
    p.add_argument("-o", "--output", default="emkit-out", help="output directory (default emkit-out)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_select)

    p = _model_command(sub, "plot", "plots of a saved model on data (PNG or SVG)", cmd_plot)
    p.add_argument("--kind", default="all", help=f"comma-separated: {', '.join(PLOT_KINDS)}, or all (default)")
    p.add_argument("--format", choices=("png", "svg"), default="png")
    p.add_argument("-o", "--output", default="emkit-out", help="output directory (default emkit-out)")

    p = _model_command(sub, "report", "one self-contained HTML report of a saved model on data", cmd_report)
    p.add_argument("--selection", metavar="CSV", help="a selection table written by 'emkit select'")
    p.add_argument("-o", "--output", help="output HTML file (default report.html)")

    p = sub.add_parser("classify", help="classifiers: one mixture (or HMM) per class, with ambiguity and anomaly flags")
    csub = p.add_subparsers(dest="classify_command", required=True)
    c = csub.add_parser("fit", help="fit one model per class of a labelled table; write the model, predictions, plot")
    _add_data_options(c)
    _add_model_options(c, k_help="components (states) per class, or a range like 1-5 to choose each class's "
                                 "by BIC")
    c.set_defaults(n_components="1")
    c.add_argument("--label-column", required=True, metavar="NAME", help="column holding the class labels")
    _add_flag_options(c)
    c.add_argument("-o", "--output", default="emkit-out", help="output directory (default emkit-out)")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.set_defaults(func=cmd_classify_fit)
    c = _model_command(csub, "predict", "labels, class probabilities and flags under a saved classifier",
                       cmd_classify_predict)
    c.add_argument("--label-column", metavar="NAME", help="column of true labels: excluded from the features and "
                                                          "used to report the accuracy when present")
    c.add_argument("-o", "--output", help="output file, .csv/.tsv or .parquet (default predictions.csv)")

    from .behavior.command import add_parser as add_segment_parser

    add_segment_parser(sub)

    p = sub.add_parser("info", help="what a model file holds")
    p.add_argument("model_file", metavar="MODEL")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("datasets", help="list the embedded datasets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)
    return parser


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a one-line usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.version:
        from . import __version__

        print(f"emkit {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "data_pos", None):
        if getattr(args, "data", None):
            print(f"emkit {args.command}: error: give the data file once (positional or --data)", file=sys.stderr)
            return 2
        args.data = args.data_pos
    if args.command in ("fit",):
        try:
            args.n_components = int(args.n_components)
        except ValueError:
            print(f"emkit fit: error: -k/--n-components must be an integer; got {args.n_components!r}", file=sys.stderr)
            return 2
    try:
        with warnings.catch_warnings():
            # load_data checks the columns' names against the model's; the arrays passed on carry none
            warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
            status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
        return status
    except BrokenPipeError:
        _silence_stdout()
        print(f"emkit {args.command}: error: output pipe closed before all output was written", file=sys.stderr)
        return 2
    except (UserError, ValueError, OSError, TypeError, ImportError, KeyError) as exc:
        print(f"emkit {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"emkit {args.command}: error: out of memory", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: still one line (EMKIT_TRACEBACK=1 shows the traceback)
        if os.environ.get("EMKIT_TRACEBACK"):
            raise
        print(f"emkit {args.command}: error: unexpected {type(exc).__name__}: {_one_line(exc)} (please report "
              "this; EMKIT_TRACEBACK=1 shows where it happened)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emkit {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc):
    """The message of an exception as one line, naming the file for operating-system errors."""
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _silence_stdout():
    """After a closed pipe, send what is left of stdout to /dev/null so exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
