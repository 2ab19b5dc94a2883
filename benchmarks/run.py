#!/usr/bin/env python
"""emkit benchmark harness: emkit against scikit-learn and hmmlearn on fixed synthetic problems.

Run from the repository root::

    PYTHONPATH=src python benchmarks/run.py                 # everything, about 5-10 minutes
    PYTHONPATH=src python benchmarks/run.py --only gmm-full,kmeans --iters 10
    PYTHONPATH=src python benchmarks/run.py --scale 0.01 --iters 2 --repeat 1   # smoke run

Every (configuration, library) pair runs in its own fresh Python process (the "worker"),
so that peak-memory numbers and thread pools do not leak from one measurement into the
next and neither library is imported next to the other.  The driver (this process) only
starts workers, collects their JSON answers, prints the table and writes the JSON file.

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

AGREEMENT_TOL = 1e-6
MEMORY_BUDGET_MB = 300.0
IMPORT_TARGET_S = 1.0
MB = 1024.0 * 1024.0

# ----------------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------------
#
# kind        what is fitted
# n / n_seq   rows (mixtures, k-means) or number of sequences (HMMs); multiplied by --scale
# min_*       floor after scaling (keeps tiny smoke runs well-posed)
# dataset     configurations with the same dataset name fit exactly the same data
# target      minimum speed-up (anchor time / emkit time per iteration)

CONFIGS = {
    "gmm-full": dict(kind="gmm", cov="full", dataset="gmm", n=200_000, min_n=2_000, d=10, k=16, target=10.0,
                     anchor="sklearn"),
    "gmm-diag": dict(kind="gmm", cov="diag", dataset="gmm", n=200_000, min_n=2_000, d=10, k=16, target=5.0,
                     anchor="sklearn"),
    "gmm-spherical": dict(kind="gmm", cov="spherical", dataset="gmm", n=200_000, min_n=2_000, d=10, k=16,
                          target=5.0, anchor="sklearn"),
    "gmm-tied": dict(kind="gmm", cov="tied", dataset="gmm", n=200_000, min_n=2_000, d=10, k=16, target=5.0,
                     anchor="sklearn"),
    "kmeans": dict(kind="kmeans", dataset="kmeans", n=500_000, min_n=5_000, d=16, k=64, target=1.5,
                   anchor="sklearn"),
    "hmm-diag-long": dict(kind="ghmm", cov="diag", dataset="ghmm-long", n_seq=100, min_seq=2, seq_len=2_000,
                          d=8, k=10, target=30.0, anchor="hmmlearn"),
    "hmm-full-long": dict(kind="ghmm", cov="full", dataset="ghmm-long", n_seq=100, min_seq=2, seq_len=2_000,
                          d=8, k=10, target=30.0, anchor="hmmlearn"),
    "hmm-diag-short": dict(kind="ghmm", cov="diag", dataset="ghmm-short", n_seq=4_000, min_seq=8, seq_len=50,
                           d=8, k=10, target=30.0, anchor="hmmlearn"),
    "poisson-hmm": dict(kind="phmm", dataset="phmm", n_seq=100, min_seq=2, seq_len=2_000, d=8, k=10,
                        target=20.0, anchor="hmmlearn"),
    "categorical-hmm": dict(kind="chmm", dataset="chmm", n_seq=100, min_seq=2, seq_len=2_000, d=1, k=10,
                            n_symbols=20, target=20.0, anchor="hmmlearn"),
    "gmm-memory": dict(kind="memory", cov="full", dataset="gmm-memory", n=2_000_000, min_n=2_000, d=10, k=16,
                       iters=2, budget_mb=MEMORY_BUDGET_MB),
    "import-time": dict(kind="import", target_s=IMPORT_TARGET_S),
    "threads": dict(kind="threads"),
}

TIMED_KINDS = ("gmm", "kmeans", "ghmm", "phmm", "chmm")

# Seeds: one for the data of each dataset, one for the starting parameters.
DATA_SEEDS = {"gmm": 11, "gmm-memory": 11, "kmeans": 12, "ghmm-long": 13, "ghmm-short": 14, "phmm": 15, "chmm": 16,
              "threads-gmm": 17, "threads-hmm": 18}
INIT_SEED_OFFSET = 1000

METHODS = {
    "time_per_iteration": (
        "Each (configuration, library) runs in a fresh worker process on identical data and identical starting "
        "parameters.  The worker first fits a small slice of the data (triggers numba JIT compilation / lazy "
        "imports), then, --repeat times, fits the full data with max_iter=1 and with max_iter=n.  'time per "
        "iteration' is min(fit time with n iterations) / n, i.e. fixed per-fit costs (validation, initialisation, "
        "a final E-step) are amortised over n iterations.  'marginal' is (min T(n) - min T(1)) / (n - 1): the "
        "cost of one more iteration with fixed costs removed (noisier for small n)."),
    "memory": (
        "Peak resident memory (VmHWM from /proc/self/status) while the library's full-size fits run, minus the "
        "resident memory (VmRSS) just before them, after the data and starting parameters exist and after the "
        "JIT warm-up.  The high-water mark is reset just before the fits by writing 5 to /proc/self/clear_refs "
        "(if that is not permitted, the increase is over the pre-fit high-water mark, a lower bound).  Counts "
        "everything the process maps: numpy, numba, BLAS and thread-pool allocations (tracemalloc would miss "
        "them).  gmm-memory: the same for one 2-iteration emkit fit of a 2,000,000 x 10 full GMM; the target is "
        "an increase below 300 MB (peak < data + 300 MB)."),
    "agreement": (
        "|lower_bound_emkit - lower_bound_anchor| / |lower_bound_anchor| after the same number of iterations "
        "(mean log-likelihood per sample / per frame; k-means: final inertia).  Must be <= 1e-6."),
    "anchors": (
        "scikit-learn: tol=0, same reg_covar, weights_init/means_init/precisions_init given and "
        "init_params='random_from_data' (the cheapest initialisation; its result is overridden by the given "
        "starting parameters); KMeans algorithm='lloyd', n_init=1, tol=0, init=the starting centres.  "
        "hmmlearn: tol=-inf, init_params='', parameters set as attributes, covars_prior=0, covars_weight=1, "
        "means_weight=0 (maximum likelihood), startprob/transmat/emissionprob priors 1 (maximum likelihood), "
        "lambdas prior 0; emkit HMMs with reg_covar=0."),
    "anchor_threads": (
        "With --anchor-blas best (default) every anchor fit is timed twice per repeat, interleaved: with the "
        "library's default BLAS threading and with BLAS limited to 1 thread (threadpoolctl; OpenMP pools such as "
        "scikit-learn's k-means are untouched), and the faster variant is reported.  On a busy 2-core machine "
        "multi-threaded OpenBLAS can be 5-20x slower on the anchors' small matrix products, which would flatter "
        "emkit.  emkit runs with its own defaults unless --emkit-blas says otherwise.  Agreement is checked for "
        "every variant."),
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


def make_problem(name, scale):
    """(data, start) of a timed configuration: data is {'X', 'lengths'?}."""
    cfg = CONFIGS[name]
    kind = cfg["kind"]
    size = _scaled(cfg, scale)
    seed = DATA_SEEDS[cfg["dataset"]]
    if kind in ("gmm", "memory"):
        X = make_gmm_data(size, cfg["d"], cfg["k"], seed)
        return {"X": X}, gmm_start(X, cfg["k"], cfg["cov"], seed + INIT_SEED_OFFSET)
    if kind == "kmeans":
        X = make_kmeans_data(size, cfg["d"], cfg["k"], seed)
        return {"X": X}, kmeans_start(X, cfg["k"], seed + INIT_SEED_OFFSET)
    X, lengths = make_hmm_data(kind, size, cfg["seq_len"], cfg["d"], cfg["k"], seed, cfg.get("n_symbols"))
    return ({"X": X, "lengths": lengths},
            hmm_start(kind, X, cfg["k"], seed + INIT_SEED_OFFSET, cfg.get("cov"), cfg.get("n_symbols")))


def small_slice(data, kind):
    """A small piece of the data (same dtypes) for the JIT / lazy-import warm-up."""
    if kind in ("gmm", "kmeans", "memory"):
        return {"X": data["X"][:2_000].copy()}
    lengths = data["lengths"]
    m = 1
    while m < lengths.size and lengths[:m].sum() < 2_000:
        m += 1
    return {"X": data["X"][: int(lengths[:m].sum())].copy(), "lengths": lengths[:m].copy()}


# ----------------------------------------------------------------------------------------------
# Fitting one library once (used inside the workers)
# ----------------------------------------------------------------------------------------------

def build_and_fit(name, side, data, start, n_iter, hmmlearn_impl="scaling", blas_threads=None):
    """Fit once; returns (seconds spent in fit(), result dict).

    Construction is not timed.  ``blas_threads``: limit BLAS to that many threads during the fit
    (threadpoolctl; entered outside the timer), None leaves the library's default.
    """
    import numpy as np

    cfg = CONFIGS[name]
    kind = cfg["kind"]
    k = cfg["k"]
    X = data["X"]
    lengths = data.get("lengths")
    c = {key: np.array(v, copy=True) for key, v in start.items()}
    if side == "emkit":
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
    elif side == "sklearn":
        if kind == "gmm":
            from sklearn.mixture import GaussianMixture

            model = GaussianMixture(k, covariance_type=cfg["cov"], tol=0, reg_covar=1e-6, max_iter=n_iter, n_init=1,
                                    init_params="random_from_data", weights_init=c["weights"], means_init=c["means"],
                                    precisions_init=c["precisions"], random_state=0)
        else:
            from sklearn.cluster import KMeans

            model = KMeans(k, init=c["centres"], n_init=1, max_iter=n_iter, tol=0, algorithm="lloyd", random_state=0)
        fit = lambda: model.fit(X)  # noqa: E731
    elif side == "hmmlearn":
        from hmmlearn import hmm

        common = dict(n_iter=n_iter, tol=-np.inf, init_params="", implementation=hmmlearn_impl, random_state=0)
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
        raise ValueError(side)

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
    elif side == "hmmlearn":
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


def worker_timed(name, side, iters, repeat, scale, hmmlearn_impl, anchor_iters, anchor_blas="best",
                 emkit_blas="default"):
    cfg = CONFIGS[name]
    t0 = time.perf_counter()
    data, start = make_problem(name, scale)
    gen_seconds = time.perf_counter() - t0
    n_iter = iters if side == "emkit" else min(iters, anchor_iters or iters)
    variants = blas_variants(emkit_blas if side == "emkit" else anchor_blas)

    # warm-up on a small slice: numba compilation (or cache loading), lazy imports, thread pools
    t0 = time.perf_counter()
    small = small_slice(data, cfg["kind"])
    for blas in variants.values():
        build_and_fit(name, side, small, start, max(2, min(n_iter, 3)), hmmlearn_impl, blas)
    warmup_seconds = time.perf_counter() - t0
    del small

    mem = PeakMemory()
    runs = {label: {"t1": [], "tn": [], "res_n": None} for label in variants}
    for _ in range(repeat):  # variants interleaved so that slow drifts of the machine hit them alike
        for label, blas in variants.items():
            s, _ = build_and_fit(name, side, data, start, 1, hmmlearn_impl, blas)
            runs[label]["t1"].append(s)
            gc.collect()
            s, res = build_and_fit(name, side, data, start, n_iter, hmmlearn_impl, blas)
            runs[label]["tn"].append(s)
            runs[label]["res_n"] = res
            gc.collect()
    memory = mem.result()

    summaries = {}
    for label, r in runs.items():
        done = r["res_n"]["n_iter"]
        best_n, best_1 = min(r["tn"]), min(r["t1"])
        summaries[label] = {
            "blas_threads": variants[label],
            "n_iter": done,
            "fit_seconds": r["tn"],
            "fit_seconds_1iter": r["t1"],
            "seconds_per_iter": best_n / done,
            "marginal_seconds_per_iter": (best_n - best_1) / (done - 1) if done > 1 else None,
            "objective": r["res_n"]["objective"],
            "objectives": r["res_n"]["objectives"],
        }
    chosen = min(summaries, key=lambda lab: summaries[lab]["seconds_per_iter"])
    X = data["X"]
    out = {"side": side, "n_iter_requested": n_iter, "variant": chosen}
    out.update(summaries[chosen])
    out.update({
        "variants": summaries if len(summaries) > 1 else None,
        "memory": memory,
        "data": {"shape": list(X.shape), "dtype": str(X.dtype), "nbytes": int(X.nbytes),
                 "n_sequences": None if "lengths" not in data else int(data["lengths"].size)},
        "data_seconds": gen_seconds,
        "warmup_seconds": warmup_seconds,
    })
    return out


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


def worker_main(args):
    _quiet()
    name = args._worker
    kind = CONFIGS[name]["kind"] if name in CONFIGS else None
    if kind in TIMED_KINDS:
        res = worker_timed(name, args._side, args.iters, args.repeat, args.scale, args.hmmlearn_impl,
                           args.anchor_iters, args.anchor_blas, args.emkit_blas)
    elif kind == "memory":
        res = worker_memory(name, args.scale)
    elif kind == "threads":
        res = worker_threads(max(2, args.iters))
    else:
        raise SystemExit(f"unknown worker {name!r}")
    with open(args._out, "w") as fh:
        json.dump(res, fh)


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
               "--iters", str(args.iters), "--repeat", str(args.repeat), "--scale", repr(args.scale),
               "--hmmlearn-impl", args.hmmlearn_impl, "--anchor-blas", args.anchor_blas,
               "--emkit-blas", args.emkit_blas]
        if args.anchor_iters:
            cmd += ["--anchor-iters", str(args.anchor_iters)]
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


def anchor_available(anchor):
    import importlib.util

    return importlib.util.find_spec(anchor) is not None


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


def run_config(name, args, log):
    cfg = CONFIGS[name]
    kind = cfg["kind"]
    row = {"name": name, "kind": kind, "config": {k: v for k, v in cfg.items() if k != "kind"}, "error": None,
           "anchor": None, "emkit": None, "ratio": None, "ratio_marginal": None, "target": None, "met": None,
           "agreement": None, "agreement_ok": None}
    if kind in TIMED_KINDS:
        row["target"] = cfg["target"]
        row["target_description"] = f">= {cfg['target']:g}x {cfg['anchor']}"
        res, err, wall = run_worker(name, "emkit", args)
        log(f"  emkit    {wall:7.1f} s" + (f"  ERROR {_last_line(err)}" if err else ""))
        row["emkit"] = res
        errors = [f"emkit: {err}"] if err else []
        anchor = cfg["anchor"]
        if args.no_anchors:
            row["anchor_skipped"] = "--no-anchors"
        elif not anchor_available(anchor):
            row["anchor_skipped"] = f"{anchor} not installed"
            log(f"  {anchor} not installed: skipped")
        else:
            ares, aerr, wall = run_worker(name, anchor, args)
            log(f"  {anchor:<8} {wall:7.1f} s" + (f"  ERROR {_last_line(aerr)}" if aerr else ""))
            row["anchor"] = ares
            if aerr:
                errors.append(f"{anchor}: {aerr}")
            if ares is not None:
                ares["library"] = anchor
                if args.hmmlearn_impl and anchor == "hmmlearn":
                    ares["implementation"] = args.hmmlearn_impl
        if errors:
            row["error"], row["errors"] = "; ".join(errors), errors
        if res is not None and row["anchor"] is not None:
            a = row["anchor"]
            row["ratio"] = a["seconds_per_iter"] / res["seconds_per_iter"]
            if a.get("marginal_seconds_per_iter") and res.get("marginal_seconds_per_iter") and \
                    res["marginal_seconds_per_iter"] > 0 and a["marginal_seconds_per_iter"] > 0:
                row["ratio_marginal"] = a["marginal_seconds_per_iter"] / res["marginal_seconds_per_iter"]
            row["met"] = row["ratio"] >= cfg["target"]
            # compare at the anchor's iteration count (it may be capped below emkit's), every variant
            n_a = a["n_iter"]
            e_objs = []
            for ev in (res.get("variants") or {"x": res}).values():
                if kind == "kmeans" or ev["objectives"] is None:
                    e_objs.append(ev["objective"])
                else:
                    e_objs.append(ev["objectives"][n_a - 1] if n_a <= len(ev["objectives"]) else None)
            if kind == "kmeans":
                row["agreement_note"] = "final inertia"
            else:
                row["agreement_note"] = f"lower bound at iteration {n_a}"
            diffs = [rel_diff(e, av["objective"]) for e in e_objs for av in (a.get("variants") or {"x": a}).values()]
            row["agreement"] = None if any(d is None for d in diffs) else max(diffs)
            row["agreement_ok"] = row["agreement"] is not None and row["agreement"] <= AGREEMENT_TOL
            if kind == "kmeans" and a["n_iter"] != res["n_iter"]:
                row["agreement_note"] += f" (n_iter differs: emkit {res['n_iter']}, anchor {a['n_iter']})"
    elif kind == "memory":
        res, err, wall = run_worker(name, "emkit", args)
        log(f"  emkit    {wall:7.1f} s" + (f"  ERROR {_last_line(err)}" if err else ""))
        row["emkit"] = res
        if err:
            row["error"], row["errors"] = f"emkit: {err}", [f"emkit: {err}"]
        row["target_description"] = f"peak < data + {cfg['budget_mb']:g} MB"
        row["target"] = cfg["budget_mb"]
        if res is not None:
            row["data_mb"] = res["data"]["nbytes"] / MB
            row["met"] = res["memory"]["peak_increase_mb"] < cfg["budget_mb"]
    elif kind == "import":
        row["target_description"] = f"< {cfg['target_s']:g} s"
        row["target"] = cfg["target_s"]
        try:
            row["emkit"] = measure_import(args)
            row["met"] = row["emkit"]["seconds"] < cfg["target_s"]
            log(f"  import emkit {row['emkit']['seconds']:.3f} s (python start-up alone "
                f"{row['emkit']['python_startup_seconds']:.3f} s)")
        except Exception as exc:  # noqa: BLE001
            row["error"], row["errors"] = f"import: {exc}", [f"import: {exc}"]
    elif kind == "threads":
        row["target_description"] = "bitwise equal"
        runs, errors = {}, []
        for n in (1, 2):
            env = {v: str(n) for v in THREAD_VARS}
            res, err, wall = run_worker(name, f"threads-{n}", args, extra_env=env)
            log(f"  {n} thread(s) {wall:6.1f} s" + (f"  ERROR {_last_line(err)}" if err else ""))
            runs[n] = res
            if err:
                errors.append(f"{n} thread(s): {err}")
        row["emkit"] = runs
        if errors:
            row["error"], row["errors"] = "; ".join(errors), errors
        else:
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
    return row


def fmt_ms(s):
    if s is None:
        return "-"
    ms = s * 1e3
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def table_rows(rows):
    header = ["configuration", "anchor ms/it", "emkit ms/it", "ratio", "target", "met?", "marginal ratio",
              "emkit peak MB", "agreement"]
    out = [header]
    for r in rows:
        kind = r["kind"]
        e, a = r.get("emkit"), r.get("anchor")
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        if r["error"] and r["met"] is None:
            met = "ERROR"
        if kind in TIMED_KINDS:
            anchor_col = "-"
            if a is not None:
                anchor_col = fmt_ms(a["seconds_per_iter"])
                if a["n_iter"] != (e or {}).get("n_iter", a["n_iter"]):
                    anchor_col += f" ({a['n_iter']} it)"
            elif r.get("anchor_skipped"):
                anchor_col = "skipped"
            agree = "-" if r["agreement"] is None else f"{r['agreement']:.1e}" + ("" if r["agreement_ok"] else " FAIL")
            out.append([r["name"], anchor_col, fmt_ms(e and e["seconds_per_iter"]),
                        "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", f">= {r['target']:g}x", met,
                        "-" if r["ratio_marginal"] is None else f"{r['ratio_marginal']:.2f}x",
                        "-" if e is None else f"{e['memory']['peak_increase_mb']:.0f}", agree])
        elif kind == "memory":
            peak = "-"
            if e is not None:
                peak = f"{e['memory']['peak_increase_mb']:.0f} (data {r['data_mb']:.0f})"
            out.append([r["name"], "-", fmt_ms(e and e["seconds_per_iter"]), "-", f"< data+{r['target']:g}MB",
                        met, "-", peak, "-"])
        elif kind == "import":
            out.append([r["name"], "-", "-" if e is None else f"{e['seconds']:.3f} s", "-", f"< {r['target']:g} s",
                        met, "-", "-", "-"])
        elif kind == "threads":
            eq = "-"
            if r.get("threads"):
                eq = "equal: " + ("yes" if r["met"] else "NO (" + ", ".join(
                    k for k, c in r["threads"].items() if not c["lower_bound_equal"]) + ")")
            out.append([r["name"], "-", eq, "-", "1 == 2 threads", met, "-", "-", "-"])
    return out


def render_table(rows):
    cells = table_rows(rows)
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for j, row in enumerate(cells):
        parts = [str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(parts))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)




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
    p = argparse.ArgumentParser(description="emkit benchmarks against scikit-learn and hmmlearn.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--only", help="comma-separated configuration names (see --list)")
    p.add_argument("--list", action="store_true", help="list the configurations and exit")
    p.add_argument("--iters", type=int, default=5, help="EM iterations per timed fit")
    p.add_argument("--repeat", type=int, default=3, help="timed fits per measurement; the best is kept")
    p.add_argument("--scale", type=float, default=1.0, help="multiply rows / number of sequences by this")
    p.add_argument("--json", default=str(HERE / "results.json"), help="where to write the results")
    p.add_argument("--no-anchors", action="store_true", help="time emkit only")
    p.add_argument("--anchor-iters", type=int, default=None,
                   help="time the anchors with at most this many iterations (agreement is then checked at that "
                        "iteration); default: --iters")
    p.add_argument("--hmmlearn-impl", choices=("scaling", "log"), default="scaling",
                   help="hmmlearn forward-backward implementation ('scaling' is hmmlearn's faster one)")
    p.add_argument("--anchor-blas", choices=("best", "default", "1"), default="best",
                   help="BLAS threads of the anchors: 'best' times both the library default and 1 BLAS thread "
                        "(threadpoolctl) and keeps the faster")
    p.add_argument("--emkit-blas", choices=("default", "best", "1"), default="default",
                   help="the same for emkit (diagnostic; the default measures emkit as shipped)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per worker process")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    p.add_argument("--_side", help=argparse.SUPPRESS)
    p.add_argument("--_out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.iters < 1:
        p.error("--iters must be >= 1")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.scale <= 0:
        p.error("--scale must be > 0")
    if args.anchor_iters is not None and args.anchor_iters < 1:
        p.error("--anchor-iters must be >= 1")
    return args, p


def main(argv=None):
    args, parser = parse_args(argv)
    if args._worker:
        worker_main(args)
        return 0
    if args.list:
        for name, cfg in CONFIGS.items():
            print(f"{name:<16} {cfg['kind']:<8} " + ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "kind"))
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
    log(f"emkit benchmarks: {len(names)} configuration(s), iters={args.iters}, repeat={args.repeat}, "
        f"scale={args.scale:g}, anchors={'no' if args.no_anchors else 'yes'}; {info['cpu_model']}, "
        f"{info['cpus_available']} CPU(s), load {info['loadavg_start']}")
    t_start = time.perf_counter()
    rows = []
    for i, name in enumerate(names, 1):
        log(f"[{i}/{len(names)}] {name}")
        rows.append(run_config(name, args, log))
    total = time.perf_counter() - t_start
    info["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    table = render_table(rows)
    print()
    print(f"emkit {info['versions']['emkit']} vs scikit-learn {info['versions']['scikit-learn']} / hmmlearn "
          f"{info['versions']['hmmlearn']} (hmmlearn implementation={args.hmmlearn_impl!r}); "
          f"{info['cpu_model']}, {info['cpus_available']} CPU(s); iters={args.iters}, repeat={args.repeat}, "
          f"scale={args.scale:g}")
    print(table)
    print()
    print("ms/it: best-of-repeat fit time / iterations (fixed per-fit costs amortised); ratio = anchor / emkit;")
    print("marginal ratio: the same with (T(n) - T(1)) / (n - 1), i.e. fixed per-fit costs removed;")
    print("emkit peak MB: peak RSS increase during emkit's fits over RSS before them (data already loaded);")
    print(f"agreement: relative difference of the final lower bound (k-means: inertia), must be <= "
          f"{AGREEMENT_TOL:g}.  Details: benchmarks/README.md")
    notes = []
    for side in ("anchor", "emkit"):
        chosen = [f"{r['name']}={r[side]['variant']}" for r in rows
                  if r["kind"] in TIMED_KINDS and r.get(side) and r[side].get("variants")]
        if chosen:
            notes.append(f"{side} BLAS variant used (faster of default / 1 thread): " + ", ".join(chosen))
    for r in rows:
        a = r.get("anchor")
        if a is not None and r.get("emkit") is not None and a["n_iter"] != r["emkit"]["n_iter"]:
            notes.append(f"{r['name']}: anchor timed with {a['n_iter']} iteration(s), emkit with "
                         f"{r['emkit']['n_iter']}; agreement checked at iteration {a['n_iter']}")
        if r["error"]:
            notes.append(f"{r['name']}: ERROR " + " | ".join(e.split(":", 1)[0] + ": " + _last_line(e)
                                                              for e in r.get("errors", [r["error"]])))
    if notes:
        print()
        print("\n".join(notes))
    timed = [r for r in rows if r["met"] is not None]
    summary = {"targets_met": sum(bool(r["met"]) for r in timed), "targets_measured": len(timed),
               "errors": [r["name"] for r in rows if r["error"]],
               "agreement_failures": [r["name"] for r in rows if r["agreement_ok"] is False],
               "total_seconds": total}
    print(f"\n{summary['targets_met']}/{summary['targets_measured']} targets met; total {total:.0f} s")

    doc = {"machine": info,
           "settings": {"iters": args.iters, "repeat": args.repeat, "scale": args.scale,
                        "anchors": not args.no_anchors, "anchor_iters": args.anchor_iters,
                        "hmmlearn_implementation": args.hmmlearn_impl, "anchor_blas": args.anchor_blas,
                        "emkit_blas": args.emkit_blas,
                        "agreement_tolerance": AGREEMENT_TOL,
                        "argv": sys.argv[1:] if argv is None else list(argv)},
           "methods": METHODS,
           "configurations": names,
           "results": rows,
           "summary": summary,
           "table": table}
    path = Path(args.json)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1)
    print(f"results written to {path}")
    if summary["errors"]:
        return 1
    if summary["agreement_failures"]:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
