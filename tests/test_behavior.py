"""Behaviour segmentation: pose files written by movement's own writers, features, segment, CLI."""

import os

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("movement")
from movement.io import load_poses, save_poses  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from emkit.behavior import PoseFeatures, egocentric, kinematics, read_poses, segment, simulate_poses  # noqa: E402
from emkit.behavior.synthetic import KEYPOINTS  # noqa: E402
from emkit.cli import main  # noqa: E402

FPS = 30.0
HEADING = ("tail_base", "neck")


def _dataset(tracks, individuals, software):
    """A movement poses dataset from (T, n_keypoints, 2) tracks, one per individual."""
    P = np.stack([t.transpose(0, 2, 1) for t in tracks], axis=-1)               # (T, space, keypoints, ind)
    conf = np.where(np.isnan(P[:, 0]), np.nan, 0.9)
    return load_poses.from_numpy(P, conf, individual_names=individuals, keypoint_names=KEYPOINTS, fps=FPS,
                                 source_software=software)


def _animals(n, frames, seed0=0, missing=0.1):
    out = [simulate_poses(frames, fps=FPS, missing=missing, random_state=seed0 + i) for i in range(n)]
    return [p for p, _ in out], [s for _, s in out]


def _mean_dwell(states, lengths):
    """Mean bout duration in seconds of each true state, over all recordings."""
    from emkit.report import state_runs

    rs, _, rl = state_runs(np.concatenate(states), lengths)
    return np.array([rl[rs == k].mean() for k in range(3)]) / FPS


def _check_recovery(seg, truth):
    true = np.concatenate(truth)
    assert adjusted_rand_score(true, seg.states) >= 0.8
    # each fitted state's dwell time against the true state it mostly covers
    summary = seg.summary()
    true_dwell = _mean_dwell(truth, seg.lengths)
    for k in range(seg.n_states):
        match = np.bincount(true[seg.states == k], minlength=3).argmax()
        rows = summary[(summary.state == k) & (summary.bouts > 0)]
        est = float((rows.dwell_mean_s * rows.bouts).sum() / rows.bouts.sum())
        assert abs(est - true_dwell[match]) <= 0.35 * true_dwell[match], (k, est, true_dwell)


# -- features ------------------------------------------------------------------------------------------
def test_egocentric_features_ignore_where_the_animal_is_and_faces():
    P, _ = simulate_poses(200, fps=FPS, missing=0.0, random_state=0)
    theta = 1.1
    R = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = P @ R.T + np.array([500.0, -80.0])
    a, h = KEYPOINTS.index("body"), (KEYPOINTS.index("tail_base"), KEYPOINTS.index("neck"))
    np.testing.assert_allclose(egocentric(moved, a, h), egocentric(P, a, h), atol=1e-9)
    ego = egocentric(P, a, h)
    np.testing.assert_allclose(ego[:, a], 0.0, atol=1e-12)                        # anchor at the origin
    v = ego[:, h[1]] - ego[:, h[0]]
    np.testing.assert_allclose(v[:, 1], 0.0, atol=1e-9)                           # heading along +x
    assert np.all(v[:, 0] > 0)
    np.testing.assert_allclose(kinematics(moved, a, h, FPS)[1:], kinematics(P, a, h, FPS)[1:], atol=1e-9)


def test_egocentric_3d_poses_rotate_about_the_vertical():
    rng = np.random.default_rng(3)
    P = rng.normal(size=(40, 4, 3)) * 5
    c, s = np.cos(0.7), np.sin(0.7)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    moved = P @ R.T + np.array([10.0, -3.0, 2.0])
    np.testing.assert_allclose(egocentric(moved, 1, (1, 0)), egocentric(P, 1, (1, 0)), atol=1e-9)
    f = PoseFeatures(["a", "b", "c", "d"], anchor="b", heading=("b", "a"), kinematics=False).fit([P])
    assert f.feature_names_ == ["a_x", "a_z", "c_x", "c_y", "c_z", "d_x", "d_y", "d_z"]


def test_kinematics_of_a_known_motion():
    T = 50
    t = np.arange(T)
    theta = 0.1 * t                                          # 0.1 rad per frame, turning left
    body = np.stack([2.0 * t, np.zeros(T)], axis=1)          # 2 px per frame along x
    front = body + 10 * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    P = np.stack([front, body], axis=1)
    k = kinematics(P, 1, (1, 0), fps=10.0)
    assert np.isnan(k[0]).all()
    np.testing.assert_allclose(k[1:, 0], 20.0)              # px per second
    np.testing.assert_allclose(k[1:, 1], 1.0)               # rad per second


