#!/usr/bin/env python
"""emkit benchmark harness: emkit against the fastest setting of each peer library.

Run from the repository root::

    PYTHONPATH=src python benchmarks/run.py                 # everything (`make bench`), about 10-15 minutes
    PYTHONPATH=src python benchmarks/run.py --readme        # the same, then rewrite the README's speed table
    PYTHONPATH=src python benchmarks/run.py --only gmm-full,kmeans --iters 10
    PYTHONPATH=src python benchmarks/run.py --scale 0.01 --iters 2 --repeat 1   # smoke run
    PYTHONPATH=src python benchmarks/run.py --from-json benchmarks/results.json --readme   # table of a saved run

Every configuration runs in its own fresh Python process (the "worker").  Inside it, emkit and
every setting of every peer (scikit-learn KMeans ``lloyd`` and ``elkan``, hmmlearn
``implementation="scaling"`` and ``"log"``, each with the default BLAS threading and with one
BLAS thread) fit the same data from the same start, interleaved repeat after repeat, so a
slow drift of a shared machine hits them alike.  The ratio is the fastest peer setting's median
time over emkit's median time, both from that one run.  Cold-start rows time whole fresh
processes with an empty ``NUMBA_CACHE_DIR``.  The driver (this process) starts the workers,
collects their JSON answers, prints the table and writes the JSON file (and, with
``--readme``, the table between the markers in README.md).

See benchmarks/README.md for what every column means.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_model, cpus_available, git_state, reset_peak_rss, version  # noqa: E402
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
README = ROOT / "README.md"
FAITHFUL_CSV = SRC / "emkit" / "datasets" / "faithful.csv"

AGREEMENT_TOL = 1e-6
MEMORY_BUDGET_MB = 300.0
IMPORT_TARGET_S = 1.0
DEFAULT_ITERS = 5
MB = 1024.0 * 1024.0

# ----------------------------------------------------------------------------------------------
# Peers: every setting of a peer library that is timed; the fastest one is the one compared with
# ----------------------------------------------------------------------------------------------

SKLEARN = [dict(library="sklearn", setting="default", params={})]
SKLEARN_KMEANS = [dict(library="sklearn", setting="lloyd", params={"algorithm": "lloyd"}),
                  dict(library="sklearn", setting="elkan", params={"algorithm": "elkan"})]
HMMLEARN = [dict(library="hmmlearn", setting="scaling", params={"implementation": "scaling"}),
            dict(library="hmmlearn", setting="log", params={"implementation": "log"})]
LIBRARY_NAMES = {"sklearn": "scikit-learn", "hmmlearn": "hmmlearn"}

# ----------------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------------
#
# kind        what is fitted ("cold": whole fresh processes, empty numba cache)
# desc        the row's name in the README table
# n / n_seq   rows (mixtures, k-means) or number of sequences (HMMs); multiplied by --scale
#             (one-sequence HMMs scale seq_len instead)
# min_*       floor after scaling (keeps tiny smoke runs well-posed)
# dataset     configurations with the same dataset name fit exactly the same data
# iters       EM iterations per timed fit (default DEFAULT_ITERS; --iters overrides every row)
# peer_iters  at most this many iterations for the peers (slow peers; agreement checked there)
# peer_blas   "default": time the peers with their default BLAS threading only (slow peers)
# peers       the peer settings timed; target: minimum speed-up over the fastest (None: reported only)

CONFIGS = {
    "kmeans-lowd": dict(kind="kmeans", desc="KMeans 1M x 2, K=8, 15 Lloyd iterations", dataset="kmeans-lowd",
                        n=1_000_000, min_n=5_000, d=2, k=8, iters=15, target=1.5, peers=SKLEARN_KMEANS),
    "kmeans": dict(kind="kmeans", desc="KMeans 500k x 16, K=64", dataset="kmeans", n=500_000, min_n=5_000, d=16,
                   k=64, target=1.5, peers=SKLEARN_KMEANS),
    "hmm-diag-long": dict(kind="ghmm", cov="diag", desc="GaussianHMM diag K=10, D=8, 100 x 2000",
                          dataset="ghmm-long", n_seq=100, min_seq=2, seq_len=2_000, d=8, k=10, target=6.0,
                          peers=HMMLEARN),
    "hmm-diag-1seq": dict(kind="ghmm", cov="diag", desc="GaussianHMM diag K=3, D=2, one sequence of 10^6",
                          dataset="ghmm-1seq", n_seq=1, seq_len=1_000_000, min_len=2_000, d=2, k=3, target=3.0,
                          peers=HMMLEARN),
    "hmm-diag-k50": dict(kind="ghmm", cov="diag", desc="GaussianHMM diag K=50, D=8, 100 x 2000",
                         dataset="ghmm-k50", n_seq=100, min_seq=2, seq_len=2_000, d=8, k=50, target=8.0,
                         peer_iters=2, peer_blas="default", peers=HMMLEARN),
    "gmm-diag": dict(kind="gmm", cov="diag", desc="GaussianMixture diag 200k x 10, K=16", dataset="gmm",
                     n=200_000, min_n=2_000, d=10, k=16, target=6.0, peers=SKLEARN),
    "gmm-full-d100": dict(kind="gmm", cov="full", desc="GaussianMixture full 50k x 100, K=8", dataset="gmm-d100",
                          n=50_000, min_n=5_000, d=100, k=8, target=4.0, peers=SKLEARN),
    "gmm-full": dict(kind="gmm", cov="full", desc="GaussianMixture full 200k x 10, K=16", dataset="gmm",
                     n=200_000, min_n=2_000, d=10, k=16, target=10.0, peers=SKLEARN),
    "cold-gmm": dict(kind="cold", desc="first fit, fresh process, empty numba cache: GaussianMixture faithful K=2",
                     case="gmm", target=1.0, peers=SKLEARN),
    "cold-hmm": dict(kind="cold", desc="same, GaussianHMM 10 x 200, K=3", case="hmm", target=1.0,
                     peers=HMMLEARN),
    "cold-cli-fit": dict(kind="cold", desc="same, `emkit fit --example faithful -k 2`", case="cli-fit",
                         target=None, peers=[]),
    "cold-cli-help": dict(kind="cold", desc="same, `emkit --help`", case="cli-help", target=None, peers=[]),
    "gmm-spherical": dict(kind="gmm", cov="spherical", desc="GaussianMixture spherical 200k x 10, K=16",
                          dataset="gmm", n=200_000, min_n=2_000, d=10, k=16, target=5.0, peers=SKLEARN),
    "gmm-tied": dict(kind="gmm", cov="tied", desc="GaussianMixture tied 200k x 10, K=16", dataset="gmm",
                     n=200_000, min_n=2_000, d=10, k=16, target=5.0, peers=SKLEARN),
    "hmm-full-long": dict(kind="ghmm", cov="full", desc="GaussianHMM full K=10, D=8, 100 x 2000",
                          dataset="ghmm-long", n_seq=100, min_seq=2, seq_len=2_000, d=8, k=10, target=None,
                          peers=HMMLEARN),
    "hmm-diag-short": dict(kind="ghmm", cov="diag", desc="GaussianHMM diag K=10, D=8, 4000 x 50",
                           dataset="ghmm-short", n_seq=4_000, min_seq=8, seq_len=50, d=8, k=10, target=None,
                           peers=HMMLEARN),
    "poisson-hmm": dict(kind="phmm", desc="PoissonHMM K=10, D=8, 100 x 2000", dataset="phmm", n_seq=100,
                        min_seq=2, seq_len=2_000, d=8, k=10, target=None, peers=HMMLEARN),
    "categorical-hmm": dict(kind="chmm", desc="CategoricalHMM K=10, 20 symbols, 100 x 2000", dataset="chmm",
                            n_seq=100, min_seq=2, seq_len=2_000, d=1, k=10, n_symbols=20, target=None,
                            peers=HMMLEARN),
    "gmm-memory": dict(kind="memory", cov="full", desc="GaussianMixture full 2M x 10: peak memory over the data",
                       dataset="gmm-memory", n=2_000_000, min_n=2_000, d=10, k=16, iters=2,
                       budget_mb=MEMORY_BUDGET_MB),
    "import-time": dict(kind="import", desc="import emkit", target_s=IMPORT_TARGET_S),
    "threads": dict(kind="threads", desc="1 thread == 2 threads"),
}

TIMED_KINDS = ("gmm", "kmeans", "ghmm", "phmm", "chmm")

# Seeds: one for the data of each dataset, one for the starting parameters.
DATA_SEEDS = {"gmm": 11, "gmm-memory": 11, "kmeans": 12, "ghmm-long": 13, "ghmm-short": 14, "phmm": 15, "chmm": 16,
              "threads-gmm": 17, "threads-hmm": 18, "kmeans-lowd": 19, "ghmm-1seq": 20, "ghmm-k50": 21,
              "gmm-d100": 24, "cold-hmm": 23}
INIT_SEED_OFFSET = 1000

METHODS = {
    "time_per_iteration": (
        "Each configuration runs in one fresh worker process: emkit and every setting of every peer fit identical "
        "data from identical starting parameters.  Each first fits a small slice (numba compilation or cache "
        "loading, lazy imports), then, --repeat times and interleaved (the order rotates every repeat), fits the "
        "full data with max_iter=1 and with max_iter=n.  'ms/it' is the median fit time with n iterations / n "
        "(fixed per-fit costs such as validation and the final E-step amortised over n iterations); 'marginal' "
        "is (median T(n) - median T(1)) / (n - 1), the cost of one more iteration with fixed costs removed."),
    "peers": (
        "scikit-learn GaussianMixture: tol=0, same reg_covar, weights_init/means_init/precisions_init given and "
        "init_params='random_from_data' (cheapest; overridden by the given start).  KMeans: algorithm 'lloyd' and "
        "'elkan' both timed, n_init=1, tol=0, init=the starting centres.  hmmlearn: implementation 'scaling' and "
        "'log' both timed, tol=-inf, init_params='', parameters set as attributes, maximum-likelihood priors; "
        "emkit HMMs with reg_covar=0.  Every peer setting is timed with the library's default BLAS threading and "
        "with 1 BLAS thread (threadpoolctl; OpenMP pools such as scikit-learn's k-means are untouched); the "
        "fastest (setting, threading) is the peer of the ratio.  dynamax and pomegranate are not timed."),
    "memory": (
        "emkit peak MB: the largest increase of the peak resident memory (VmHWM, reset just before each fit by "
        "writing 5 to /proc/self/clear_refs) over the resident memory before that fit, across emkit's full-size "
        "fits.  gmm-memory: the same for one 2-iteration emkit fit of a 2,000,000 x 10 full GMM in its own "
        "process; the target is an increase below 300 MB."),
    "agreement": (
        "|lower_bound_emkit - lower_bound_peer| / |lower_bound_peer| after the same number of iterations (mean "
        "log-likelihood per sample / per frame; k-means: final inertia), the worst over every peer setting.  Must "
        "be <= 1e-6."),
    "cold": (
        "Wall time of a whole fresh `python -c ...` process (interpreter start-up, imports, loading the data with "
        "numpy, one fit with default settings and random_state=0) with NUMBA_CACHE_DIR pointing at a new empty "
        "folder; median of --repeat interleaved runs.  'warm' is the same process run again with the cache that "
        "the cold run filled.  Ratio = peer / emkit (>= 1: emkit's first fit is no slower)."),
    "threads": (
        "gmm-full (20,000 x 10, K=16) and hmm-diag (20 x 1,000 frames, K=10) fitted in fresh processes with "
        "NUMBA_NUM_THREADS / EMKIT_NUM_THREADS / OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS = 1 and "
        "= 2; 'equal' means the final lower bounds are bitwise identical (fitted parameters compared too)."),
    "import_time": "Wall time of a fresh `python -c \"import emkit\"` (interpreter start-up included), best of 3.",
}


# ----------------------------------------------------------------------------------------------
# Synthetic data and starting parameters (numpy only; identical in every worker)
# ----------------------------------------------------------------------------------------------

def _scaled(cfg, scale):
    if "n" in cfg:
        return max(int(cfg["min_n"]), int(round(cfg["n"] * scale)))
    return max(int(cfg["min_seq"]), int(round(cfg["n_seq"] * scale)))


def make_gmm_data(n, d, k, seed):
    """Well-separated Gaussian clusters with random full covariances, (n, d) float64."""
    import numpy as np

    rng = np.random.default_rng(seed)
    means = rng.normal(scale=6.0, size=(k, d))
    weights = rng.dirichlet(np.full(k, 5.0))
    labels = rng.choice(k, size=n, p=weights)
    X = rng.standard_normal((n, d))  # transformed in place, cluster by cluster (no n x d temporaries)
    for j in range(k):
        A = rng.normal(scale=0.35, size=(d, d)) + np.eye(d) * rng.uniform(0.6, 1.4)
        idx = np.flatnonzero(labels == j)
        for s in range(0, idx.size, 65536):
            part = idx[s:s + 65536]
            X[part] = X[part] @ A.T + means[j]
    return X


def gmm_start(X, k, cov, seed):
    """Starting parameters: uniform weights, K random rows as means, data (co)variance for every component."""
    import numpy as np

    rng = np.random.default_rng(seed)
    d = X.shape[1]
    means = np.array(X[np.sort(rng.choice(X.shape[0], size=k, replace=False))], dtype=np.float64)
    weights = np.full(k, 1.0 / k)
    C = np.cov(X[: min(X.shape[0], 200_000)].T)
    if cov == "full":
        precisions = np.tile(np.linalg.inv(C), (k, 1, 1))
    elif cov == "tied":
        precisions = np.linalg.inv(C)
    elif cov == "diag":
        precisions = np.tile(1.0 / np.diag(C), (k, 1))
    else:
        precisions = np.full(k, 1.0 / np.diag(C).mean())
    return dict(weights=weights, means=means, precisions=precisions)


def make_kmeans_data(n, d, k, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d))
    labels = rng.integers(0, k, size=n)
    X = rng.standard_normal((n, d))
    X += centres[labels]
    return X


def kmeans_start(X, k, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    return dict(centres=np.array(X[np.sort(rng.choice(X.shape[0], size=k, replace=False))], dtype=np.float64))


def sample_chain(rng, startprob, transmat, n_seq, seq_len):
    """State paths (n_seq, seq_len), sampled for all sequences at once."""
    import numpy as np

    k = startprob.size
    cdf = np.cumsum(transmat, axis=1)
    cdf[:, -1] = 1.0
    states = np.empty((n_seq, seq_len), dtype=np.int64)
    states[:, 0] = rng.choice(k, size=n_seq, p=startprob)
    u = rng.random((n_seq, seq_len))
    if n_seq == 1:  # one long sequence: a scalar loop (same draws, same states as the vectorised one)
        from bisect import bisect_left

        rows = cdf.tolist()
        path = [int(states[0, 0])]
        s = path[0]
        for x in u[0, 1:].tolist():
            s = min(bisect_left(rows[s], x), k - 1)
            path.append(s)
        return np.asarray(path, dtype=np.int64)
    for t in range(1, seq_len):
        states[:, t] = np.minimum((u[:, t, None] > cdf[states[:, t - 1]]).sum(axis=1), k - 1)
    return states.ravel()


def make_hmm_data(kind, n_seq, seq_len, d, k, seed, n_symbols=None):
    """Sticky chain with well-separated emissions: X (n_seq*seq_len, d), lengths (n_seq,)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    startprob = rng.dirichlet(np.full(k, 2.0))
    transmat = 0.9 * np.eye(k) + 0.1 * rng.dirichlet(np.ones(k), size=k)
    z = sample_chain(rng, startprob, transmat, n_seq, seq_len)
    n = z.size
    if kind == "ghmm":
        means = rng.normal(scale=3.0, size=(k, d))
        sds = rng.uniform(0.6, 1.3, size=(k, d))
        X = rng.standard_normal((n, d)) * sds[z] + means[z]
    elif kind == "phmm":
        lambdas = rng.uniform(0.5, 15.0, size=(k, d))
        X = rng.poisson(lambdas[z]).astype(np.int64)
    else:
        emission = rng.dirichlet(np.full(n_symbols, 0.3), size=k)
        cdf = np.cumsum(emission, axis=1)
        cdf[:, -1] = 1.0
        X = np.minimum((rng.random(n)[:, None] > cdf[z]).sum(axis=1), n_symbols - 1).astype(np.int64)[:, None]
    return X, np.full(n_seq, seq_len, dtype=np.int64)


