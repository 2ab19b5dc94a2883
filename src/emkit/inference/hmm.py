"""Hidden Markov model inference as pure functions.

All functions take the model as plain arrays:

``startprob`` : ndarray (K,)
    Initial state probabilities (zeros allowed).
``transmat`` : ndarray (K, K)
    Row-stochastic transition probabilities, ``transmat[i, j] =
    p(z_{t+1} = j | z_t = i)`` (zeros allowed).
``frame_loglik`` : ndarray (T, K), float64 or float32
    ``log p(x_t | z_t = k)`` for all sequences concatenated along axis 0.
    ``-inf`` entries are allowed.  float32 input is accepted without a copy;
    all arithmetic is done in float64 and every output is float64.
``lengths`` : ndarray (n_seq,) of int, or None
    Lengths of the concatenated sequences (summing to ``T``); ``None`` means a
    single sequence of length ``T``.  Length-0 sequences contribute nothing
    (log-likelihood 0).

Inputs are not validated beyond shapes and ``sum(lengths) == T``: probabilities
are used as given (not renormalised) and ``frame_loglik`` must not contain NaN
or ``+inf``.

Numerics
--------
Forward-backward, filtering and posterior sampling scale every step in
probability space (the per-step maximum of ``frame_loglik`` is subtracted
before exponentiating) and accumulate the log normalisers, so arbitrarily
long sequences give a finite log-likelihood.  A sequence whose scaled
recursion would leave the safe floating point range (a step where no state is
possible, a normaliser below 1e-290, ...) is recomputed with exact log-space
recursions (about 15x slower, but only for that sequence).  A sequence whose
likelihood is exactly zero under the model gets log-likelihood ``-inf`` and
contributes zeros; no function ever returns NaN.  Zero entries of
``startprob`` / ``transmat`` give exact zeros in the corresponding posteriors
and expected counts.  Viterbi works in log space throughout.

In the scaled recursions a frame probability smaller than ``exp(-708)`` times
the largest one of the same step is treated as zero.  :func:`forward_backward`
bounds the posterior mass this could drop at every such step and switches to
log space when the bound exceeds ~1e-19; :func:`filter` and
:func:`sample_posterior_path` (forward pass only) switch when the dropped
filtered mass at that step could exceed ~1e-278.

All sequences are processed in one parallel numba kernel (``prange`` over
blocks of consecutive sequences whose boundaries depend only on ``lengths``),
and per-block statistics are reduced in a fixed order, so results are
bit-identical whatever the number of numba threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _workspace
from .._lazy import LazyModule
from . import _hmm_batched as _b

_k = LazyModule("emkit.inference._hmm_kernels")  # imported (with numba) when a compiled kernel is first used
_g = LazyModule("emkit.inference._hmm_gaussian")

__all__ = [
    "HMMPosterior",
    "forward_backward",
    "viterbi",
    "filter",
    "sample_posterior_path",
    "sample_states",
]

# Target number of time steps per parallel block.  Block boundaries depend only
# on the sequence lengths (never on the thread count).
_BLOCK_STEPS = 4096

# forward-backward runs all sequences together in numpy (see _batched_pays) for problems of at most
# _SMALL_STEPS steps per sequence and _SMALL_CELLS frame log-likelihoods
_SMALL_STEPS = 1024
_SMALL_CELLS = 1 << 17

# the fused Gaussian E-step computes the densities and statistics of a sequence of at least this
# many steps over blocks of rows in parallel (see _hmm_gaussian); the others one per thread
_LONG_STEPS = 2 * _BLOCK_STEPS


@dataclass(frozen=True)
class HMMPosterior:
    """Result of :func:`forward_backward`.

    Attributes
    ----------
    log_likelihood : float
        ``sum_s log p(x^(s))`` over all sequences (``-inf`` if any sequence
        is impossible under the model).
    seq_log_likelihood : ndarray (n_seq,)
        Per-sequence log-likelihood ``log p(x^(s))``.
    posteriors : ndarray (T, K)
        ``p(z_t = k | x^(s))`` where ``s`` is the sequence containing ``t``.
        Rows of impossible sequences are zero.
    expected_transitions : ndarray (K, K)
        ``sum_s sum_t p(z_t = i, z_{t+1} = j | x^(s))`` (transitions within
        sequences only).
    expected_start : ndarray (K,)
        ``sum_s p(z_first = k | x^(s))``.
    """

    log_likelihood: float
    seq_log_likelihood: np.ndarray
    posteriors: np.ndarray
    expected_transitions: np.ndarray
    expected_start: np.ndarray


# ---------------------------------------------------------------------------
# preparation
# ---------------------------------------------------------------------------


def _as_loglik(frame_loglik):
    ll = np.asarray(frame_loglik)
    if ll.dtype != np.float32 and ll.dtype != np.float64:
        ll = ll.astype(np.float64)
    ll = np.ascontiguousarray(ll)
    if ll.ndim != 2:
        raise ValueError(f"frame_loglik must be 2-D (T, K), got shape {ll.shape}")
    return ll


def _as_model(startprob, transmat, K):
    pi = np.ascontiguousarray(startprob, dtype=np.float64)
    A = np.ascontiguousarray(transmat, dtype=np.float64)
    if pi.shape != (K,) or A.shape != (K, K):
        raise ValueError(
            f"startprob {pi.shape} / transmat {A.shape} do not match K={K}"
        )
    return pi, A


def _logs(pi, A):
    with np.errstate(divide="ignore"):
        return np.log(pi), np.ascontiguousarray(np.log(A))


def _offsets(lengths, T):
    """Sequence offsets (n_seq + 1,) and block offsets (n_blocks + 1,)."""
    if lengths is None:
        lengths = np.array([T], dtype=np.int64)
    else:
        lengths = np.ascontiguousarray(lengths, dtype=np.int64).reshape(-1)
    n_seq = lengths.shape[0]
    if n_seq and lengths.min() < 0:
        raise ValueError("lengths must be non-negative")
    seq_starts = np.zeros(n_seq + 1, dtype=np.int64)
    np.cumsum(lengths, out=seq_starts[1:])
    if seq_starts[-1] != T:
        raise ValueError(
            f"sum(lengths) = {int(seq_starts[-1])} does not match T = {T}"
        )
    if n_seq == 0:
        return seq_starts, np.zeros(1, dtype=np.int64)
    # a sequence belongs to block floor(offset / _BLOCK_STEPS); boundaries are
    # where that id changes
    blk_id = seq_starts[:-1] // _BLOCK_STEPS
    cuts = np.flatnonzero(np.diff(blk_id)) + 1
    block_starts = np.concatenate(([0], cuts, [n_seq])).astype(np.int64)
    return seq_starts, block_starts


def _prepare(startprob, transmat, frame_loglik, lengths):
    ll = _as_loglik(frame_loglik)
    T, K = ll.shape
    pi, A = _as_model(startprob, transmat, K)
    seq_starts, block_starts = _offsets(lengths, T)
    return pi, A, ll, seq_starts, block_starts


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def _batched_pays(K, seq_starts):
    """True when forward-backward should run all sequences together in numpy (:mod:`._hmm_batched`).

    That is for small problems, where the numpy recursion costs a few milliseconds and the
    compiled kernel would first cost seconds of compilation.  (On larger problems the compiled
    kernel is faster, also at K = 50 with 100 sequences: the numpy steps' element-wise work costs
    more than the per-step product saves.)  The rule depends on the shapes only, so a given
    problem always takes the same path.
    """
    L = int(np.max(np.diff(seq_starts), initial=0))
    return L <= _SMALL_STEPS and int(seq_starts[-1]) * K <= _SMALL_CELLS


def forward_backward(startprob, transmat, frame_loglik, lengths=None, *, _force_log=False, _method=None):
    """Posterior marginals and expected counts (E-step of Baum-Welch).

    Parameters
    ----------
    startprob : ndarray (K,)
        Initial state probabilities.
    transmat : ndarray (K, K)
        Row-stochastic transition matrix.
    frame_loglik : ndarray (T, K), float64 or float32
        ``log p(x_t | z_t = k)``, all sequences concatenated.  float32 is
        computed in float64; outputs are float64.
    lengths : ndarray (n_seq,) of int, optional
        Sequence lengths summing to ``T``; ``None`` for a single sequence.

    Returns
    -------
    HMMPosterior
        ``log_likelihood`` (float), ``seq_log_likelihood`` (n_seq,),
        ``posteriors`` (T, K), ``expected_transitions`` (K, K) and
        ``expected_start`` (K,).  A sequence impossible under the model has
        ``seq_log_likelihood == -inf`` and zero posteriors / counts.

    Notes
    -----
    Memory is O(T K): no (T, K, K) array is ever formed.  Small problems run
    all sequences together (one ``(n_seq, K) @ (K, K)`` product per time
    step, in numpy, so nothing needs compiling); the others run one sequence
    at a time in a compiled parallel kernel.  Both compute the same scaled
    recursion and agree to rounding.
    """
    pi, A, ll, seq_starts, block_starts = _prepare(startprob, transmat, frame_loglik, lengths)
    K = A.shape[0]
    method = _method or ("batched" if _batched_pays(K, seq_starts) else "kernel")
    if _force_log:
        method = "kernel"
    if method == "batched":
        seq_ll, post, xi, start, bad = _b.forward_backward(pi, A, ll, seq_starts)
        if bad.any():
            # unsafe for the scaled recursion: the compiled kernel decides (log space)
            idx = np.flatnonzero(bad)
            rows = np.concatenate([np.arange(seq_starts[s], seq_starts[s + 1]) for s in idx])
            sub = _fb_kernel(pi, A, ll[rows], np.diff(seq_starts)[idx], False)
            seq_ll[idx] = sub[0]
            post[rows] = sub[1]
            xi += sub[2]
            start += sub[3]
    elif method == "kernel":
        seq_ll, post, xi, start = _fb_kernel(pi, A, ll, None, _force_log, seq_starts, block_starts)
    else:
        raise ValueError(f"unknown forward-backward method {method!r}")
    return HMMPosterior(
        log_likelihood=float(np.sum(seq_ll)),
        seq_log_likelihood=seq_ll,
        posteriors=post,
        expected_transitions=xi,
        expected_start=start,
    )


def _fb_kernel(pi, A, ll, lengths, force_log, seq_starts=None, block_starts=None):
    if seq_starts is None:
        seq_starts, block_starts = _offsets(lengths, ll.shape[0])
    logpi, logA = _logs(pi, A)
    return _k.forward_backward_kernel(
        pi, A, np.ascontiguousarray(A.T), logpi, logA, ll, seq_starts, block_starts, bool(force_log)
    )


def gaussian_diag_e_step(startprob, transmat, X, lengths, means, precisions, log_norm, center):
    """E-step of an HMM with diagonal Gaussian emissions, fused (see :mod:`._hmm_gaussian`).

    The frame log-likelihoods are ``-0.5 sum_d (x_d - means[k, d])^2 precisions[k, d] +
    log_norm[k]``; the result equals :func:`forward_backward` on them followed by the weighted
    moments of ``X`` about ``center`` (D,), to rounding, without forming either (T, K) array.

    Returns
    -------
    ``(seq_log_likelihood (n_seq,), expected_start (K,), expected_transitions (K, K),
    n (K,), sx (K, D), sxx (K, D))`` with ``n = sum_t gamma_t``, ``sx = sum_t gamma_t (x_t - c)``
    and ``sxx = sum_t gamma_t (x_t - c)^2``; or None for a problem small enough that
    :func:`forward_backward` runs it in numpy (nothing to compile).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    means = np.ascontiguousarray(means, dtype=np.float64)
    K, D = means.shape
    if X.ndim != 2 or X.shape[1] != D:
        raise ValueError(f"X must have shape (T, {D}); got {X.shape}")
    pi, A = _as_model(startprob, transmat, K)
    seq_starts, block_starts = _offsets(lengths, X.shape[0])
    if _batched_pays(K, seq_starts):
        return None
    logpi, logA = _logs(pi, A)
    longest = int(np.max(np.diff(seq_starts), initial=0))
    # the memory of long sequences is reused from one iteration of a fit to the next (see _workspace)
    work = _workspace.buffer("hmm-gaussian-long", _g.long_work_size(K, longest) if longest >= _LONG_STEPS else 0,
                             _g.empty)
    seq_ll, xi, start, n, sx, sxx = _g.gaussian_e_step_kernel(
        pi, A, np.ascontiguousarray(A.T), logpi, logA, X, means,
        np.ascontiguousarray(precisions, dtype=np.float64), np.ascontiguousarray(log_norm, dtype=np.float64),
        np.ascontiguousarray(center, dtype=np.float64), seq_starts, block_starts, _LONG_STEPS, work)
    return seq_ll, start, xi, n, sx, sxx


