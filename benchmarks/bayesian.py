#!/usr/bin/env python
"""emkit's BayesianGaussianMixture against scikit-learn's, on the GMM benchmark shapes.

Run from the repository root::

    PYTHONPATH=src python benchmarks/bayesian.py                      # 200,000 x 10, K=16, 4 covariance types
    PYTHONPATH=src python benchmarks/bayesian.py --scale 0.05 --iters 5 --only full,diag

The data are benchmarks/run.py's GMM data (same generator, seed and shapes).  Both libraries start
from the same responsibilities (each row assigned to the nearest of K random rows) and run
variational iterations with ``tol=0``.  "ms/it" is the time per iteration: (time of a fit with
1 + ``--iters`` iterations - time of a fit with 1) / ``--iters``, best of ``--repeat``, so the
fixed costs (default priors, initial M-step, scikit-learn's final E-step) cancel; "fit s" is the
whole fit with 1 + ``--iters`` iterations.  Both run in this process, one after the other, so the
ratios (scikit-learn time / emkit time, > 1: emkit faster) are measured under the same load.  The lower
bounds of the two fits are compared as a check that the same computation was timed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import CONFIGS, DATA_SEEDS, INIT_SEED_OFFSET, _scaled, gmm_start, make_gmm_data  # noqa: E402


def start_resp(X, k, seed):
    """One-hot responsibilities: each row to the nearest of K random rows (the benchmark's starting means)."""
    means = gmm_start(X, k, "diag", seed)["means"]
    d2 = (X * X).sum(axis=1)[:, None] - 2.0 * X @ means.T + (means * means).sum(axis=1)[None, :]
    resp = np.zeros((X.shape[0], k))
    resp[np.arange(X.shape[0]), d2.argmin(axis=1)] = 1.0
    return resp


def fitters(resp):
    import emkit
    from sklearn.mixture import BayesianGaussianMixture as SkBGMM

    class SkFromResp(SkBGMM):
        def _initialize_parameters(self, X, random_state, xp=None):
            self._initialize(X, resp)

    class EmkitFromResp(emkit.BayesianGaussianMixture):
        def _init_statistics(self, X, sw, rng, model):  # chunked, as emkit's own initialisation
            parts = [model.emission.moments(X[s:s + 4096], resp[s:s + 4096]) for s in range(0, X.shape[0], 4096)]
            return sum(parts[1:], parts[0])

    def fit_sklearn(X, cov, k, iters):
        return SkFromResp(n_components=k, covariance_type=cov, tol=0, max_iter=iters).fit(X)

    def fit_emkit(X, cov, k, iters):
        return EmkitFromResp(k, covariance_type=cov, tol=0, max_iter=iters).fit(X)

    return {"sklearn": fit_sklearn, "emkit": fit_emkit}


def best_time(fit, X, cov, k, iters, repeat):
    """(seconds per iteration, seconds of the whole longer fit, the longer fit)."""
    per_iter, whole, model = np.inf, np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        fit(X, cov, k, 1)
        t1 = time.perf_counter()
        model = fit(X, cov, k, 1 + iters)
        t2 = time.perf_counter()
        per_iter, whole = min(per_iter, ((t2 - t1) - (t1 - t0)) / iters), min(whole, t2 - t1)
    return per_iter, whole, model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the 200,000 rows")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--only", default="full,diag,spherical,tied", help="covariance types")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    cfg = CONFIGS["gmm-full"]
    n, d, k = _scaled(cfg, args.scale), cfg["d"], cfg["k"]
    X = make_gmm_data(n, d, k, DATA_SEEDS["gmm"])
    resp = start_resp(X, k, DATA_SEEDS["gmm"] + INIT_SEED_OFFSET)
    fit = fitters(resp)
    rows = []
    print(f"BayesianGaussianMixture, {n} x {d}, K={k}, {args.iters} iterations, best of {args.repeat}")
    print(f"{'covariance':>10s}  {'sklearn ms/it':>13s}  {'emkit ms/it':>11s}  {'ratio':>6s}  {'sklearn fit s':>13s}  "
          f"{'emkit fit s':>11s}  {'ratio':>6s}  {'bound rel. diff':>15s}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitters(resp[:2000])["emkit"](X[:2000], "diag", k, 1)  # compile the kernels outside the timings
        for cov in [c.strip() for c in args.only.split(",") if c.strip()]:
            t_sk, w_sk, sk = best_time(fit["sklearn"], X, cov, k, args.iters, args.repeat)
            t_em, w_em, em = best_time(fit["emkit"], X, cov, k, args.iters, args.repeat)
            diff = abs(em.lower_bound_ - float(np.ravel(sk.lower_bound_)[0])) / abs(em.lower_bound_)
            rows.append({"covariance_type": cov, "sklearn_s_per_iter": t_sk, "emkit_s_per_iter": t_em,
                         "ratio": t_sk / t_em, "sklearn_fit_s": w_sk, "emkit_fit_s": w_em, "fit_ratio": w_sk / w_em,
                         "lower_bound_rel_diff": diff})
            print(f"{cov:>10s}  {1e3 * t_sk:>13.1f}  {1e3 * t_em:>11.1f}  {t_sk / t_em:>5.1f}x  {w_sk:>13.2f}  "
                  f"{w_em:>11.2f}  {w_sk / w_em:>5.1f}x  {diff:>15.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": n, "d": d, "k": k, "iters": args.iters, "results": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