def test_missing_keypoints_stay_missing():
    P, _ = simulate_poses(300, fps=FPS, missing=0.0, random_state=1)
    P[10, KEYPOINTS.index("nose")] = np.nan                  # a non-reference keypoint
    P[20, KEYPOINTS.index("body")] = np.nan                  # the anchor
    f = PoseFeatures(KEYPOINTS, anchor="body", heading=HEADING, fps=FPS)
    X = f.fit_transform([P])[0]
    names = f.feature_names_
    nose = [names.index("nose_x"), names.index("nose_y")]
    assert np.isnan(X[10, nose]).all() and np.isfinite(np.delete(X[10], nose)).all()
    turn = names.index("angular_velocity")                   # heading keypoints were tracked
    assert np.isnan(np.delete(X[20], turn)).all() and np.isfinite(X[20, turn])
    assert np.isnan(X[21, names.index("speed")]) and np.isfinite(X[22]).all()
    assert np.isnan(X).sum() == 2 + (X.shape[1] - 1) + 1 + 2  # nothing else but the first frame's kinematics
    Xs = X[np.isfinite(X).all(axis=1)]
    np.testing.assert_allclose(Xs.mean(axis=0), 0.0, atol=0.05)


def test_pca_components_and_fraction_of_variance():
    P, _ = simulate_poses(400, fps=FPS, missing=0.05, random_state=2)
    f = PoseFeatures(KEYPOINTS, anchor="body", heading=HEADING, pca=3, kinematics=False).fit([P])
    assert f.feature_names_ == ["pc1", "pc2", "pc3"]
    X = f.transform(P)
    incomplete = np.isnan(P[:, :, 0]).any(axis=1)
    assert np.isnan(X[incomplete]).all() and np.isfinite(X[~incomplete]).all()
    g = PoseFeatures(KEYPOINTS, anchor="body", heading=HEADING, pca=0.9, kinematics=False).fit([P])
    assert np.sum(g.pca_.explained_variance_ratio_) >= 0.9
    for bad in (0, -1, 1.5, 0.0, "x", True):
        with pytest.raises(ValueError, match="pca"):
            PoseFeatures(KEYPOINTS, pca=bad)
    with pytest.raises(ValueError, match="anchor keypoint 'tail'"):
        PoseFeatures(KEYPOINTS, anchor="tail")


# -- reading through movement --------------------------------------------------------------------------
def test_multi_animal_sleap_file_gives_one_recording_per_individual(tmp_path):
    tracks, _ = _animals(2, 120, seed0=5)
    path = tmp_path / "cage.analysis.h5"
    save_poses.to_sleap_analysis_file(_dataset(tracks, ["alice", "bob"], "SLEAP"), path)
    recs = read_poses([path], "sleap", fps=FPS)
    assert [r.name for r in recs] == ["cage_alice", "cage_bob"]
    assert recs[0].keypoints == KEYPOINTS and recs[0].fps == FPS
    for r, t in zip(recs, tracks):
        np.testing.assert_allclose(r.positions, t)        # NaN in the same places
    ds = _dataset(tracks, ["alice", "bob"], "SLEAP")
    ds["confidence"][10:20, 0, 0] = 0.2                    # poorly tracked nose of alice
    save_poses.to_sleap_analysis_file(ds, tmp_path / "low.analysis.h5")
    low = read_poses([tmp_path / "low.analysis.h5"], "SLEAP", min_confidence=0.5)
    assert np.isnan(low[0].positions[10:20, 0]).all()
    np.testing.assert_allclose(np.delete(low[0].positions, np.s_[10:20], axis=0), np.delete(tracks[0], np.s_[10:20], 0))
    with pytest.raises(ValueError, match="source_software must be one of"):
        read_poses([path], "OpenPose")
    with pytest.raises(FileNotFoundError, match="pose file not found"):
        read_poses([tmp_path / "nope.h5"], "SLEAP")


def test_segment_recovers_behaviours_from_sleap_analysis_files(tmp_path):
    tracks, truth = _animals(2, 1500, seed0=10)
    path = tmp_path / "pair.analysis.h5"
    save_poses.to_sleap_analysis_file(_dataset(tracks, ["m1", "m2"], "SLEAP"), path)
    seg = segment([path], source_software="SLEAP", fps=FPS, n_states=3, model="gaussian-hmm", anchor="body",
                  heading=HEADING, random_state=0, n_init=2)
    assert seg.recordings == ["pair_m1", "pair_m2"]
    assert 0.05 < np.mean(np.isnan(np.concatenate(seg.X))) < 0.5   # dropped keypoints reached the model as NaN
    _check_recovery(seg, truth)
    np.testing.assert_array_equal(np.bincount(seg.states).argsort()[::-1], np.arange(3))   # state 0 most used