def viterbi(startprob, transmat, frame_loglik, lengths=None, *, _method=None):
    """Most probable state path of every sequence.

    Parameters
    ----------
    startprob : ndarray (K,)
        Initial state probabilities.
    transmat : ndarray (K, K)
        Row-stochastic transition matrix.
    frame_loglik : ndarray (T, K), float64 or float32
        ``log p(x_t | z_t = k)``, all sequences concatenated.
    lengths : ndarray (n_seq,) of int, optional
        Sequence lengths summing to ``T``; ``None`` for a single sequence.

    Returns
    -------
    log_prob : float
        ``sum_s max_z log p(x^(s), z)``; ``-inf`` if some sequence is
        impossible (the path of such a sequence is arbitrary).
    path : ndarray (T,) of int64
        The maximising state path, sequences concatenated.  Ties are broken
        towards the lowest state index.

    Notes
    -----
    Small problems run all sequences together in numpy (as
    :func:`forward_backward` does); the others in a compiled parallel kernel.
    Both make the same additions in the same order: same values, same paths.
    """
    pi, A, ll, seq_starts, block_starts = _prepare(startprob, transmat, frame_loglik, lengths)
    logpi, logA = _logs(pi, A)
    if _method == "batched" or (_method is None and _batched_pays(A.shape[0], seq_starts)):
        seq_lp, path = _b.viterbi(logpi, logA, ll, seq_starts)
    else:
        seq_lp, path = _k.viterbi_kernel(
            logpi, np.ascontiguousarray(logA.T), ll, seq_starts, block_starts
        )
    return float(np.sum(seq_lp)), path


