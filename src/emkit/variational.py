"""Variational Bayes for hidden Markov models: EM with a restricted posterior ``q``.

The model puts conjugate priors on every parameter (Dirichlet on the start probabilities,
on each transition row and on categorical emission rows; Normal-Wishart on Gaussian
emissions) and fits the factorised posterior ``q(z) q(theta)`` by coordinate ascent on the
evidence lower bound (ELBO)::

    ELBO(q) = E_q[log p(X, z | theta)] + H[q(z)] - KL(q(theta) || p(theta))

It is the same loop as EM (:func:`emkit.em.run_em`):

E-step
    forward-backward run with the *sub-normalised* expected parameters
    ``exp E_q[log pi]``, ``exp E_q[log A]`` and ``exp E_q[log p(x | z)]``; it returns the
    additive :class:`emkit.structures.HMMStats` (expected start, transition and emission
    statistics) and ``log Z``, the log normaliser of ``q(z)``.
M-step
    posterior hyperparameters = prior hyperparameters + statistics (conjugacy).
Objective
    ``ELBO = log Z - KL(q(theta) || p(theta))``, evaluated with the posterior the E-step used
    (so it is the bound reached before the M-step, as hmmlearn records it), per frame.

Because the statistics add, stochastic (``partial_fit``) and out-of-core fitting work as for
EM.  The forward-backward kernels of :mod:`emkit.inference.hmm` take probabilities as given:
rows of the transition matrix need not sum to one, and ``log Z`` is what they return as the
log-likelihood.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import special

from .inference.hmm import forward_backward
from .structures import HMMStats


def dirichlet_expected_log(alpha):
    """``E[log p]`` under ``Dirichlet(alpha)`` along the last axis: ``psi(alpha) - psi(sum alpha)``."""
    alpha = np.asarray(alpha, dtype=np.float64)
    return special.digamma(alpha) - special.digamma(alpha.sum(axis=-1, keepdims=True))


def dirichlet_kl(q, p):
    """``sum over rows of KL(Dirichlet(q_row) || Dirichlet(p_row))`` (rows along the last axis)."""
    q = np.asarray(q, dtype=np.float64)
    p = np.broadcast_to(np.asarray(p, dtype=np.float64), q.shape)
    qs, ps = q.sum(axis=-1), p.sum(axis=-1)
    kl = (special.gammaln(qs) - special.gammaln(ps) - np.sum(special.gammaln(q) - special.gammaln(p), axis=-1)
          + np.sum((q - p) * (special.digamma(q) - special.digamma(qs)[..., None]), axis=-1))
    return float(np.sum(kl))


@dataclass(frozen=True)
class VariationalHMMParams:
    """The posterior ``q(theta)`` of an HMM and its prior, as Dirichlet concentrations.

    Attributes
    ----------
    startprob : ndarray (K,)
        Posterior concentration of the start probabilities.
    transmat : ndarray (K, K)
        Posterior concentration of each transition row.
    emission : object
        The emission family's posterior (it carries its own prior).
    startprob_prior : ndarray (K,)
    transmat_prior : ndarray (K, K)
    """

    startprob: np.ndarray
    transmat: np.ndarray
    emission: object
    startprob_prior: np.ndarray
    transmat_prior: np.ndarray

    def point_startprob(self):
        """Posterior mean of the start probabilities, (K,)."""
        return self.startprob / self.startprob.sum()

    def point_transmat(self):
        """Posterior mean of the transition matrix, (K, K)."""
        return self.transmat / self.transmat.sum(axis=1, keepdims=True)


class VariationalMarkovChain:
    """Markov-chain latent structure fitted by variational Bayes over a variational emission family.

    The family provides ``prepare(X, lengths)``, ``expected_log_likelihood(params, data)``
    (n, K), ``statistics(params, data, resp)`` (additive), ``m_step(stats, params)`` (posterior
    from prior + statistics) and ``kl(params)`` (``KL(q || p)`` of its parameters).
    """

    #: forward-backward is a compiled parallel kernel (see :func:`emkit.em.parallel_kernels_threadsafe`)
    uses_parallel_kernels = True

    def __init__(self, emission):
        self.emission = emission

    def subnormalised(self, params):
        """``(exp E[log pi] (K,), exp E[log A] (K, K))``: sub-stochastic start and transition weights."""
        return np.exp(dirichlet_expected_log(params.startprob)), np.exp(dirichlet_expected_log(params.transmat))

    def e_step(self, params, X, lengths):
        data = self.emission.prepare(X, lengths)
        frame = self.emission.expected_log_likelihood(params.emission, data)
        startprob, transmat = self.subnormalised(params)
        post = forward_backward(startprob, transmat, frame, lengths)
        if not np.isfinite(post.log_likelihood):
            raise ValueError("a sequence has zero weight under the variational posterior (an emission outside "
                             "the support of the model); check X")
        return HMMStats(start=post.expected_start, trans=post.expected_transitions,
                        emission=self.emission.statistics(params.emission, data, post.posteriors),
                        log_likelihood=post.log_likelihood, n_samples=float(frame.shape[0]))

    def m_step(self, stats, params):
        return dataclasses.replace(params, startprob=params.startprob_prior + stats.start,
                                   transmat=params.transmat_prior + stats.trans,
                                   emission=self.emission.m_step(stats.emission, params.emission))

    def kl(self, params):
        """``KL(q(theta) || p(theta))`` summed over every parameter."""
        return (dirichlet_kl(params.startprob, params.startprob_prior)
                + dirichlet_kl(params.transmat, params.transmat_prior)
                + self.emission.kl(params.emission))

    def elbo(self, stats, params):
        """The evidence lower bound (total, not per frame) of the posterior ``params``."""
        return stats.log_likelihood - self.kl(params)

    def objective(self, stats, params):
        return self.elbo(stats, params) / stats.n_samples