# -- the command line --------------------------------------------------------------------------------------
def test_segment_command_on_deeplabcut_csv_files(tmp_path, capsys):
    tracks, truth = _animals(2, 1500, seed0=20)
    files = []
    for i, t in enumerate(tracks):
        path = tmp_path / f"mouse{i}.csv"
        save_poses.to_dlc_file(_dataset([t], ["individual_0"], "DeepLabCut"), path, split_individuals=False)
        files.append(str(path))
    out = tmp_path / "seg"
    assert main(["segment", *files, "--source-software", "DeepLabCut", "--fps", "30", "-k", "3", "--model", "gaussian-hmm",
                 "--anchor", "body", "--heading", "tail_base,neck", "--seed", "0", "--n-init", "2",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "features (12): nose_x, nose_y" in text and "speed, angular_velocity" in text
    assert "of feature values are missing" in text and "nothing is filled in" in text
    states = pd.read_csv(out / "states.csv")
    assert list(states.columns) == ["recording", "frame", "time_s", "state", "probability"]
    assert states.recording.unique().tolist() == ["mouse0", "mouse1"]
    np.testing.assert_allclose(states.time_s, states.frame / 30.0)
    assert states.probability.between(0, 1).all()
    assert adjusted_rand_score(np.concatenate(truth), states.state) >= 0.8
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == ["recording", "state", "usage", "bouts", "dwell_mean_s", "dwell_median_s",
                                     "dwell_iqr_s"]
    np.testing.assert_allclose(summary.groupby("recording").usage.sum(), 1.0)
    trans = pd.read_csv(out / "transitions.csv")
    assert list(trans.columns) == ["recording", "from_state", "to_state", "count"]
    # switches + 1 = bouts, per recording
    for rec in ("mouse0", "mouse1"):
        assert trans[trans.recording == rec]["count"].sum() + 1 == summary[summary.recording == rec].bouts.sum()
    html = (out / "report.html").read_text()
    assert "Usage and dwell times per recording" in html and "mouse1" in html
    assert (out / "ethogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from emkit import load

    model = load(out / "model.npz")
    assert list(model.feature_names_in_)[:2] == ["nose_x", "nose_y"]
    assert not [f for f in os.listdir(out) if f.startswith(".")]          # no temporary files left


def test_segment_command_on_tables_and_bad_input(tmp_path, capsys):
    rng = np.random.default_rng(0)
    z = np.repeat(np.arange(40) % 2, 25)                                  # 1000 frames, bouts of 25
    X = rng.normal(size=(1000, 2)) * 0.3 + np.array([[0, 0], [3, -2]])[z]
    table = pd.DataFrame({"animal": np.repeat(["a", "b"], 500), "frame": np.tile(np.arange(500), 2),
                          "ax": X[:, 0], "ay": X[:, 1]})
    csv = tmp_path / "acc.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "t"
    assert main(["segment", str(csv), "--sequence-column", "animal", "--columns", "ax,ay", "--fps", "50",
                 "-k", "2", "--model", "gaussian-hmm", "--seed", "0", "-o", str(out)]) == 0
    states = pd.read_csv(out / "states.csv")
    assert states.recording.unique().tolist() == ["a", "b"]
    assert adjusted_rand_score(z, states.state) > 0.95
    summary = pd.read_csv(out / "summary.csv")
    assert np.allclose(summary.dwell_median_s, 0.5, rtol=0.2)             # 25 frames at 50 fps
    capsys.readouterr()
    assert main(["segment", str(csv), "--sequence-column", "animal", "--fps", "50",
                 "--select", "1-3", "--model", "gaussian-hmm", "--seed", "0", "-o", str(tmp_path / "s")]) == 0
    text = capsys.readouterr().out
    assert "GaussianHMM with K=2 chosen by bic among 1-3" in text
    assert "features (2): ax, ay" in text and "left out 'frame'" in text
    assert "Model selection" in (tmp_path / "s" / "report.html").read_text()
    assert main(["segment", str(csv), "--select", "3-x", "-o", str(out)]) == 2
    assert "select must be a number, a range" in capsys.readouterr().err
    assert main(["segment", str(csv), "--fps", "30", "-o", str(out)]) == 2
    assert "n_states" in capsys.readouterr().err
    assert main(["segment", str(csv), "--source-software", "DeepLabCut", "-k", "2", "-o", str(out)]) == 2
    assert "could not be read as a DeepLabCut pose file" in capsys.readouterr().err
    assert main(["segment", str(csv), "--fps", "-3", "-k", "2", "-o", str(out)]) == 2
    assert "fps must be a positive number" in capsys.readouterr().err


def test_overall_pools_the_per_recording_summary():
    from types import SimpleNamespace

    from emkit.behavior.segment import Segmentation

    rng = np.random.default_rng(0)
    lengths = np.array([300, 250, 400])
    states = np.repeat(rng.integers(0, 3, 200), rng.integers(1, 10, 200))[:lengths.sum()].astype(np.int64)
    model = SimpleNamespace(n_components=4)  # state 3 is never visited
    for fps in (30.0, None):
        seg = Segmentation(model, ["a", "b", "c"], lengths, fps, None, [], None, states, None, None, 0.0)
        per, overall = seg.summary(), seg.overall()
        frames = per.recording.map(dict(zip(seg.recordings, lengths))) * per.usage
        np.testing.assert_allclose(overall.usage, frames.groupby(per.state).sum() / lengths.sum(), rtol=1e-12)
        np.testing.assert_array_equal(overall.bouts, per.groupby("state").bouts.sum())
        time = (per.dwell_mean_s.fillna(0) * per.bouts).groupby(per.state).sum()
        np.testing.assert_allclose(overall.dwell_mean_s[:3], (time / overall.bouts)[:3], rtol=1e-12)
        assert overall.bouts[3] == 0 and np.isnan(overall.dwell_mean_s[3]) and overall.usage[3] == 0
