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

import contextlib
import functools
import itertools
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import _workspace

_POOL = None
_POOL_SIZE = None
_LOCAL = threading.local()  # .blas_limited: this thread is inside blas_single_threaded()


def _env_threads():
    """``EMKIT_NUM_THREADS`` as a positive integer, or None when unset."""
    env = os.environ.get("EMKIT_NUM_THREADS")
    if not env:
        return None
    try:
        value = int(env)
    except ValueError:
        raise ValueError(f"EMKIT_NUM_THREADS must be a positive integer; got {env!r}") from None
    if value < 1:
        raise ValueError(f"EMKIT_NUM_THREADS must be a positive integer; got {env!r}")
    return value


def n_threads():
    """Threads emkit uses: ``EMKIT_NUM_THREADS``, or the number of CPUs available to the process."""
    env = _env_threads()
    if env is not None:
        return env
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _cap_numba(limit):
    """Limit numba's parallel kernels to ``limit`` threads in the calling thread (the setting is per
    thread); returns the previous setting, or None if nothing changed.  Before numba is imported
    (small problems never import it) the cap goes to ``NUMBA_NUM_THREADS``, its default when imported."""
    numba = sys.modules.get("numba")
    if numba is None:
        _cap_env("NUMBA_NUM_THREADS", limit)
        return None
    before = numba.get_num_threads()
    if before <= limit:
        return None
    numba.set_num_threads(limit)
    return before


def _cap_env(var, limit):
    """Set the environment variable ``var`` to ``limit`` unless it holds a smaller number."""
    current = os.environ.get(var, "")
    if not current.isdigit() or int(current) > limit:
        os.environ[var] = str(limit)


def _apply_env_threads():
    """``EMKIT_NUM_THREADS=N`` caps every kind of thread at N, not only emkit's pool: numba's parallel
    kernels (the default of every thread when numba is not imported yet, else this thread's
    setting) and BLAS/OpenMP (their current limit, and the environment that libraries loaded
    later read).  Fits re-apply the caps in the thread that runs them (:func:`blas_single_threaded`)."""
    limit = _env_threads()
    if limit is None:
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        _cap_env(var, limit)
    _cap_numba(limit)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=limit)  # kept: applies until changed


def _pool():
    global _POOL, _POOL_SIZE
    size = n_threads()
    if _POOL is None or _POOL_SIZE != size:
        _POOL = ThreadPoolExecutor(max_workers=size, thread_name_prefix="emkit")
        _POOL_SIZE = size
    return _POOL


def map_chunks(func, chunks):
    """``[func(*chunk) for chunk in chunks]`` in order, run on the thread pool (see :func:`imap_chunks`)."""
    return list(imap_chunks(func, chunks))


def imap_chunks(func, chunks, pool_allowed=None):
    """``func(*chunk)`` for every chunk, yielded in chunk order, run on the thread pool.

    ``chunks`` may be a lazy iterable (a file read chunk by chunk): at most two chunks per
    thread are in flight, so memory stays bounded.  While chunks run in parallel, BLAS is
    limited to one thread per chunk, and so are the compiled parallel kernels, so that the
    threads do not oversubscribe the cores.  ``pool_allowed`` (a function of no arguments),
    asked only when there are two chunks or more and more than one thread, may refuse the pool:
    the chunks then run in turn in the calling thread (same results).
    """
    threads = n_threads()
    if threads == 1:
        for c in chunks:
            yield func(*c)
        return
    it = iter(chunks)
    first = next(it, None)
    if first is None:
        return
    second = next(it, None)
    if second is None:
        yield func(*first)
        return
    if pool_allowed is not None and not pool_allowed():
        for c in itertools.chain((first, second), it):
            yield func(*c)
        return
    pool = _pool()
    pending = deque()
    with blas_single_threaded():
        for c in itertools.chain((first, second), it):
            pending.append(pool.submit(_single_threaded, func, *c))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


_BLAS_CONTROLLER = None


def _blas_controller():
    """threadpoolctl's controller of the loaded thread pools, made once per process: making one
    resolves the path of every loaded shared library (about 10 ms with scikit-learn and pandas
    loaded).  The BLAS libraries emkit calls (numpy's and scipy's) are loaded before any fit, by
    the imports of numpy and scikit-learn."""
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER


