#!/usr/bin/env python
"""emkit scale benchmarks: out-of-core memory, stochastic vs batch EM, Dask overhead.

Run from the repository root::

    PYTHONPATH=src python benchmarks/scale.py                       # all three targets, full size
    PYTHONPATH=src python benchmarks/scale.py --only dask-overhead --iters 6
    PYTHONPATH=src python benchmarks/scale.py --scale 0.01          # smoke run (seconds)

Targets (see benchmarks/SCALE.md for the method):

``ooc-memory``
    GaussianMixture K=8 (full; diag reported too) fitted on a 20,000,000 x 10 float32 ``.npy``
    file (800 MB) opened with ``np.load(path, mmap_mode="r")``: peak RssAnon < 400 MB.
``online-vs-batch``
    Stochastic EM (3 passes) within 0.5% of converged batch EM's mean log-likelihood per
    sample, for a GaussianMixture (2,000,000 x 5, K=6) and a GaussianHMM (200 x 2,000, K=4).
``dask-overhead``
    GaussianMixture full K=8 D=10 on 10,000,000 rows: seconds per EM iteration on a
    ``dask.distributed`` LocalCluster (2 processes x 1 thread) <= 1.5 x in-process, and the
    fitted parameters equal to 1e-8 relative.

Every target runs in its own fresh Python process (the "worker"); the driver only writes the
data file, starts the workers, collects their JSON answers, prints the table and writes the
JSON results.  Only this file and SCALE.md belong to the scale benchmark.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import platform
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_model, cpus_available, git_state, reset_peak_rss, version  # noqa: E402
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"

TARGETS = ("ooc-memory", "online-vs-batch", "dask-overhead")
MB = 1024.0 * 1024.0

# -- ooc-memory ---------------------------------------------------------------------------------
OOC = dict(n=20_000_000, min_n=20_000, d=10, k=8, iters=3, budget_mb=400.0, seed=11,
           covariance_types=("full", "diag"), gen_chunk=1_000_000, sample_interval=0.02)

# -- online-vs-batch ----------------------------------------------------------------------------
# batch_size: rows (GMM) or frames (HMM) per mini-batch; capped at n / MIN_UPDATES_PER_PASS at
# small --scale so that a pass still has enough updates.
# spread: scale of the random means.  The clusters / states overlap on purpose, so that EM has
# real work to do (batch EM needs hundreds of iterations) and the initial parameters are not
# already within the 0.5% of the answer.  inits: GaussianMixture init_params, one case each.
ONLINE_GMM = dict(n=2_000_000, min_n=20_000, d=5, k=6, seed=21, spread=1.5, cov="full", batch_size=10_000,
                  schedule=dict(kappa=0.6, tau=2.0, min_step=0.0), inits=("kmeans", "k-means++"))
ONLINE_HMM = dict(n_seq=200, min_seq=10, seq_len=2_000, d=3, k=4, seed=31, spread=2.0, cov="diag", batch_size=4_000,
                  schedule=dict(kappa=0.6, tau=2.0, min_step=0.0))
ONLINE = dict(passes=3, gap=0.005, batch_tol=1e-6, batch_max_iter=2000)
MIN_UPDATES_PER_PASS = 20

# -- dask-overhead --------------------------------------------------------------------------------
DASK = dict(n=10_000_000, min_n=80_000, d=10, k=8, blocks=8, iters=5, repeat=3, seed=41, ratio=1.5, agree=1e-8,
            workers=2, threads_per_worker=1)


# ----------------------------------------------------------------------------------------------
# Synthetic data (fixed seeds, well-separated clusters / states)
# ----------------------------------------------------------------------------------------------

def cluster_params(k, d, seed, spread=8.0):
    """Means (k, d), Cholesky factors (k, d, d) of the covariances and weights of a separated mixture."""
    import numpy as np

    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, spread, size=(k, d))
    chols = []
    for _ in range(k):
        A = rng.normal(0.0, 0.3, size=(d, d))
        cov = A @ A.T + np.diag(rng.uniform(0.5, 1.5, size=d))
        chols.append(np.linalg.cholesky(cov))
    weights = rng.dirichlet(np.full(k, 5.0))
    return means, np.stack(chols), weights


def mixture_block(n, d, k, seed, block, dtype="float64", spread=8.0):
    """Rows of block ``block`` of the mixture with parameters ``cluster_params(k, d, seed)``.

    Every block draws from its own stream (seed, block), so a dataset made of blocks is the
    same whether the blocks are made in one process, in chunks, or on Dask workers.
    """
    import numpy as np

    means, chols, weights = cluster_params(k, d, seed, spread)
    rng = np.random.default_rng([seed, block])
    z = rng.choice(k, size=n, p=weights)
    X = rng.standard_normal((n, d))
    out = np.empty((n, d), dtype=dtype)
    for j in range(k):
        idx = np.flatnonzero(z == j)
        out[idx] = means[j] + X[idx] @ chols[j].T
    return out


def block_bounds(n, blocks):
    edges = [round(i * n / blocks) for i in range(blocks + 1)]
    return list(zip(edges[:-1], edges[1:]))


def write_mixture_npy(path, n, d, k, seed, chunk):
    """Write an (n, d) float32 mixture sample to ``path`` in chunks (never the whole array in memory)."""
    import numpy as np

    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": (n, d)}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for i, (a, b) in enumerate(block_bounds(n, max(1, math.ceil(n / chunk)))):
            mixture_block(b - a, d, k, seed, i, dtype=np.float32).tofile(fh)
    return os.path.getsize(path)


def hmm_data(n_seq, seq_len, d, k, seed, spread=4.0):
    """Sequences of a sticky Gaussian HMM with separated means: (X (n_seq*seq_len, d), lengths)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    trans = np.full((k, k), 0.05 / (k - 1))
    np.fill_diagonal(trans, 0.95)
    means = rng.normal(0.0, spread, size=(k, d))
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    cum = np.cumsum(trans, axis=1)
    states = np.empty((n_seq, seq_len), dtype=np.int64)
    states[:, 0] = rng.integers(0, k, size=n_seq)
    for t in range(1, seq_len):
        u = rng.random(n_seq)
        states[:, t] = np.minimum((u[:, None] > cum[states[:, t - 1]]).sum(axis=1), k - 1)
    z = states.ravel()
    X = means[z] + scales[z] * rng.standard_normal((z.size, d))
    return X, np.full(n_seq, seq_len, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Memory sampling
# ----------------------------------------------------------------------------------------------

def proc_status_kb(fields=("RssAnon", "RssFile", "VmRSS", "VmHWM")):
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key = line.split(":", 1)[0]
                if key in fields:
                    out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


class Phases:
    """The current phase of a fit (a stack of names pushed by instrumentation wrappers)."""

    def __init__(self, name="idle"):
        self.stack = [name]

    @property
    def current(self):
        return self.stack[-1]

    def wrap(self, name, func):
        def wrapper(*args, **kwargs):
            self.stack.append(name)
            try:
                return func(*args, **kwargs)
            finally:
                self.stack.pop()

        wrapper.__wrapped__ = func
        return wrapper


class RssSampler(threading.Thread):
    """Samples RssAnon / RssFile of this process every ``interval`` seconds in a background thread.

    Records the peak RssAnon overall and per phase (``phases.current`` at the time of the sample)
    and a coarse timeline (one point per ``timeline_every`` seconds).
    """

    def __init__(self, phases, interval=0.02, timeline_every=0.5):
        super().__init__(daemon=True)
        self.phases, self.interval, self.timeline_every = phases, interval, timeline_every
        self.stop_event = threading.Event()
        self.peak_anon_kb = 0
        self.peak_file_kb = 0
        self.peak_by_phase = {}
        self.n_samples = 0
        self.timeline = []
        self.t0 = time.perf_counter()
        self.max_gap = 0.0

    def sample(self):
        s = proc_status_kb(("RssAnon", "RssFile"))
        anon, file_ = s.get("RssAnon", 0), s.get("RssFile", 0)
        phase = self.phases.current
        self.n_samples += 1
        self.peak_anon_kb = max(self.peak_anon_kb, anon)
        self.peak_file_kb = max(self.peak_file_kb, file_)
        self.peak_by_phase[phase] = max(self.peak_by_phase.get(phase, 0), anon)
        return anon, file_, phase

    def run(self):
        last_t, last_point = time.perf_counter(), -1e9
        while not self.stop_event.is_set():
            anon, file_, phase = self.sample()
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last_t)
            last_t = now
            if now - last_point >= self.timeline_every:
                self.timeline.append((round(now - self.t0, 2), round(anon / 1024.0, 1), round(file_ / 1024.0, 1),
                                      phase))
                last_point = now
            self.stop_event.wait(self.interval)

    def stop(self):
        self.stop_event.set()
        self.join()
        self.sample()


