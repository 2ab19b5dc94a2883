"""Crafted and damaged model files: every one is a ValueError naming the problem, read with bounded memory."""

import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

import emkit
from emkit.cli import main
from emkit.io import _digest


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A fitted GaussianMixture's model file and its members."""
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (40, 2)), rng.normal(6, 1, (40, 2))]
    path = tmp_path_factory.mktemp("m") / "gm.npz"
    emkit.GaussianMixture(2, n_init=2, random_state=0).fit(X).save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__emkit__").tobytes())
    return path, meta, arrays


def _write(path, meta, arrays, *, rehash=True):
    """An archive with these members; the checksum recomputed as an attacker would."""
    meta = dict(meta)
    if rehash:
        meta["sha256"] = _digest(arrays)
    np.savez(path, __emkit__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return path


def _npy_bytes(shape, dtype="<f8", payload=b""):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def _crafted(name, saved, tmp_path):
    """One crafted file per case; returns (path, expected message fragment)."""
    path, meta, arrays = saved
    meta, arrays = json.loads(json.dumps(meta)), dict(arrays)
    out = tmp_path / f"{name}.npz"
    if name == "attribute_injection":  # replace a method with an array
        meta["attributes"]["predict"] = "array"
        arrays["attr:predict"] = np.zeros(3)
        return _write(out, meta, arrays), "'predict' is not a fitted attribute of GaussianMixture"
    if name == "dunder_class":
        meta["attributes"]["__class__"] = "scalar"
        arrays["attr:__class__"] = np.asarray(1)
        return _write(out, meta, arrays), "'__class__' is not a fitted attribute"
    if name == "dunder_dict":
        meta["attributes"]["__dict__"] = "array"
        arrays["attr:__dict__"] = np.zeros(2)
        return _write(out, meta, arrays), "'__dict__' is not a fitted attribute"
    if name == "attributes_as_list":
        meta["attributes"] = list(meta["attributes"])
        return _write(out, meta, arrays), "field 'attributes' of GaussianMixture must be a JSON object"
    if name == "unknown_enum":
        meta["params"]["covariance_type"] = "os.system"
        return _write(out, meta, arrays), "covariance_type"
    if name == "unknown_init_params":
        meta["params"]["init_params"] = "rm -rf"
        return _write(out, meta, arrays), "init_params"
    if name == "unknown_hyperparameter":
        meta["params"]["__init__"] = 1
        return _write(out, meta, arrays), "'__init__' is not a hyperparameter of GaussianMixture"
    if name == "unknown_class":
        meta["class"] = "os.system"
        return _write(out, meta, arrays), "unknown model class 'os.system'"
    if name == "class_as_list":
        meta["class"] = ["GaussianMixture"]
        return _write(out, meta, arrays), "unknown model class"
    if name == "format_version_text":
        meta["format_version"] = "1"
        return _write(out, meta, arrays), "format_version must be an integer; got '1'"
    if name == "wrong_dtype":
        arrays["attr:means_"] = np.array([["a", "b"], ["c", "d"]])
        return _write(out, meta, arrays), "fitted attribute means_ has dtype <U1"
    if name == "wrong_ndim":
        arrays["attr:weights_"] = np.full((2, 1), 0.5)
        return _write(out, meta, arrays), "fitted attribute weights_ has dtype float64 and shape (2, 1)"
    if name == "nan_means":
        arrays["attr:means_"] = np.full_like(arrays["attr:means_"], np.nan)
        return _write(out, meta, arrays), "means_ must be finite"
    if name == "undeclared_member":
        arrays["attr:extra"] = np.zeros(2)
        return _write(out, meta, arrays), "unexpected member 'attr:extra'"
    if name == "missing_attribute":
        del arrays["attr:means_"]
        return _write(out, meta, arrays), "fitted attribute means_ is missing"
    if name == "object_array":  # a pickled member: never unpickled
        raw = io.BytesIO()
        np.save(raw, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        np.savez(out, __emkit__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                 **{k: v for k, v in arrays.items() if k != "attr:means_"})
        with zipfile.ZipFile(out, "a") as z:
            z.writestr("attr:means_.npy", raw.getvalue())
        return out, "holds Python objects"
    if name == "huge_shape":  # a declared shape of 10^13 elements, a few bytes of data
        np.savez(out, __emkit__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                 **{k: v for k, v in arrays.items() if k != "attr:means_"})
        with zipfile.ZipFile(out, "a") as z:
            z.writestr("attr:means_.npy", _npy_bytes((10**13, 2), payload=b"\0" * 32))
        return out, "declares shape (10000000000000, 2)"
    if name == "not_npy_member":
        _write(out, meta, arrays)
        with zipfile.ZipFile(out, "a") as z:
            z.writestr("run.py", b"import os")
        return out, "unexpected member 'run.py'"
    if name == "online_unknown_stats":
        assert meta["online"]["stats"]["class"] == "MixtureStats"
        meta["online"]["stats"]["class"] = "os.system"
        return _write(out, meta, arrays), "online-EM state is damaged"
    raise AssertionError(name)


CRAFTED = ["attribute_injection", "dunder_class", "dunder_dict", "attributes_as_list", "unknown_enum",
           "unknown_init_params", "unknown_hyperparameter", "unknown_class", "class_as_list", "format_version_text",
           "wrong_dtype", "wrong_ndim", "nan_means", "undeclared_member", "missing_attribute", "object_array",
           "huge_shape", "not_npy_member", "online_unknown_stats"]


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_file_is_a_value_error_naming_the_problem(saved, tmp_path, name, capsys):
    path, match = _crafted(name, saved, tmp_path)
    with pytest.raises(ValueError) as info:
        emkit.load(path)
    assert match in str(info.value) and str(path) in str(info.value)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and match in err


def test_untampered_file_loads(saved, tmp_path):
    path, meta, arrays = saved
    model = emkit.load(_write(tmp_path / "same.npz", meta, arrays))
    assert isinstance(model, emkit.GaussianMixture)


def _bomb(path, member, meta_arrays, n_bytes):
    """A member of ``n_bytes`` zeros that compresses about 1000-fold, written without holding it in memory."""
    np.savez(path, **meta_arrays)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open(member, "w", force_zip64=True) as fh:
            fh.write(_npy_bytes((n_bytes // 8,)))
            block = b"\0" * (1 << 20)
            for _ in range(n_bytes >> 20):
                fh.write(block)
    return path


@pytest.mark.parametrize("member", ["attr:means_.npy", "unknown.npy"])
def test_zip_bomb_is_refused_from_the_directory_with_bounded_memory(saved, tmp_path, member):
    path, meta, arrays = saved
    meta_arrays = {"__emkit__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    meta_arrays.update({k: v for k, v in arrays.items() if k + ".npy" != member})
    bomb = _bomb(tmp_path / "bomb.npz", member, meta_arrays, 64 << 20)
    assert bomb.stat().st_size < 1 << 20  # under 1 MB on disk, 64 MB inflated
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="zip bomb"):
            emkit.load(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_other_files_passed_as_models(tmp_path):
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"x.npy is not a readable emkit model file: not a \.npz archive \(it looks "
                                         r"like a plain \.npy array"):
        emkit.load(npy)
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="x.csv is not a readable emkit model file") as info:
        emkit.load(csv)
    assert "pickle" not in str(info.value) and "trust" not in str(info.value)
    with pytest.raises(ValueError, match="is a directory"):
        emkit.load(tmp_path)


def test_init_lower_bounds_are_saved(tmp_path):
    X = np.random.default_rng(1).normal(size=(60, 2))
    gm = emkit.GaussianMixture(2, n_init=3, random_state=0).fit(X)
    back = emkit.load(gm.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.init_lower_bounds_, gm.init_lower_bounds_)
    assert back.init_lower_bounds_.shape == (3,)
    hmm = emkit.GaussianHMM(2, n_init=2, max_iter=3, random_state=0).fit(X)
    np.testing.assert_array_equal(emkit.load(hmm.save(tmp_path / "h.npz")).init_lower_bounds_,
                                  hmm.init_lower_bounds_)


def test_attribute_whitelist_is_a_per_class_declaration():
    from emkit.io import attribute_types

    types = attribute_types(emkit.GaussianHMM)
    assert "startprob_" in types and "init_lower_bounds_" in types and "weights_" not in types
    assert "predict" not in types and "cluster_centers_" in attribute_types(emkit.KMeans)

    from emkit.io import AttributeType

    class Extended(emkit.KMeans):
        _optional_attributes = ("centroid_counts_",)
        _attribute_types = {"centroid_counts_": AttributeType("iu", (1,))}

    assert attribute_types(Extended)["centroid_counts_"] == AttributeType("iu", (1,))


def test_saving_an_invalid_hand_set_model_raises(tmp_path):
    X = np.random.default_rng(1).normal(size=(60, 2))
    gm = emkit.GaussianMixture(2, random_state=0).fit(X)
    gm.weights_ = np.array([0.7, 0.7])
    with pytest.raises(ValueError, match="weights_ must be non-negative and sum to 1"):
        gm.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_deeply_nested_metadata(tmp_path):
    path = tmp_path / "deep.npz"
    np.savez(path, __emkit__=np.frombuffer(b"[" * 200_000, dtype=np.uint8))
    with pytest.raises(ValueError, match="corrupt metadata"):
        emkit.load(path)


@pytest.mark.parametrize("make, param, value", [
    (lambda X: emkit.GaussianHMM(2, max_iter=2, random_state=0).fit(X), "algorithm", "os.system"),
    (lambda X: emkit.GaussianHMM(2, max_iter=2, random_state=0).fit(X), "covariance_type", "eval"),
    (lambda X: emkit.KMeans(2, random_state=0).fit(X), "init", "__import__"),
])
def test_unknown_enum_values_of_other_models(tmp_path, make, param, value):
    X = np.random.default_rng(0).normal(size=(40, 2))
    path = make(X).save(tmp_path / "m.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__emkit__").tobytes())
    meta["params"][param] = value
    with pytest.raises(ValueError, match=f"{param}.*{value}"):
        emkit.load(_write(tmp_path / "crafted.npz", meta, arrays))



def test_nested_models_are_checked_like_top_level_ones(tmp_path):
    rng = np.random.default_rng(0)
    X, y = np.r_[rng.normal(0, 1, (30, 2)), rng.normal(4, 1, (30, 2))], np.repeat([0, 1], 30)
    path = emkit.GaussianMixtureClassifier(random_state=0).fit(X, y).save(tmp_path / "clf.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__emkit__").tobytes())
    meta["members"][1]["attributes"]["predict"] = "array"
    arrays["estimators_.1.attr:predict"] = np.zeros(2)
    with pytest.raises(ValueError, match="'predict' is not a fitted attribute of GaussianMixture"):
        emkit.load(_write(tmp_path / "inject.npz", meta, arrays))
    del meta["members"][1]["attributes"]["predict"], arrays["estimators_.1.attr:predict"]
    meta["members"][0]["params"]["covariance_type"] = "os.system"
    with pytest.raises(ValueError, match="covariance_type.*os.system"):
        emkit.load(_write(tmp_path / "enum.npz", meta, arrays))