def filter(startprob, transmat, frame_loglik, lengths=None, *, _force_log=False):  # noqa: A001
    """Causal (filtered) state marginals ``p(z_t | x_1..x_t)`` of each sequence.

    Parameters
    ----------
    startprob : ndarray (K,)
        Initial state probabilities.
    transmat : ndarray (K, K)
        Row-stochastic transition matrix.
    frame_loglik : ndarray (T, K), float64 or float32
        ``log p(x_t | z_t = k)``, all sequences concatenated.
    lengths : ndarray (n_seq,) of int, optional
        Sequence lengths summing to ``T``; ``None`` for a single sequence.

    Returns
    -------
    log_likelihood : float
        ``sum_s log p(x^(s))`` (``-inf`` if any sequence is impossible).
    filtered : ndarray (T, K)
        ``p(z_t = k | x_first..x_t)`` within each sequence.  Rows from the
        first step whose prefix is impossible onwards are zero.
    """
    pi, A, ll, seq_starts, block_starts = _prepare(startprob, transmat, frame_loglik, lengths)
    logpi, logA = _logs(pi, A)
    seq_ll, out = _k.filter_kernel(
        pi, A, np.ascontiguousarray(A.T), logpi, logA, ll, seq_starts, block_starts, bool(_force_log)
    )
    return float(np.sum(seq_ll)), out


