"""The EM driver: E-step over chunks -> additive statistics -> M-step, until converged.

The driver knows nothing about mixtures or Markov chains.  It needs a *model*
(latent structure x emission) with

``e_step(params, *chunk) -> Stats``
    statistics of one chunk of data under ``params``;
``m_step(stats, params) -> params``
    new parameters (``params`` supplies whatever is not re-estimated);
``objective(stats, params) -> float``
    the quantity EM increases, per sample (mean log-likelihood, plus the log prior
    divided by the number of samples for MAP EM),

and a *source* of data (:mod:`emkit.sources`) whose ``expectation(model, params)``
sums the E-step statistics over its chunks.  Local chunks are processed by a small
thread pool (numpy and the compiled kernels release the GIL) and their statistics
are summed in chunk order, so the result does not depend on the number of threads;
Dask sources compute them on the workers.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np


_POOL = None
_POOL_SIZE = None


def n_threads():
    """Threads used to run chunk E-steps (``EMKIT_NUM_THREADS`` or the number of CPUs)."""
    env = os.environ.get("EMKIT_NUM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _pool():
    global _POOL, _POOL_SIZE
    size = n_threads()
    if _POOL is None or _POOL_SIZE != size:
        _POOL = ThreadPoolExecutor(max_workers=size, thread_name_prefix="emkit")
        _POOL_SIZE = size
    return _POOL


def map_chunks(func, chunks):
    """``[func(*chunk) for chunk in chunks]`` in order, run on the thread pool.

    ``chunks`` may be a lazy iterable (a file read chunk by chunk): at most two chunks per
    thread are in flight, so memory stays bounded.  While chunks run in parallel, BLAS is
    limited to one thread per chunk so that the threads do not oversubscribe the cores.
    """
    threads = n_threads()
    if threads == 1:
        return [func(*c) for c in chunks]
    it = iter(chunks)
    first = next(it, None)
    if first is None:
        return []
    second = next(it, None)
    if second is None:
        return [func(*first)]
    from threadpoolctl import threadpool_limits

    pool = _pool()
    results = []
    pending = deque()
    with threadpool_limits(limits=1, user_api="blas"):
        for c in itertools.chain((first, second), it):
            pending.append(pool.submit(func, *c))
            if len(pending) >= 2 * threads:
                results.append(pending.popleft().result())
        while pending:
            results.append(pending.popleft().result())
    return results


def expectation(model, params, source):
    """Sum of the E-step statistics over every chunk of ``source``."""
    return source.expectation(model, params)


@dataclass
class EMResult:
    """Outcome of one EM run."""

    params: object
    lower_bounds: list = field(default_factory=list)
    converged: bool = False
    n_iter: int = 0

    @property
    def lower_bound(self):
        return self.lower_bounds[-1] if self.lower_bounds else -np.inf


def run_em(model, params, source, *, tol, max_iter, verbose=0, callback=None, init_index=0, start_lower_bound=-np.inf):
    """Run EM from ``params``.

    Each iteration runs an E-step with the current parameters (its objective is
    recorded in ``lower_bounds``) and an M-step.  Stops when the objective
    changes by less than ``tol`` (``tol=0`` runs exactly ``max_iter`` iterations).

    Parameters
    ----------
    callback : callable, optional
        Called as ``callback(info)`` after each iteration with a dict holding
        ``init``, ``iteration``, ``lower_bound``, ``change``, ``params`` and ``seconds``.
    """
    result = EMResult(params=params)
    lower = start_lower_bound
    t0 = time.perf_counter()
    for it in range(1, max_iter + 1):
        stats = source.expectation(model, params)
        new_lower = model.objective(stats, params)
        params = model.m_step(stats, params)
        change = new_lower - lower
        lower = new_lower
        result.lower_bounds.append(float(lower))
        result.params = params
        result.n_iter = it
        elapsed = time.perf_counter() - t0
        if verbose >= 2 or (verbose == 1 and (it == 1 or it % 10 == 0)):
            print(f"  init {init_index + 1} iteration {it}: lower bound {lower:.8g} (change {change:.3g}, {elapsed:.2f}s)")
        if callback is not None:
            callback({"init": init_index, "iteration": it, "lower_bound": float(lower),
                      "change": float(change), "params": params, "seconds": elapsed})
        if abs(change) < tol:
            result.converged = True
            break
    return result


def expectation_local_chunks(model, params, X, sample_weight, rows):
    """Sequential E-step over one in-memory block, in chunks of ``rows`` (used on Dask workers)."""
    from .sources import ArraySource
    from .stats import reduce_stats

    src = ArraySource(X, sample_weight, rows)
    return reduce_stats(model.e_step(params, *c) for c in src.chunks())
