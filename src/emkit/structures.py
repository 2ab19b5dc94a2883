"""Latent structures: how states are linked.  A structure combined with an
emission family is an EM *model* in the sense of :mod:`emkit.em`.

``Mixture``  independent states per row (Gaussian mixture, and K-means as its hard limit).
``MarkovChain`` states linked over time by a transition matrix (hidden Markov models).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .collapse import detect
from .inference.mixture import MixtureStats, log_responsibilities, normalize_log_resp
from .stats import Stats

_EPS10 = 10 * np.finfo(np.float64).eps


@dataclass(frozen=True)
class MixtureParams:
    """Mixture parameters: ``weights`` (K,) and the emission's parameters."""

    weights: np.ndarray
    emission: object


class Mixture:
    """Mixture latent structure over an emission family."""

    def __init__(self, emission):
        self.emission = emission

    def log_joint(self, params, X, prepared=False):
        """``log w_k + log p(x_n | z_n = k)``, (n, K); ``prepared``: ``X`` is already ``emission.prepare(X)``."""
        with np.errstate(divide="ignore"):
            log_w = np.log(params.weights)
        data = X if prepared else self.emission.prepare(X, None)
        lp = self.emission.log_likelihood(params.emission, data)
        lp += log_w
        return lp

    def responsibilities(self, params, X, prepared=False):
        """``(log p(x_n) (n,), p(z_n = k | x_n) (n, K))``."""
        resp = self.log_joint(params, X, prepared)
        log_norm = np.empty(resp.shape[0])
        normalize_log_resp(resp, log_norm)
        return log_norm, resp

    def log_resp(self, params, X):
        """``(log p(x_n), log p(z_n=k | x_n))`` with shapes (n,) and (n, K)."""
        return log_responsibilities(0.0, self.log_joint(params, X))

    def e_step(self, params, X, sample_weight=None):
        fused = getattr(self.emission, "mixture_e_step", None)
        if fused is not None:  # the family's whole E-step in one pass, where it has one
            out = fused(params.emission, params.weights, X, sample_weight)
            if out is not None:
                resp, stats, ll = out
                n = float(X.shape[0]) if sample_weight is None else float(sample_weight.sum())
                return MixtureStats(resp=resp, emission=stats, log_likelihood=ll, n_samples=n)
        data = self.emission.prepare(X, None)
        log_norm, resp = self.responsibilities(params, data, prepared=True)
        if sample_weight is None:
            ll = float(log_norm.sum())
            n = float(X.shape[0])
        else:
            resp *= sample_weight[:, None]
            ll = float(sample_weight @ log_norm)
            n = float(sample_weight.sum())
        return MixtureStats(resp=resp.sum(axis=0), emission=self.emission.statistics(params.emission, data, resp),
                            log_likelihood=ll, n_samples=n)

    def m_step(self, stats, params=None):
        weights = stats.resp + _EPS10
        weights = weights / weights.sum()
        # the current parameters let a family without a closed-form M-step take an improving step from them
        return MixtureParams(weights=weights, emission=self.emission.m_step(
            stats.emission, None if params is None else params.emission))

    def log_prior(self, params):
        return self.emission.log_prior(params.emission)

    def objective(self, stats, params):
        return (stats.log_likelihood + self.log_prior(params)) / stats.n_samples

    def collapsed(self, stats, params):
        """``(occupancy (K,), {component: reason})`` after the M-step (see :mod:`emkit.collapse`)."""
        occupancy = np.asarray(stats.resp, dtype=np.float64)
        return occupancy, detect(occupancy, self.emission.collapsed(params.emission, occupancy))

    def split(self, params, j, k):
        """Parameters with component ``k`` re-seeded by splitting component ``j`` (weights shared), or None
        if the emission family cannot split."""
        emission = self.emission.split(params.emission, j, k)
        if emission is None:  # the family cannot re-seed a component
            return None
        weights = params.weights.copy()
        weights[j] = weights[k] = 0.5 * (weights[j] + weights[k])
        return MixtureParams(weights=weights, emission=emission)


