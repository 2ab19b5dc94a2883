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
``{"__family__": name, "params": {...}}``
    a hyperparameter that is an emission family (``emission`` of :class:`emkit.MixtureModel`
    and :class:`emkit.HMM`): its registered name and plain hyperparameters.  Loading looks the
    name up among the families already imported (a family of your own must be imported
    first); its parameter arrays are fitted attributes named after the family's
    ``attributes`` (``attr:means_``, ...).
``<member attribute>.<i>.param:...``, ``...attr:...``, ``...online...``
    composite models (classifiers): the metadata entry has ``members``, one entry like the
    top-level one per fitted member model, whose arrays carry the prefix; a hyperparameter that
    is an estimator (a template) is ``{"__estimator__": class, "params": {...}}`` with array
    hyperparameters under ``<name>.param:``.

Loading trusts nothing in the file.  The zip directory is read first: every member must be a
``.npy`` named by the metadata and allowed for the class, no member may expand more than
``MAX_EXPANSION`` times (above ``SMALL_MEMBER_BYTES``), and each member's ``.npy`` header must
declare exactly the bytes the directory lists -- all before any array is read.  Fitted
attributes are accepted only if the class declares them, with the dtype kind and number of
dimensions of :data:`ATTRIBUTE_TYPES`; hyperparameters only if they are arguments of the
class's ``__init__``; then the model validates its values.  Every problem is a ``ValueError``
naming the file.  The SHA-256 detects damage, not tampering (anyone can recompute it).

Which attributes a class saves is declared on the class: ``_fitted_attributes`` (always
saved; missing ones make ``save`` refuse) and ``_optional_attributes`` (saved when set).  A
new attribute is one line: add its name there and, if :data:`ATTRIBUTE_TYPES` does not know
it, its type to the class's ``_attribute_types``, e.g.
``_attribute_types = {"centroids_": AttributeType("f", (2,))}``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from ._atomic import atomic_path
from ._registry import _REGISTRY, register  # noqa: F401  (emkit.io.register is the decorator's public name)

FORMAT = "emkit-model"
FORMAT_VERSION = 1

#: Largest metadata member read (bytes).
MAX_METADATA_BYTES = 1 << 20
#: Members larger than this must not expand more than ``MAX_EXPANSION`` times their compressed size.
SMALL_MEMBER_BYTES = 1 << 20
MAX_EXPANSION = 20


class AttributeType(NamedTuple):
    """What a fitted attribute may hold in a model file.

    ``kinds``: numpy dtype kinds accepted ("f" float, "i"/"u" integer, "b" bool, "U" text);
    ``ndims``: accepted numbers of dimensions; ``as_list``: returned as a Python list.
    """

    kinds: str
    ndims: tuple
    as_list: bool = False


_FLOAT, _COUNT = "fiu", "iu"
#: The type of every fitted attribute an emkit model file may hold.  A class may add or
#: override entries with its own ``_attribute_types`` dict; which attributes a class saves is
#: its ``_fitted_attributes`` (always) and ``_optional_attributes`` (when set).  Loading accepts
#: only those names, with these types.
ATTRIBUTE_TYPES = {
    "weights_": AttributeType(_FLOAT, (1,)),
    "means_": AttributeType(_FLOAT, (2,)),
    "covariances_": AttributeType(_FLOAT, (1, 2, 3)),
    "precisions_": AttributeType(_FLOAT, (1, 2, 3)),
    "precisions_cholesky_": AttributeType(_FLOAT, (1, 2, 3)),
    "cluster_centers_": AttributeType(_FLOAT, (2,)),
    "labels_": AttributeType(_COUNT, (1,)),
    "inertia_": AttributeType(_FLOAT, (0,)),
    "startprob_": AttributeType(_FLOAT, (1,)),
    "transmat_": AttributeType(_FLOAT, (2,)),
    "covars_": AttributeType(_FLOAT, (1, 2, 3)),
    "emissionprob_": AttributeType(_FLOAT, (2,)),
    "lambdas_": AttributeType(_FLOAT, (2,)),
    "coefs_": AttributeType(_FLOAT, (3,)),
    "intercepts_": AttributeType(_FLOAT, (2,)),
    "converged_": AttributeType("b", (0,)),
    "n_iter_": AttributeType(_COUNT, (0,)),
    "lower_bound_": AttributeType(_FLOAT, (0,)),
    "lower_bounds_": AttributeType(_FLOAT, (1,), as_list=True),
    "init_lower_bounds_": AttributeType(_FLOAT, (1,)),
    "n_features_in_": AttributeType(_COUNT, (0,)),
    "classes_": AttributeType("biufU", (1,)),
    "class_prior_": AttributeType(_FLOAT, (1,)),
    "class_count_": AttributeType(_FLOAT, (1,)),
    "anomaly_threshold_": AttributeType(_FLOAT, (0,)),
}


