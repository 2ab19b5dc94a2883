"""Work memory kept from one EM iteration to the next, for the duration of one fit.

A kernel's large scratch arrays (the (T, K) messages of a long sequence) cost more in page
faults, when they are fresh memory at every iteration, than the arithmetic that fills them:
64 MB of fresh memory took 20 ms to fill on a 2-core machine, the same memory reused 6 ms.
Inside :func:`scope` (entered by the EM drivers around a fit), :func:`buffer` hands the same
memory to every call that asks for it again from the same thread; outside it, fresh memory.
Nothing is kept after the scope ends, so a fitted model holds no scratch memory.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

_LOCAL = threading.local()  # .kept: {key: array} while this thread is inside scope()


@contextlib.contextmanager
def scope():
    """Keep the buffers asked for in this thread until the (outermost) scope ends."""
    if getattr(_LOCAL, "kept", None) is not None:
        yield
        return
    _LOCAL.kept = {}
    try:
        yield
    finally:
        _LOCAL.kept = None


def buffer(key, size, allocate=np.empty):
    """A 1-D float64 array of ``size`` elements, uninitialised.

    Inside :func:`scope`, the memory given to the previous call with the same ``key`` in this
    thread when it is large enough (the caller must be done with it: one user per key at a
    time); otherwise ``allocate(size)``.
    """
    kept = getattr(_LOCAL, "kept", None)
    if kept is None:
        return allocate(size)
    array = kept.get(key)
    if array is None or array.size < size:
        kept[key] = None  # the old memory goes back before the new is taken
        array = kept[key] = allocate(size)
    return array[:size]
