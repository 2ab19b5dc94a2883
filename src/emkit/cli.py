"""The ``emkit`` command line.

User errors print one line on stderr and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

MODELS = ("gmm", "kmeans")


class UserError(Exception):
    """An error in what the user asked for: printed as one line."""


def _load_data(args):
    from . import datasets
    from .io import read_table

    columns = [c.strip() for c in args.columns.split(",")] if getattr(args, "columns", None) else None
    if args.example:
        ds = datasets.load(args.example)
        X, names = ds.data, list(ds.feature_names)
        if columns:
            missing = [c for c in columns if c not in names]
            if missing:
                raise UserError(f"column {missing[0]!r} not in example {args.example!r} (columns: {', '.join(names)})")
            idx = [names.index(c) for c in columns]
            X, names = X[:, idx], columns
        return X, names, f"example:{args.example}"
    if not args.data:
        raise UserError("no data given: pass a data file (CSV, TSV or .npy) or --example NAME")
    X, names = read_table(args.data, columns)
    return X, names, args.data


def _build_model(args):
    from . import GaussianMixture, KMeans

    if args.model == "gmm":
        return GaussianMixture(args.n_components, covariance_type=args.covariance_type, n_init=args.n_init,
                               max_iter=args.max_iter, tol=args.tol, random_state=args.seed)
    return KMeans(args.n_components, n_init=args.n_init, max_iter=args.max_iter, random_state=args.seed)


def _summary(model, X, names, source, seconds):
    from . import GaussianMixture

    lines = [f"emkit {type(model).__name__} on {source}: {X.shape[0]} rows x {X.shape[1]} features "
             f"({', '.join(names)}), fitted in {seconds:.2f}s"]
    info = {"model": type(model).__name__, "source": source, "n_samples": int(X.shape[0]),
            "features": list(names), "seconds": seconds}
    if isinstance(model, GaussianMixture):
        labels = model.predict(X)
        info.update(n_components=model.n_components, covariance_type=model.covariance_type,
                    converged=bool(model.converged_), n_iter=int(model.n_iter_),
                    mean_log_likelihood=float(model.score(X)), bic=float(model.bic(X)), aic=float(model.aic(X)),
                    weights=model.weights_.tolist(), means=model.means_.tolist())
        lines.append(f"  covariance {model.covariance_type}; {'converged' if model.converged_ else 'NOT converged'} "
                     f"after {model.n_iter_} iterations")
        lines.append(f"  mean log-likelihood {info['mean_log_likelihood']:.4f}   BIC {info['bic']:.2f}   "
                     f"AIC {info['aic']:.2f}")
        stds = _component_sds(model)
        header = "  component  weight   n     " + "  ".join(f"{n:>18s}" for n in names)
        lines.append(header)
        counts = np.bincount(labels, minlength=model.n_components)
        for k in range(model.n_components):
            cells = "  ".join(f"{m:>9.4g} ± {s:<6.3g}" for m, s in zip(model.means_[k], stds[k]))
            lines.append(f"  {k:>9d}  {model.weights_[k]:.3f}  {counts[k]:<5d} {cells}")
    else:
        labels = model.labels_
        info.update(n_clusters=model.n_clusters, inertia=float(model.inertia_), n_iter=int(model.n_iter_),
                    centers=model.cluster_centers_.tolist())
        lines.append(f"  inertia {model.inertia_:.6g} after {model.n_iter_} iterations")
        counts = np.bincount(labels, minlength=model.n_clusters)
        lines.append("  cluster  n      " + "  ".join(f"{n:>10s}" for n in names))
        for k in range(model.n_clusters):
            lines.append(f"  {k:>7d}  {counts[k]:<6d} " + "  ".join(f"{c:>10.4g}" for c in model.cluster_centers_[k]))
    info["counts"] = counts.tolist()
    return lines, info, labels


def _component_sds(model):
    from .emissions.gaussian import COVARIANCE_TYPES

    K, D = model.means_.shape
    full = COVARIANCE_TYPES[model.covariance_type].full_covariances(model.covariances_, K, D)
    return np.sqrt(np.diagonal(full, axis1=1, axis2=2))


def cmd_fit(args):
    from .emissions.gaussian import COVARIANCE_TYPES
    from .plot import plot_clusters, save_figure

    X, names, source = _load_data(args)
    model = _build_model(args)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X)
    seconds = time.perf_counter() - t0
    lines, info, labels = _summary(model, X, names, source, seconds)
    out = args.output
    os.makedirs(out, exist_ok=True)
    labels_path = os.path.join(out, "labels.csv")
    np.savetxt(labels_path, labels.astype(int), fmt="%d", header="label", comments="")
    model_path = model.save(os.path.join(out, "model.npz"))
    plot_path = os.path.join(out, "clusters.png")
    if hasattr(model, "covariances_"):
        K, D = model.means_.shape
        covs = COVARIANCE_TYPES[model.covariance_type].full_covariances(model.covariances_, K, D)
        ax = plot_clusters(X, labels, means=model.means_, covariances=covs, feature_names=names,
                           title=f"{type(model).__name__}, K={K} ({model.covariance_type})")
    else:
        ax = plot_clusters(X, labels, means=model.cluster_centers_, feature_names=names,
                           title=f"KMeans, K={model.n_clusters}")
    save_figure(ax, plot_path)
    info["files"] = {"labels": labels_path, "model": model_path, "plot": plot_path}
    info["warnings"] = [str(w.message) for w in caught]
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for w in info["warnings"]:
            lines.append(f"  warning: {w}")
        lines.append(f"  wrote {labels_path}, {model_path}, {plot_path}")
        print("\n".join(lines))
    return 0


def cmd_datasets(args):
    from . import datasets

    items = datasets.list_datasets()
    if args.json:
        print(json.dumps(items, indent=2))
    else:
        for name, desc in items.items():
            print(f"{name:12s} {desc}")
    return 0


def build_parser():
    from .emissions.gaussian import COVARIANCE_TYPES

    parser = argparse.ArgumentParser(prog="emkit", description="Fit clusters and hidden states by EM.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    fit = sub.add_parser("fit", help="fit a model to a table of numbers and write labels, model file and plot")
    fit.add_argument("data", nargs="?", help="CSV/TSV (header row optional) or .npy file")
    fit.add_argument("--example", metavar="NAME", help="use an embedded dataset instead (see 'emkit datasets')")
    fit.add_argument("--model", choices=MODELS, default="gmm", help="model to fit (default gmm)")
    fit.add_argument("-k", "--n-components", type=int, default=2, help="number of components/clusters")
    fit.add_argument("--covariance-type", choices=sorted(COVARIANCE_TYPES), default="full")
    fit.add_argument("--columns", metavar="x,y,z", help="comma-separated columns to use (names or 0-based indices)")
    fit.add_argument("--n-init", type=int, default=1, help="restarts; the best is kept")
    fit.add_argument("--max-iter", type=int, default=100)
    fit.add_argument("--tol", type=float, default=1e-3)
    fit.add_argument("--seed", type=int, default=None, help="random seed")
    fit.add_argument("-o", "--output", default="emkit-out", help="output directory (default emkit-out)")
    fit.add_argument("--json", action="store_true", help="print the summary as JSON")
    fit.set_defaults(func=cmd_fit)

    ds = sub.add_parser("datasets", help="list the embedded datasets")
    ds.add_argument("--json", action="store_true")
    ds.set_defaults(func=cmd_datasets)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"emkit {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (UserError, ValueError, FileNotFoundError, TypeError) as exc:
        print(f"emkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