@contextlib.contextmanager
def blas_single_threaded():
    """Context limiting BLAS to one thread while emkit's own pool provides the parallelism.

    Tiny BLAS/LAPACK calls (the M-step's 10 x 10 Cholesky solves) are many times slower when
    they wake a multi-threaded BLAS; large products run one per pool thread instead.  Entered
    once per fit: nested uses (every pass over the chunks inside it) cost nothing.  With
    ``EMKIT_NUM_THREADS`` set, numba's parallel kernels in this thread are capped at that number too.
    """
    if getattr(_LOCAL, "blas_limited", False):
        yield
        return
    limit = _env_threads()
    numba_before = None if limit is None else _cap_numba(limit)
    _LOCAL.blas_limited = True
    try:
        with _blas_controller().limit(limits=1, user_api="blas"):
            yield
    finally:
        _LOCAL.blas_limited = False
        if numba_before is not None:
            import numba

            numba.set_num_threads(numba_before)


@functools.lru_cache(maxsize=1)
def parallel_kernels_threadsafe():
    """Whether compiled parallel kernels may be called from several threads at once.

    True for numba's OpenMP and TBB threading layers; numba's fallback "workqueue" layer aborts
    on concurrent calls, so models whose E-step uses parallel kernels then run chunks in turn.
    """
    import numba

    try:  # starts the threading layer without compiling a kernel
        from numba.np.ufunc.parallel import _launch_threads

        _launch_threads()
    except ImportError:  # pragma: no cover - numba moved it; a parallel kernel starts it too
        from .inference import hmm

        hmm.forward_backward(np.ones(1), np.ones((1, 1)), np.zeros((2, 1)), _method="kernel")
    return numba.threading_layer() in ("omp", "tbb")


def _single_threaded(func, *args):
    """Run ``func`` with compiled parallel kernels limited to this thread (the setting is per thread).

    Without numba imported there is nothing to limit (and numba is not imported for it): the
    models with parallel kernels import numba before they use the pool
    (:func:`parallel_kernels_threadsafe`), the others' kernels are not parallel.
    """
    numba = sys.modules.get("numba")
    # numba may be half imported: another chunk's first compiled kernel can be importing it in its thread
    get_num_threads = getattr(numba, "get_num_threads", None)
    if get_num_threads is not None and get_num_threads() != 1:
        numba.set_num_threads(1)
    return func(*args)


@dataclass
class EMResult:
    """Outcome of one EM run."""

    params: object
    lower_bounds: list = field(default_factory=list)
    converged: bool = False
    n_iter: int = 0
    online_state: object = None  # running statistics to continue with stochastic EM
    collapse_events: list = field(default_factory=list)  # emkit.collapse.CollapseEvent

    @property
    def lower_bound(self):
        return self.lower_bounds[-1] if self.lower_bounds else -np.inf

    @property
    def n_recoveries(self):
        return sum(e.action == "recovered" for e in self.collapse_events)


#: A drop of the objective larger than this (relative) is not rounding: the last M-step did not ascend.
DECREASE_TOLERANCE = 1e-12


def run_em(model, params, source, *, tol, max_iter, verbose=0, callback=None, init_index=0, start_lower_bound=-np.inf,
           on_collapse=None):
    """Run EM from ``params``.

    Each iteration runs an E-step with the current parameters (its objective is
    recorded in ``lower_bounds``) and an M-step.  Stops when the objective
    changes by less than ``tol`` (``tol=0`` runs exactly ``max_iter`` iterations).

    Parameters
    ----------
    callback : callable, optional
        Called as ``callback(info)`` after each iteration with a dict holding
        ``init``, ``iteration``, ``lower_bound``, ``change``, ``params`` and ``seconds``.
    on_collapse : {"recover", "warn", "raise"} or None
        What to do when a component collapses (see :mod:`emkit.collapse`); None: no detection.
    """
    with blas_single_threaded(), _workspace.scope():
        return _run_em(model, params, source, tol, max_iter, verbose, callback, init_index, start_lower_bound,
                       on_collapse)