def sample_posterior_path(startprob, transmat, frame_loglik, lengths, rng, *, _force_log=False):
    """Draw one state path per sequence from ``p(z | x)`` (forward filtering,
    backward sampling).

    Parameters
    ----------
    startprob : ndarray (K,)
        Initial state probabilities.
    transmat : ndarray (K, K)
        Row-stochastic transition matrix.
    frame_loglik : ndarray (T, K), float64 or float32
        ``log p(x_t | z_t = k)``, all sequences concatenated.
    lengths : ndarray (n_seq,) of int or None
        Sequence lengths summing to ``T``; ``None`` for a single sequence.
    rng : numpy.random.Generator
        Source of randomness (exactly ``T`` uniforms are drawn from it).

    Returns
    -------
    path : ndarray (T,) of int64
        A sample from the joint posterior of the states of every sequence.

    Raises
    ------
    ValueError
        If some sequence has probability zero under the model.
    """
    pi, A, ll, seq_starts, block_starts = _prepare(startprob, transmat, frame_loglik, lengths)
    logpi, logA = _logs(pi, A)
    unif = rng.random(ll.shape[0])
    seq_ll, path = _k.ffbs_kernel(
        pi, A, np.ascontiguousarray(A.T), logpi, logA, ll, seq_starts, block_starts, unif, bool(_force_log)
    )
    if np.any(seq_ll == -np.inf):
        bad = np.flatnonzero(seq_ll == -np.inf)
        raise ValueError(
            f"{bad.size} sequence(s) have probability zero under the model "
            f"(first: sequence {int(bad[0])}); cannot sample their states"
        )
    return path


def sample_states(startprob, transmat, n_steps, rng):
    """Sample a state path from the Markov chain prior.

    Parameters
    ----------
    startprob : ndarray (K,)
        Initial state probabilities.
    transmat : ndarray (K, K)
        Row-stochastic transition matrix.
    n_steps : int
        Length of the path (may be 0).
    rng : numpy.random.Generator
        Source of randomness (exactly ``n_steps`` uniforms are drawn).

    Returns
    -------
    states : ndarray (n_steps,) of int64
        ``z_0 ~ startprob``, ``z_{t+1} ~ transmat[z_t]``.  States with zero
        probability are never drawn.
    """
    n_steps = int(n_steps)
    if n_steps < 0:
        raise ValueError("n_steps must be non-negative")
    pi = np.ascontiguousarray(startprob, dtype=np.float64)
    A = np.ascontiguousarray(transmat, dtype=np.float64)
    if A.shape != (pi.shape[0], pi.shape[0]):
        raise ValueError(f"startprob {pi.shape} / transmat {A.shape} mismatch")
    unif = rng.random(n_steps)
    return _k.sample_states_kernel(pi, A, unif)
