#!/usr/bin/env python
"""GaussianMixtureClassifier against GaussianMixture with the same total number of components.

Run from the repository root::

    PYTHONPATH=src python benchmarks/classifier.py                    # 1,000,000 x 10, about a minute
    PYTHONPATH=src python benchmarks/classifier.py --rows 20000 --repeat 1   # smoke run

Measured in one process, on the same data:

* ``predict``: a classifier of 5 classes x 4 full-covariance components against
  ``GaussianMixture(20).predict`` (the anchor: the same 20 Gaussians evaluated once, no Bayes'
  rule over classes). Target: the classifier within 2x of the anchor.
* ``classify``: labels, posteriors, densities and both flags in one pass, against the same anchor.
* ``fit``: class models fitted one after the other (``n_jobs=1``) against in parallel threads
  (``n_jobs=None``), on small classes where one fit cannot use more than one core.

Times are the best of ``--repeat`` runs after a warm-up call (compiled kernels are cached).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_model, cpus_available, git_state, version  # noqa: E402

N_CLASSES, N_PER_CLASS, D = 5, 4, 10
PREDICT_TARGET = 2.0


def make_data(n, rng):
    """``n`` rows from 5 classes, each a mixture of 4 Gaussians in 10 dimensions; (X, y)."""
    K = N_CLASSES * N_PER_CLASS
    means = rng.normal(0.0, 4.0, size=(K, D))
    chol = np.tril(rng.normal(0.0, 0.3, size=(K, D, D)), -1) + np.eye(D)[None] * rng.uniform(0.5, 1.5, size=(K, 1, 1))
    z = rng.integers(K, size=n)
    X = means[z] + np.einsum("nij,nj->ni", chol[z], rng.standard_normal((n, D)))
    return X, z // N_PER_CLASS


def best_of(repeat, func):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows predicted (default 1,000,000)")
    parser.add_argument("--fit-rows", type=int, default=100_000, help="rows the models are fitted on")
    parser.add_argument("--small-rows", type=int, default=2_000, help="rows per class for the parallel-fit timing")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import emkit

    warnings.simplefilter("ignore", emkit.ConvergenceWarning)  # a fixed number of iterations is enough here
    rng = np.random.default_rng(0)
    X, y = make_data(args.rows, rng)
    n_fit = min(args.fit_rows, args.rows)
    clf = emkit.GaussianMixtureClassifier(N_PER_CLASS, max_iter=20, random_state=0).fit(X[:n_fit], y[:n_fit])
    gm = emkit.GaussianMixture(N_CLASSES * N_PER_CLASS, max_iter=20, random_state=0).fit(X[:n_fit])
    warm = X[:10_000]
    clf.predict(warm), clf.classify(warm), gm.predict(warm)

    t_anchor = best_of(args.repeat, lambda: gm.predict(X))
    t_predict = best_of(args.repeat, lambda: clf.predict(X))
    t_classify = best_of(args.repeat, lambda: clf.classify(X))
    accuracy = float(np.mean(clf.predict(X) == y))

    Xs, ys = make_data(N_CLASSES * args.small_rows, np.random.default_rng(1))
    fit = {}
    for name, n_jobs in (("sequential", 1), ("parallel", None)):
        fit[name] = best_of(args.repeat, lambda: emkit.GaussianMixtureClassifier(
            N_PER_CLASS, max_iter=20, tol=0, n_jobs=n_jobs, random_state=0).fit(Xs, ys))

    rows = [
        ("predict", f"GaussianMixture(20).predict, {args.rows:,} x {D}", t_anchor, t_predict, PREDICT_TARGET),
        ("classify", "the same anchor (labels, posteriors, densities, both flags)", t_anchor, t_classify, None),
        ("fit", f"n_jobs=1 (sequential), 5 classes x {args.small_rows:,} rows, 20 iterations", fit["sequential"],
         fit["parallel"], None),
    ]
    print(f"GaussianMixtureClassifier, {N_CLASSES} classes x {N_PER_CLASS} full components, D={D}; "
          f"{cpus_available()} CPUs ({cpu_model()}); best of {args.repeat}; accuracy {accuracy:.4f}")
    print(f"{'measure':<9} {'anchor':<66} {'anchor s':>9} {'emkit s':>9} {'emkit/anchor':>12} {'target':>7}")
    for name, anchor, ta, te, target in rows:
        print(f"{name:<9} {anchor:<66} {ta:>9.3f} {te:>9.3f} {te / ta:>11.2f}x "
              f"{'' if target is None else f'<= {target:g}x':>7}")
    if args.json:
        doc = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cpu_model": cpu_model(), "cpu_count": cpus_available(),
                           "versions": {"emkit": version("emkit"), "numpy": version("numpy")},
                           "git": git_state(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))},
               "rows": args.rows, "accuracy": accuracy,
               "results": [{"name": n, "anchor": a, "anchor_seconds": ta, "emkit_seconds": te, "ratio": te / ta,
                            "target": t} for n, a, ta, te, t in rows]}
        with open(args.json + ".tmp", "w") as fh:
            json.dump(doc, fh, indent=2)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