# ----------------------------------------------------------------------------------------------
# Workers (run in fresh processes)
# ----------------------------------------------------------------------------------------------

def _quiet():
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="Best performing initialization did not converge")
    logging.getLogger("distributed").setLevel(logging.ERROR)


def per_iteration(times):
    """Seconds per EM iteration from the callback's elapsed times t_1..t_n: (t_n - t_1) / (n - 1).

    Equals (time of an n-iteration fit - time of a 1-iteration fit) / (n - 1) for the same run,
    without initialisation and the first iteration (JIT loading, cold caches).
    """
    if len(times) < 2:
        return None
    return (times[-1] - times[0]) / (len(times) - 1)


def worker_ooc(opts):
    """Fit a GaussianMixture on a memory-mapped .npy file while sampling RssAnon."""
    phases = Phases("startup")
    sampler = RssSampler(phases, interval=opts["sample_interval"])
    sampler.start()
    import numpy as np

    import emkit
    import emkit.models.base as base_mod
    import emkit.models.kmeans as kmeans_mod
    import emkit.models.mixture as mixture_mod
    import emkit.sources as sources_mod

    _quiet()
    K, cov, iters = opts["k"], opts["cov"], opts["iters"]
    # warm-up: load the compiled kernels (numba on-disk cache) before the measurement
    phases.stack[:] = ["warm-up"]
    warm = mixture_block(4000, opts["d"], K, 0, 0, dtype=np.float32)
    emkit.GaussianMixture(K, covariance_type=cov, max_iter=2, tol=0, random_state=0).fit(warm)
    del warm
    phases.stack[:] = ["idle before fit"]
    gc.collect()

    # instrumentation (wrappers only, no behaviour change): which phase of the fit is running
    sources_mod.ArraySource.sample = phases.wrap("init: sample rows", sources_mod.ArraySource.sample)
    mixture_mod._n_distinct_at_least = phases.wrap("init: distinct check", mixture_mod._n_distinct_at_least)
    kmeans_mod.KMeans.fit = phases.wrap("init: k-means", kmeans_mod.KMeans.fit)
    mixture_mod.GaussianMixture._init_resp_stats = phases.wrap("init: moments",
                                                               mixture_mod.GaussianMixture._init_resp_stats)
    base_mod.run_em = phases.wrap("em iterations", base_mod.run_em)

    time.sleep(0.1)
    hwm_reset = reset_peak_rss()
    before = proc_status_kb()
    time.sleep(2 * opts["sample_interval"])
    X = np.load(opts["path"], mmap_mode="r")
    times, rss_at_iter = [], []

    def callback(info):
        times.append(info["seconds"])
        rss_at_iter.append(proc_status_kb(("RssAnon",)).get("RssAnon", 0) / 1024.0)

    phases.stack[:] = ["fit: other"]
    t0 = time.perf_counter()
    gm = emkit.GaussianMixture(K, covariance_type=cov, tol=0, max_iter=iters, random_state=0)
    gm.fit(X, callback=callback)
    fit_seconds = time.perf_counter() - t0
    phases.stack[:] = ["after fit"]
    after = proc_status_kb()
    sampler.stop()
    peak_anon_mb = sampler.peak_anon_kb / 1024.0
    return {
        "covariance_type": cov, "n": int(X.shape[0]), "d": int(X.shape[1]), "k": K, "iters": iters,
        "dtype": str(X.dtype), "file_mb": os.path.getsize(opts["path"]) / MB,
        "peak_rss_anon_mb": peak_anon_mb,
        "rss_anon_before_fit_mb": before.get("RssAnon", 0) / 1024.0,
        "peak_rss_anon_increase_mb": peak_anon_mb - before.get("RssAnon", 0) / 1024.0,
        "rss_anon_after_fit_mb": after.get("RssAnon", 0) / 1024.0,
        "peak_rss_file_mb": sampler.peak_file_kb / 1024.0,
        "vm_hwm_mb": after.get("VmHWM", 0) / 1024.0, "vm_hwm_reset_before_fit": hwm_reset,
        "peak_rss_anon_by_phase_mb": {k: v / 1024.0 for k, v in sampler.peak_by_phase.items()},
        "rss_anon_at_iteration_end_mb": rss_at_iter,
        "samples": sampler.n_samples, "max_sample_gap_s": sampler.max_gap,
        "timeline": sampler.timeline,
        "fit_seconds": fit_seconds, "iteration_end_seconds": times,
        "seconds_per_iter": per_iteration(times),
        "first_iteration_seconds": times[0] if times else None,
        "init_seconds": fit_seconds - (times[-1] if times else 0.0),
        "lower_bounds": [float(v) for v in gm.lower_bounds_],
        "budget_mb": opts["budget_mb"],
    }


