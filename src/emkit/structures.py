"""Latent structures: how states are linked.  A structure combined with an
emission family is an EM *model* in the sense of :mod:`emkit.em`.

``Mixture``  independent states per row (Gaussian mixture, and K-means as its hard limit).
``MarkovChain`` states linked over time by a transition matrix (hidden Markov models).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .inference._kernels import normalize_log_resp
from .inference.hmm import forward_backward
from .inference.mixture import MixtureStats, log_responsibilities
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

    def log_joint(self, params, X):
        """``log w_k + log p(x_n | z_n = k)``, (n, K)."""
        with np.errstate(divide="ignore"):
            log_w = np.log(params.weights)
        lp = self.emission.log_likelihood(params.emission, X)
        lp += log_w
        return lp

    def responsibilities(self, params, X):
        """``(log p(x_n) (n,), p(z_n = k | x_n) (n, K))``."""
        resp = self.log_joint(params, X)
        log_norm = np.empty(resp.shape[0])
        normalize_log_resp(resp, log_norm)
        return log_norm, resp

    def log_resp(self, params, X):
        """``(log p(x_n), log p(z_n=k | x_n))`` with shapes (n,) and (n, K)."""
        return log_responsibilities(0.0, self.log_joint(params, X))

    def e_step(self, params, X, sample_weight=None):
        log_norm, resp = self.responsibilities(params, X)
        if sample_weight is None:
            ll = float(log_norm.sum())
            n = float(X.shape[0])
        else:
            resp *= sample_weight[:, None]
            ll = float(sample_weight @ log_norm)
            n = float(sample_weight.sum())
        return MixtureStats(resp=resp.sum(axis=0), emission=self.emission.statistics(params.emission, X, resp),
                            log_likelihood=ll, n_samples=n)

    def m_step(self, stats, params=None):
        weights = stats.resp + _EPS10
        weights = weights / weights.sum()
        return MixtureParams(weights=weights, emission=self.emission.m_step(stats.emission))

    def objective(self, stats, params):
        return stats.log_likelihood / stats.n_samples


@dataclass(frozen=True)
class HMMParams:
    """HMM parameters: ``startprob`` (K,), ``transmat`` (K, K) and the emission's parameters."""

    startprob: np.ndarray
    transmat: np.ndarray
    emission: object


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


def _dirichlet_log_density(prob, concentration):
    """Unnormalised ``sum (alpha - 1) log p`` (terms with alpha == 1 are 0 even where p == 0)."""
    a = np.asarray(concentration, dtype=np.float64) - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(a == 0, 0.0, a * np.log(prob))
    return float(np.sum(terms))


def _map_probabilities(counts, concentration, old):
    """Dirichlet MAP estimate row-wise; zeros of ``old`` stay zero, empty rows keep ``old``."""
    c = np.maximum(counts + concentration - 1.0, 0.0)
    c = np.where(old == 0, 0.0, c)
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
        self.startprob_prior = np.broadcast_to(np.asarray(startprob_prior, dtype=np.float64), (K,))
        self.transmat_prior = np.asarray(transmat_prior, dtype=np.float64) + kappa * np.eye(K)
        self.learn = learn

    def _learns(self, name):
        return self.learn is None or name in self.learn

    def frame_loglik(self, params, data):
        return self.emission.log_likelihood(params.emission, data)

    def e_step(self, params, X, lengths):
        data = self.emission.prepare(X, lengths)
        frame = self.frame_loglik(params, data)
        post = forward_backward(params.startprob, params.transmat, frame, lengths)
        if not np.isfinite(post.log_likelihood):
            bad = int(np.flatnonzero(~np.isfinite(post.seq_log_likelihood))[0])
            raise ValueError(f"sequence {bad} of this batch has zero probability under the current parameters "
                             "(a forbidden transition or an impossible emission); check zeros in startprob, "
                             "transmat or the emission parameters")
        return HMMStats(start=post.expected_start, trans=post.expected_transitions,
                        emission=self.emission.statistics(params.emission, data, post.posteriors),
                        log_likelihood=post.log_likelihood, n_samples=float(frame.shape[0]))

    def m_step(self, stats, params):
        startprob = params.startprob
        transmat = params.transmat
        if self._learns("startprob"):
            startprob = _map_probabilities(stats.start, self.startprob_prior, params.startprob)
        if self._learns("transmat"):
            transmat = _map_probabilities(stats.trans, self.transmat_prior, params.transmat)
        learn = None if self.learn is None else set(self.learn) & set(self.emission.param_names)
        emission = self.emission.m_step(stats.emission, params.emission, learn)
        return HMMParams(startprob=startprob, transmat=transmat, emission=emission)

    def log_prior(self, params):
        return (_dirichlet_log_density(params.startprob, self.startprob_prior)
                + _dirichlet_log_density(params.transmat, self.transmat_prior)
                + self.emission.log_prior(params.emission))

    def objective(self, stats, params):
        return (stats.log_likelihood + self.log_prior(params)) / stats.n_samples