#: The type of the parameter arrays of an emission family (generic estimators).
FAMILY_ARRAY = AttributeType("fiub", (0, 1, 2, 3, 4))


def fitted_attribute_names(cls, family=None):
    """The fitted attributes ``cls`` always saves; with an emission ``family`` (generic estimators),
    its parameter arrays too."""
    names = tuple(getattr(cls, "_fitted_attributes", ()))
    if family is not None:
        names += cls._family_attribute_names(family)
    return names


def attribute_types(cls, family=None):
    """``{name: AttributeType}`` of every fitted attribute ``cls`` may save (its whitelist); ``family``: the
    emission family of a generic estimator, whose parameter arrays are added."""
    table = {**ATTRIBUTE_TYPES, **getattr(cls, "_attribute_types", {})}
    if family is not None:
        table.update({name: FAMILY_ARRAY for name in cls._family_attribute_names(family)})
    names = fitted_attribute_names(cls, family) + tuple(getattr(cls, "_optional_attributes", ()))
    unknown = [n for n in names if n not in table]
    if unknown:
        raise TypeError(f"{cls.__name__} declares fitted attributes without a type: {unknown}; "
                        "add them to emkit.io.ATTRIBUTE_TYPES or the class's _attribute_types")
    return {n: table[n] for n in names}


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
    """Write a fitted model to ``path`` (``.npz`` appended if missing). Returns the path written.

    The file is written to a temporary file in the same folder and moved into place when
    complete: an interrupted save leaves any previous file at ``path`` intact.
    """
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
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
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
        elif _is_family(value):
            params[key] = _family_to_json(value, key)
        elif isinstance(value, dict) and value and all(isinstance(v, (np.ndarray, list)) for v in value.values()):
            for name, a in value.items():  # starting arrays by name (emission_init)
                arrays[f"{prefix}param:{key}.{name}"] = np.asarray(a)
            params[key] = {"__arrays__": sorted(value)}
        elif hasattr(value, "get_params") and not isinstance(value, type):
            _check_registered(type(value))
            params[key] = {"__estimator__": type(value).__name__,
                           "params": _encode_params(value, arrays, f"{prefix}{key}.")}
        elif key == "random_state":
            params[key] = None  # a Generator's state is not part of the model
        else:
            raise TypeError(f"hyperparameter {key}={value!r} cannot be stored in a model file")
    return params


def _is_family(value):
    from .emissions.base import EmissionFamily

    return isinstance(value, EmissionFamily)


def _family_to_json(family, key):
    """An emission family as ``{"__family__": registered name, "params": plain hyperparameters}``."""
    from .emissions.base import get_family

    name = type(family).family_name
    if name is None or get_family(name) is not type(family):
        raise TypeError(f"{key}={family!r} cannot be stored in a model file: its class is not a registered emission "
                        "family (decorate it with emkit.emissions.register_family)")
    return {"__family__": name, "params": family.hyperparameters()}


def _family_from_json(value, key, path):
    """The family instance of :func:`_family_to_json` (looked up among the registered families; no code is run
    from the file)."""
    from .emissions.base import get_family

    name, params = value.get("__family__"), value.get("params")
    if not isinstance(name, str) or not isinstance(params, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, (bool, int, float, str))) for k, v in params.items()):
        raise ValueError(f"{path}: hyperparameter {key} (an emission family) is damaged")
    cls = get_family(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"{path}: hyperparameters of emission family {name!r} do not match: {exc}") from None


def _entry_family(cls, params, path):
    """The emission family of a generic estimator's metadata entry (None for other classes)."""
    key = getattr(cls, "_family_param", None)
    if key is None:
        return None
    value = params.get(key) if isinstance(params, dict) else None
    if isinstance(value, str):
        from .emissions.base import get_family

        return get_family(value)()
    if not isinstance(value, dict) or "__family__" not in value:
        raise ValueError(f"{path}: the emission family of the {cls.__name__} is missing from the file")
    return _family_from_json(value, key, path)


