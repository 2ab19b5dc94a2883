"""Work memory kept for the duration of a fit (emkit._workspace): reused inside a scope, per thread,
released when the scope ends."""

import threading

import numpy as np

from emkit import _workspace


def test_outside_a_scope_every_call_gets_fresh_memory():
    a = _workspace.buffer("k", 100)
    b = _workspace.buffer("k", 100)
    assert a.shape == (100,) and a.dtype == np.float64
    assert not np.shares_memory(a, b)


def test_inside_a_scope_the_memory_is_reused_and_grows_when_needed():
    with _workspace.scope():
        a = _workspace.buffer("k", 100)
        assert np.shares_memory(a, _workspace.buffer("k", 60))  # smaller: the same memory
        assert not np.shares_memory(a, _workspace.buffer("other", 100))  # keys are separate
        big = _workspace.buffer("k", 200)  # larger: new memory, kept from now on
        assert big.shape == (200,) and not np.shares_memory(a, big)
        assert np.shares_memory(big, _workspace.buffer("k", 150))
        with _workspace.scope():  # nested scopes share the outermost one
            assert np.shares_memory(big, _workspace.buffer("k", 10))
        assert np.shares_memory(big, _workspace.buffer("k", 10))
    assert not np.shares_memory(big, _workspace.buffer("k", 10))  # released with the scope


def test_the_allocator_is_used_for_new_memory():
    calls = []

    def allocate(n):
        calls.append(n)
        return np.zeros(n)

    with _workspace.scope():
        _workspace.buffer("k", 5, allocate)
        _workspace.buffer("k", 3, allocate)
        _workspace.buffer("k", 8, allocate)
    assert calls == [5, 8]


def test_other_threads_do_not_see_a_scope():
    seen = []
    with _workspace.scope():
        a = _workspace.buffer("k", 100)
        t = threading.Thread(target=lambda: seen.append(_workspace.buffer("k", 100)))
        t.start()
        t.join()
    assert not np.shares_memory(a, seen[0])
