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
    "array", "scalar" or "list"), optionally ``feature_names_in`` (the column names the model
    was fitted on: a list of distinct strings, one per feature, checked on load) and ``sha256``
    of the arrays' bytes, which detects truncated or altered files.
``param:<name>``
    hyperparameters that are arrays (for example ``means_init``).
``attr:<name>``
    fitted attributes.
``online.<field>...``
    the running statistics of online EM (``partial_fit``), described under ``online`` in the
    metadata, so that a reloaded model continues its stream where it stopped.
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

    arrays = {}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "emkit_version": __version__,
            **_encode(model, arrays, "")}
    for key, a in arrays.items():
        if a.dtype == object:
            raise TypeError(f"{key} holds Python objects and cannot be stored without pickling")
    meta["sha256"] = _digest(arrays)
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    with open(path, "wb") as fh:
        np.savez(fh, __emkit__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return path


def _check_registered(cls):
    if _REGISTRY.get(cls.__name__) is not cls:
        raise TypeError(f"{cls.__name__} cannot be saved: it is not a registered emkit model")


def _encode_params(model, arrays, prefix):
    """JSON-able hyperparameters of ``model``; array ones go to ``arrays`` as ``<prefix>param:<name>``.

    A dict with keys that are not strings (per-class settings keyed by class label) is stored as
    ``{"__items__": [[key, value], ...]}``; an emkit estimator (a template) as
    ``{"__estimator__": class name, "params": {...}}``.
    """
    params = {}
    for key, value in model.get_params(deep=False).items():
        value = _to_builtin(value)
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}param:{key}"] = value
        elif isinstance(value, dict) and not all(isinstance(k, str) for k in value):
            items = [[_to_builtin(k), _to_builtin(v)] for k, v in value.items()]
            if not _jsonable(items):
                raise TypeError(f"hyperparameter {key}={value!r} cannot be stored in a model file")
            params[key] = {"__items__": items}
        elif _jsonable(value):
            params[key] = value
        elif hasattr(value, "get_params") and not isinstance(value, type):
            _check_registered(type(value))
            params[key] = {"__estimator__": type(value).__name__,
                           "params": _encode_params(value, arrays, f"{prefix}{key}.")}
        elif key == "random_state":
            params[key] = None  # a Generator's state is not part of the model
        else:
            raise TypeError(f"hyperparameter {key}={value!r} cannot be stored in a model file")
    return params


def _encode(model, arrays, prefix):
    """Metadata entry (class, params, attributes, online, members) of a fitted model; arrays added."""
    cls = type(model)
    _check_registered(cls)
    names = getattr(model, "_fitted_attributes", ())
    missing = [n for n in names if getattr(model, n, None) is None]
    if missing:
        raise ValueError(f"cannot save an unfitted {cls.__name__}: missing {', '.join(missing)}; call fit first")
    params, attributes = _encode_params(model, arrays, prefix), {}
    for name in names:
        value = getattr(model, name)
        if isinstance(value, list):
            attributes[name] = "list"
            arrays[f"{prefix}attr:{name}"] = np.asarray(value)
        elif isinstance(value, np.ndarray):
            attributes[name] = "array"
            arrays[f"{prefix}attr:{name}"] = value
        else:
            attributes[name] = "scalar"
            arrays[f"{prefix}attr:{name}"] = np.asarray(_to_builtin(value))
    entry = {"class": cls.__name__, "params": params, "attributes": attributes,
             "online": _online_to_arrays(getattr(model, "_online_state", None), arrays, prefix)}
    if getattr(model, "feature_names_in_", None) is not None:
        entry["feature_names_in"] = [str(n) for n in model.feature_names_in_]
    members = getattr(cls, "_member_attribute", None)  # composite models: a list of fitted estimators
    if members:
        entry["members"] = [_encode(m, arrays, f"{prefix}{members}.{i}.")
                            for i, m in enumerate(getattr(model, members))]
    return entry


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
    return _decode(meta, arrays, "", path)


def _model_class(name, path):
    if isinstance(name, str) and name not in _REGISTRY:
        from . import _import_public

        _import_public()  # the estimator modules register their classes when imported
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"{path}: unknown model class {name!r}; known: {sorted(_REGISTRY)}")
    return cls


