import json
import os
import zipfile

import numpy as np
import pytest

import emkit
from emkit import GaussianMixture, KMeans
from emkit.cli import main
from emkit.datasets import load_faithful


@pytest.fixture
def faithful():
    return load_faithful().data


@pytest.mark.parametrize("cov", ["full", "diag", "spherical", "tied"])
def test_model_round_trip(tmp_path, faithful, cov):
    gm = GaussianMixture(2, covariance_type=cov, random_state=0).fit(faithful)
    path = gm.save(tmp_path / "m")
    assert path.endswith(".npz")
    back = emkit.load(path)
    assert isinstance(back, GaussianMixture) and back.get_params() == {**gm.get_params(), "random_state": 0}
    np.testing.assert_array_equal(back.predict_proba(faithful), gm.predict_proba(faithful))
    assert back.lower_bounds_ == gm.lower_bounds_ and back.converged_ == gm.converged_


def test_kmeans_round_trip(tmp_path, faithful):
    km = KMeans(3, random_state=0).fit(faithful)
    back = emkit.load(km.save(tmp_path / "k.npz"))
    np.testing.assert_array_equal(back.predict(faithful), km.predict(faithful))


def test_model_file_is_not_a_pickle_and_tampering_is_detected(tmp_path, faithful):
    gm = GaussianMixture(2, random_state=0).fit(faithful)
    path = gm.save(tmp_path / "m.npz")
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            assert b"\x80\x04\x95" not in z.read(name)[:3]  # no pickle protocol header
    # truncated
    data = open(path, "rb").read()
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt|not an emkit"):
        emkit.load(trunc)
    # altered array
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["attr:means_"] = arrays["attr:means_"] + 1
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match="checksum"):
        emkit.load(bad)
    # newer format
    meta = json.loads(arrays["__emkit__"].tobytes())
    meta["format_version"] = 99
    arrays["__emkit__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    newer = tmp_path / "newer.npz"
    np.savez(newer, **arrays)
    with pytest.raises(ValueError, match="newer"):
        emkit.load(newer)
    with pytest.raises(ValueError, match="not an emkit model"):
        np.savez(tmp_path / "plain.npz", a=np.zeros(3))
        emkit.load(tmp_path / "plain.npz")


def test_save_unfitted_raises(tmp_path):
    with pytest.raises(ValueError, match="unfitted"):
        GaussianMixture(2).save(tmp_path / "x.npz")


def test_cli_fit_example(tmp_path, capsys):
    assert main(["fit", "--example", "faithful", "-k", "2", "--seed", "0", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "GaussianMixture" in out and "eruptions" in out
    for name in ("labels.csv", "model.npz", "clusters.png"):
        assert os.path.getsize(tmp_path / name) > 0
    labels = np.loadtxt(tmp_path / "labels.csv", skiprows=1)
    assert labels.shape == (272,)
    model = emkit.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(model.predict(load_faithful().data), labels)
    assert open(tmp_path / "clusters.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_fit_csv_kmeans_json(tmp_path, capsys, faithful):
    csv = tmp_path / "d.csv"
    np.savetxt(csv, faithful, delimiter=",", header="a,b", comments="")
    assert main(["fit", str(csv), "--model", "kmeans", "-k", "3", "--columns", "b,a", "--json", "-o",
                 str(tmp_path / "o")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "KMeans" and info["features"] == ["b", "a"] and sum(info["counts"]) == 272


@pytest.mark.parametrize("argv, match", [
    (["fit", "missing.csv"], "not found"),
    (["fit", "--example", "nope"], "nope"),
    (["fit", "--example", "faithful", "--columns", "zzz"], "zzz"),
    (["fit", "--example", "faithful", "-k", "0"], "n_components"),
])
def test_cli_user_errors_are_one_line(tmp_path, capsys, argv, match):
    assert main(argv + ["-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and err.count("\n") == 1