def hmm_start(kind, X, k, seed, cov=None, n_symbols=None):
    """Starting parameters: uniform start, mildly sticky transitions, emissions from K random rows / data."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n, d = X.shape
    start = dict(startprob=np.full(k, 1.0 / k), transmat=0.5 * np.eye(k) + 0.5 / k)
    rows = np.sort(rng.choice(n, size=k, replace=False))
    if kind == "ghmm":
        start["means"] = np.array(X[rows], dtype=np.float64)
        if cov == "full":
            start["covars"] = np.tile(np.cov(X.T), (k, 1, 1))
        else:
            start["covars"] = np.tile(X.var(axis=0), (k, 1))
    elif kind == "phmm":
        start["lambdas"] = 0.5 * (X[rows].astype(np.float64) + X.mean(axis=0))
    else:
        freq = np.bincount(X[:, 0], minlength=n_symbols) / n
        e = 0.5 * rng.dirichlet(np.ones(n_symbols), size=k) + 0.5 * freq
        start["emissionprob"] = e / e.sum(axis=1, keepdims=True)
    return start


def _scaled(cfg, scale):
    """(rows or number of sequences, sequence length or None) after --scale."""
    if "n" in cfg:
        return max(int(cfg["min_n"]), int(round(cfg["n"] * scale))), None
    if cfg["n_seq"] == 1:
        return 1, max(int(cfg["min_len"]), int(round(cfg["seq_len"] * scale)))
    return max(int(cfg["min_seq"]), int(round(cfg["n_seq"] * scale))), cfg["seq_len"]


def make_problem(name, scale):
    """(data, start) of a timed configuration: data is {'X', 'lengths'?}."""
    cfg = CONFIGS[name]
    kind = cfg["kind"]
    size, seq_len = _scaled(cfg, scale)
    seed = DATA_SEEDS[cfg["dataset"]]
    if kind in ("gmm", "memory"):
        X = make_gmm_data(size, cfg["d"], cfg["k"], seed)
        return {"X": X}, gmm_start(X, cfg["k"], cfg["cov"], seed + INIT_SEED_OFFSET)
    if kind == "kmeans":
        X = make_kmeans_data(size, cfg["d"], cfg["k"], seed)
        return {"X": X}, kmeans_start(X, cfg["k"], seed + INIT_SEED_OFFSET)
    X, lengths = make_hmm_data(kind, size, seq_len, cfg["d"], cfg["k"], seed, cfg.get("n_symbols"))
    return ({"X": X, "lengths": lengths},
            hmm_start(kind, X, cfg["k"], seed + INIT_SEED_OFFSET, cfg.get("cov"), cfg.get("n_symbols")))


def small_slice(data, kind):
    """A small piece of the data (same dtypes) for the JIT / lazy-import warm-up."""
    import numpy as np

    if kind in ("gmm", "kmeans", "memory"):
        return {"X": data["X"][:2_000].copy()}
    lengths = data["lengths"]
    if lengths.size == 1:  # one long sequence: its first 2,000 frames
        m = min(2_000, int(lengths[0]))
        return {"X": data["X"][:m].copy(), "lengths": np.array([m], dtype=lengths.dtype)}
    m = 1
    while m < lengths.size and lengths[:m].sum() < 2_000:
        m += 1
    return {"X": data["X"][: int(lengths[:m].sum())].copy(), "lengths": lengths[:m].copy()}


# ----------------------------------------------------------------------------------------------
# Fitting one library once (used inside the workers)
# ----------------------------------------------------------------------------------------------

def build_and_fit(name, library, data, start, n_iter, params=None, blas_threads=None):
    """Fit once with ``library`` ('emkit' or a peer's library) and the peer setting's ``params``.

    Returns (seconds spent in fit(), result dict).  Construction is not timed.  ``blas_threads``:
    limit BLAS to that many threads during the fit (threadpoolctl; entered outside the timer),
    None leaves the library's default.
    """
    import numpy as np

    cfg = CONFIGS[name]
    kind = cfg["kind"]
    k = cfg["k"]
    params = dict(params or {})
    X = data["X"]
    lengths = data.get("lengths")
    c = {key: np.array(v, copy=True) for key, v in start.items()}
    if library == "emkit":
        import emkit

        if kind in ("gmm", "memory"):
            model = emkit.GaussianMixture(k, covariance_type=cfg["cov"], tol=0, reg_covar=1e-6, max_iter=n_iter,
                                          weights_init=c["weights"], means_init=c["means"],
                                          precisions_init=c["precisions"], random_state=0)
            fit = lambda: model.fit(X)  # noqa: E731
        elif kind == "kmeans":
            model = emkit.KMeans(k, init=c["centres"], n_init=1, max_iter=n_iter, tol=0, random_state=0)
            fit = lambda: model.fit(X)  # noqa: E731
        else:
            common = dict(startprob_init=c["startprob"], transmat_init=c["transmat"], max_iter=n_iter, tol=0,
                          random_state=0)
            if kind == "ghmm":
                model = emkit.GaussianHMM(k, covariance_type=cfg["cov"], reg_covar=0.0, means_init=c["means"],
                                          covars_init=c["covars"], **common)
            elif kind == "phmm":
                model = emkit.PoissonHMM(k, lambdas_init=c["lambdas"], **common)
            else:
                model = emkit.CategoricalHMM(k, n_features=cfg["n_symbols"], emissionprob_init=c["emissionprob"],
                                             **common)
            fit = lambda: model.fit(X, lengths)  # noqa: E731
    elif library == "sklearn":
        if kind == "gmm":
            from sklearn.mixture import GaussianMixture

            model = GaussianMixture(k, covariance_type=cfg["cov"], tol=0, reg_covar=1e-6, max_iter=n_iter, n_init=1,
                                    init_params="random_from_data", weights_init=c["weights"], means_init=c["means"],
                                    precisions_init=c["precisions"], random_state=0, **params)
        else:
            from sklearn.cluster import KMeans

            model = KMeans(k, init=c["centres"], n_init=1, max_iter=n_iter, tol=0, random_state=0,
                           **{"algorithm": "lloyd", **params})
        fit = lambda: model.fit(X)  # noqa: E731
    elif library == "hmmlearn":
        from hmmlearn import hmm

        common = dict(n_iter=n_iter, tol=-np.inf, init_params="", random_state=0,
                      **{"implementation": "scaling", **params})
        if kind == "ghmm":
            model = hmm.GaussianHMM(k, covariance_type=cfg["cov"], covars_prior=0.0, covars_weight=1.0,
                                    means_prior=0.0, means_weight=0.0, startprob_prior=1.0, transmat_prior=1.0,
                                    **common)
            model.means_ = c["means"]
            model.covars_ = c["covars"]
        elif kind == "phmm":
            model = hmm.PoissonHMM(k, lambdas_prior=0.0, lambdas_weight=0.0, startprob_prior=1.0, transmat_prior=1.0,
                                   **common)
            model.lambdas_ = c["lambdas"]
        else:
            model = hmm.CategoricalHMM(k, n_features=cfg["n_symbols"], emissionprob_prior=1.0, startprob_prior=1.0,
                                       transmat_prior=1.0, **common)
            model.emissionprob_ = c["emissionprob"]
        model.startprob_ = c["startprob"]
        model.transmat_ = c["transmat"]
        fit = lambda: model.fit(X, lengths)  # noqa: E731
    else:
        raise ValueError(f"unknown library {library!r}")

    if blas_threads is None:
        t0 = time.perf_counter()
        fit()
        seconds = time.perf_counter() - t0
    else:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=blas_threads, user_api="blas"):
            t0 = time.perf_counter()
            fit()
            seconds = time.perf_counter() - t0

    out = {}
    if kind == "kmeans":
        out["n_iter"] = int(model.n_iter_)
        out["objective"] = float(model.inertia_)
        out["objectives"] = None
    elif library == "hmmlearn":
        out["n_iter"] = int(model.monitor_.iter)
        out["objective"] = float(model.monitor_.history[-1]) / X.shape[0]
        out["objectives"] = None
    else:
        out["n_iter"] = int(model.n_iter_)
        out["objectives"] = [float(v) for v in model.lower_bounds_]
        out["objective"] = out["objectives"][-1]
    return seconds, out


# ----------------------------------------------------------------------------------------------
# Memory helpers (Linux /proc)
# ----------------------------------------------------------------------------------------------

def proc_status_kb(field):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    if field == "VmHWM":  # non-Linux fallback: ru_maxrss (kB on Linux, bytes on macOS)
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r // 1024 if sys.platform == "darwin" else r
    return None


class PeakMemory:
    """Peak RSS increase over the RSS at construction (after an attempted high-water-mark reset)."""

    def __init__(self):
        gc.collect()
        self.hwm_reset = reset_peak_rss()
        self.rss_before_kb = proc_status_kb("VmRSS") or 0
        self.hwm_before_kb = proc_status_kb("VmHWM") or 0

    def result(self):
        peak = proc_status_kb("VmHWM") or 0
        base = self.rss_before_kb if self.hwm_reset else max(self.rss_before_kb, self.hwm_before_kb)
        return {"rss_before_mb": self.rss_before_kb / 1024.0, "peak_rss_mb": peak / 1024.0,
                "peak_increase_mb": max(0, peak - base) / 1024.0, "hwm_reset": self.hwm_reset}


# ----------------------------------------------------------------------------------------------
# Workers (run in fresh processes)
# ----------------------------------------------------------------------------------------------

def _quiet():
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)


# ----------------------------------------------------------------------------------------------
# Workers (run in fresh processes)
# ----------------------------------------------------------------------------------------------

def _quiet():
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)


def blas_variants(mode):
    """BLAS-threading variants to time: {label: blas_threads or None}."""
    if mode == "default":
        return {"default": None}
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return {"default": None}
    if mode == "1":
        return {"blas1": 1}
    return {"default": None, "blas1": 1}


def library_available(library):
    import importlib.util

    return library == "emkit" or importlib.util.find_spec(library) is not None


def config_iters(cfg, args):
    return args.iters if args.iters is not None else cfg.get("iters", DEFAULT_ITERS)


def peer_iters(cfg, args, n_iter):
    caps = [c for c in (cfg.get("peer_iters"), args.peer_iters) if c]
    return min([n_iter] + caps)


def timed_variants(cfg, args):
    """Everything the worker times: [{label, library, setting, params, blas}], emkit first."""
    out = [dict(label=f"emkit/{b}", library="emkit", setting="emkit", params={}, blas=t)
           for b, t in blas_variants(args.emkit_blas).items()]
    if args.no_peers:
        return out
    for peer in cfg["peers"]:
        if not library_available(peer["library"]):
            continue
        mode = "default" if cfg.get("peer_blas") == "default" and args.peer_blas == "best" else args.peer_blas
        for b, t in blas_variants(mode).items():
            out.append(dict(label=f"{peer['library']}-{peer['setting']}/{b}", library=peer["library"],
                            setting=peer["setting"], params=peer["params"], blas=t))
    return out


def worker_timed(name, args):
    cfg = CONFIGS[name]
    t0 = time.perf_counter()
    data, start = make_problem(name, args.scale)
    gen_seconds = time.perf_counter() - t0
    n_emkit = config_iters(cfg, args)
    n_peer = peer_iters(cfg, args, n_emkit)
    variants = timed_variants(cfg, args)
    marginal = not args.no_marginal

    # warm-up on a small slice: numba compilation (or cache loading), lazy imports, thread pools
    t0 = time.perf_counter()
    small = small_slice(data, cfg["kind"])
    errors = {}
    for v in variants:
        try:
            build_and_fit(name, v["library"], small, start, 2, v["params"], v["blas"])
        except Exception as exc:  # noqa: BLE001  (a peer that fails is reported, the others still run)
            errors[v["label"]] = f"{type(exc).__name__}: {exc}"
    warmup_seconds = time.perf_counter() - t0
    del small
    variants = [v for v in variants if v["label"] not in errors]

    runs = {v["label"]: {"t1": [], "tn": [], "res_n": None, "peak_mb": 0.0, "hwm_reset": True} for v in variants}
    for r in range(args.repeat):  # interleaved, the order rotating, so that drifts of the machine hit all alike
        shift = r % max(1, len(variants))
        for v in variants[shift:] + variants[:shift]:
            n = n_emkit if v["library"] == "emkit" else n_peer
            run = runs[v["label"]]
            for iters in ((1, n) if marginal and n > 1 else (n,)):
                gc.collect()
                mem = PeakMemory() if v["library"] == "emkit" else None
                s, res = build_and_fit(name, v["library"], data, start, iters, v["params"], v["blas"])
                if mem is not None:
                    m = mem.result()
                    run["peak_mb"] = max(run["peak_mb"], m["peak_increase_mb"])
                    run["hwm_reset"] = run["hwm_reset"] and m["hwm_reset"]
                if iters == n:
                    run["tn"].append(s)
                    run["res_n"] = res
                else:
                    run["t1"].append(s)

    summaries = {}
    for v in variants:
        r = runs[v["label"]]
        done = r["res_n"]["n_iter"]
        med_n = statistics.median(r["tn"])
        med_1 = statistics.median(r["t1"]) if r["t1"] else None
        summaries[v["label"]] = {
            "library": v["library"], "setting": v["setting"], "blas_threads": v["blas"], "n_iter": done,
            "fit_seconds": r["tn"], "fit_seconds_1iter": r["t1"],
            "seconds_per_iter": med_n / done, "min_seconds_per_iter": min(r["tn"]) / done,
            "marginal_seconds_per_iter": (med_n - med_1) / (done - 1) if med_1 is not None and done > 1 else None,
            "objective": r["res_n"]["objective"], "objectives": r["res_n"]["objectives"],
            "memory": {"peak_increase_mb": r["peak_mb"], "hwm_reset": r["hwm_reset"]}
            if v["library"] == "emkit" else None,
        }
    X = data["X"]
    return {"variants": summaries, "errors": errors, "n_iter_requested": {"emkit": n_emkit, "peers": n_peer},
            "data": {"shape": list(X.shape), "dtype": str(X.dtype), "nbytes": int(X.nbytes),
                     "n_sequences": None if "lengths" not in data else int(data["lengths"].size)},
            "data_seconds": gen_seconds, "warmup_seconds": warmup_seconds}


def worker_memory(name, scale):
    """emkit only: peak RSS increase of one 2-iteration fit over the RSS with the data loaded."""
    cfg = CONFIGS[name]
    import numpy as np

    import emkit  # noqa: F401  (import and JIT before the baseline)

    t0 = time.perf_counter()
    warm = make_gmm_data(4_000, cfg["d"], cfg["k"], 0)
    build_and_fit(name, "emkit", {"X": warm}, gmm_start(warm, cfg["k"], cfg["cov"], 1), 2)
    warmup_seconds = time.perf_counter() - t0
    del warm
    data, start = make_problem(name, scale)
    X = data["X"]
    assert X.dtype == np.float64
    mem = PeakMemory()
    seconds, res = build_and_fit(name, "emkit", data, start, cfg["iters"])
    memory = mem.result()
    return {"side": "emkit", "n_iter_requested": cfg["iters"], "n_iter": res["n_iter"], "fit_seconds": [seconds],
            "seconds_per_iter": seconds / res["n_iter"], "objective": res["objective"], "memory": memory,
            "data": {"shape": list(X.shape), "dtype": str(X.dtype), "nbytes": int(X.nbytes)},
            "warmup_seconds": warmup_seconds}


def worker_threads(iters):
    """Small gmm-full and hmm-diag fits; returns exact (hex) lower bounds and parameter digests."""
    import hashlib

    import numpy as np

    import emkit

    def digest(*arrays):
        h = hashlib.sha256()
        for a in arrays:
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    out = {}
    X = make_gmm_data(20_000, 10, 16, DATA_SEEDS["threads-gmm"])
    s = gmm_start(X, 16, "full", DATA_SEEDS["threads-gmm"] + INIT_SEED_OFFSET)
    m = emkit.GaussianMixture(16, covariance_type="full", tol=0, max_iter=iters, weights_init=s["weights"],
                              means_init=s["means"], precisions_init=s["precisions"], random_state=0).fit(X)
    out["gmm-full"] = {"lower_bound": float(m.lower_bound_).hex(), "lower_bounds": [v.hex() for v in
                                                                                  map(float, m.lower_bounds_)],
                       "params": digest(m.weights_, m.means_, m.covariances_)}
    X, lengths = make_hmm_data("ghmm", 20, 1_000, 8, 10, DATA_SEEDS["threads-hmm"])
    s = hmm_start("ghmm", X, 10, DATA_SEEDS["threads-hmm"] + INIT_SEED_OFFSET, "diag")
    m = emkit.GaussianHMM(10, covariance_type="diag", reg_covar=0.0, tol=0, max_iter=iters,
                          startprob_init=s["startprob"], transmat_init=s["transmat"], means_init=s["means"],
                          covars_init=s["covars"], random_state=0).fit(X, lengths)
    out["hmm-diag"] = {"lower_bound": float(m.lower_bound_).hex(), "lower_bounds": [v.hex() for v in
                                                                                  map(float, m.lower_bounds_)],
                       "params": digest(m.startprob_, m.transmat_, m.means_, m.covars_)}
    out["threads_env"] = {k: os.environ.get(k) for k in THREAD_VARS}
    return out


THREAD_VARS = ("NUMBA_NUM_THREADS", "EMKIT_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS")


THREAD_VARS = ("NUMBA_NUM_THREADS", "EMKIT_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS")


def worker_main(args):
    _quiet()
    name = args._worker
    kind = CONFIGS[name]["kind"] if name in CONFIGS else None
    if kind in TIMED_KINDS:
        res = worker_timed(name, args)
    elif kind == "memory":
        res = worker_memory(name, args.scale)
    elif kind == "threads":
        res = worker_threads(max(2, args.iters or DEFAULT_ITERS))
    else:
        raise SystemExit(f"unknown worker {name!r}")
    with open(args._out, "w") as fh:
        json.dump(res, fh)


# ----------------------------------------------------------------------------------------------
# Cold start: whole fresh processes with an empty numba cache
# ----------------------------------------------------------------------------------------------

_COLD_FIT = {
    ("gmm", "emkit"): "import emkit\nT1 = time.perf_counter()\nX = np.loadtxt(DATA, delimiter=',', skiprows=1)\n"
                      "m = emkit.GaussianMixture(2, random_state=0).fit(X)\nOBJ = float(m.lower_bound_)",
    ("gmm", "sklearn"): "from sklearn.mixture import GaussianMixture\nT1 = time.perf_counter()\n"
                        "X = np.loadtxt(DATA, delimiter=',', skiprows=1)\n"
                        "m = GaussianMixture(2, random_state=0).fit(X)\nOBJ = float(m.lower_bound_)",
    ("hmm", "emkit"): "import emkit\nT1 = time.perf_counter()\nd = np.load(DATA)\nX, L = d['X'], d['lengths']\n"
                      "m = emkit.GaussianHMM(3, covariance_type='diag', random_state=0).fit(X, L)\n"
                      "OBJ = float(m.lower_bound_)",
    ("hmm", "hmmlearn"): "from hmmlearn import hmm\nT1 = time.perf_counter()\nd = np.load(DATA)\n"
                         "X, L = d['X'], d['lengths']\n"
                         "m = hmm.GaussianHMM(3, covariance_type='diag', random_state=0, **PARAMS).fit(X, L)\n"
                         "OBJ = float(m.monitor_.history[-1]) / X.shape[0]",
}


def cold_command(case, library, params, data_path, out_dir):
    """argv of one cold-start process; it prints a JSON line {import_seconds, fit_seconds, objective}."""
    if case in ("cli-fit", "cli-help"):
        argv = ["fit", "--example", "faithful", "--model", "gmm", "-k", "2", "--seed", "0", "-o", out_dir] \
            if case == "cli-fit" else ["--help"]
        code = "import sys\nsys.argv[0] = 'emkit'\nfrom emkit.cli import main\nsys.exit(main())"
        return [sys.executable, "-c", code] + argv
    body = _COLD_FIT[(case, library)]
    code = (f"import json, time\nT0 = time.perf_counter()\nimport numpy as np\nDATA = {str(data_path)!r}\n"
            f"PARAMS = {dict(params)!r}\n{body}\nT2 = time.perf_counter()\n"
            "print(json.dumps({'import_seconds': T1 - T0, 'fit_seconds': T2 - T1, 'objective': OBJ}))")
    return [sys.executable, "-c", code]


def cold_data(case, tmp):
    if case == "hmm":
        import numpy as np

        X, lengths = make_hmm_data("ghmm", 10, 200, 2, 3, DATA_SEEDS["cold-hmm"])
        path = os.path.join(tmp, "hmm.npz")
        np.savez(path, X=X, lengths=lengths)
        return path
    return FAITHFUL_CSV


def run_cold(name, args, log):
    """{label: summary} of the cold (and, for emkit, warm) process times of a cold configuration."""
    cfg = CONFIGS[name]
    variants = [dict(label="emkit", library="emkit", setting="emkit", params={})]
    if not args.no_peers:
        variants += [dict(label=f"{p['library']}-{p['setting']}", **p) for p in cfg["peers"]
                     if library_available(p["library"])]
    times = {v["label"]: {"cold": [], "warm": [], "out": None} for v in variants}
    errors = {}
    with tempfile.TemporaryDirectory(prefix="emkit-cold-") as tmp:
        data_path = cold_data(cfg["case"], tmp)
        for r in range(args.repeat):
            shift = r % len(variants)
            for v in variants[shift:] + variants[:shift]:
                if v["label"] in errors:
                    continue
                cache = tempfile.mkdtemp(prefix="numba-cache-", dir=tmp)
                out_dir = tempfile.mkdtemp(prefix="out-", dir=tmp)
                cmd = cold_command(cfg["case"], v["library"], v["params"], data_path, out_dir)
                env = worker_env({"NUMBA_CACHE_DIR": cache})
                for phase in ("cold", "warm") if v["library"] == "emkit" else ("cold",):
                    t0 = time.perf_counter()
                    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp,
                                          timeout=args.timeout)
                    wall = time.perf_counter() - t0
                    if proc.returncode != 0:
                        errors[v["label"]] = f"exit code {proc.returncode}: " + "\n".join(
                            (proc.stderr or proc.stdout).strip().splitlines()[-15:])
                        break
                    times[v["label"]][phase].append(wall)
                    if phase == "cold" and cfg["case"] in ("gmm", "hmm"):
                        times[v["label"]]["out"] = json.loads(proc.stdout.strip().splitlines()[-1])
                shutil.rmtree(cache, ignore_errors=True)
                shutil.rmtree(out_dir, ignore_errors=True)
    summaries = {}
    for v in variants:
        t = times[v["label"]]
        if v["label"] in errors or not t["cold"]:
            continue
        out = t["out"] or {}
        summaries[v["label"]] = {
            "library": v["library"], "setting": v["setting"], "seconds": statistics.median(t["cold"]),
            "all_seconds": t["cold"], "warm_seconds": statistics.median(t["warm"]) if t["warm"] else None,
            "all_warm_seconds": t["warm"], "import_seconds": out.get("import_seconds"),
            "fit_seconds": out.get("fit_seconds"), "objective": out.get("objective")}
        log(f"  {v['label']:<18} cold {summaries[v['label']]['seconds']:6.2f} s"
            + ("" if not t["warm"] else f"  warm {summaries[v['label']]['warm_seconds']:6.2f} s"))
    for label, err in errors.items():
        log(f"  {label}: ERROR {_last_line(err)}")
    return summaries, errors


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

def worker_env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("PYTHONHASHSEED", "0")
    if extra:
        env.update(extra)
    return env


def run_worker(name, side, args, extra_env=None):
    """Run one worker process; returns (result dict or None, error string or None, wall seconds)."""
    with tempfile.TemporaryDirectory(prefix="emkit-bench-") as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", name, "--_side", side, "--_out", out,
               "--repeat", str(args.repeat), "--scale", repr(args.scale), "--peer-blas", args.peer_blas,
               "--emkit-blas", args.emkit_blas]
        for flag, value in (("--iters", args.iters), ("--peer-iters", args.peer_iters)):
            if value:
                cmd += [flag, str(value)]
        cmd += ["--no-peers"] if args.no_peers else []
        cmd += ["--no-marginal"] if args.no_marginal else []
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=worker_env(extra_env), capture_output=True, text=True,
                                  timeout=args.timeout, cwd=str(ROOT))
        except subprocess.TimeoutExpired:
            return None, f"timed out after {args.timeout} s", time.perf_counter() - t0
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
            return None, f"exit code {proc.returncode}: " + "\n".join(tail), wall
        with open(out) as fh:
            return json.load(fh), None, wall


def rel_diff(a, b):
    if a is None or b is None:
        return None
    denom = abs(b) if b != 0 else 1.0
    return abs(a - b) / denom


def measure_import(args):
    def best(code):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code], env=worker_env(), capture_output=True, text=True,
                                  cwd=str(ROOT))
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "import failed")
        return min(times), times

    t, times = best("import emkit")
    t0, _ = best("pass")
    return {"seconds": t, "all_seconds": times, "python_startup_seconds": t0}


def _last_line(err):
    return err.strip().splitlines()[-1] if err and err.strip() else err


def _fastest_by_setting(variants, library_filter):
    """{setting label: the fastest BLAS variant of that setting} among the variants passing the filter."""
    best = {}
    for v in variants.values():
        if not library_filter(v["library"]):
            continue
        key = v["setting"] if v["library"] == "emkit" else f"{v['library']} {v['setting']}"
        if key not in best or v["seconds_per_iter"] < best[key]["seconds_per_iter"]:
            best[key] = dict(v, label=key)
    return best


def new_row(name):
    cfg = CONFIGS[name]
    return {"name": name, "kind": cfg["kind"], "desc": cfg.get("desc", name),
            "config": {k: v for k, v in cfg.items() if k not in ("kind", "peers")},
            "peer_settings": [f"{p['library']} {p['setting']}" for p in cfg.get("peers", [])],
            "error": None, "errors": [], "peer": None, "peers": None, "emkit": None, "ratio": None,
            "ratio_marginal": None, "target": cfg.get("target"), "met": None, "agreement": None,
            "agreement_ok": None, "peers_skipped": None}


def _finish_ratio(row, emkit, peer, key):
    row["ratio"] = peer[key] / emkit[key]
    if row["target"] is not None:
        row["met"] = row["ratio"] >= row["target"]


def run_config(name, args, log):
    cfg = CONFIGS[name]
    kind = cfg["kind"]
    row = new_row(name)
    missing = sorted({p["library"] for p in cfg.get("peers", []) if not library_available(p["library"])})
    if args.no_peers:
        row["peers_skipped"] = "--no-peers"
    elif missing:
        row["peers_skipped"] = ", ".join(missing) + " not installed"
        log(f"  {row['peers_skipped']}: skipped")
    if kind in TIMED_KINDS:
        res, err, wall = run_worker(name, "all", args)
        log(f"  worker   {wall:7.1f} s" + (f"  ERROR {_last_line(err)}" if err else ""))
        if err:
            row["errors"].append(err)
        if res is not None:
            row["errors"] += [f"{label}: {e}" for label, e in res["errors"].items()]
            row["data"] = res["data"]
            emkits = _fastest_by_setting(res["variants"], lambda lib: lib == "emkit")
            peers = _fastest_by_setting(res["variants"], lambda lib: lib != "emkit")
            row["emkit"] = emkits.get("emkit")
            row["peers"] = peers or None
            for label, v in peers.items():
                log(f"  {label:<18} {fmt_ms(v['seconds_per_iter']):>9} ms/it ({v['n_iter']} it)")
            if row["emkit"] is not None:
                log(f"  {'emkit':<18} {fmt_ms(row['emkit']['seconds_per_iter']):>9} ms/it "
                    f"({row['emkit']['n_iter']} it)")
            if row["emkit"] is not None and peers:
                e = row["emkit"]
                row["peer"] = a = min(peers.values(), key=lambda v: v["seconds_per_iter"])
                _finish_ratio(row, e, a, "seconds_per_iter")
                if a.get("marginal_seconds_per_iter") and e.get("marginal_seconds_per_iter") and \
                        a["marginal_seconds_per_iter"] > 0 and e["marginal_seconds_per_iter"] > 0:
                    row["ratio_marginal"] = a["marginal_seconds_per_iter"] / e["marginal_seconds_per_iter"]
                # compare at each peer variant's iteration count, every emkit and peer variant
                diffs = []
                for pv in (v for v in res["variants"].values() if v["library"] != "emkit"):
                    for ev in (v for v in res["variants"].values() if v["library"] == "emkit"):
                        if kind == "kmeans" or ev["objectives"] is None:
                            eo = ev["objective"]
                        else:
                            eo = ev["objectives"][pv["n_iter"] - 1] if pv["n_iter"] <= len(ev["objectives"]) \
                                else None
                        diffs.append(rel_diff(eo, pv["objective"]))
                row["agreement_note"] = "final inertia" if kind == "kmeans" else \
                    f"lower bound at iteration {a['n_iter']}"
                row["agreement"] = None if any(d is None for d in diffs) else max(diffs)
                row["agreement_ok"] = row["agreement"] is not None and row["agreement"] <= AGREEMENT_TOL
    elif kind == "cold":
        summaries, errors = run_cold(name, args, log)
        row["errors"] += [f"{label}: {e}" for label, e in errors.items()]
        row["emkit"] = summaries.pop("emkit", None)
        peers = {f"{v['library']} {v['setting']}": dict(v, label=f"{v['library']} {v['setting']}")
                 for v in summaries.values()}
        row["peers"] = peers or None
        if row["emkit"] is not None and peers:
            row["peer"] = min(peers.values(), key=lambda v: v["seconds"])
            _finish_ratio(row, row["emkit"], row["peer"], "seconds")
    elif kind == "memory":
        res, err, wall = run_worker(name, "emkit", args)
        log(f"  emkit    {wall:7.1f} s" + (f"  ERROR {_last_line(err)}" if err else ""))
        row["emkit"] = res
        if err:
            row["errors"].append(f"emkit: {err}")
        row["target_description"] = f"peak < data + {cfg['budget_mb']:g} MB"
        row["target"] = cfg["budget_mb"]
        if res is not None:
            row["data_mb"] = res["data"]["nbytes"] / MB
            row["met"] = res["memory"]["peak_increase_mb"] < cfg["budget_mb"]
    elif kind == "import":
        row["target"] = cfg["target_s"]
        try:
            row["emkit"] = measure_import(args)
            row["met"] = row["emkit"]["seconds"] < cfg["target_s"]
            log(f"  import emkit {row['emkit']['seconds']:.3f} s (python start-up alone "
                f"{row['emkit']['python_startup_seconds']:.3f} s)")
        except Exception as exc:  # noqa: BLE001
            row["errors"].append(f"import: {exc}")
    elif kind == "threads":
        runs = {}
        for n in (1, 2):
            env = {v: str(n) for v in THREAD_VARS}
            res, err, wall = run_worker(name, f"threads-{n}", args, extra_env=env)
            log(f"  {n} thread(s) {wall:6.1f} s" + (f"  ERROR {_last_line(err)}" if err else ""))
            runs[n] = res
            if err:
                row["errors"].append(f"{n} thread(s): {err}")
        row["emkit"] = runs
        if not row["errors"]:
            cases = {}
            for case in ("gmm-full", "hmm-diag"):
                a, b = runs[1][case], runs[2][case]
                cases[case] = {"lower_bound_equal": a["lower_bound"] == b["lower_bound"],
                               "lower_bounds_equal": a["lower_bounds"] == b["lower_bounds"],
                               "params_equal": a["params"] == b["params"],
                               "lower_bound_1": float.fromhex(a["lower_bound"]),
                               "lower_bound_2": float.fromhex(b["lower_bound"])}
            row["threads"] = cases
            row["met"] = all(c["lower_bound_equal"] for c in cases.values())
    if row["errors"]:
        row["error"] = "; ".join(row["errors"])
    return row


# ----------------------------------------------------------------------------------------------
# Tables (terminal and README)
# ----------------------------------------------------------------------------------------------

def fmt_ms(s):
    if s is None:
        return "-"
    ms = s * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _time_cell(r, side):
    v = r.get(side)
    if v is None:
        return "-"
    if r["kind"] == "cold":
        cell = f"{v['seconds']:.2f} s"
        if side == "emkit" and v.get("warm_seconds") is not None:
            cell += f" (warm {v['warm_seconds']:.2f})"
        return cell
    cell = f"{fmt_ms(v['seconds_per_iter'])} ms"
    other = r.get("emkit") if side == "peer" else None
    if other and v["n_iter"] != other["n_iter"]:
        cell += f" ({v['n_iter']} it)"
    return cell


def _target_cell(r):
    if r["kind"] == "memory":
        return f"< data+{r['target']:g}MB"
    if r["kind"] == "import":
        return f"< {r['target']:g} s"
    if r["kind"] == "threads":
        return "1 == 2 threads"
    return "-" if r["target"] is None else f">= {r['target']:g}x"


def _met_cell(r):
    met = {True: "yes", False: "NO", None: "-"}[r["met"]]
    return "ERROR" if r["error"] and r["met"] is None else met


def table_rows(rows):
    header = ["configuration", "fastest peer", "peer", "emkit", "ratio", "target", "met?", "marginal ratio",
              "emkit peak MB", "agreement"]
    out = [header]
    for r in rows:
        kind, e = r["kind"], r.get("emkit")
        if kind in TIMED_KINDS or kind == "cold":
            peer = r["peer"]["label"] if r.get("peer") else (r.get("peers_skipped") or "-")
            peak = "-"
            if kind != "cold" and e is not None and e.get("memory"):
                peak = f"{e['memory']['peak_increase_mb']:.0f}"
            agree = "-" if r["agreement"] is None else f"{r['agreement']:.1e}" + ("" if r["agreement_ok"] else " FAIL")
            out.append([r["name"], peer, _time_cell(r, "peer"), _time_cell(r, "emkit"),
                        "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", _target_cell(r), _met_cell(r),
                        "-" if r["ratio_marginal"] is None else f"{r['ratio_marginal']:.2f}x", peak, agree])
        elif kind == "memory":
            peak = "-" if e is None else f"{e['memory']['peak_increase_mb']:.0f} (data {r['data_mb']:.0f})"
            out.append([r["name"], "-", "-", "-" if e is None else f"{fmt_ms(e['seconds_per_iter'])} ms", "-",
                        _target_cell(r), _met_cell(r), "-", peak, "-"])
        elif kind == "import":
            out.append([r["name"], "-", "-", "-" if e is None else f"{e['seconds']:.3f} s", "-", _target_cell(r),
                        _met_cell(r), "-", "-", "-"])
        elif kind == "threads":
            eq = "-"
            if r.get("threads"):
                eq = "equal: " + ("yes" if r["met"] else "NO (" + ", ".join(
                    k for k, c in r["threads"].items() if not c["lower_bound_equal"]) + ")")
            out.append([r["name"], "-", "-", eq, "-", _target_cell(r), _met_cell(r), "-", "-", "-"])
    return out


def render_table(rows):
    cells = table_rows(rows)
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for j, row in enumerate(cells):
        parts = [str(c).ljust(widths[i]) if i <= 1 else str(c).rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(parts))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


README_START = "<!-- benchmark table: written by `python benchmarks/run.py --readme`; do not edit by hand -->"
README_END = "<!-- end of benchmark table -->"


def readme_block(doc):
    """Markdown for the README: the speed rows of one run, with the run's machine and settings."""
    info, settings = doc["machine"], doc["settings"]
    rows = [r for r in doc["results"] if r["kind"] in TIMED_KINDS or r["kind"] == "cold"]
    v = info["versions"]
    load = lambda x: "?" if not x else f"{x[0]:.1f}"  # noqa: E731
    agreements = [r["agreement"] for r in rows if r["agreement"] is not None]
    lines = [
        README_START,
        f"Latest run ({info['date'][:10]}, {info['cpu_model']}, {info['cpus_available']} CPUs, load average "
        f"{load(info.get('loadavg_start'))} at the start and {load(info.get('loadavg_end'))} at the end; "
        f"scikit-learn {v.get('scikit-learn')}, hmmlearn {v.get('hmmlearn')}, numpy {v.get('numpy')}).  "
        f"Time per EM iteration (median of {settings['repeat']} interleaved fits of "
        f"{settings['iters'] or DEFAULT_ITERS} iterations unless the row says otherwise, same data and starting "
        f"parameters) against the fastest setting of the peer measured in the same run"
        + (f"; every lower bound agrees with the peer's to {max(agreements):.0e} or better" if agreements else "")
        + ".  Cold rows: a whole fresh process with an empty numba cache (warm: run again with the cache it "
        "filled).",
        "",
        "| configuration | fastest peer setting | peer | emkit | ratio | target |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        peer = r["peer"]["label"] if r.get("peer") else (r.get("peers_skipped") or "-")
        if r["error"] and r.get("emkit") is None:
            peer = "error"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        if r["met"] is False:
            ratio += " (missed)"
        lines.append(f"| {r['desc']} | {peer} | {_time_cell(r, 'peer')} | {_time_cell(r, 'emkit')} | {ratio} | "
                     f"{_target_cell(r).replace('>=', '≥')} |")
    lines.append(README_END)
    return "\n".join(lines) + "\n"


def write_readme(doc, path=README):
    """Replace the marked block of README.md with the table of ``doc`` (atomically)."""
    text = Path(path).read_text(encoding="utf-8")
    i, j = text.find(README_START), text.find(README_END)
    if i < 0 or j < i:
        raise SystemExit(f"{path}: the benchmark table markers are missing")
    j = text.index("\n", j) + 1 if "\n" in text[j:] else len(text)
    new = text[:i] + readme_block(doc) + text[j:]
    sys.path.insert(0, str(SRC))
    from emkit._atomic import atomic_path

    with atomic_path(str(path)) as tmp:
        Path(tmp).write_text(new, encoding="utf-8")


def machine_info():
    cpu = cpu_model()
    cpu = cpu or platform.processor() or platform.machine()
    emkit_version = None
    try:
        m = re.search(r'__version__\s*=\s*"([^"]+)"', (SRC / "emkit" / "__init__.py").read_text())
        emkit_version = m and m.group(1)
    except OSError:
        pass
    git = git_state(ROOT)
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_available": cpus_available(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "versions": {"emkit": emkit_version, "numpy": version("numpy"), "scipy": version("scipy"),
                     "numba": version("numba"), "scikit-learn": version("scikit-learn"),
                     "hmmlearn": version("hmmlearn"), "threadpoolctl": version("threadpoolctl")},
        "git": git,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": {k: os.environ.get(k) for k in THREAD_VARS if os.environ.get(k) is not None},
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="emkit benchmarks against the fastest setting of scikit-learn and "
                                            "hmmlearn.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--only", help="comma-separated configuration names (see --list)")
    p.add_argument("--list", action="store_true", help="list the configurations and exit")
    p.add_argument("--iters", type=int, default=None,
                   help=f"EM iterations per timed fit for every row (default: the row's own, {DEFAULT_ITERS} "
                        "for most)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved timed fits per measurement; medians kept")
    p.add_argument("--scale", type=float, default=1.0, help="multiply rows / number of sequences by this")
    p.add_argument("--json", default=str(HERE / "results.json"), help="where to write the results")
    p.add_argument("--no-peers", action="store_true", help="time emkit only")
    p.add_argument("--peer-iters", type=int, default=None,
                   help="time the peers with at most this many iterations (agreement is then checked at that "
                        "iteration)")
    p.add_argument("--peer-blas", choices=("best", "default", "1"), default="best",
                   help="BLAS threads of the peers: 'best' times both the library default and 1 BLAS thread "
                        "(threadpoolctl) and keeps the faster")
    p.add_argument("--emkit-blas", choices=("default", "best", "1"), default="default",
                   help="the same for emkit (diagnostic; the default measures emkit as shipped)")
    p.add_argument("--no-marginal", action="store_true", help="skip the 1-iteration fits (no marginal ratio)")
    p.add_argument("--readme", action="store_true",
                   help="rewrite the benchmark table in README.md from this run (full-size runs of every row only)")
    p.add_argument("--from-json", metavar="PATH",
                   help="run nothing: print the table of a saved results file (with --readme: write it)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per worker process")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    p.add_argument("--_side", help=argparse.SUPPRESS)
    p.add_argument("--_out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for flag in ("iters", "peer_iters"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.scale <= 0:
        p.error("--scale must be > 0")
    if args.readme and not args.from_json and (args.only or args.scale != 1.0 or args.no_peers):
        p.error("--readme needs a full run: every configuration, --scale 1, with the peers")
    return args, p


def print_report(doc):
    info, settings, rows = doc["machine"], doc["settings"], doc["results"]
    v = info["versions"]
    print()
    print(f"emkit {v['emkit']} vs scikit-learn {v['scikit-learn']} / hmmlearn {v['hmmlearn']}; "
          f"{info['cpu_model']}, {info['cpus_available']} CPU(s); load {info.get('loadavg_start')} -> "
          f"{info.get('loadavg_end')}; iters={settings['iters'] or 'per row'}, repeat={settings['repeat']}, "
          f"scale={settings['scale']:g}")
    print(render_table(rows))
    print()
    print("peer / emkit: median fit time / iterations (ms per iteration; cold rows: seconds per fresh process);")
    print("ratio = fastest peer setting / emkit, measured in the same run; marginal ratio: the same with")
    print("(T(n) - T(1)) / (n - 1), fixed per-fit costs removed; emkit peak MB: peak RSS increase of emkit's fits;")
    print(f"agreement: relative difference of the lower bound (k-means: inertia), must be <= {AGREEMENT_TOL:g}.  "
          "Details: benchmarks/README.md")
    notes = []
    for r in rows:
        if r.get("peers") and len(r["peers"]) > 1:
            notes.append(f"{r['name']}: " + ", ".join(
                f"{label} {_time_cell(dict(r, peer=p), 'peer')}" for label, p in r["peers"].items()))
        if r["error"]:
            notes.append(f"{r['name']}: ERROR " + " | ".join(_last_line(e) for e in r["errors"]))
    if notes:
        print()
        print("\n".join(notes))
    s = doc["summary"]
    print(f"\n{s['targets_met']}/{s['targets_measured']} targets met; total {s['total_seconds']:.0f} s")


def main(argv=None):
    args, parser = parse_args(argv)
    if args._worker:
        worker_main(args)
        return 0
    if args.list:
        for name, cfg in CONFIGS.items():
            print(f"{name:<16} {cfg['kind']:<7} {cfg.get('desc', '')}")
        return 0
    if args.from_json:
        with open(args.from_json) as fh:
            doc = json.load(fh)
        print_report(doc)
        if args.readme:
            write_readme(doc)
            print(f"README table rewritten from {args.from_json}")
        return 0
    names = list(CONFIGS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in CONFIGS]
        if unknown:
            parser.error(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    info = machine_info()
    log(f"emkit benchmarks: {len(names)} configuration(s), iters={args.iters or 'per row'}, repeat={args.repeat}, "
        f"scale={args.scale:g}, peers={'no' if args.no_peers else 'yes'}; {info['cpu_model']}, "
        f"{info['cpus_available']} CPU(s), load {info['loadavg_start']}")
    t_start = time.perf_counter()
    rows = []
    for i, name in enumerate(names, 1):
        log(f"[{i}/{len(names)}] {name}: {CONFIGS[name].get('desc', '')}")
        rows.append(run_config(name, args, log))
    total = time.perf_counter() - t_start
    info["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    timed = [r for r in rows if r["met"] is not None]
    summary = {"targets_met": sum(bool(r["met"]) for r in timed), "targets_measured": len(timed),
               "errors": [r["name"] for r in rows if r["error"]],
               "agreement_failures": [r["name"] for r in rows if r["agreement_ok"] is False],
               "total_seconds": total}
    doc = {"machine": info,
           "settings": {"iters": args.iters, "repeat": args.repeat, "scale": args.scale,
                        "peers": not args.no_peers, "peer_iters": args.peer_iters, "peer_blas": args.peer_blas,
                        "emkit_blas": args.emkit_blas, "agreement_tolerance": AGREEMENT_TOL,
                        "argv": sys.argv[1:] if argv is None else list(argv)},
           "methods": METHODS,
           "configurations": names,
           "results": rows,
           "summary": summary}
    doc["table"] = render_table(rows)
    print_report(doc)
    path = Path(args.json)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1)
    print(f"results written to {path}")
    if args.readme:
        write_readme(doc)
        print(f"README table rewritten ({README})")
    if summary["errors"]:
        return 1
    if summary["agreement_failures"]:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