def _decode_params(cls, params, arrays, prefix, path):
    """An unfitted ``cls`` from the hyperparameters written by :func:`_encode_params`."""
    if not isinstance(params, dict):
        raise ValueError(f"{path}: hyperparameters of {cls.__name__} are damaged")
    params = dict(params)
    for key, value in params.items():
        if isinstance(value, dict) and "__items__" in value:
            items = value["__items__"]
            if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 2 and
                                                      isinstance(i[0], (str, int, float, bool)) for i in items):
                raise ValueError(f"{path}: hyperparameter {key} of {cls.__name__} is damaged")
            params[key] = {k: v for k, v in items}
        elif isinstance(value, dict) and "__estimator__" in value:
            params[key] = _decode_params(_model_class(value["__estimator__"], path), value.get("params"), arrays,
                                         f"{prefix}{key}.", path)
    head = f"{prefix}param:"
    for key in list(arrays):
        if key.startswith(head) and "." not in key[len(head):]:
            params[key[len(head):]] = arrays[key]
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"{path}: hyperparameters do not match {cls.__name__}: {exc}") from None


def _decode(entry, arrays, prefix, path):
    """The fitted model described by one metadata entry of :func:`_encode`."""
    cls = _model_class(entry.get("class"), path)
    model = _decode_params(cls, entry.get("params", {}), arrays, prefix, path)
    for name, kind in entry.get("attributes", {}).items():
        key = f"{prefix}attr:{name}"
        if key not in arrays:
            raise ValueError(f"{path}: fitted attribute {name} is missing")
        a = arrays[key]
        value = a.tolist() if kind == "list" else (a.item() if kind == "scalar" else a)
        setattr(model, name, value)
    members = getattr(cls, "_member_attribute", None)
    if members:
        entries = entry.get("members")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError(f"{path}: the fitted models inside the {cls.__name__} are missing")
        setattr(model, members, [_decode(e, arrays, f"{prefix}{members}.{i}.", path) for i, e in enumerate(entries)])
    if hasattr(model, "_validate_fitted"):
        model._validate_fitted()
    if "feature_names_in" in entry:
        model.feature_names_in_ = _feature_names(entry["feature_names_in"], getattr(model, "n_features_in_", None),
                                                 path)
    if entry.get("online"):
        model._online_state = _online_from_arrays(entry["online"], arrays, path, prefix)
    return model


def _feature_names(names, n_features, path):
    """The ``feature_names_in`` metadata entry checked: a list of ``n_features`` distinct, non-empty
    strings of at most 1000 characters each (a crafted file gets a clear error, nothing else)."""
    if (not isinstance(names, list) or not all(isinstance(n, str) and 0 < len(n) <= 1000 for n in names)
            or len(set(names)) != len(names)):
        raise ValueError(f"{path}: feature_names_in must be a list of distinct non-empty strings")
    if n_features is not None and len(names) != n_features:
        raise ValueError(f"{path}: feature_names_in has {len(names)} names but the model has {n_features} features")
    return np.asarray(names, dtype=object)


def _online_to_arrays(state, arrays, prefix=""):
    """Running statistics of online EM (so that ``partial_fit`` continues after a reload)."""
    from .stats import stats_to_arrays

    if state is None or state.stats is None:
        return None
    sa, desc = stats_to_arrays(state.stats, f"{prefix}online")
    arrays.update(sa)
    sched = None if state.schedule is None else {"kappa": state.schedule.kappa, "tau": state.schedule.tau,
                                                 "min_step": state.schedule.min_step}
    return {"stats": desc, "schedule": sched, "n_updates": int(state.n_updates), "n_seen": float(state.n_seen)}


