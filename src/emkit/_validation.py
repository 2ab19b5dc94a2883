"""Checks of user input, done once at the public boundary.

Every check raises a ``ValueError`` (or ``TypeError``) whose message names the
parameter, what was expected and what was received.  Private kernels trust
what passes through here.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

FLOAT_DTYPES = (np.float64, np.float32)
_FINITE_CHECK_ROWS = 1 << 16


def _as_numpy(X):
    """Turn DataFrames, lists and memory maps into an ndarray without copying when possible."""
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas objects
        X = X.to_numpy()
    if isinstance(X, np.ndarray):
        return X
    return np.asarray(X)


def _check_container(X, name):
    """A clear error for a file name passed where data is expected."""
    if isinstance(X, (str, bytes, os.PathLike)):
        raise ValueError(f"{name} is a file name ({os.fsdecode(X)!r}), not an array; this method takes data in "
                         "memory: load it first (np.load(path, mmap_mode='r'), or emkit.io.read_table(path))")


def check_array(X, name="X", *, ndim=2, min_samples=1, dtype="float", finite=True, allow_nan=False):
    """Validate a data array.

    Parameters
    ----------
    X : array-like
        Data: ndarray (memory maps are not copied), pandas DataFrame, or nested lists.
    name : str
        Name used in error messages.
    ndim : int
        Required number of dimensions.
    min_samples : int
        Required number of rows.
    dtype : {"float", "int", None}
        ``"float"`` keeps float32/float64 as they are and casts integers and booleans to
        float64; ``"int"`` requires integral values and returns int64.
    finite : bool
        Reject NaN and infinity.
    allow_nan : bool
        With ``finite``, accept NaN (a missing value) and reject only infinity.

    Returns
    -------
    X : ndarray
    """
    if hasattr(X, "tocsr") or hasattr(X, "nnz"):  # scipy.sparse matrices and arrays
        raise TypeError(f"{name} is a sparse {type(X).__name__}; sparse input is not supported: "
                        f"pass a dense array ({name}.toarray())")
    _check_container(X, name)
    try:
        X = _as_numpy(X)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as a numeric array: {exc}") from None
    if X.dtype == object:
        try:
            X = X.astype(np.float64)
        except ValueError:
            raise ValueError(f"{name} must hold numbers; got values of type object that are not numeric") from None
        except TypeError as exc:
            raise TypeError(f"{name} must hold numbers; got values of type object that are not numeric: {exc}") from None
    if np.iscomplexobj(X):
        raise ValueError(f"{name} must be real-valued (Complex data not supported); got complex dtype {X.dtype}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers; got dtype {X.dtype}")
    if X.ndim != ndim:
        if ndim == 2 and X.ndim == 1:
            hint = " Reshape your data with X.reshape(-1, 1) if it has a single feature, or X.reshape(1, -1) if it is a single sample."
        else:
            hint = ""
        raise ValueError(f"{name} must be a {ndim}-D array; got a {X.ndim}-D array of shape {X.shape}.{hint}")
    if X.shape[0] < min_samples:
        raise ValueError(f"{name} must have at least {min_samples} sample(s); got shape {X.shape}")
    if ndim == 2 and X.shape[1] == 0:
        raise ValueError(f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if dtype == "float":
        if X.dtype not in FLOAT_DTYPES:
            X = X.astype(np.float64)
    elif dtype == "int":
        if X.dtype.kind == "f":
            if finite:
                _check_finite(X, name)
            if not np.all(X == np.round(X)):
                raise ValueError(f"{name} must hold integers; got non-integer values")
        X = X.astype(np.int64, copy=False)
    if finite and X.dtype.kind == "f":
        _check_finite(X, name, allow_nan)
    return X


def _check_finite(X, name, allow_nan=False):
    """Reject NaN (unless ``allow_nan``) and inf, reading large arrays (memory maps) in blocks of rows."""
    n = X.shape[0]
    for start in range(0, max(n, 1), _FINITE_CHECK_ROWS):
        block = X[start:start + _FINITE_CHECK_ROWS]
        if allow_nan:
            if np.isinf(block).any():
                raise ValueError(f"{name} contains infinity; only NaN may mark a missing value")
        elif not np.isfinite(block).all():
            bad = "NaN" if np.isnan(block).any() else "infinity"
            raise ValueError(f"{name} contains {bad}; remove or impute such values before fitting")


def check_squares_finite(X, name="X"):
    """Reject data whose squared distances overflow float64 (values beyond about 1e153)."""
    if X.size == 0:
        return X
    big = float(max(abs(np.nanmax(X)), abs(np.nanmin(X))))
    with np.errstate(over="ignore"):
        square = np.float64(2.0 * big) ** 2 * X.shape[1]
    if not np.isfinite(square):
        raise ValueError(f"{name} holds values as large as {big:.3g}: their squares are too large for float64 "
                         "arithmetic (squares overflow); rescale X (for example divide it by its standard deviation)")
    return X


def check_n_features(X, n_features, name="X"):
    if X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features, but the model is expecting {n_features} features as input"
        )


def check_sample_weight(sample_weight, n_samples, dtype=np.float64):
    """Return sample weights as a float array of shape (n_samples,) or None for unit weights."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        sw = np.full(n_samples, float(sample_weight))
    else:
        sw = check_array(sample_weight, "sample_weight", ndim=1).astype(np.float64, copy=False)
    if sw.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},); got {sw.shape}")
    if np.any(sw < 0):
        raise ValueError("sample_weight must be non-negative; got negative values")
    if not np.any(sw > 0):
        raise ValueError("sample_weight must have at least one positive value; got weights that are all zero")
    return sw


