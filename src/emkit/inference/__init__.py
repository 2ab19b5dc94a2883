"""Inference for latent structures: mixtures and hidden Markov models."""
