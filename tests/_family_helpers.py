"""Shared helpers of the emission-family tests: fit a family in a mixture or an HMM with the EM
driver directly, brute-force likelihoods of tiny HMMs, and regime-switching data."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import logsumexp

from emkit.em import run_em
from emkit.sources import ArraySource, SequenceSource
from emkit.structures import HMMParams, MarkovChain, Mixture, MixtureParams


def hard_init(family, X, labels, lengths=None):
    """Emission parameters from hard assignments ``labels`` (the seeding pass of the estimators)."""
    K = family.n_components
    resp = np.zeros((X.shape[0], K))
    resp[np.arange(X.shape[0]), labels] = 1.0
    return family.init_params(family.statistics(None, family.prepare(X, lengths), resp))


def fit_mixture(family, X, labels, *, max_iter=200, tol=1e-10):
    K = family.n_components
    params = MixtureParams(weights=np.full(K, 1.0 / K), emission=hard_init(family, X, labels))
    return run_em(Mixture(family), params, ArraySource(X, rows=512), tol=tol, max_iter=max_iter)


def fit_hmm(family, X, lengths, labels, *, max_iter=200, tol=1e-10):
    K = family.n_components
    params = HMMParams(startprob=np.full(K, 1.0 / K), transmat=np.full((K, K), 0.1 / (K - 1)) + (0.9 - 0.1 / (K - 1))
                       * np.eye(K), emission=hard_init(family, X, labels, lengths))
    return run_em(MarkovChain(family), params, SequenceSource(X, lengths, frames=700), tol=tol, max_iter=max_iter)


def assert_monotone(lower_bounds):
    lb = np.asarray(lower_bounds)
    drops = np.diff(lb)
    assert np.all(drops >= -1e-12 * np.maximum(1.0, np.abs(lb[1:]))), f"objective decreased: {drops.min()}"


def brute_force_loglik(startprob, transmat, frame_loglik):
    """``log p(x)`` of one sequence by summing over every state path (T <= 6 or so)."""
    T, K = frame_loglik.shape
    terms = []
    for path in itertools.product(range(K), repeat=T):
        lp = np.log(startprob[path[0]]) + frame_loglik[0, path[0]]
        for t in range(1, T):
            lp += np.log(transmat[path[t - 1], path[t]]) + frame_loglik[t, path[t]]
        terms.append(lp)
    return logsumexp(terms)


def regime_states(n_sequences, length, rng, stay=0.95):
    """State sequences of a two-state Markov chain (concatenated) and their lengths."""
    z = []
    for _ in range(n_sequences):
        s = [rng.integers(2)]
        for _ in range(length - 1):
            s.append(s[-1] if rng.random() < stay else 1 - s[-1])
        z.extend(s)
    return np.asarray(z), np.full(n_sequences, length)
