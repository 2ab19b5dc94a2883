#!/usr/bin/env python
"""Cost of missing values: GaussianMixture EM on 200k x 10, K=16, with 10% of entries missing at
random, against the same data without NaN, measured in the same run (the ratio is the result).

Run from the repository root::

    .venv/bin/python benchmarks/missing.py                       # every covariance type
    .venv/bin/python benchmarks/missing.py --scale 0.01 --iters 2 --repeat 1   # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import gmm_start, make_gmm_data  # noqa: E402


def time_fit(X, k, cov, start, iters, repeat):
    """Best wall time per EM iteration over ``repeat`` fits of ``iters`` iterations from ``start``."""
    from emkit import GaussianMixture
    from emkit.exceptions import ConvergenceWarning

    best = float("inf")
    for _ in range(repeat):
        gm = GaussianMixture(k, covariance_type=cov, weights_init=start["weights"], means_init=start["means"],
                             precisions_init=start["precisions"], max_iter=iters, tol=0)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X)
        best = min(best, (time.perf_counter() - t0) / iters)
    return best


def main(argv=None):
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply the 200k rows by this")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--fraction", type=float, default=0.10, help="fraction of entries missing at random")
    p.add_argument("--types", default="full,diag,spherical,tied")
    args = p.parse_args(argv)
    n, d, k = max(2_000, int(200_000 * args.scale)), 10, 16
    X = make_gmm_data(n, d, k, seed=0)
    Xm = X.copy()
    Xm[np.random.default_rng(1).random(X.shape) < args.fraction] = np.nan
    print(f"GaussianMixture EM, {n} x {d}, K={k}, {args.fraction:.0%} missing at random; seconds per iteration "
          f"(best of {args.repeat} fits of {args.iters} iterations)")
    print(f"{'covariance':<11}{'no NaN':>10}{'missing':>10}{'ratio':>8}")
    rows = []
    for cov in args.types.split(","):
        start = gmm_start(X, k, cov, seed=0)
        t_full = time_fit(X, k, cov, start, args.iters, args.repeat)
        t_miss = time_fit(Xm, k, cov, start, args.iters, args.repeat)
        rows.append((cov, t_full, t_miss))
        print(f"{cov:<11}{t_full:>10.3f}{t_miss:>10.3f}{t_miss / t_full:>8.2f}")
    return rows


if __name__ == "__main__":
    main()