def _encode(model, arrays, prefix):
    """Metadata entry (class, params, attributes, online, members) of a fitted model; arrays added."""
    cls = type(model)
    _check_registered(cls)
    family = model._base_family() if getattr(cls, "_family_param", None) else None
    types = attribute_types(cls, family)
    missing = [n for n in fitted_attribute_names(cls, family) if getattr(model, n, None) is None]
    if missing:
        raise ValueError(f"cannot save an unfitted {cls.__name__}: missing {', '.join(missing)}; call fit first")
    if hasattr(model, "_validate_fitted"):
        model._validate_fitted()
    params, attributes = _encode_params(model, arrays, prefix), {}
    for name, spec in types.items():
        value = getattr(model, name, None)
        if value is None:
            continue  # an optional attribute that is not set
        a = np.asarray(_to_builtin(value))
        if a.dtype.kind not in spec.kinds or a.ndim not in spec.ndims:
            raise TypeError(f"{cls.__name__}.{name} has dtype {a.dtype} and {a.ndim} dimension(s); a model file "
                            f"stores it with dtype kind in {spec.kinds!r} and dimensions {spec.ndims}")
        attributes[name] = "list" if spec.as_list else ("scalar" if a.ndim == 0 else "array")
        arrays[f"{prefix}attr:{name}"] = a
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
    """Read a model written by :func:`save_model`.

    Never unpickles and never runs code.  Before any array is read, the archive's directory
    is checked: only the members the metadata and the class allow (each class's fitted
    attributes and hyperparameters), with sizes matching their declared shapes and bounded
    expansion.  Every problem with the file raises a ``ValueError`` naming the file and what
    is wrong.  The SHA-256 in the metadata detects damage (truncation, flipped bytes), not
    tampering: anyone can recompute it.
    """
    return read_model_file(path)[0]


def read_model_file(path):
    """``(model, metadata, arrays)`` of a model file, with every check of :func:`load_model`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not an emkit model file")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        ext = os.path.splitext(path)[1].lower()
        hint = {".npy": " (it looks like a plain .npy array, not a model written by model.save)",
                ".csv": " (it looks like a data table; pass it with --data)"}.get(ext, "")
        raise ValueError(f"{path} is not a readable emkit model file: not a .npz archive{hint}; "
                         f"truncated or corrupt? ({exc})") from None
    with zf:
        try:
            meta, arrays = _read_members(zf, path)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
            raise ValueError(f"{path} is not a readable emkit model file (truncated or corrupt?): {exc}") from None
    if meta.get("sha256") != _digest(arrays):
        raise ValueError(f"{path}: checksum mismatch — the file was altered or is damaged")
    try:
        model = _decode(meta, arrays, "", path)
    except (TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        raise ValueError(f"{path}: the stored model is invalid: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(path) else f"{path}: {message}") from None
    return model, meta, arrays


def _read_members(zf, path):
    """Check the archive's directory against the metadata, then read the metadata and the arrays."""
    infos = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy") or info.is_dir():
            raise ValueError(f"{path}: unexpected member {info.filename!r} in the archive")
        key = info.filename[:-4]
        if key in infos:
            raise ValueError(f"{path}: member {info.filename!r} appears twice in the archive")
        if info.file_size > SMALL_MEMBER_BYTES and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
            raise ValueError(f"{path}: member {info.filename!r} would expand from {info.compress_size} to "
                             f"{info.file_size} bytes (more than {MAX_EXPANSION}x): refusing a possible zip bomb")
        infos[key] = info
    if "__emkit__" not in infos:
        raise ValueError(f"{path} is not an emkit model file (no __emkit__ metadata)")
    if infos["__emkit__"].file_size > MAX_METADATA_BYTES:
        raise ValueError(f"{path}: metadata of {infos['__emkit__'].file_size} bytes is larger than the "
                         f"{MAX_METADATA_BYTES} an emkit model file holds")
    raw = _read_member(zf, infos.pop("__emkit__"), path)
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: corrupt metadata: {type(exc).__name__}: {exc}") from None
    _check_format(meta, path)
    allowed, required = _entry_members(meta, "", path)
    unknown = sorted(set(infos) - allowed)
    if unknown:
        raise ValueError(f"{path}: unexpected member {unknown[0]!r} (not a fitted attribute or hyperparameter "
                         "declared in the metadata)")
    missing = sorted(required - set(infos))
    if missing:
        raise ValueError(f"{path}: fitted attribute {missing[0].rsplit('attr:', 1)[-1]} is missing "
                         f"(member {missing[0]!r})")
    return meta, {key: _read_member(zf, info, path) for key, info in infos.items()}


