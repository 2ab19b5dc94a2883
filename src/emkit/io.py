"""Safe model files and reading of data tables.

Model file format (``.npz``, version 1)
--------------------------------------
A numpy ``.npz`` archive read with ``allow_pickle=False``, so loading cannot run code.
It holds

``__emkit__``
    UTF-8 JSON metadata as a uint8 array: ``format`` ("emkit-model"),
    ``format_version``, ``emkit_version``, ``class`` (one of the registered
    estimator classes, looked up in a fixed table — never imported by name),
    ``params`` (JSON-serialisable hyperparameters), ``attributes`` (name -> kind:
    "array", "scalar" or "list") and ``sha256`` of the arrays' bytes, which
    detects truncated or altered files.
``param:<name>``
    hyperparameters that are arrays (for example ``means_init``).
``attr:<name>``
    fitted attributes.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np

FORMAT = "emkit-model"
FORMAT_VERSION = 1
_REGISTRY = {}


def register(cls):
    """Class decorator: make an estimator class loadable from model files."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _digest(arrays):
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _jsonable(value):
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, (int, float)) and not isinstance(value, np.generic):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


def _to_builtin(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, range):
        return list(value)
    return value


def save_model(model, path):
    """Write a fitted model to ``path`` (``.npz`` appended if missing). Returns the path written."""
    from . import __version__

    cls = type(model)
    if _REGISTRY.get(cls.__name__) is not cls:
        raise TypeError(f"{cls.__name__} cannot be saved: it is not a registered emkit model")
    names = getattr(model, "_fitted_attributes", ())
    missing = [n for n in names if getattr(model, n, None) is None]
    if missing:
        raise ValueError(f"cannot save an unfitted {cls.__name__}: missing {', '.join(missing)}; call fit first")
    arrays, params, attributes = {}, {}, {}
    for key, value in model.get_params().items():
        value = _to_builtin(value)
        if isinstance(value, np.ndarray):
            arrays[f"param:{key}"] = value
        elif _jsonable(value):
            params[key] = value
        elif key == "random_state":
            params[key] = None  # a Generator's state is not part of the model
        else:
            raise TypeError(f"hyperparameter {key}={value!r} cannot be stored in a model file")
    for name in names:
        value = getattr(model, name)
        if isinstance(value, list):
            attributes[name] = "list"
            arrays[f"attr:{name}"] = np.asarray(value)
        elif isinstance(value, np.ndarray):
            attributes[name] = "array"
            arrays[f"attr:{name}"] = value
        else:
            attributes[name] = "scalar"
            arrays[f"attr:{name}"] = np.asarray(_to_builtin(value))
    for key, a in arrays.items():
        if a.dtype == object:
            raise TypeError(f"{key} holds Python objects and cannot be stored without pickling")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "emkit_version": __version__,
            "class": cls.__name__, "params": params, "attributes": attributes, "sha256": _digest(arrays)}
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    with open(path, "wb") as fh:
        np.savez(fh, __emkit__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return path


def load_model(path):
    """Read a model written by :func:`save_model`.  Never unpickles; checks integrity and version."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable emkit model file (truncated or corrupt?): {exc}") from None
    if "__emkit__" not in arrays:
        raise ValueError(f"{path} is not an emkit model file (no __emkit__ metadata)")
    try:
        meta = json.loads(arrays.pop("__emkit__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: corrupt metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an emkit model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path} uses model format version {version}, newer than this emkit supports "
                         f"({FORMAT_VERSION}); upgrade emkit to read it")
    if meta.get("sha256") != _digest(arrays):
        raise ValueError(f"{path}: checksum mismatch — the file was altered or is damaged")
    cls = _REGISTRY.get(meta.get("class"))
    if cls is None:
        raise ValueError(f"{path}: unknown model class {meta.get('class')!r}; known: {sorted(_REGISTRY)}")
    params = dict(meta.get("params", {}))
    for key in list(arrays):
        if key.startswith("param:"):
            params[key[6:]] = arrays.pop(key)
    try:
        model = cls(**params)
    except TypeError as exc:
        raise ValueError(f"{path}: hyperparameters do not match {cls.__name__}: {exc}") from None
    for name, kind in meta.get("attributes", {}).items():
        key = f"attr:{name}"
        if key not in arrays:
            raise ValueError(f"{path}: fitted attribute {name} is missing")
        a = arrays[key]
        value = a.tolist() if kind == "list" else (a.item() if kind == "scalar" else a)
        setattr(model, name, value)
    if hasattr(model, "_validate_fitted"):
        model._validate_fitted()
    return model


def read_table(path, columns=None):
    """Read a numeric table.

    Parameters
    ----------
    path : str
        ``.csv`` / ``.tsv`` / ``.txt`` (a header row is detected), ``.npy``.
    columns : list of str or int, optional
        Columns to keep, by name (needs a header) or 0-based index.

    Returns
    -------
    X : ndarray (n, D)
    names : list of str
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        X = np.load(path, mmap_mode="r", allow_pickle=False)
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        names = [f"x{i}" for i in range(X.shape[1])]
    else:
        delim = "\t" if ext == ".tsv" else ","
        with open(path, encoding="utf-8") as fh:
            first = fh.readline().strip()
        if not first:
            raise ValueError(f"{path} is empty")
        if ext not in (".tsv",) and delim not in first and "\t" in first:
            delim = "\t"
        cells = [c.strip().strip('"') for c in first.split(delim)]
        try:
            [float(c) for c in cells]
            header = False
        except ValueError:
            header = True
        names = cells if header else [f"x{i}" for i in range(len(cells))]
        try:
            X = np.loadtxt(path, delimiter=delim, skiprows=1 if header else 0, ndmin=2)
        except ValueError as exc:
            raise ValueError(f"{path}: could not read numeric values: {exc}") from None
    if columns is not None:
        idx = []
        for c in columns:
            if isinstance(c, int) or (isinstance(c, str) and c.isdigit() and c not in names):
                i = int(c)
                if not 0 <= i < X.shape[1]:
                    raise ValueError(f"column index {i} out of range: {path} has {X.shape[1]} columns")
                idx.append(i)
            elif c in names:
                idx.append(names.index(c))
            else:
                raise ValueError(f"column {c!r} not found in {path}; available columns: {', '.join(names)}")
        X = X[:, idx]
        names = [names[i] for i in idx]
    return X, names
