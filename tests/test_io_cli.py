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


@pytest.fixture(scope="module")
def pose_csv(tmp_path_factory):
    """Three recordings of a 2-D trace with 3 hidden states, with a text sequence id column."""
    gen = emkit.GaussianHMM.from_params([0.5, 0.3, 0.2], 0.9 * np.eye(3) + 0.1 / 3, means=[[0, 0], [4, 0], [0, 4]],
                                        covars=np.ones((3, 2)))
    path = tmp_path_factory.mktemp("pose") / "pose.csv"
    with open(path, "w") as f:
        f.write("mouse,x,y\n")
        for i, m in enumerate(["a", "b", "c"]):
            X, _ = gen.sample(200, random_state=i)
            for r in X:
                f.write(f"{m},{r[0]},{r[1]}\n")
    return str(path)


def test_cli_hmm_workflow(tmp_path, capsys, pose_csv):
    pytest.importorskip("pandas")
    seq = ["--sequence-column", "mouse"]
    sel = tmp_path / "sel"
    assert main(["select", pose_csv, "--model", "gaussian-hmm", "-k", "1-4", *seq, "--seed", "0", "-o", str(sel)]) == 0
    out = capsys.readouterr().out
    assert "best K = 3" in out
    fit = tmp_path / "fit"
    assert main(["fit", pose_csv, "--model", "gaussian-hmm", "-k", "3", *seq, "--seed", "0", "-o", str(fit)]) == 0
    capsys.readouterr()
    model = str(fit / "model.npz")
    assert main(["predict", model, "--data", pose_csv, *seq, "--posteriors", "-o", str(tmp_path / "p.csv")]) == 0
    import pandas as pd

    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["sequence", "frame", "label", "p0", "p1", "p2"]
    assert pred["sequence"].tolist()[:1] == ["a"] and len(pred) == 600
    np.testing.assert_allclose(pred[["p0", "p1", "p2"]].sum(axis=1), 1.0)
    assert main(["predict", model, "--data", pose_csv, *seq, "--causal", "-o", str(tmp_path / "c.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "c.parquet")) == 600
    capsys.readouterr()
    assert main(["score", model, "--data", pose_csv, *seq, "--json"]) == 0
    score = json.loads(capsys.readouterr().out)
    assert score["log_likelihood"] < 0 and score["n_samples"] == 600
    assert main(["plot", model, "--data", pose_csv, *seq, "--format", "svg", "-o", str(tmp_path / "plots")]) == 0
    for kind in ("model", "ethogram", "transitions", "durations", "usage", "loglik"):
        assert os.path.getsize(tmp_path / "plots" / f"{kind}.svg") > 0
    assert main(["report", model, "--data", pose_csv, *seq, "--selection", str(sel / "selection.csv"),
                 "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    for sid in ("summary", "parameters", "selection", "states", "fit"):
        assert f'id="{sid}"' in html
    capsys.readouterr()
    assert main(["info", model, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["class"] == "GaussianHMM" and info["attributes"]["transmat_"] == [3, 3]


@pytest.mark.parametrize("model", ["gmm", "kmeans", "gaussian-hmm", "categorical-hmm", "poisson-hmm", "arhmm"])
def test_cli_every_model(tmp_path, capsys, model):
    rng = np.random.default_rng(0)
    if model == "categorical-hmm":
        X = rng.integers(0, 4, size=(300, 1))
    elif model == "poisson-hmm":
        X = rng.poisson(3.0, size=(300, 2))
    else:
        X = rng.normal(size=(300, 2)) + rng.integers(0, 2, size=(300, 1)) * 4
    path = tmp_path / "d.npy"
    np.save(path, X)
    assert main(["fit", str(path), "--model", model, "-k", "2", "--seed", "1", "--json", "-o", str(tmp_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_samples"] == 300 and sum(info["counts"]) == 300
    assert os.path.exists(info["files"]["model"])
    assert main(["predict", info["files"]["model"], "--data", str(path), "-o", str(tmp_path / "l.csv")]) == 0


def test_cli_datasets_and_bad_model_file(tmp_path, capsys):
    assert main(["datasets"]) == 0
    assert "faithful" in capsys.readouterr().out
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a readable emkit model file" in err and err.count("\n") == 1
    assert main(["select", "--example", "faithful", "-k", "x-y"]) == 2
    assert "n-components" in capsys.readouterr().err


def test_cli_categorical_from_one_column_csv(tmp_path, capsys):
    path = tmp_path / "symbols.csv"
    rng = np.random.default_rng(0)
    path.write_text("symbol\n" + "\n".join(str(v) for v in rng.integers(0, 3, size=200)) + "\n")
    assert main(["fit", str(path), "--model", "categorical-hmm", "-k", "2", "--seed", "0", "--json",
                 "-o", str(tmp_path / "o")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "CategoricalHMM" and sum(info["counts"]) == 200