def _run_em(model, params, source, tol, max_iter, verbose, callback, init_index, start_lower_bound, on_collapse):
    from .collapse import CollapseEvent

    result = EMResult(params=params)
    lower = start_lower_bound
    segment = -np.inf  # objective of the previous iteration since the start or the last recovery
    previous_params = params
    recoveries_left = getattr(model.emission, "n_components", 0)
    warned = set()
    t0 = time.perf_counter()
    for it in range(1, max_iter + 1):
        stats = source.expectation(model, params)
        new_lower = model.objective(stats, params)
        if on_collapse == "recover" and new_lower < segment - DECREASE_TOLERANCE * max(1.0, abs(segment)):
            # only a component at the covariance floor makes an M-step descend: keep the better parameters
            result.collapse_events.append(CollapseEvent(it - 1, None, "lowered the objective", "stopped"))
            result.params = previous_params
            break
        previous_params = params
        params = model.m_step(stats, params)
        restarted = False
        if on_collapse is not None:
            occupancy, reasons = model.collapsed(stats, params)
            if reasons and on_collapse == "raise":
                from .exceptions import CollapseError

                k, why = next(iter(reasons.items()))
                raise CollapseError(f"component {k} {why} at iteration {it} (on_collapse='raise'); use "
                                    "on_collapse='recover' to re-seed it, or fewer components")
            if reasons and on_collapse == "recover" and recoveries_left > 0:
                from .collapse import recover_pairs

                collapsed = np.zeros(occupancy.size, dtype=bool)
                collapsed[list(reasons)] = True
                for k, j in recover_pairs(collapsed, occupancy)[:recoveries_left]:
                    split = model.split(params, j, k)
                    if split is None:
                        break
                    params = split
                    recoveries_left -= 1
                    restarted = True
                    result.collapse_events.append(CollapseEvent(it, k, reasons.pop(k), "recovered", j))
            for k, why in reasons.items():
                if k not in warned:
                    warned.add(k)
                    result.collapse_events.append(CollapseEvent(it, k, why, "warned"))
        change = new_lower - lower
        lower = new_lower
        segment = -np.inf if restarted else new_lower
        result.lower_bounds.append(float(lower))
        result.params = params
        result.n_iter = it
        result.online_state = OnlineState.from_batch(stats)
        elapsed = time.perf_counter() - t0
        if verbose >= 2 or (verbose == 1 and (it == 1 or it % 10 == 0)):
            print(f"  init {init_index + 1} iteration {it}: lower bound {lower:.8g} (change {change:.3g}, {elapsed:.2f}s)")
        if callback is not None:
            callback({"init": init_index, "iteration": it, "lower_bound": float(lower),
                      "change": float(change), "params": params, "seconds": elapsed})
        if abs(change) < tol and not restarted:
            result.converged = True
            break
        if restarted:
            lower = -np.inf
    return result


def expectation_local_chunks(model, params, X, sample_weight, rows):
    """Sequential E-step over one in-memory block, in chunks of ``rows`` (used on Dask workers)."""
    from .sources import ArraySource
    from .stats import reduce_stats

    src = ArraySource(X, sample_weight, rows)
    return reduce_stats(model.e_step(params, *c) for c in src.chunks())


# -- stochastic (online) EM ---------------------------------------------------------------------

@dataclass(frozen=True)
class StepSchedule:
    """Step sizes of stochastic EM: ``alpha_i = max((i + tau) ** -kappa, min_step)``.

    Batches are numbered ``i = 1, 2, ...``.  The first replaces the running statistics
    (``alpha_1 = 1``: there is nothing to mix with yet); batch ``i >= 2`` is folded in as
    ``S <- (1 - alpha_i) S + alpha_i s_i``, where ``s_i`` are the batch's statistics normalised
    per sample.  ``tau = 0, kappa = 1`` gives the running mean of all batches.

    Parameters
    ----------
    kappa : float in (0.5, 1], default=0.6
        Forgetting exponent: with ``0.5 < kappa <= 1`` the steps satisfy the Robbins-Monro
        conditions, so the running statistics converge.  Smaller is more responsive.
    tau : float >= 0, default=2.0
        Delay: damps the first steps.
    min_step : float in [0, 1), default=0.0
        A floor on the step: ``> 0`` turns on exponential forgetting (effective memory of about
        ``1 / min_step`` batches) for streams whose distribution drifts.
    """

    kappa: float = 0.6
    tau: float = 2.0
    min_step: float = 0.0

    def __post_init__(self):
        from ._validation import check_float

        check_float(self.kappa, "schedule kappa", minimum=0.5, maximum=1.0, include_min=False)
        check_float(self.tau, "schedule tau", minimum=0.0)
        check_float(self.min_step, "schedule min_step", minimum=0.0, maximum=1.0, include_max=False)

    def step(self, i):
        """``alpha_i`` for batch number ``i`` (1-based)."""
        if i <= 1:
            return 1.0
        return min(1.0, max((i + self.tau) ** -self.kappa, self.min_step))

    @classmethod
    def make(cls, schedule):
        """A schedule from None, a StepSchedule, a dict of its fields or a number (``kappa``)."""
        if schedule is None:
            return cls()
        if isinstance(schedule, cls):
            return schedule
        if isinstance(schedule, dict):
            unknown = set(schedule) - {"kappa", "tau", "min_step"}
            if unknown:
                raise ValueError(f"schedule has unknown keys {sorted(unknown)}; use kappa, tau, min_step")
            return cls(**schedule)
        if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
            return cls(kappa=float(schedule))
        raise ValueError(f"schedule must be None, a StepSchedule, a dict or a number (kappa); got {schedule!r}")


