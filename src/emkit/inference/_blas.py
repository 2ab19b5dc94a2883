"""Two BLAS-3 routines called without the GIL.

scipy's ``scipy.linalg.blas`` wrappers hold the GIL while BLAS runs, so E-step chunks on the
thread pool of :mod:`emkit.em` would take turns in them.  The same routines of the same library
(``scipy.linalg.cython_blas``) called through ctypes release it.  Arrays are C-ordered numpy
arrays, that is the transposes of the column-major matrices BLAS sees.
"""

from __future__ import annotations

import ctypes

import numpy as np

_VOID = ctypes.c_void_p
_CHAR = ctypes.c_char_p
_INT = ctypes.POINTER(ctypes.c_int)
_DOUBLE = ctypes.POINTER(ctypes.c_double)


def _function(name, *argtypes):
    from scipy.linalg import cython_blas

    capsule = cython_blas.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return ctypes.CFUNCTYPE(None, *argtypes)(get_pointer(capsule, get_name(capsule)))


_ROUTINES = {}


def _routine(name):
    f = _ROUTINES.get(name)
    if f is None:
        if name == "dsyrk":  # uplo, trans, n, k, alpha, a, lda, beta, c, ldc
            f = _function(name, _CHAR, _CHAR, _INT, _INT, _DOUBLE, _VOID, _INT, _DOUBLE, _VOID, _INT)
        else:  # dtrmm: side, uplo, transa, diag, m, n, alpha, a, lda, b, ldb
            f = _function(name, _CHAR, _CHAR, _CHAR, _CHAR, _INT, _INT, _DOUBLE, _VOID, _INT, _VOID, _INT)
        _ROUTINES[name] = f
    return f


def _int(v):
    return ctypes.byref(ctypes.c_int(int(v)))


def _double(v):
    return ctypes.byref(ctypes.c_double(float(v)))


def _check(a, name, shape=None):
    if a.dtype != np.float64 or not a.flags.c_contiguous or a.ndim != 2:
        raise ValueError(f"{name} must be a C-contiguous 2-d float64 array")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}")


def gram_upper(Z, out):
    """``out`` (D, D) <- ``Z^T Z`` for ``Z`` (n, D) in its upper triangle (the strict lower one is undefined)."""
    _check(Z, "Z")
    n, D = Z.shape
    _check(out, "out", (D, D))
    # column-major: Z is the D x n matrix A, out the D x D matrix C; C's lower triangle is out's upper
    _routine("dsyrk")(b"L", b"N", _int(D), _int(n), _double(1.0), Z.ctypes.data, _int(D), _double(0.0),
                      out.ctypes.data, _int(D))
    return out


def times_upper(Y, U):
    """In place: ``Y`` (n, D) <- ``Y @ U`` for an upper-triangular ``U`` (D, D) (only its upper triangle is read)."""
    _check(Y, "Y")
    n, D = Y.shape
    _check(U, "U", (D, D))
    # column-major: Y is the D x n matrix B and U the lower-triangular D x D matrix A = U^T: B <- A B
    _routine("dtrmm")(b"L", b"L", b"N", b"N", _int(D), _int(n), _double(1.0), U.ctypes.data, _int(D),
                      Y.ctypes.data, _int(D))
    return Y
