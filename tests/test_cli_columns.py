"""Command-line column safety, frames per second and the plots of per-state results."""

import numpy as np
import pandas as pd
import pytest

import emkit
from emkit.cli import main


@pytest.fixture
def pose_table(tmp_path):
    """Three recordings with a text id, a frame counter and two features from 3 well-separated states."""
    rng = np.random.default_rng(1)
    truth = emkit.GaussianHMM.from_params(
        startprob=[1 / 3] * 3, transmat=[[0.95, 0.03, 0.02], [0.02, 0.95, 0.03], [0.03, 0.02, 0.95]],
        means=[[0.0, 0.0], [4.0, 1.0], [-2.0, 4.0]], covars=[[0.3, 0.3]] * 3)
    parts = []
    for i in range(3):
        X, _ = truth.sample(300, random_state=rng)
        parts.append(pd.DataFrame({"mouse": f"m{i}", "frame": np.arange(300), "x": X[:, 0], "y": X[:, 1]}))
    path = tmp_path / "pose.csv"
    pd.concat(parts).to_csv(path, index=False)
    return str(path)


def test_frame_counter_is_left_out_and_columns_are_remembered(pose_table, tmp_path, capsys):
    sel = tmp_path / "sel"
    assert main(["select", pose_table, "--model", "gaussian-hmm", "--sequence-column", "mouse", "-k", "2-4",
                 "--seed", "0", "-o", str(sel)]) == 0
    out, err = capsys.readouterr()
    assert "left out 'frame'" in err and "frame counter" in err
    assert "columns used: x, y" in err
    assert "best K = 3" in out
    fit = tmp_path / "fit"
    assert main(["fit", pose_table, "--model", "gaussian-hmm", "--sequence-column", "mouse", "-k", "3", "--seed",
                 "0", "--fps", "30", "-o", str(fit)]) == 0
    out, err = capsys.readouterr()
    assert "mean duration (s)" in out
    model = emkit.load(fit / "model.npz")
    assert list(model.feature_names_in_) == ["x", "y"]
    # later commands reuse the remembered columns (no --columns): the frame counter is not offered again
    assert main(["predict", str(fit / "model.npz"), "--data", pose_table, "--sequence-column", "mouse", "--fps",
                 "30", "-o", str(tmp_path / "labels.csv")]) == 0
    assert "columns used: x, y (from the model file)" in capsys.readouterr().err
    labels = pd.read_csv(tmp_path / "labels.csv")
    np.testing.assert_allclose(labels.time_s, labels.frame / 30)
    assert main(["plot", str(fit / "model.npz"), "--data", pose_table, "--sequence-column", "mouse", "--fps", "30",
                 "-o", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "ethogram.png").exists() and (tmp_path / "plots" / "durations.png").exists()
    assert main(["report", str(fit / "model.npz"), "--data", pose_table, "--sequence-column", "mouse", "--fps", "30",
                 "--selection", str(sel / "selection.csv"), "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "mean duration (s)" in html and "Decoded states of all 3 sequences" in html
    assert "Warning" not in html                                   # K=3 is the selection's best


def test_sequence_column_is_never_a_feature_and_score_says_one_sequence(pose_table, tmp_path, capsys):
    assert main(["fit", pose_table, "--model", "gaussian-hmm", "--sequence-column", "mouse", "--columns",
                 "mouse,x", "-k", "2", "-o", str(tmp_path)]) == 2
    assert "sequence column 'mouse' cannot also be a feature" in capsys.readouterr().err
    assert main(["fit", pose_table, "--model", "gaussian-hmm", "--sequence-column", "mouse", "-k", "2", "--seed", "0",
                 "-o", str(tmp_path / "f")]) == 0
    capsys.readouterr()
    assert main(["score", str(tmp_path / "f" / "model.npz"), "--data", pose_table]) == 0
    assert "scored as one sequence" in capsys.readouterr().err


def test_hdf5_key_and_fps_checks(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["a"] = rng.normal(size=(200, 2))
        f["b"] = rng.normal(size=(100, 3)) + 5
    assert main(["fit", str(path), "-k", "2", "-o", str(tmp_path / "o")]) == 2
    assert "--key" in capsys.readouterr().err
    assert main(["fit", str(path), "--key", "b", "-k", "2", "--seed", "0", "--json", "-o", str(tmp_path / "o")]) == 0
    assert '"n_samples": 100' in capsys.readouterr().out
    assert main(["fit", str(path), "--key", "b", "--fps", "0", "-k", "2", "-o", str(tmp_path / "o")]) == 2
    assert "--fps must be a positive number" in capsys.readouterr().err


def test_report_warns_about_k_and_shows_correlations(tmp_path):
    from emkit.report import write_report

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], 200),
                        rng.multivariate_normal([5, 5], [[1, -0.5], [-0.5, 1]], 200)])
    gm = emkit.GaussianMixture(2, random_state=0).fit(X)
    table = pd.DataFrame({"n_components": [1, 2, 3], "bic": [900.0, 800.0, 700.0]})
    html = open(write_report(gm, X, tmp_path / "r.html", selection=table)).read()
    assert "Warning: this model has K=2 states, but the selection table&#x27;s best by bic is K=3" in html
    assert "Correlations, component 0" in html and "Correlations, component 1" in html


def test_poisson_plot_rates_and_log_posterior_axis(tmp_path):
    from emkit import plot as P

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.poisson([1, 8, 3], size=(200, 3)), rng.poisson([9, 1, 3], size=(200, 3))])
    hmm = emkit.PoissonHMM(2, kappa=5.0, random_state=0).fit(X, [200, 200])
    ax = P.plot_model(hmm, X, [200, 200], feature_names=["a", "b", "c"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    np.testing.assert_allclose(heights, np.sort(hmm.lambdas_.ravel()), rtol=1e-6)
    assert P.plot_lower_bounds(hmm.lower_bounds_, model=hmm).get_ylabel() == "mean log posterior"
    flat = emkit.PoissonHMM(2, random_state=0).fit(X, [200, 200])
    assert P.plot_lower_bounds(flat.lower_bounds_, model=flat).get_ylabel() == "mean log-likelihood"
    fig = P.plot_durations(hmm.predict(X, [200, 200]), [200, 200], n_states=2, fps=10)
    visible = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title()[:7] for a in visible] == ["state 0", "state 1", "surviva"]
    assert visible[0].get_xlabel() == "dwell time (s)"
    fig = P.plot_ethograms([0, 0, 1, 1, 0, 1], [4, 2], names=["left", "right"], fps=2)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["right", "left"] and ax.get_xlabel() == "time (s)"
    with pytest.raises(ValueError, match="names has 1 entries for 2 sequences"):
        P.plot_ethograms([0, 1], [1, 1], names=["x"])

