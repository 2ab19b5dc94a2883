"""Estimators: thin shells that validate input and run the EM driver."""
