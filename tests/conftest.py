import numpy as np
import pytest


def make_blobs(n=600, D=2, K=3, seed=0, spread=8.0, dtype=np.float64):
    """Well-separated Gaussian blobs with random covariances; returns X, labels, true means."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=spread, size=(K, D))
    labels = rng.integers(0, K, size=n)
    X = np.empty((n, D))
    for k in range(K):
        A = rng.normal(size=(D, D)) * 0.5 + np.eye(D)
        idx = labels == k
        X[idx] = means[k] + rng.normal(size=(idx.sum(), D)) @ A.T
    return X.astype(dtype), labels, means


@pytest.fixture
def blobs():
    return make_blobs()


@pytest.fixture
def one_compiled_thread():
    """Compiled kernels on one thread, for tiny data where starting a parallel region costs more than the work."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)
