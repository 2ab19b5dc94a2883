"""Variational HMMs: emkit against hmmlearn in one run (time per iteration and the ratio).

Same data, same starting posterior and priors, a fixed number of iterations (tol off) on both
sides; the final lower bounds must agree (hmmlearn leaves out the Gaussian constant, which is
added back before comparing).  hmmlearn is timed with both of its forward-backward
implementations ("log", its default, and "scaling").

    python benchmarks/variational_hmm.py [--scale 1.0] [--iters 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import numpy as np

CONFIGS = {
    # name: (model, covariance type, sequences, frames per sequence, D, K, symbols)
    "vgauss-full-short": ("gaussian", "full", 4000, 50, 8, 10, None),
    "vgauss-diag-short": ("gaussian", "diag", 4000, 50, 8, 10, None),
    "vgauss-diag-long": ("gaussian", "diag", 100, 2000, 8, 10, None),
    "vcat-long": ("categorical", None, 100, 2000, 1, 10, 20),
}


def make_data(kind, n_seq, T, D, K, S, rng):
    A = np.full((K, K), 0.05 / (K - 1)) + np.eye(K) * (0.95 - 0.05 / (K - 1))
    z = np.empty(n_seq * T, dtype=np.int64)
    for s in range(n_seq):
        state = rng.integers(K)
        u = rng.random(T)
        for t in range(T):
            z[s * T + t] = state
            state = np.searchsorted(np.cumsum(A[state]), u[t] * A[state].sum())
            state = min(state, K - 1)
    if kind == "gaussian":
        X = rng.normal(size=(K, D))[z] * 3 + rng.normal(size=(len(z), D))
    else:
        B = rng.dirichlet(np.full(S, 0.5), size=K)
        cum = np.cumsum(B, axis=1)
        X = np.minimum((rng.random(len(z))[:, None] > cum[z]).sum(axis=1), S - 1)[:, None]
    return X, np.full(n_seq, T)


def start_values(kind, cov, X, K, S, rng):
    N, D = X.shape
    counts = rng.dirichlet(np.ones(K)) * N + 1.0
    start = dict(startprob_posterior_init=rng.dirichlet(np.ones(K)) * 10 + 0.5,
                 transmat_posterior_init=rng.dirichlet(np.ones(K), size=K) * N / K + 0.5)
    if kind == "categorical":
        start["emissionprob_posterior_init"] = rng.dirichlet(np.ones(S), size=K) * N / K + 0.5
        return start
    v = X.var(axis=0) + 1e-3
    start.update(means_posterior_init=X[rng.choice(N, K, replace=False)], beta_posterior_init=counts,
                 dof_posterior_init=counts + D)
    start["scale_posterior_init"] = (np.diag(v)[None] * (counts + D)[:, None, None] if cov == "full"
                                     else v[None] * (counts + D)[:, None])
    return start


def fit_emkit(kind, cov, X, lengths, start, K, S, iters):
    import emkit

    if kind == "gaussian":
        model = emkit.VariationalGaussianHMM(K, covariance_type=cov, max_iter=iters, tol=0.0, **start)
    else:
        model = emkit.VariationalCategoricalHMM(K, n_features=S, max_iter=iters, tol=0.0, **start)
    t0 = time.perf_counter()
    model.fit(X, lengths)
    seconds = time.perf_counter() - t0
    return seconds, model.lower_bounds_[-1] * len(X)


def fit_hmmlearn(kind, cov, X, lengths, start, K, S, iters, impl):
    from hmmlearn import vhmm

    if kind == "gaussian":
        model = vhmm.VariationalGaussianHMM(K, covariance_type=cov, n_iter=iters, tol=-np.inf, init_params="",
                                            implementation=impl)
        # hmmlearn's defaults for the priors; emkit gets the same (below)
        model.means_prior_ = np.tile(X.mean(axis=0), (K, 1))
        model.beta_prior_ = np.ones(K)
        model.dof_prior_ = np.full(K, float(X.shape[1]))
        model.scale_prior_ = (np.tile(np.eye(X.shape[1]) * 1e-3, (K, 1, 1)) if cov == "full"
                              else np.full((K, X.shape[1]), 1e-3))
    else:
        model = vhmm.VariationalCategoricalHMM(K, n_features=S, n_iter=iters, tol=-np.inf, init_params="",
                                               implementation=impl)
        model.emissionprob_prior_ = np.full((K, S), 1.0 / S)
    model.startprob_prior_ = np.full(K, 1.0 / K)
    model.transmat_prior_ = np.full((K, K), 1.0 / K)
    model.n_features = X.shape[1] if kind == "gaussian" else S
    for name, value in start.items():
        setattr(model, name.replace("_init", "_"), np.copy(value))
    # the data-dependent k-means of hmmlearn's _init runs even with init_params="": time the loop only
    model._check()
    t0 = time.perf_counter()
    bound = None
    for _ in range(iters):
        stats, logprob = model._do_estep(X, lengths)
        bound = model._compute_lower_bound(logprob)
        model._do_mstep(stats)
    seconds = time.perf_counter() - t0
    if kind == "gaussian":
        bound -= 0.5 * X.size * np.log(2 * np.pi)
    return seconds, bound


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the sequences to use")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    results = []
    print(f"{'configuration':22s} {'hmmlearn log':>13s} {'scaling':>9s} {'emkit':>9s} {'ratio log':>10s} "
          f"{'ratio scal':>10s} {'bound rel.diff':>15s}   (ms per iteration)")
    for name, (kind, cov, n_seq, T, D, K, S) in CONFIGS.items():
        rng = np.random.default_rng(0)
        n_seq = max(2, int(n_seq * args.scale))
        X, lengths = make_data(kind, n_seq, T, D, K, S, rng)
        start = start_values(kind, cov, X.astype(float), K, S, rng)
        fit_emkit(kind, cov, X[: lengths[0] * 2], lengths[:2], start, K, S, 2)  # compile / warm up
        ours, our_bound = fit_emkit(kind, cov, X, lengths, start, K, S, args.iters)
        log_s, log_bound = fit_hmmlearn(kind, cov, X, lengths, start, K, S, args.iters, "log")
        scal_s, _ = fit_hmmlearn(kind, cov, X, lengths, start, K, S, args.iters, "scaling")
        diff = abs(our_bound - log_bound) / abs(log_bound)
        row = dict(name=name, frames=int(X.shape[0]), hmmlearn_log_ms=log_s / args.iters * 1e3,
                   hmmlearn_scaling_ms=scal_s / args.iters * 1e3, emkit_ms=ours / args.iters * 1e3,
                   ratio_log=log_s / ours, ratio_scaling=scal_s / ours, bound_rel_diff=diff)
        results.append(row)
        print(f"{name:22s} {row['hmmlearn_log_ms']:13.1f} {row['hmmlearn_scaling_ms']:9.1f} {row['emkit_ms']:9.1f} "
              f"{row['ratio_log']:9.1f}x {row['ratio_scaling']:9.1f}x {diff:15.2e}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"iters": args.iters, "scale": args.scale, "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