def check_int(value, name, *, minimum=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_float(value, name, *, minimum=None, maximum=None, include_min=True, include_max=True):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    if minimum is not None and (value < minimum or (value == minimum and not include_min)):
        op = ">=" if include_min else ">"
        raise ValueError(f"{name} must be {op} {minimum}; got {value}")
    if maximum is not None and (value > maximum or (value == maximum and not include_max)):
        op = "<=" if include_max else "<"
        raise ValueError(f"{name} must be {op} {maximum}; got {value}")
    return value


def check_choice(value, name, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}; got {value!r}")
    return value


def check_random_state(random_state):
    """Return a ``numpy.random.Generator`` from None, an int, a SeedSequence or a Generator."""
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(random_state, numbers.Integral) and random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer; got {random_state}")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    raise ValueError(
        f"random_state must be None, an int or a numpy.random.Generator; got {type(random_state).__name__}"
    )


def check_probability_vector(p, name, size=None, *, atol=1e-8):
    """Validate a probability vector: finite, non-negative, summing to one."""
    p = check_array(p, name, ndim=1)
    p = p.astype(np.float64, copy=False)
    if size is not None and p.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},); got {p.shape}")
    if np.any(p < 0):
        raise ValueError(f"{name} must be non-negative; got min {p.min():.6g}")
    if abs(p.sum() - 1.0) > atol:
        raise ValueError(f"{name} must sum to 1; got sum {p.sum():.10g}")
    return p


def check_stochastic_matrix(A, name, shape=None, *, atol=1e-8):
    """Validate a row-stochastic matrix: finite, non-negative, rows summing to one."""
    A = check_array(A, name, ndim=2).astype(np.float64, copy=False)
    if shape is not None and A.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {A.shape}")
    if np.any(A < 0):
        raise ValueError(f"{name} must be non-negative; got min {A.min():.6g}")
    sums = A.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if bad.size:
        raise ValueError(f"each row of {name} must sum to 1; row {bad[0]} sums to {sums[bad[0]]:.10g}")
    return A


def check_lengths(lengths, n_samples, name="lengths"):
    """Validate sequence lengths; ``None`` means one sequence of all rows."""
    if lengths is None:
        return np.array([n_samples], dtype=np.int64)
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of integers; got shape {lengths.shape}")
    if lengths.dtype.kind not in "iu":
        if lengths.dtype.kind == "f" and np.all(lengths == np.round(lengths)):
            lengths = lengths.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integers; got dtype {lengths.dtype}")
    lengths = lengths.astype(np.int64, copy=False)
    if np.any(lengths <= 0):
        raise ValueError(f"{name} must all be positive; got {int(lengths.min())}")
    total = int(lengths.sum())
    if total != n_samples:
        raise ValueError(f"{name} must sum to the number of rows of X ({n_samples}); they sum to {total}")
    return lengths