def _read_member(zf, info, path):
    """One ``.npy`` member, read only after its header's shape matches its size in the directory."""
    with zf.open(info) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as exc:
            raise ValueError(f"{path}: member {info.filename!r} is not a valid array: {exc}") from None
        if dtype.hasobject:
            raise ValueError(f"{path}: member {info.filename!r} holds Python objects (a pickle); "
                             "model files hold only plain arrays")
        nbytes = math.prod(shape) * dtype.itemsize
        header = fh.tell()
        if header + nbytes != info.file_size:
            raise ValueError(f"{path}: member {info.filename!r} declares shape {shape} of {dtype} ({nbytes} bytes) "
                             f"but holds {info.file_size - header} bytes")
        data = fh.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"{path}: member {info.filename!r} is truncated")
    a = np.frombuffer(data, dtype=dtype)
    return a.reshape(shape, order="F" if fortran else "C").copy()


def _check_format(meta, path):
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an emkit model file")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{path}: format_version must be an integer; got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} uses model format version {version}, newer than this emkit supports "
                         f"({FORMAT_VERSION}); upgrade emkit to read it")
    if version < 1:
        raise ValueError(f"{path}: format_version must be >= 1; got {version}")
    if not isinstance(meta.get("sha256"), str):
        raise ValueError(f"{path}: metadata field 'sha256' must be a string; got {type(meta.get('sha256')).__name__}")


def _entry_members(entry, prefix, path):
    """Check one model's metadata entry against its class; return the member names it allows and
    those it requires (its fitted attributes), nested models included."""
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: a model entry of the metadata must be a JSON object; got {type(entry).__name__}")
    cls = _model_class(entry.get("class"), path)
    for field, kinds, what in (("params", dict, "a JSON object"), ("attributes", dict, "a JSON object"),
                               ("online", (dict, type(None)), "a JSON object or null")):
        if not isinstance(entry.get(field), kinds):
            raise ValueError(f"{path}: metadata field {field!r} of {cls.__name__} must be {what}; "
                             f"got {type(entry.get(field)).__name__}")
    types = attribute_types(cls, _entry_family(cls, entry["params"], path))
    for name, kind in entry["attributes"].items():
        if name not in types:
            raise ValueError(f"{path}: {name!r} is not a fitted attribute of {cls.__name__}; "
                             f"allowed: {', '.join(types)}")
        if kind not in ("array", "scalar", "list"):
            raise ValueError(f"{path}: attribute {name} has unknown kind {kind!r}")
    required = {f"{prefix}attr:{a}" for a in entry["attributes"]}
    allowed = set(required) | _param_members(cls, entry["params"], prefix, path)
    if entry["online"]:
        allowed |= _stats_keys(entry["online"].get("stats"), f"{prefix}online", path)
    members = getattr(cls, "_member_attribute", None)
    if members:
        entries = entry.get("members")
        if not isinstance(entries, list):
            raise ValueError(f"{path}: the fitted models inside the {cls.__name__} are missing")
        for i, sub in enumerate(entries):
            a, r = _entry_members(sub, f"{prefix}{members}.{i}.", path)
            allowed |= a
            required |= r
    return allowed, required


def _param_members(cls, params, prefix, path):
    """Check hyperparameter names against ``cls``; the array members they may have."""
    names = getattr(cls, "_param_names", None) or getattr(cls, "_get_param_names")  # emkit's or scikit-learn's
    known = list(names())
    for name, value in params.items():
        if name not in known:
            raise ValueError(f"{path}: {name!r} is not a hyperparameter of {cls.__name__}")
    allowed = {f"{prefix}param:{name}" for name in known}
    for name, value in params.items():
        if isinstance(value, dict) and "__arrays__" in value:
            names = value["__arrays__"]
            if not isinstance(names, list) or not all(isinstance(n, str) and n.isidentifier() for n in names):
                raise ValueError(f"{path}: hyperparameter {name} of {cls.__name__} is damaged")
            allowed |= {f"{prefix}param:{name}.{n}" for n in names}
        if isinstance(value, dict) and "__estimator__" in value:
            if not isinstance(value.get("params"), dict):
                raise ValueError(f"{path}: hyperparameter {name} of {cls.__name__} is damaged")
            allowed |= _param_members(_model_class(value["__estimator__"], path), value["params"],
                                      f"{prefix}{name}.", path)
    return allowed


