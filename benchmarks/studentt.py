#!/usr/bin/env python
"""Student-t emissions: cost of an EM iteration relative to Gaussian emissions of the same shape
(mixture and HMM, measured in the same run), and the work of the degrees-of-freedom step.

Run from the repository root::

    .venv/bin/python benchmarks/studentt.py                               # about a minute
    .venv/bin/python benchmarks/studentt.py --scale 0.05 --iters 2 --repeat 1   # smoke run

Both families run the same EM driver from the same starting labels; the ratio t / Gaussian is
the result.  The degrees-of-freedom step is then followed over a fit from the seeding pass to
convergence: Newton iterations per state and M-step, and how often the checked step had to be
halved (backtracking).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def heavy_tailed(n, d, k, seed):
    """``n`` rows from ``k`` well separated t clusters (df between 2 and 8) in ``d`` dimensions, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (k, d))
    labels = rng.integers(k, size=n)
    df = rng.uniform(2, 8, size=k)[labels]
    X = centres[labels] + rng.standard_normal((n, d)) / np.sqrt(rng.chisquare(df) / df)[:, None]
    return X, labels


def regimes(n_seq, T, d, k, seed):
    """Sequences switching between ``k`` heavy-tailed regimes (sticky transitions)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    z = np.empty(n_seq * T, dtype=np.int64)
    for s in range(n_seq):
        state = rng.integers(k)
        for t in range(T):
            if rng.random() < 0.05:
                state = rng.integers(k)
            z[s * T + t] = state
    df = 3.0
    X = centres[z] + rng.standard_normal((z.size, d)) / np.sqrt(rng.chisquare(df, z.size) / df)[:, None]
    return X, z, np.full(n_seq, T)


def start(family, X, labels, k, hmm):
    from emkit.structures import HMMParams, MarkovChain, Mixture, MixtureParams

    resp = np.zeros((len(X), k))
    resp[np.arange(len(X)), labels] = 1.0
    emission = family.init_params(family.statistics(None, X, resp))
    if hmm:
        return MarkovChain(family), HMMParams(startprob=np.full(k, 1 / k), transmat=np.full((k, k), 1 / k),
                                              emission=emission)
    return Mixture(family), MixtureParams(weights=np.full(k, 1 / k), emission=emission)


def seconds_per_iter(family, X, labels, k, source, iters, repeat, hmm):
    from emkit.em import run_em

    model, params = start(family, X, labels, k, hmm)
    run_em(model, params, source, tol=0, max_iter=1)  # warm-up: compiled kernels, thread pool
    best = float("inf")
    for _ in range(repeat):
        model, params = start(family, X, labels, k, hmm)
        t0 = time.perf_counter()
        run_em(model, params, source, tol=0, max_iter=iters)
        best = min(best, (time.perf_counter() - t0) / iters)
    return best


def df_work(family, X, labels, k, source, hmm, max_iter=300):
    """Newton iterations and halvings of every degrees-of-freedom step of one fit to convergence."""
    from emkit.emissions.studentt import df_step

    model, params = start(family, X, labels, k, hmm)
    newton, halvings = [], []
    lower = -np.inf
    for _ in range(max_iter):
        stats = source.expectation(model, params)
        e = stats.emission
        dfs, it, hv = df_step(e.n, e.sdf, params.emission.dfs)
        newton.extend(it[e.n > 0])
        halvings.extend(hv[e.n > 0])
        new_params = model.m_step(stats, params)
        np.testing.assert_allclose(new_params.emission.dfs, dfs, rtol=1e-12)  # the M-step takes the same step
        params = new_params
        objective = model.objective(stats, params)
        if abs(objective - lower) < 1e-8:
            break
        lower = objective
    return np.asarray(newton), np.asarray(halvings)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply the problem sizes by this")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    from emkit.emissions import GaussianEmission, StudentT
    from emkit.sources import ArraySource, SequenceSource

    n, d, k = max(500, int(100_000 * args.scale)), 5, 4
    X, labels = heavy_tailed(n, d, k, seed=0)
    n_seq = max(5, int(200 * args.scale))
    Xh, zh, lengths = regimes(n_seq, 500, 3, 3, seed=1)
    cases = [
        (f"mixture full  {n} x {d}, K={k}", "full", X, labels, k, lambda: ArraySource(X), False),
        (f"mixture diag  {n} x {d}, K={k}", "diag", X, labels, k, lambda: ArraySource(X), False),
        (f"HMM full  {n_seq} x 500 x 3, K=3", "full", Xh, zh, 3, lambda: SequenceSource(Xh, lengths), True),
        (f"HMM diag  {n_seq} x 500 x 3, K=3", "diag", Xh, zh, 3, lambda: SequenceSource(Xh, lengths), True),
    ]
    print(f"seconds per EM iteration (best of {args.repeat} runs of {args.iters} iterations), same data and start")
    print(f"{'case':<36}{'Gaussian':>10}{'Student-t':>11}{'ratio':>7}")
    for name, cov, data, lab, kk, source, hmm in cases:
        t_g = seconds_per_iter(GaussianEmission(kk, cov), data, lab, kk, source(), args.iters, args.repeat, hmm)
        t_t = seconds_per_iter(StudentT(cov).with_components(kk), data, lab, kk, source(), args.iters, args.repeat,
                               hmm)
        print(f"{name:<36}{t_g:>10.4f}{t_t:>11.4f}{t_t / t_g:>7.2f}")
    print()
    print("degrees-of-freedom step over one fit to convergence (per state and M-step)")
    print(f"{'case':<36}{'steps':>6}{'Newton mean':>12}{'max':>5}{'halved':>8}{'kept':>6}")
    for name, cov, data, lab, kk, source, hmm in cases:
        newton, halvings = df_work(StudentT(cov).with_components(kk), data, lab, kk, source(), hmm)
        print(f"{name:<36}{newton.size:>6}{newton.mean():>12.2f}{newton.max():>5}{int((halvings > 0).sum()):>8}"
              f"{int((halvings < 0).sum()):>6}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    sys.exit(main())
