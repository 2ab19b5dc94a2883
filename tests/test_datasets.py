"""Tests for emkit.datasets (bundled Old Faithful data)."""

import dataclasses

import numpy as np
import pytest

from emkit.datasets import Dataset, list_datasets, load, load_faithful

# Reference values from R: colMeans(faithful); sapply(faithful, sd); head(faithful)
R_MEANS = np.array([3.487783, 70.89706])
R_SDS = np.array([1.141371, 13.59497])
R_HEAD = np.array(
    [
        [3.600, 79],
        [1.800, 54],
        [3.333, 74],
        [2.283, 62],
        [4.533, 85],
    ]
)
R_TAIL = np.array([[2.150, 46], [4.417, 90], [1.817, 46], [4.467, 74]])


def test_shape_dtype_and_names():
    ds = load_faithful()
    assert isinstance(ds, Dataset)
    assert ds.name == "faithful"
    assert ds.feature_names == ["eruptions", "waiting"]
    assert isinstance(ds.data, np.ndarray)
    assert ds.data.shape == (272, 2)
    assert ds.shape == (272, 2)
    assert ds.data.dtype == np.float64
    assert np.isfinite(ds.data).all()


def test_means_match_r():
    data = load_faithful().data
    np.testing.assert_allclose(data.mean(axis=0), R_MEANS, atol=5e-6)


def test_sds_match_r():
    data = load_faithful().data
    np.testing.assert_allclose(data.std(axis=0, ddof=1), R_SDS, atol=5e-6)


def test_first_and_last_rows():
    data = load_faithful().data
    np.testing.assert_array_equal(data[:5], R_HEAD)
    np.testing.assert_array_equal(data[-4:], R_TAIL)


def test_value_ranges_and_integer_waiting():
    data = load_faithful().data
    eruptions, waiting = data[:, 0], data[:, 1]
    assert eruptions.min() == pytest.approx(1.6)
    assert eruptions.max() == pytest.approx(5.1)
    assert waiting.min() == 43
    assert waiting.max() == 96
    np.testing.assert_array_equal(waiting, np.round(waiting))
    # eruptions are recorded to three decimals
    np.testing.assert_allclose(eruptions * 1000, np.round(eruptions * 1000), atol=1e-6)


def test_description_has_provenance():
    desc = load_faithful().description
    assert "Old Faithful" in desc
    assert "Azzalini" in desc
    assert "Applied Statistics" in desc


def test_dataset_is_frozen_and_copies_are_independent():
    ds = load_faithful()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"
    ds.data[0, 0] = -1.0  # data is a private, writable copy
    assert load_faithful().data[0, 0] == 3.6


def test_repr_is_short():
    r = repr(load_faithful())
    assert "faithful" in r and "272" in r
    assert len(r) < 200


def test_as_frame():
    pd = pytest.importorskip("pandas")
    ds = load_faithful(as_frame=True)
    assert isinstance(ds.data, pd.DataFrame)
    assert list(ds.data.columns) == ["eruptions", "waiting"]
    assert ds.data.shape == (272, 2)
    np.testing.assert_allclose(ds.data.mean().to_numpy(), R_MEANS, atol=5e-6)
    np.testing.assert_array_equal(ds.data.to_numpy(), load_faithful().data)


def test_as_frame_without_pandas(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pandas"):
        load_faithful(as_frame=True)
    # the array path must not need pandas
    assert load_faithful().data.shape == (272, 2)


def test_list_datasets():
    available = list_datasets()
    assert isinstance(available, dict)
    assert "faithful" in available
    for name, desc in available.items():
        assert isinstance(desc, str) and desc
        assert "\n" not in desc
        assert load(name).name == name


def test_load_by_name():
    ds = load("faithful")
    np.testing.assert_array_equal(ds.data, load_faithful().data)
    assert load("Faithful").name == "faithful"
    pytest.importorskip("pandas")
    assert load("faithful", as_frame=True).data.shape == (272, 2)


def test_load_unknown_name():
    with pytest.raises(ValueError, match="faithful") as excinfo:
        load("no-such-dataset")
    assert "no-such-dataset" in str(excinfo.value)
    with pytest.raises(ValueError):
        load(None)  # type: ignore[arg-type]