def _stats_keys(desc, prefix, path):
    """The member names an online-EM statistics description refers to."""
    if not isinstance(desc, dict) or not isinstance(desc.get("fields"), dict):
        raise ValueError(f"{path}: the online-EM state is damaged: bad statistics description")
    keys = set()
    for name, kind in desc["fields"].items():
        key = f"{prefix}.{name}"
        if isinstance(kind, dict) and "class" in kind:
            keys |= _stats_keys(kind, key, path)
        elif kind == "array":
            keys.add(key)
        elif not (isinstance(kind, dict) and isinstance(kind.get("str"), str)):
            raise ValueError(f"{path}: the online-EM state is damaged: field {name!r} has kind {kind!r}")
    return keys


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
        elif isinstance(value, dict) and "__family__" in value:
            params[key] = _family_from_json(value, key, path)
        elif isinstance(value, dict) and "__arrays__" in value:
            params[key] = {n: _numeric_param(arrays[f"{prefix}param:{key}.{n}"], f"{key}.{n}", cls)
                           for n in value["__arrays__"]}
    head = f"{prefix}param:"
    for key in list(arrays):
        if key.startswith(head) and "." not in key[len(head):]:
            name, a = key[len(head):], arrays[key]
            if name in params:
                raise ValueError(f"hyperparameter {name} of {cls.__name__} is stored twice")
            params[name] = _numeric_param(a, name, cls)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"{path}: hyperparameters do not match {cls.__name__}: {exc}") from None


def _numeric_param(a, name, cls):
    if a.dtype.kind not in "fiub" or a.ndim > 3:
        raise ValueError(f"hyperparameter {name} of {cls.__name__} must be a numeric array of at most 3 "
                         f"dimensions; got dtype {a.dtype}, shape {a.shape}")
    return a


def _decode(entry, arrays, prefix, path):
    """The fitted model described by one metadata entry of :func:`_encode` (already checked by
    :func:`_entry_members`); every attribute is checked against its type, then the model validates
    its values."""
    cls = _model_class(entry.get("class"), path)
    model = _decode_params(cls, entry.get("params", {}), arrays, prefix, path)
    family = _entry_family(cls, entry.get("params", {}), path)
    types = attribute_types(cls, family)
    for name in entry["attributes"]:
        a, spec = arrays[f"{prefix}attr:{name}"], types[name]
        if a.dtype.kind not in spec.kinds or a.ndim not in spec.ndims:
            raise ValueError(f"fitted attribute {name} has dtype {a.dtype} and shape {a.shape}; expected dtype kind "
                             f"in {spec.kinds!r} with {' or '.join(map(str, spec.ndims))} dimension(s)")
        setattr(model, name, a.tolist() if spec.as_list else (a.item() if a.ndim == 0 else a))
    missing = [n for n in fitted_attribute_names(cls, family) if n not in entry["attributes"]]
    if missing:
        raise ValueError(f"fitted attribute {missing[0]} is missing")
    members = getattr(cls, "_member_attribute", None)
    if members:
        setattr(model, members, [_decode(e, arrays, f"{prefix}{members}.{i}.", path)
                                 for i, e in enumerate(entry["members"])])
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
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
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
    """Write named columns (dict name -> 1-D array) as CSV/TSV, or Parquet by the extension.

    The file is written to a temporary file in the same folder and moved into place when
    complete: an interrupted write leaves any previous file at ``path`` intact.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    names = list(columns)
    if ext in (".parquet", ".pq"):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError("writing Parquet needs pyarrow: pip install 'emkit[io]'") from None
        with atomic_path(path) as tmp:
            pq.write_table(pa.table({n: np.asarray(columns[n]) for n in names}), tmp)
        return path
    if ext not in (".csv", ".tsv", ".txt"):
        raise ValueError(f"unsupported output file type {ext!r} for {path}; use .csv, .tsv or .parquet")
    sep = "\t" if ext == ".tsv" else ","
    cols = [np.asarray(columns[n]) for n in names]
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
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