@dataclass(frozen=True)
class HMMParams:
    """HMM parameters: ``startprob`` (K,), ``transmat`` (K, K) and the emission's parameters.

    ``startprob_allowed`` (K,) and ``transmat_allowed`` (K, K) are boolean masks of the entries
    the M-step may make positive (None: all).  They hold the *structural* zeros the user gave
    (in ``*_init``, ``from_params`` or by setting the attributes); zeros EM itself produces are
    not structural, so a probability that rounds to 0 can grow back.
    """

    startprob: np.ndarray
    transmat: np.ndarray
    emission: object
    startprob_allowed: np.ndarray = None
    transmat_allowed: np.ndarray = None


@dataclass
class HMMStats(Stats):
    """Statistics of one E-step of an HMM over some whole sequences.

    Attributes
    ----------
    start : ndarray (K,)
        Sum over sequences of the first-step posteriors.
    trans : ndarray (K, K)
        Expected transition counts summed over time and sequences.
    emission : Stats
    log_likelihood : float
        Sum over sequences of ``log p(x)``.
    n_samples : float
        Number of frames.
    """

    start: np.ndarray
    trans: np.ndarray
    emission: Stats
    log_likelihood: float
    n_samples: float


def check_concentration(value, name, shape):
    """A Dirichlet concentration (a number or an array of ``shape``; None: any shape), checked >= 1.

    Concentrations below 1 put an unbounded density at the boundary of the simplex, so the MAP
    objective has no finite maximum there; they are refused, as are non-finite values.
    """
    a = np.asarray(value, dtype=np.float64)
    if a.ndim and shape is not None and a.shape != tuple(shape):
        raise ValueError(f"{name} must be a number or an array of shape {tuple(shape)}; got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 1.0):
        bad = a[~np.isfinite(a) | (a < 1.0)].ravel()[0]
        raise ValueError(f"{name} must be a finite Dirichlet concentration >= 1 (1 is maximum likelihood; values "
                         f"below 1 make the MAP objective unbounded at zero probabilities); got {bad!r}")
    return a


def allowed_mask(prob):
    """Boolean mask of the positive entries of ``prob``: the structural zeros of user-given probabilities."""
    return np.asarray(prob) > 0


def dirichlet_log_density(prob, concentration, allowed=None):
    """Unnormalised Dirichlet log density ``sum (alpha - 1) log p`` over the allowed entries.

    Concentrations are >= 1 (see :func:`check_concentration`); entries with ``alpha == 1``
    contribute 0 even where ``p == 0``, and structural zeros (``allowed`` False) are outside
    the support, so they contribute nothing either.
    """
    a = np.broadcast_to(np.asarray(concentration, dtype=np.float64) - 1.0, np.shape(prob))
    use = a != 0
    if allowed is not None:
        use = use & allowed
    with np.errstate(divide="ignore"):
        return float(np.sum(a[use] * np.log(np.asarray(prob)[use])))


def map_probabilities(counts, concentration, old, allowed=None):
    """Row-wise Dirichlet MAP estimate of probabilities (last axis) from expected counts.

    Parameters
    ----------
    counts : ndarray (..., S)
        Expected counts.
    concentration : float or ndarray broadcastable to ``counts``
        Dirichlet concentrations, >= 1.
    old : ndarray (..., S)
        The current probabilities; rows with no mass (no counts, no prior) keep them.
    allowed : ndarray of bool (..., S), optional
        Entries allowed to be positive (None: all); the others stay exactly 0.

    Returns
    -------
    ndarray (..., S)
        ``(counts + (alpha - 1))`` normalised over the allowed entries.  The prior offset is
        added as ``alpha - 1`` (exactly 0 for ``alpha == 1``), so a tiny count stays tiny
        instead of rounding to 0 as ``counts + alpha - 1`` would.
    """
    c = counts + (np.asarray(concentration, dtype=np.float64) - 1.0)
    if allowed is not None:
        c = np.where(allowed, c, 0.0)
    sums = c.sum(axis=-1, keepdims=True)
    return np.where(sums > 0, c / np.where(sums > 0, sums, 1.0), old)


class MarkovChain:
    """Markov-chain latent structure over an emission family (an HMM).

    Parameters
    ----------
    emission : emission family
    startprob_prior : float or ndarray (K,)
        Dirichlet concentration on the start probabilities (1.0: maximum likelihood).
    transmat_prior : float or ndarray (K, K)
        Dirichlet concentration on each row of the transition matrix.
    kappa : float
        Extra concentration on self-transitions (a "sticky" prior).
    learn : set of str or None
        Names of the parameters re-estimated by the M-step (None: all).
    """

    #: forward-backward is a compiled parallel kernel (see :func:`emkit.em.parallel_kernels_threadsafe`)
    uses_parallel_kernels = True

    def __init__(self, emission, startprob_prior=1.0, transmat_prior=1.0, kappa=0.0, learn=None):
        self.emission = emission
        K = emission.n_components
        self.startprob_prior = np.broadcast_to(check_concentration(startprob_prior, "startprob_prior", (K,)), (K,))
        self.transmat_prior = check_concentration(transmat_prior, "transmat_prior", (K, K)) + kappa * np.eye(K)
        self.learn = learn

    def _learns(self, name):
        return self.learn is None or name in self.learn

    def frame_loglik(self, params, data):
        return self.emission.log_likelihood(params.emission, data)

    def e_step(self, params, X, lengths):
        from .inference.hmm import forward_backward  # imported by the first HMM E-step, not by mixtures

        data = self.emission.prepare(X, lengths)
        fused = getattr(self.emission, "hmm_statistics", None)
        out = None if fused is None else fused(params.emission, data, lengths, params.startprob, params.transmat)
        if out is None:
            frame = self.frame_loglik(params, data)
            post = forward_backward(params.startprob, params.transmat, frame, lengths)
            out = (post.seq_log_likelihood, post.expected_start, post.expected_transitions,
                   self.emission.statistics(params.emission, data, post.posteriors))
        seq_ll, start, trans, emission = out
        log_likelihood = float(np.sum(seq_ll))
        if not np.isfinite(log_likelihood):
            bad = int(np.flatnonzero(~np.isfinite(seq_ll))[0])
            raise ValueError(f"sequence {bad} of this batch has zero probability under the current parameters "
                             "(a forbidden transition or an impossible emission); check zeros in startprob, "
                             "transmat or the emission parameters")
        return HMMStats(start=start, trans=trans, emission=emission, log_likelihood=log_likelihood,
                        n_samples=float(X.shape[0]))

    def m_step(self, stats, params):
        startprob = params.startprob
        transmat = params.transmat
        if self._learns("startprob"):
            startprob = map_probabilities(stats.start, self.startprob_prior, params.startprob,
                                          params.startprob_allowed)
        if self._learns("transmat"):
            transmat = map_probabilities(stats.trans, self.transmat_prior, params.transmat, params.transmat_allowed)
        learn = None if self.learn is None else set(self.learn) & set(self.emission.param_names)
        emission = self.emission.m_step(stats.emission, params.emission, learn)
        return dataclasses.replace(params, startprob=startprob, transmat=transmat, emission=emission)

    def log_prior(self, params):
        return (dirichlet_log_density(params.startprob, self.startprob_prior, params.startprob_allowed)
                + dirichlet_log_density(params.transmat, self.transmat_prior, params.transmat_allowed)
                + self.emission.log_prior(params.emission))

    def objective(self, stats, params):
        return (stats.log_likelihood + self.log_prior(params)) / stats.n_samples

    def collapsed(self, stats, params):
        """``(occupancy (K,), {state: reason})`` after the M-step (see :mod:`emkit.collapse`)."""
        occupancy = stats.start + stats.trans.sum(axis=0)  # sum over frames of p(z_t = k | x)
        return occupancy, detect(occupancy, self.emission.collapsed(params.emission, occupancy))

    def split(self, params, j, k):
        """Parameters with state ``k`` re-seeded by splitting state ``j``, or None if that is not allowed.

        State ``k`` takes a copy of ``j``'s transition row; the two share ``j``'s and ``k``'s start
        probability and incoming transitions.  Not done when some parameters are not learned or
        have structural zeros (the split would change what the user fixed).
        """
        fixed = self.learn is not None or any(
            m is not None and not np.all(m) for m in (params.startprob_allowed, params.transmat_allowed,
                                                       getattr(params.emission, "allowed", None)))
        emission = None if fixed else self.emission.split(params.emission, j, k)
        if emission is None:
            return None
        startprob, transmat = params.startprob.copy(), params.transmat.copy()
        startprob[j] = startprob[k] = 0.5 * (startprob[j] + startprob[k])
        transmat[k] = transmat[j]
        shared = 0.5 * (transmat[:, j] + transmat[:, k])
        transmat[:, j], transmat[:, k] = shared, shared
        return dataclasses.replace(params, startprob=startprob, transmat=transmat, emission=emission)