def worker_online(opts):
    """Batch EM to convergence vs stochastic EM (3 passes) on the same data and initialisation."""
    import numpy as np

    import emkit
    from emkit.sources import ArraySource, SequenceSource

    _quiet()
    out = {}
    passes, gap_target = opts["passes"], opts["gap"]

    # -- GaussianMixture -----------------------------------------------------------------------
    g = opts["gmm"]
    X = mixture_block(g["n"], g["d"], g["k"], g["seed"], 0, spread=g["spread"])
    batch_size = min(g["batch_size"], max(g["k"] * 20, g["n"] // MIN_UPDATES_PER_PASS))
    for init in g["inits"]:
        out["gmm" if init == "kmeans" else f"gmm, {init}"] = _online_case(
            make=lambda **kw: emkit.GaussianMixture(g["k"], covariance_type=g["cov"], random_state=0,
                                                    init_params=init, **kw),
            fit_args=(X,), warm_args=(X[:20_000],), full_ll=lambda m: m.score(X),
            pass_ll=lambda m, params: _mean_ll(ArraySource(X, None, 4096), m, params),
            batch_size=batch_size, schedule=g["schedule"], passes=passes, gap_target=gap_target, opts=opts,
            describe=dict(model="GaussianMixture", n=g["n"], d=g["d"], k=g["k"], covariance_type=g["cov"],
                          init_params=init, spread=g["spread"]))
    del X

    # -- GaussianHMM ---------------------------------------------------------------------------
    h = opts["hmm"]
    X, lengths = hmm_data(h["n_seq"], h["seq_len"], h["d"], h["k"], h["seed"], h["spread"])
    n_frames = X.shape[0]
    batch_size = min(h["batch_size"], max(h["seq_len"], n_frames // MIN_UPDATES_PER_PASS))
    out["hmm"] = _online_case(
        make=lambda **kw: emkit.GaussianHMM(h["k"], covariance_type=h["cov"], random_state=0, **kw),
        fit_args=(X, lengths), warm_args=(X[:4 * h["seq_len"]], lengths[:4]), full_ll=lambda m: m.score(X, lengths) / n_frames,
        pass_ll=lambda m, params: _mean_ll(SequenceSource(X, lengths), m, params),
        batch_size=batch_size, schedule=h["schedule"], passes=passes, gap_target=gap_target, opts=opts,
        describe=dict(model="GaussianHMM", n_seq=h["n_seq"], seq_len=h["seq_len"], n=n_frames, d=h["d"], k=h["k"],
                      covariance_type=h["cov"], spread=h["spread"]))
    return out


def _mean_ll(source, estimator, params):
    """Mean log-likelihood per sample of all of ``source`` under ``params`` (one E-step)."""
    model = estimator._em_model()
    stats = source.expectation(model, params)
    return float(stats.log_likelihood / stats.n_samples)


def _online_case(make, fit_args, warm_args, full_ll, pass_ll, batch_size, schedule, passes, gap_target, opts,
                 describe):
    from emkit import StepSchedule

    # warm-up on a slice (compiled kernels, thread pools), so that the timings exclude JIT
    make(tol=0, max_iter=2).fit(*warm_args)
    make(tol=0, max_iter=1).fit(*warm_args, algorithm="stochastic", batch_size=batch_size,
                                schedule=StepSchedule(**schedule))

    # batch EM, run to convergence
    t0 = time.perf_counter()
    batch = make(tol=opts["batch_tol"], max_iter=opts["batch_max_iter"]).fit(*fit_args)
    batch_seconds = time.perf_counter() - t0
    ll_batch = full_ll(batch)

    # stochastic EM: evaluate the full-data mean log-likelihood after every pass
    per_pass, eval_seconds = [], [0.0]

    def callback(info):
        te = time.perf_counter()
        per_pass.append({"pass": info["iteration"], "seconds": info["seconds"] - eval_seconds[0],
                         "running_objective": info["lower_bound"], "full_data_ll": pass_ll(stoch, info["params"])})
        eval_seconds[0] += time.perf_counter() - te

    stoch = make(tol=0, max_iter=passes)
    t0 = time.perf_counter()
    stoch.fit(*fit_args, callback=callback, algorithm="stochastic", batch_size=batch_size,
              schedule=StepSchedule(**schedule))
    stoch_seconds = time.perf_counter() - t0 - eval_seconds[0]
    ll_stoch = full_ll(stoch)
    for p in per_pass:
        p["rel_gap"] = (ll_batch - p["full_data_ll"]) / abs(ll_batch)
    rel_gap = (ll_batch - ll_stoch) / abs(ll_batch)
    init_gap = (ll_batch - batch.lower_bounds_[0]) / abs(ll_batch)  # first E-step: the initial parameters
    passes_needed = next((p["pass"] for p in per_pass if p["rel_gap"] <= gap_target), None)
    return dict(describe, batch_size=batch_size, schedule=schedule, passes=passes,
                updates_per_pass=stoch._online_state.n_updates // passes,
                ll_batch=ll_batch, ll_stochastic=ll_stoch, ll_initial=float(batch.lower_bounds_[0]), rel_gap=rel_gap,
                init_gap=init_gap, passes_needed=passes_needed,
                per_pass=per_pass, batch_iterations=int(batch.n_iter_), batch_converged=bool(batch.converged_),
                batch_seconds=batch_seconds, stochastic_seconds=stoch_seconds,
                met=bool(passes_needed is not None and rel_gap <= gap_target))


def worker_dask(opts):
    """Seconds per EM iteration: in-process numpy vs dask.distributed LocalCluster, same start.

    Two clusters are timed: ``dask`` with distributed's default worker environment (what a user
    gets), and ``dask-no-trim`` whose workers are spawned without the ``MALLOC_TRIM_THRESHOLD_``
    that distributed's nanny puts into every worker's environment (diagnosis, see SCALE.md).
    """
    import resource

    import numpy as np

    import dask
    import dask.array as da
    from dask.distributed import Client, LocalCluster, wait

    import emkit

    _quiet()
    n, d, k, blocks, seed = opts["n"], opts["d"], opts["k"], opts["blocks"], opts["seed"]
    bounds = block_bounds(n, blocks)

    # the same rows in both places: block i comes from stream (seed, i)
    X = np.empty((n, d))
    for i, (a, b) in enumerate(bounds):
        X[a:b] = mixture_block(b - a, d, k, seed, i)

    # starting parameters: uniform weights, K random rows, the inverse data covariance for all
    rng = np.random.default_rng(seed + 1)
    means0 = X[np.sort(rng.choice(n, size=k, replace=False))].astype(np.float64)
    prec0 = np.linalg.inv(np.cov(X[: min(n, 200_000)], rowvar=False))
    start = dict(weights_init=np.full(k, 1.0 / k), means_init=means0, precisions_init=np.repeat(prec0[None], k, 0))

    def make():
        return emkit.GaussianMixture(k, covariance_type="full", tol=0, max_iter=opts["iters"], **start)

    def usage():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return {"minflt": r.ru_minflt, "utime": r.ru_utime, "stime": r.ru_stime}

    def start_cluster(trim):
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        # the nanny also writes these variables into this process's os.environ, from where later
        # spawned workers would inherit them: clear it for the no-trim cluster
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        if not trim:
            environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(n_workers=opts["workers"], threads_per_worker=opts["threads_per_worker"],
                                   processes=True, dashboard_address=None)
        client = Client(cluster, set_as_default=False)
        t0 = time.perf_counter()
        parts = [da.from_delayed(dask.delayed(mixture_block)(b - a, d, k, seed, i), shape=(b - a, d),
                                 dtype=np.float64) for i, (a, b) in enumerate(bounds)]
        Xd = client.persist(da.concatenate(parts, axis=0))
        with client.as_current():
            wait(Xd)
        info = {"persist_seconds": time.perf_counter() - t0,
                "blocks_per_worker": {w: len(keys) for w, keys in client.has_what().items()},
                "worker_env": client.run(lambda: {v: os.environ.get(v) for v in
                                                  ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS",
                                                   "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})}
        return cluster, client, Xd, info

    def timed_fit(side):
        times = []
        if side == "numpy":
            data, before = X, usage()
        else:
            client = clusters[side][1]
            data, before = clusters[side][2], client.run(usage)
        t0 = time.perf_counter()
        if side == "numpy":
            gm = make().fit(data, callback=lambda info: times.append(info["seconds"]))
        else:
            with client.as_current():
                gm = make().fit(data, callback=lambda info: times.append(info["seconds"]))
        info = {"seconds_per_iter": per_iteration(times), "iteration_end_seconds": times,
                "fit_seconds": time.perf_counter() - t0}
        after = {"self": usage()} if side == "numpy" else clusters[side][1].run(usage)
        before = {"self": before} if side == "numpy" else before
        # whole fit (including the two 500,000-row samples taken before EM), summed over processes
        info["page_faults"] = sum(after[w]["minflt"] - before[w]["minflt"] for w in after)
        info["cpu_user_s"] = sum(after[w]["utime"] - before[w]["utime"] for w in after)
        info["cpu_sys_s"] = sum(after[w]["stime"] - before[w]["stime"] for w in after)
        return gm, info

    sides = ["numpy", "dask", "dask-no-trim"]
    clusters = {}
    try:
        clusters["dask-no-trim"] = start_cluster(trim=False)
        clusters["dask"] = start_cluster(trim=True)
        runs = {side: [] for side in sides}
        fitted = {}
        for r in range(opts["repeat"]):  # interleaved, so slow drifts of a shared machine hit all alike
            for side in sides:
                gm, info = timed_fit(side)
                runs[side].append(info)
                fitted[side] = gm
    finally:
        for cluster, client, _, _ in clusters.values():
            client.close()
            cluster.close()

    best = {side: min(i["seconds_per_iter"] for i in runs[side]) for side in sides}
    median = {side: float(np.median([i["seconds_per_iter"] for i in runs[side]])) for side in sides}
    out = {"n": n, "d": d, "k": k, "blocks": blocks, "block_rows": [b - a for a, b in bounds],
           "workers": opts["workers"], "threads_per_worker": opts["threads_per_worker"],
           "in_process_threads": _emkit_threads(), "iters": opts["iters"], "repeat": opts["repeat"],
           "runs": runs, "seconds_per_iter": best, "median_seconds_per_iter": median,
           "ratio_target": opts["ratio"], "agreement_target": opts["agree"], "clusters": {}}
    for side in ("dask", "dask-no-trim"):
        agreement = {name: _rel(getattr(fitted[side], name), getattr(fitted["numpy"], name))
                     for name in ("weights_", "means_", "covariances_", "lower_bounds_")}
        out["clusters"][side] = dict(clusters[side][3], ratio=best[side] / best["numpy"],
                                     median_ratio=median[side] / median["numpy"], agreement=agreement,
                                     max_rel_diff=max(agreement.values()))
    return out


def _emkit_threads():
    from emkit.em import n_threads

    return n_threads()


def _rel(a, b):
    """max |a - b| / max |b| (norm-wise relative difference of two arrays)."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    scale = float(np.max(np.abs(b))) or 1.0
    return float(np.max(np.abs(a - b)) / scale)


WORKERS = {"ooc": worker_ooc, "online": worker_online, "dask": worker_dask}


def worker_main(name, opts_path, out_path):
    with open(opts_path) as fh:
        opts = json.load(fh)
    result = WORKERS[name](opts)
    with open(out_path, "w") as fh:
        json.dump(result, fh, default=_json_default)


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

def worker_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_worker(name, opts, timeout):
    """Run one worker process; returns (result or None, error or None, wall seconds)."""
    with tempfile.TemporaryDirectory(prefix="emkit-scale-") as tmp:
        opts_path, out = os.path.join(tmp, "opts.json"), os.path.join(tmp, "result.json")
        with open(opts_path, "w") as fh:
            json.dump(opts, fh)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", name, "--_opts", opts_path, "--_out", out]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=worker_env(), capture_output=True, text=True, timeout=timeout,
                                  cwd=str(ROOT))
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout} s", time.perf_counter() - t0
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
            return None, f"exit code {proc.returncode}: " + "\n".join(tail), wall
        with open(out) as fh:
            return json.load(fh), None, wall


def scaled(n, scale, floor):
    return max(int(floor), int(round(n * scale)))


def run_ooc(args, log):
    n = scaled(OOC["n"], args.scale, OOC["min_n"])
    iters = args.iters or OOC["iters"]
    tmp = tempfile.mkdtemp(prefix="emkit-scale-ooc-", dir=args.data_dir)
    path = os.path.join(tmp, "gmm.npy")
    out = {"n": n, "d": OOC["d"], "k": OOC["k"], "iters": iters, "budget_mb": OOC["budget_mb"], "fits": {},
           "errors": {}}
    try:
        t0 = time.perf_counter()
        size = write_mixture_npy(path, n, OOC["d"], OOC["k"], OOC["seed"], OOC["gen_chunk"])
        out["file_mb"], out["write_seconds"] = size / MB, time.perf_counter() - t0
        log(f"ooc-memory: wrote {path} ({size / MB:.0f} MB) in {out['write_seconds']:.1f} s")
        for cov in OOC["covariance_types"]:
            opts = dict(path=path, k=OOC["k"], d=OOC["d"], cov=cov, iters=iters, budget_mb=OOC["budget_mb"],
                        sample_interval=OOC["sample_interval"])
            res, err, wall = run_worker("ooc", opts, args.timeout)
            if err:
                out["errors"][cov] = err
                log(f"ooc-memory ({cov}): ERROR {err}")
                continue
            res["wall_seconds"] = wall
            out["fits"][cov] = res
            log(f"ooc-memory ({cov}): peak RssAnon {res['peak_rss_anon_mb']:.0f} MB, "
                f"{fmt_s(res['seconds_per_iter'])}/iter ({wall:.0f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def run_online(args, log):
    g = dict(ONLINE_GMM, n=scaled(ONLINE_GMM["n"], args.scale, ONLINE_GMM["min_n"]))
    h = dict(ONLINE_HMM, n_seq=scaled(ONLINE_HMM["n_seq"], args.scale, ONLINE_HMM["min_seq"]))
    opts = dict(ONLINE, gmm=g, hmm=h)
    res, err, wall = run_worker("online", opts, args.timeout)
    if err:
        log(f"online-vs-batch: ERROR {err}")
        return {"error": err}
    res["wall_seconds"] = wall
    for key in online_cases(res):
        r = res[key]
        log(f"online-vs-batch ({key}): gap {100 * r['rel_gap']:.4f}% after {r['passes']} passes "
            f"(within {100 * ONLINE['gap']:g}% from pass {r['passes_needed']}), batch {r['batch_iterations']} iters")
    return res


def run_dask(args, log):
    opts = dict(DASK, n=scaled(DASK["n"], args.scale, DASK["min_n"]), iters=args.iters or DASK["iters"],
                repeat=args.repeat or DASK["repeat"])
    res, err, wall = run_worker("dask", opts, args.timeout)
    if err:
        log(f"dask-overhead: ERROR {err}")
        return {"error": err}
    res["wall_seconds"] = wall
    for side, c in res["clusters"].items():
        log(f"dask-overhead ({side}): {fmt_s(res['seconds_per_iter'][side])}/iter vs "
            f"{fmt_s(res['seconds_per_iter']['numpy'])}/iter in-process = {c['ratio']:.2f}x, "
            f"max rel diff {c['max_rel_diff']:.1e}")
    return res


RUNNERS = {"ooc-memory": run_ooc, "online-vs-batch": run_online, "dask-overhead": run_dask}


def fmt_s(s):
    if s is None:
        return "-"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def yes_no(ok):
    return "-" if ok is None else ("yes" if ok else "NO")


def table_rows(results):
    """(target, measured, goal, met) rows."""
    rows = []
    r = results.get("ooc-memory")
    if r is not None:
        for cov in OOC["covariance_types"]:
            f = r["fits"].get(cov)
            name = f"ooc-memory ({cov})"
            if f is None:
                rows.append((name, f"ERROR: {r['errors'].get(cov, 'not run')}".splitlines()[0][:80],
                             f"peak RssAnon < {r['budget_mb']:.0f} MB", None))
                continue
            measured = (f"peak RssAnon {f['peak_rss_anon_mb']:.0f} MB (+{f['peak_rss_anon_increase_mb']:.0f} over "
                        f"{f['rss_anon_before_fit_mb']:.0f}; EM iters {_phase_peak(f, 'em iterations')}); "
                        f"VmHWM {f['vm_hwm_mb']:.0f} MB; {fmt_s(f['seconds_per_iter'])}/iter")
            rows.append((name, measured, f"peak RssAnon < {f['budget_mb']:.0f} MB",
                         f["peak_rss_anon_mb"] < f["budget_mb"]))
    r = results.get("online-vs-batch")
    if r is not None:
        if r.get("error"):
            rows.append(("online-vs-batch", "ERROR: " + r["error"].splitlines()[0][:80], "", None))
        else:
            for key in online_cases(r):
                c = r[key]
                gaps = ", ".join(f"{100 * p['rel_gap']:.3f}%" for p in c["per_pass"])
                measured = (f"gap {100 * c['rel_gap']:.3f}% (passes 1-{c['passes']}: {gaps}; initial "
                            f"{100 * c['init_gap']:.2f}%; batch EM {c['batch_iterations']} iters); "
                            f"batch_size {c['batch_size']}")
                rows.append((f"online-vs-batch ({key})", measured,
                             f"gap <= {100 * ONLINE['gap']:g}% in <= {c['passes']} passes", c["met"]))
    r = results.get("dask-overhead")
    if r is not None:
        if r.get("error"):
            rows.append(("dask-overhead", "ERROR: " + r["error"].splitlines()[0][:80], "", None))
        else:
            for side, c in r["clusters"].items():
                faults = _median([i["page_faults"] for i in r["runs"][side]])
                measured = (f"{fmt_s(r['seconds_per_iter'][side])}/iter vs "
                            f"{fmt_s(r['seconds_per_iter']['numpy'])}/iter in-process = {c['ratio']:.2f}x "
                            f"(medians {c['median_ratio']:.2f}x); params max rel diff {c['max_rel_diff']:.1e}; "
                            f"{faults / 1e6:.1f}M page faults/fit (in-process "
                            f"{_median([i['page_faults'] for i in r['runs']['numpy']]) / 1e6:.1f}M)")
                met = c["ratio"] <= r["ratio_target"] and c["max_rel_diff"] <= r["agreement_target"]
                name = "dask-overhead" if side == "dask" else "dask-overhead (workers without MALLOC_TRIM_THRESHOLD_)"
                rows.append((name, measured, f"<= {r['ratio_target']:g}x, params equal to {r['agreement_target']:g}",
                             met))
    return rows


def _median(values):
    values = sorted(values)
    m = len(values) // 2
    return values[m] if len(values) % 2 else 0.5 * (values[m - 1] + values[m])


def online_cases(res):
    return [k for k in res if isinstance(res[k], dict) and "rel_gap" in res[k]]


def _phase_peak(f, phase):
    v = f["peak_rss_anon_by_phase_mb"].get(phase)
    return "-" if v is None else f"{v:.0f} MB"


def render_table(rows):
    head = ("target", "measured", "goal", "met?")
    body = [(a, b, c, yes_no(d)) for a, b, c, d in rows]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(4)]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in body])




def machine_info():
    cpu = cpu_model()
    mem_total = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    git = git_state(ROOT)
    return {
        "cpu_model": cpu or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_available": cpus_available(),
        "mem_total_mb": mem_total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "versions": {d: version(d) for d in ("numpy", "scipy", "numba", "dask", "distributed", "threadpoolctl")},
        "git": git,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": {k: os.environ[k] for k in ("EMKIT_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                           "MKL_NUM_THREADS", "NUMBA_NUM_THREADS") if k in os.environ},
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="emkit scale benchmarks: out-of-core memory, stochastic vs batch EM, "
                                            "Dask overhead.")
    p.add_argument("--only", default=None, help=f"comma-separated targets among {', '.join(TARGETS)}")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the data sizes by S (default 1.0)")
    p.add_argument("--iters", type=int, default=None,
                   help=f"EM iterations of the timed fits (default {OOC['iters']} for ooc-memory, "
                        f"{DASK['iters']} for dask-overhead; at least 2). online-vs-batch always runs 3 passes.")
    p.add_argument("--repeat", type=int, default=None,
                   help=f"dask-overhead: interleaved fits per side, fastest kept (default {DASK['repeat']})")
    p.add_argument("--json", default=str(HERE / "scale_results.json"), help="where to write the results")
    p.add_argument("--data-dir", default=None, help="directory for the ooc-memory .npy file (default: system temp)")
    p.add_argument("--timeout", type=float, default=3600.0, help="time limit per worker process, seconds")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_opts", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.iters is not None and args.iters < 2:
        p.error("--iters must be at least 2 (time per iteration is (t_n - t_1) / (n - 1))")
    if not args.scale > 0:
        p.error("--scale must be positive")
    if args.only:
        names = [s.strip() for s in args.only.split(",") if s.strip()]
        bad = [s for s in names if s not in TARGETS]
        if bad:
            p.error(f"unknown target(s) {', '.join(bad)}; choose from {', '.join(TARGETS)}")
        args.only = names
    else:
        args.only = list(TARGETS)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args._worker:
        worker_main(args._worker, args._opts, args._out)
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    info = machine_info()
    log(f"emkit scale benchmarks: {', '.join(args.only)}; scale={args.scale:g}; {info['cpu_model']}, "
        f"{info['cpus_available']} CPU(s), load {info['loadavg_start']}")
    results, errors = {}, False
    t0 = time.perf_counter()
    for name in args.only:
        try:
            results[name] = RUNNERS[name](args, log)
        except Exception:  # keep going: report what ran
            results[name] = {"error": traceback.format_exc()}
            log(f"{name}: ERROR\n{results[name]['error']}")
        r = results[name]
        errors |= bool(r.get("error") or r.get("errors"))
    rows = table_rows(results)
    info["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    doc = {"machine": info, "args": {"only": args.only, "scale": args.scale, "iters": args.iters,
                                     "repeat": args.repeat},
           "total_seconds": time.perf_counter() - t0,
           "table": [{"target": a, "measured": b, "goal": c, "met": d} for a, b, c, d in rows],
           "results": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(doc, fh, indent=1, default=_json_default)
    print(render_table(rows))
    print(f"\n{info['date']}, {info['cpu_model']}, {info['cpus_available']} CPU(s); results in {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