@dataclass
class OnlineState:
    """Running statistics of stochastic EM (normalised per sample) and counters.

    ``schedule`` is None for the state a batch fit leaves behind: the first ``partial_fit``
    then picks the schedule and counts the fitted data as ``n_seen / batch size`` earlier
    updates, so one new batch moves the model by a step that small, not by a refit.
    """

    stats: object
    schedule: StepSchedule = None
    n_updates: int = 0
    n_seen: float = 0.0

    @classmethod
    def from_batch(cls, stats):
        n = float(stats.n_samples)
        return cls(stats=stats * (1.0 / n), schedule=None, n_updates=0, n_seen=n) if n > 0 else None


def online_update(model, params, state, batch_stats, schedule=None):
    """Fold one mini-batch's statistics into the running statistics and run the M-step.

    Returns ``(new_params, new_state)``; ``state`` is not modified (a failed update leaves it
    intact).  The M-step sees the running statistics scaled to the number of samples seen so
    far, so priors weigh as they would in batch EM on that many samples.
    """
    n = float(batch_stats.n_samples)
    if not n > 0:
        raise ValueError("the mini-batch has no samples (or only zero weights)")
    normalized = batch_stats * (1.0 / n)
    if state is None:
        state = OnlineState(stats=None, schedule=StepSchedule.make(schedule))
    elif state.schedule is None:  # continuing from a batch fit
        state = OnlineState(stats=state.stats, schedule=StepSchedule.make(schedule),
                            n_updates=max(1, int(np.ceil(state.n_seen / n))), n_seen=state.n_seen)
    alpha = state.schedule.step(state.n_updates + 1)
    running = normalized if state.stats is None or alpha >= 1.0 else state.stats * (1.0 - alpha) + normalized * alpha
    n_seen = state.n_seen + n
    new_params = model.m_step(running * n_seen, params)
    return new_params, OnlineState(stats=running, schedule=state.schedule, n_updates=state.n_updates + 1,
                                   n_seen=n_seen)


def stream_objective(model):
    """The per-sample objective reported for mini-batches: ``model.stream_objective`` if the model
    has one (when its ``objective`` is not per sample), else ``model.objective``."""
    return getattr(model, "stream_objective", model.objective)


def run_stochastic_em(model, params, batches, *, schedule, tol, max_iter, verbose=0, callback=None, init_index=0):
    """Stochastic EM: ``max_iter`` passes over the data in mini-batches.

    ``batches(epoch)`` yields one source per mini-batch.  The objective recorded for a pass is
    the mean over its batches of the per-sample objective, each measured with the parameters
    in force when the batch arrived; EM stops when it changes by less than ``tol`` between
    passes.
    """
    with blas_single_threaded(), _workspace.scope():
        return _run_stochastic_em(model, params, batches, schedule, tol, max_iter, verbose, callback, init_index)


def _run_stochastic_em(model, params, batches, schedule, tol, max_iter, verbose, callback, init_index):
    result = EMResult(params=params)
    state = None
    lower = -np.inf
    t0 = time.perf_counter()
    for epoch in range(1, max_iter + 1):
        total, weight = 0.0, 0.0
        for batch in batches(epoch):
            stats = batch.expectation(model, params)
            total += stream_objective(model)(stats, params) * stats.n_samples
            weight += stats.n_samples
            params, state = online_update(model, params, state, stats, schedule)
        new_lower = total / weight
        change = new_lower - lower
        lower = new_lower
        result.lower_bounds.append(float(lower))
        result.params, result.n_iter = params, epoch
        elapsed = time.perf_counter() - t0
        if verbose:
            print(f"  init {init_index + 1} pass {epoch}: objective {lower:.8g} (change {change:.3g}, "
                  f"{state.n_updates} updates, {elapsed:.2f}s)")
        if callback is not None:
            callback({"init": init_index, "iteration": epoch, "lower_bound": float(lower), "change": float(change),
                      "params": params, "seconds": elapsed})
        if abs(change) < tol:
            result.converged = True
            break
    result.online_state = state
    return result


_apply_env_threads()