def _online_from_arrays(online, arrays, path, prefix=""):
    from .em import OnlineState, StepSchedule
    from .stats import stats_from_arrays

    try:
        stats = stats_from_arrays(online["stats"], arrays, f"{prefix}online")
        schedule = None if online.get("schedule") is None else StepSchedule(**online["schedule"])
        return OnlineState(stats=stats, schedule=schedule, n_updates=int(online["n_updates"]),
                           n_seen=float(online["n_seen"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the online-EM state is damaged: {exc}") from None


def read_table(path, columns=None, *, sequence_column=None, key=None):
    """Read a numeric table into memory (see :func:`emkit.open_table` for data larger than memory).

    Parameters
    ----------
    path : str
        ``.csv`` / ``.tsv`` / ``.txt`` (a header row is detected), ``.npy``, ``.parquet``, ``.h5``.
    columns : list of str or int, optional
        Feature columns to keep, by name or 0-based index (default: every column but the
        sequence column).
    sequence_column : str or int, optional
        Column holding a sequence id (numbers or text): rows with the same id form one
        sequence; each sequence's rows must be contiguous.
    key : str, optional
        HDF5 dataset name.

    Returns
    -------
    X : ndarray (n, D)
    names : list of str
    lengths : ndarray (n_seq,) or None
    sequence_ids : list or None
        The id of each sequence, in order.
    """
    from .sources import open_table

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    seq = None
    if sequence_column is not None:
        seq, names_all = _read_column(path, sequence_column, key)
        if columns is None:
            columns = [n for i, n in enumerate(names_all) if n != str(sequence_column) and str(i) != str(sequence_column)]
    src = open_table(path, columns, key=key)
    parts = [c for c, _ in src.chunks()]
    if not parts:
        raise ValueError(f"{path} holds no rows")
    X = np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])
    names = list(getattr(src, "names", [f"x{i}" for i in range(X.shape[1])]))
    if ext == ".npy" and X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    lengths = ids = None
    if seq is not None:
        lengths, ids = _runs(seq, sequence_column, path)
    return X, names, lengths, ids


def counter_columns(X, lengths=None):
    """Columns that look like a row index or frame counter: integers increasing by one.

    Parameters
    ----------
    X : ndarray (n, D)
    lengths : array-like of int, optional
        Sequence lengths (a counter may restart at each sequence).

    Returns
    -------
    list of int
        Indices of such columns (none when X has fewer than 3 rows).
    """
    X = np.asarray(X)
    if X.shape[0] < 3:
        return []
    inside = np.ones(X.shape[0] - 1, dtype=bool)  # the step (t, t+1) lies inside one sequence
    if lengths is not None:
        inside[np.cumsum(lengths)[:-1] - 1] = False
    step = np.diff(X, axis=0)[inside]
    return [j for j in range(X.shape[1])
            if np.all(X[:, j] == np.round(X[:, j])) and step.shape[0] > 0 and np.all(step[:, j] == 1)]


def _read_column(path, column, key):
    """The raw values of one column (any dtype) and the list of column names."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".csv", ".tsv", ".txt", ".parquet", ".pq"):
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("reading a sequence column needs pandas: pip install 'emkit[io]'") from None
        if ext in (".parquet", ".pq"):
            df = pd.read_parquet(path)
            names = [str(c) for c in df.columns]
        else:
            from .sources import csv_layout

            sep, header, names = csv_layout(path, "\t" if ext == ".tsv" else None)
            df = pd.read_csv(path, sep=sep, header=0 if header else None, encoding="utf-8-sig")
        if str(column) in names:
            return df.iloc[:, names.index(str(column))].to_numpy(), names
        if str(column).isdigit() and int(column) < len(names):
            return df.iloc[:, int(column)].to_numpy(), names
        raise ValueError(f"sequence column {column!r} not found in {path}; available columns: {', '.join(names)}")
    X, names = _numeric_all(path, key)
    if str(column) in names:
        return X[:, names.index(str(column))], names
    if str(column).isdigit() and int(column) < X.shape[1]:
        return X[:, int(column)], names
    raise ValueError(f"sequence column {column!r} not found in {path}; available columns: {', '.join(names)}")


def _numeric_all(path, key):
    from .sources import open_table

    src = open_table(path, None, key=key)
    X = np.concatenate([c for c, _ in src.chunks()])
    return X, list(getattr(src, "names", [f"x{i}" for i in range(X.shape[1])]))


def _runs(values, column, path):
    """Lengths of the runs of equal consecutive values; every id must form a single run."""
    values = np.asarray(values)
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [values.size]]))
    ids = [values[s].item() if hasattr(values[s], "item") else values[s] for s in starts]
    seen = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"the rows of sequence {i!r} (column {column!r}) in {path} are not contiguous; "
                             "sort the file by the sequence column")
        seen.add(i)
    return lengths.astype(np.int64), ids


def write_table(path, columns):
    """Write named columns (dict name -> 1-D array) as CSV/TSV, or Parquet by the extension."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    names = list(columns)
    if ext in (".parquet", ".pq"):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError("writing Parquet needs pyarrow: pip install 'emkit[io]'") from None
        pq.write_table(pa.table({n: np.asarray(columns[n]) for n in names}), path)
        return path
    if ext not in (".csv", ".tsv", ".txt"):
        raise ValueError(f"unsupported output file type {ext!r} for {path}; use .csv, .tsv or .parquet")
    sep = "\t" if ext == ".tsv" else ","
    cols = [np.asarray(columns[n]) for n in names]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(sep.join(names) + "\n")
        for row in zip(*cols):
            fh.write(sep.join(_cell(v) for v in row) + "\n")
    return path


def _cell(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return str(v)
