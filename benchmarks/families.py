#!/usr/bin/env python
"""Cost of the generalised-EM families: time per EM iteration of a von Mises HMM against a
diagonal Gaussian HMM, and of a negative-binomial HMM against a Poisson HMM, of the same shape
(frames, features, states), measured in the same run (the ratios are the result); and how many
Newton iterations and step halvings the concentration and dispersion steps needed per M-step.

Run from the repository root::

    .venv/bin/python benchmarks/families.py                          # 200 sequences x 500 frames, D=4, K=4
    .venv/bin/python benchmarks/families.py --scale 0.05 --iters 3 --repeat 1   # smoke run
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _data(rng, n_seq, length, D, K):
    z = np.empty(n_seq * length, dtype=np.int64)
    trans = np.full((K, K), 0.05 / (K - 1)) + 0.95 * np.eye(K) - 0.05 / (K - 1) * np.eye(K)
    i = 0
    for _ in range(n_seq):
        s = rng.integers(K)
        for _ in range(length):
            z[i] = s
            i += 1
            s = rng.choice(K, p=trans[s])
    mu = rng.uniform(-np.pi, np.pi, (K, D))
    kappa = rng.uniform(1.0, 8.0, (K, D))
    angles = rng.vonmises(mu[z], kappa[z])
    m = rng.uniform(1.0, 15.0, (K, D))
    r = rng.uniform(0.5, 5.0, (K, D))
    counts = rng.negative_binomial(r[z], r[z] / (r[z] + m[z])).astype(np.float64)
    return z, np.full(n_seq, length), angles, counts


def _start(family, X, lengths, z, K):
    from emkit.structures import HMMParams

    resp = np.eye(K)[z]
    emission = family.init_params(family.statistics(None, family.prepare(X, lengths), resp))
    trans = np.full((K, K), 0.1 / (K - 1)) + (0.9 - 0.1 / (K - 1)) * np.eye(K)
    return HMMParams(startprob=np.full(K, 1.0 / K), transmat=trans, emission=emission)


def time_family(family, X, lengths, start, iters, repeat):
    """Best wall time per EM iteration over ``repeat`` runs of ``iters`` iterations."""
    from emkit.em import run_em
    from emkit.sources import SequenceSource
    from emkit.structures import MarkovChain

    model = MarkovChain(family)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run_em(model, start, SequenceSource(X, lengths), tol=0, max_iter=iters)
        best = min(best, (time.perf_counter() - t0) / iters)
    return best


def count_steps(module, solver, run):
    """Newton iterations and halvings per M-step of ``module.solver`` while ``run()`` fits."""
    original = getattr(module, solver)
    seen = []

    def counted(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out[1])
        return out

    setattr(module, solver, counted)
    try:
        run()
    finally:
        setattr(module, solver, original)
    newton = np.array([s["newton"] for s in seen])
    halvings = np.array([s["halvings"] for s in seen])
    return newton, halvings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 200 sequences")
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--features", type=int, default=4)
    parser.add_argument("--states", type=int, default=4)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from emkit.emissions import negbinom, vonmises
    from emkit.emissions.gaussian import GaussianEmission
    from emkit.emissions.negbinom import NegativeBinomial
    from emkit.emissions.poisson import PoissonEmission
    from emkit.emissions.vonmises import VonMises

    K, D = args.states, args.features
    n_seq = max(2, int(round(200 * args.scale)))
    rng = np.random.default_rng(0)
    z, lengths, angles, counts = _data(rng, n_seq, args.length, D, K)
    print(f"{n_seq} sequences x {args.length} frames, D={D}, K={K}; {args.iters} iterations, best of {args.repeat}")

    pairs = [("vonmises", VonMises().with_components(K), "gaussian diag", GaussianEmission(K, "diag"), angles),
             ("negbinom", NegativeBinomial().with_components(K), "poisson", PoissonEmission(K), counts)]
    results = {}
    for name, fam, peer_name, peer, X in pairs:
        start, peer_start = _start(fam, X, lengths, z, K), _start(peer, X, lengths, z, K)
        time_family(fam, X, lengths, start, 1, 1)  # compile and warm up
        time_family(peer, X, lengths, peer_start, 1, 1)
        t = time_family(fam, X, lengths, start, args.iters, args.repeat)
        t_peer = time_family(peer, X, lengths, peer_start, args.iters, args.repeat)
        results[name] = (t, t_peer)
        print(f"{name:9s} {1e3 * t:8.2f} ms/iteration   {peer_name:13s} {1e3 * t_peer:8.2f} ms/iteration   "
              f"ratio {t / t_peer:5.2f}")

    # Newton iterations and halvings per M-step on this data: 30 iterations from a rough start (hard
    # assignments with half of the frames relabelled at random)
    noisy = np.where(rng.random(z.size) < 0.5, rng.integers(K, size=z.size), z)
    for name, module, solver, fam, X in (("vonmises kappa", vonmises, "solve_kappa", VonMises().with_components(K),
                                          angles),
                                         ("negbinom r", negbinom, "solve_dispersion",
                                          NegativeBinomial().with_components(K), counts)):
        start = _start(fam, X, lengths, noisy, K)
        newton, halvings = count_steps(module, solver, lambda: time_family(fam, X, lengths, start, 30, 1))
        print(f"{name:15s} Newton iterations per M-step (first 8: {' '.join(map(str, newton[:8]))}): max "
              f"{newton.max()}, mean {newton.mean():.1f}; halvings: {halvings.sum()} in {newton.size} M-steps "
              f"of {K * D} entries")
    return results


if __name__ == "__main__":
    main()
