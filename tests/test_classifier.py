"""Classifiers from one mixture (or HMM) per class: Bayes' rule, the flags, files, agreement."""

import numpy as np
import pytest
from scipy.special import logsumexp

import emkit


def _blobs(rng, centres, n, scale=1.0):
    X = np.concatenate([rng.normal(c, scale, size=(n, len(c))) for c in centres])
    return X, np.repeat(np.arange(len(centres)), n)


def test_one_diagonal_component_per_class_is_gaussian_naive_bayes():
    from sklearn.naive_bayes import GaussianNB

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(m, s, size=(n, 4)) for m, s, n in [(0, 1, 60), (2, 0.5, 40), (-2, 2, 50)]])
    y = np.repeat(["walk", "rest", "run"], [60, 40, 50])
    nb = GaussianNB(var_smoothing=1e-9).fit(X, y)
    clf = emkit.GaussianMixtureClassifier(1, covariance_type="diag", reg_covar=1e-9 * X.var(axis=0).max(),
                                          random_state=0).fit(X, y)
    X_new = rng.normal(0, 3, size=(300, 4))
    np.testing.assert_array_equal(clf.classes_, nb.classes_)
    np.testing.assert_allclose(clf.class_prior_, nb.class_prior_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.array([m.means_[0] for m in clf.estimators_]), nb.theta_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.array([m.covariances_[0] for m in clf.estimators_]), nb.var_, rtol=1e-8)
    np.testing.assert_allclose(clf.predict_proba(X_new), nb.predict_proba(X_new), rtol=0, atol=1e-8)
    np.testing.assert_allclose(clf.predict_log_proba(X_new), nb.predict_log_proba(X_new), rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(clf.predict(X_new), nb.predict(X_new))
    assert clf.score(X, y) == pytest.approx(nb.score(X, y))


@pytest.fixture(scope="module")
def two_classes():
    rng = np.random.default_rng(1)
    X, y = _blobs(rng, [(-1.5, 0.0), (1.5, 0.0)], 500)
    return X, y, emkit.GaussianMixtureClassifier(2, random_state=0).fit(X, y)


def test_flags_on_constructed_points(two_classes):
    X, y, clf = two_classes
    points = np.array([[0.0, 0.0],     # exactly between the classes: ambiguous, typical density
                       [-1.5, 0.0],    # a class centre: neither
                       [1.5, 0.0],     # the other centre: neither
                       [0.0, 25.0],    # far from all data: anomalous (its posterior is an extrapolation)
                       [-40.0, 0.0]])  # far beyond one class: confident, yet anomalous
    amb, ano = clf.is_ambiguous(points), clf.is_anomalous(points)
    np.testing.assert_array_equal(amb[[0, 1, 2, 4]], [True, False, False, False])
    np.testing.assert_array_equal(ano, [False, False, False, True, True])
    out = clf.classify(points)
    np.testing.assert_array_equal(out.ambiguous, amb)
    np.testing.assert_array_equal(out.anomalous, ano)
    np.testing.assert_array_equal(out.labels, clf.predict(points))
    np.testing.assert_allclose(out.proba, clf.predict_proba(points))
    np.testing.assert_allclose(out.log_density, clf.score_samples(points))
    assert out.labels[4] == 0 and out.proba[4, 0] > 0.999


def test_about_one_percent_of_training_rows_are_anomalous(two_classes):
    X, y, clf = two_classes
    n = X.shape[0]
    assert abs(clf.is_anomalous(X).mean() - 0.01) <= 1.0 / n
    loose = emkit.GaussianMixtureClassifier(2, anomaly_quantile=0.1, ambiguity_threshold=0.99,
                                            random_state=0).fit(X, y)
    assert abs(loose.is_anomalous(X).mean() - 0.1) <= 1.0 / n
    assert loose.is_ambiguous(X).mean() > clf.is_ambiguous(X).mean()


def test_bayes_rule_with_given_priors_and_per_class_components():
    rng = np.random.default_rng(2)
    X, y = _blobs(rng, [(0, 0), (2, 1), (-1, 3)], 80)
    labels = np.array(["x", "y", "z"])[y]
    clf = emkit.GaussianMixtureClassifier({"x": 1, "y": 2, "z": 3}, covariance_type="diag", priors=[0.2, 0.3, 0.5],
                                          random_state=0).fit(X, labels)
    assert [m.n_components for m in clf.estimators_] == [1, 2, 3]
    joint = np.column_stack([m.score_samples(X) for m in clf.estimators_]) + np.log([0.2, 0.3, 0.5])
    np.testing.assert_allclose(clf.predict_log_proba(X), joint - logsumexp(joint, axis=1, keepdims=True))
    np.testing.assert_allclose(clf.score_samples(X), logsumexp(joint, axis=1))
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0)


def test_parallel_and_sequential_fits_agree():
    rng = np.random.default_rng(3)
    X, y = _blobs(rng, [(0, 0), (3, 0), (0, 3)], 120)
    one = emkit.GaussianMixtureClassifier(3, n_jobs=1, random_state=5).fit(X, y)
    two = emkit.GaussianMixtureClassifier(3, n_jobs=2, random_state=5).fit(X, y)
    for a, b in zip(one.estimators_, two.estimators_):
        np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))


@pytest.mark.parametrize("kwargs, y_fn, match", [
    ({"n_components": {0: 1}}, None, r"missing \[1\]"),
    ({"n_components": {0: 1, 1: 1, 7: 2}}, None, r"unknown classes \[7\]"),
    ({"n_components": 30}, None, "class 0 has 20 rows, fewer than its n_components=30"),
    ({"priors": [0.5, 0.6]}, None, "priors must be non-negative and sum to 1"),
    ({"priors": [1.0]}, None, r"priors must have one entry per class, shape \(2,\)"),
    ({"ambiguity_threshold": 1.5}, None, "ambiguity_threshold must be <= 1"),
    ({}, lambda y: y[:-1], r"y must have shape \(40,\)"),
    ({}, lambda y: y + 0.5, "Unknown label type"),
])
def test_bad_input_names_the_parameter(kwargs, y_fn, match):
    rng = np.random.default_rng(4)
    X, y = _blobs(rng, [(0, 0), (3, 0)], 20)
    with pytest.raises(ValueError, match=match):
        emkit.GaussianMixtureClassifier(**kwargs).fit(X, y if y_fn is None else y_fn(y))


def test_sample_weights_and_column_labels():
    from sklearn.exceptions import DataConversionWarning

    rng = np.random.default_rng(12)
    X, y = _blobs(rng, [(0, 0), (3, 0)], 30)
    w = np.where(y == 0, 2.0, 1.0)
    clf = emkit.GaussianMixtureClassifier(random_state=0).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(clf.class_prior_, [2 / 3, 1 / 3])
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        emkit.GaussianMixtureClassifier(random_state=0).fit(X, y[:, None])
    with pytest.raises(ValueError, match="class 1 has zero total sample_weight"):
        emkit.GaussianMixtureClassifier().fit(X, y, sample_weight=np.where(y == 0, 1.0, 0.0))
    with pytest.raises(ValueError, match="requires y to be passed"):
        emkit.GaussianMixtureClassifier().fit(X, None)


def test_predict_checks_features_and_fitting():
    clf = emkit.GaussianMixtureClassifier()
    with pytest.raises(emkit.NotFittedError):
        clf.predict(np.zeros((2, 2)))
    rng = np.random.default_rng(5)
    X, y = _blobs(rng, [(0, 0), (3, 0)], 20)
    clf.fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixtureClassifier is expecting 2 features"):
        clf.predict(np.zeros((2, 3)))


def test_classifier_model_files_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    X, y = _blobs(rng, [(0, 0), (3, 0), (0, 3)], 40)
    clf = emkit.GaussianMixtureClassifier({0: 1, 1: 2, 2: 1}, covariance_type="tied", priors=np.array([0.5, 0.25, 0.25]),
                                          random_state=0).fit(X, y)
    back = emkit.load(clf.save(tmp_path / "clf.npz"))
    assert isinstance(back, emkit.GaussianMixtureClassifier)
    assert back.get_params()["n_components"] == {0: 1, 1: 2, 2: 1}
    np.testing.assert_array_equal(back.priors, [0.5, 0.25, 0.25])
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(back.is_anomalous(X), clf.is_anomalous(X))
    assert back.anomaly_threshold_ == clf.anomaly_threshold_
    with pytest.raises(ValueError, match="unfitted"):
        emkit.GaussianMixtureClassifier().save(tmp_path / "x.npz")


def test_damaged_classifier_file_is_refused(tmp_path):
    import json

    rng = np.random.default_rng(7)
    X, y = _blobs(rng, [(0, 0), (3, 0)], 30)
    path = emkit.GaussianMixtureClassifier(random_state=0).fit(X, y).save(tmp_path / "clf.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["__emkit__"].tobytes().decode())
    meta["members"] = meta["members"][:1]  # a class model dropped (checksum still matches the arrays)
    arrays["__emkit__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    # the dropped model's arrays are left over: refused before anything is read
    with pytest.raises(ValueError, match="unexpected member 'estimators_.1.attr:"):
        emkit.load(tmp_path / "bad.npz")
    for key in [k for k in arrays if k.startswith("estimators_.1.")]:
        del arrays[key]
    meta["sha256"] = emkit.io._digest({k: v for k, v in arrays.items() if k != "__emkit__"})
    arrays["__emkit__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="2 classes but 1 class models"):
        emkit.load(tmp_path / "bad.npz")


# -- sequences ----------------------------------------------------------------------------------------------
def _sequence_classes(n_per_class, T, seed):
    """Three classes with the same two emission states that differ only in how they switch."""
    stay = [0.95, 0.7, 0.3]
    seqs, labels = [], []
    for c, p in enumerate(stay):
        model = emkit.GaussianHMM.from_params([0.5, 0.5], [[p, 1 - p], [1 - p, p]], means=[[-1.0], [1.0]],
                                              covars=[[1.0], [1.0]])
        for i in range(n_per_class):
            seqs.append(model.sample(T, random_state=seed + 1000 * c + i)[0])
            labels.append(c)
    return seqs, np.array(labels)


def test_hmm_classifier_reaches_per_class_hmmlearn_accuracy():
    from hmmlearn import hmm as hl

    train, y_train = _sequence_classes(8, 60, 0)
    test, y_test = _sequence_classes(40, 30, 10_000)
    clf = emkit.HMMClassifier(emkit.GaussianHMM(2, n_init=2, max_iter=50), random_state=0).fit(train, y_train)
    acc = clf.score(test, y_test)

    scores = []
    for c in range(3):
        seqs = [s for s, lab in zip(train, y_train) if lab == c]
        m = hl.GaussianHMM(2, covariance_type="diag", n_iter=50, random_state=c)
        m.fit(np.concatenate(seqs), [len(s) for s in seqs])
        scores.append([m.score(s) for s in test])
    reference = np.mean(np.argmax(np.array(scores), axis=0) == y_test)
    assert reference > 0.6  # the task is learnable but not trivial
    assert acc >= reference - 0.05
    assert clf.is_ambiguous(test).any()  # the middle class overlaps the others on short sequences


def test_hmm_classifier_flags_posteriors_and_lengths():
    train, y = _sequence_classes(6, 50, 1)
    clf = emkit.HMMClassifier(emkit.GaussianHMM(2, max_iter=20), random_state=0).fit(train, y)
    X, lengths = np.concatenate(train), [len(s) for s in train]
    np.testing.assert_allclose(clf.predict_proba(X, lengths), clf.predict_proba(train))
    joint = np.column_stack([m.score_sequences(X, lengths) for m in clf.estimators_]) + np.log(clf.class_prior_)
    np.testing.assert_allclose(clf.score_samples(train), logsumexp(joint, axis=1))
    far = [np.full((40, 1), 12.0)]
    assert clf.is_anomalous(far)[0]
    out = clf.classify(train)
    np.testing.assert_allclose(out.log_density, clf.score_samples(train) / np.array(lengths))
    assert abs(out.anomalous.mean() - 0.01) <= 1.0 / len(train)
    with pytest.raises(ValueError, match=r"y must have shape \(18,\), one class label per sequence"):
        clf.fit(train, y[:-1])
    with pytest.raises(ValueError, match="template must be an emkit HMM"):
        emkit.HMMClassifier(emkit.GaussianMixture()).fit(train, y)


@pytest.mark.filterwarnings("ignore::emkit.ConvergenceWarning")
def test_hmm_classifier_categorical_alphabet_and_file(tmp_path):
    rng = np.random.default_rng(8)
    seqs = [rng.integers(0, 3, size=(30, 1)) for _ in range(5)] + [rng.integers(2, 6, size=(30, 1)) for _ in range(5)]
    y = np.repeat(["low", "high"], 5)
    clf = emkit.HMMClassifier(emkit.CategoricalHMM(2, max_iter=10), random_state=0).fit(seqs, y)
    assert all(m.emissionprob_.shape == (2, 6) for m in clf.estimators_)  # every class knows every symbol
    assert clf.score(seqs, y) == 1.0
    back = emkit.load(clf.save(tmp_path / "hmmclf"))
    assert isinstance(back.template, emkit.CategoricalHMM) and back.template.max_iter == 10
    np.testing.assert_array_equal(back.predict_proba(seqs), clf.predict_proba(seqs))


@pytest.mark.filterwarnings("ignore::emkit.ConvergenceWarning")
def test_score_sequences_sums_to_score():
    seqs, _ = _sequence_classes(2, 20, 3)
    m = emkit.GaussianHMM(2, max_iter=5, random_state=0).fit(seqs)
    per = m.score_sequences(seqs)
    assert per.shape == (len(seqs),)
    assert per.sum() == pytest.approx(m.score(seqs))
    np.testing.assert_allclose(per[1], m.score(seqs[1]))


# -- selection, plot and command line -----------------------------------------------------------------------
def test_select_chooses_components_per_class_by_bic():
    pytest.importorskip("pandas")
    rng = np.random.default_rng(9)
    X = np.concatenate([rng.normal(0, 1, (150, 2)), rng.normal([4, 4], 0.5, (80, 2)), rng.normal([-4, 3], 0.5, (80, 2)),
                        rng.normal([0, 8], 0.7, (150, 2))])
    y = np.repeat(["two", "two", "two", "one"], [150, 80, 80, 150])
    sel = emkit.select(emkit.GaussianMixtureClassifier(random_state=0), X, range(1, 5), y=y, random_state=0)
    assert sel.best_n_components == {"one": 1, "two": 3}
    assert set(sel.table["class"]) == {"one", "two"} and len(sel.table) == 8
    clf = sel.best_model
    assert [m.n_components for m in clf.estimators_] == [1, 3]
    assert clf.get_params()["n_components"] == {"one": 1, "two": 3}
    assert clf.score(X, y) > 0.99 and abs(clf.is_anomalous(X).mean() - 0.01) <= 1.0 / len(y)
    with pytest.raises(ValueError, match="y is only used with a classifier template"):
        emkit.select(emkit.GaussianMixture(), X, range(1, 3), y=y)


def test_select_chooses_states_per_class_for_sequences(tmp_path):
    pytest.importorskip("pandas")
    one = emkit.GaussianHMM.from_params([1.0], [[1.0]], means=[[0.0]], covars=[[1.0]])
    three = emkit.GaussianHMM.from_params([1 / 3] * 3, [[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]],
                                          means=[[-6.0], [0.0], [6.0]], covars=[[0.3], [0.3], [0.3]])
    seqs = [m.sample(80, random_state=i)[0] for m in (one, three) for i in range(4)]
    y = np.repeat(["one", "three"], 4)
    X, lengths = np.concatenate(seqs), [80] * 8
    sel = emkit.select(emkit.HMMClassifier(emkit.GaussianHMM(max_iter=30), random_state=0), X, range(1, 4), y=y,
                       lengths=lengths, random_state=0)
    assert sel.best_n_components == {"one": 1, "three": 3}
    clf = sel.best_model
    assert [m.n_components for m in clf.estimators_] == [1, 3] and clf.score(seqs, y) == 1.0
    back = emkit.load(clf.save(tmp_path / "seq.npz"))
    assert back.n_components == {"one": 1, "three": 3}
    np.testing.assert_array_equal(back.predict_proba(seqs), clf.predict_proba(seqs))
    refit = emkit.HMMClassifier(emkit.GaussianHMM(max_iter=30), n_components={"one": 1, "three": 3},
                                random_state=0).fit(seqs, y)
    assert [m.n_components for m in refit.estimators_] == [1, 3]


def test_decision_region_plot(tmp_path):
    from emkit.plot import plot_decision_regions, save_figure

    rng = np.random.default_rng(10)
    X, y = _blobs(rng, [(0, 0, 0), (3, 0, 1), (0, 3, 2)], 60)
    clf = emkit.GaussianMixtureClassifier(1, random_state=0).fit(X, y)
    ax = plot_decision_regions(clf, X, y, resolution=40)
    assert ax.get_xlabel() == "PC 1" and "ambiguous" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert save_figure(ax, tmp_path / "regions.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="y holds labels the classifier does not know"):
        plot_decision_regions(clf, X, y + 7)


def test_classify_command_line(tmp_path):
    pd = pytest.importorskip("pandas")
    from emkit.cli import main

    rng = np.random.default_rng(11)
    X, y = _blobs(rng, [(0, 0), (4, 0), (2, 4)], 60)
    df = pd.DataFrame({"x": X[:, 0], "species": np.array(["a", "b", "c"])[y], "y": X[:, 1]})
    df.to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "out"
    assert main(["classify", "fit", str(tmp_path / "train.csv"), "--label-column", "species", "-k", "1-2",
                 "--seed", "0", "-o", str(out)]) == 0
    for name in ("model.npz", "predictions.csv", "regions.png"):
        assert (out / name).exists()
    new = pd.DataFrame({"x": [2.0, 0.0, 40.0], "y": [1.3, 0.0, 40.0]})
    new.to_csv(tmp_path / "new.csv", index=False)
    assert main(["classify", "predict", str(out / "model.npz"), "--data", str(tmp_path / "new.csv"),
                 "-o", str(tmp_path / "pred.csv")]) == 0
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["label", "p_a", "p_b", "p_c", "log_density", "ambiguous", "anomalous"]
    assert pred["label"][1] == "a" and pred["ambiguous"].tolist()[:2] == [1, 0]
    assert pred["anomalous"].tolist() == [0, 0, 1]
    clf = emkit.load(out / "model.npz")
    np.testing.assert_allclose(pred[["p_a", "p_b", "p_c"]], clf.predict_proba(new.to_numpy()))


def test_classify_command_line_sequences_and_errors(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    from emkit.cli import main

    seqs, y = _sequence_classes(4, 30, 5)
    df = pd.DataFrame({"rec": np.repeat([f"r{i}" for i in range(len(seqs))], 30),
                       "x": np.concatenate(seqs)[:, 0], "kind": np.repeat(y, 30)})
    df.to_csv(tmp_path / "seq.csv", index=False)
    args = ["classify", "fit", str(tmp_path / "seq.csv"), "--label-column", "kind", "--sequence-column", "rec",
            "--model", "gaussian-hmm", "-k", "1-2", "--max-iter", "20", "--seed", "0", "-o", str(tmp_path / "o")]
    assert main(args) == 0
    pred = pd.read_csv(tmp_path / "o" / "predictions.csv")
    assert list(pred.columns[:3]) == ["sequence", "n_frames", "label"] and len(pred) == len(seqs)
    assert main(["classify", "predict", str(tmp_path / "o" / "model.npz"), "--data", str(tmp_path / "seq.csv"),
                 "--sequence-column", "rec", "--label-column", "kind", "-o", str(tmp_path / "p.csv")]) == 0
    capsys.readouterr()
    assert main(args[:4] + ["nope"] + args[5:]) == 2
    assert "label column 'nope' not found" in capsys.readouterr().err
    df.assign(kind=np.arange(len(df)) % 3).to_csv(tmp_path / "mixed.csv", index=False)
    assert main(["classify", "fit", str(tmp_path / "mixed.csv")] + args[3:]) == 2
    assert "changes within sequence 'r0'" in capsys.readouterr().err
    assert main(["classify", "predict", str(tmp_path / "o" / "model.npz"), "--data", str(tmp_path / "seq.csv")]) == 2
    assert "give --sequence-column" in capsys.readouterr().err


def test_classifier_benchmark_smoke(tmp_path):
    """The benchmark script runs and reports every measure (tiny sizes: the numbers mean nothing)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "classifier.py"), "--rows", "3000",
                           "--fit-rows", "2000", "--small-rows", "60", "--repeat", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["results"]] == ["predict", "classify", "fit"]
    assert all(r["ratio"] > 0 for r in doc["results"]) and doc["accuracy"] > 0.9


from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks([emkit.GaussianMixtureClassifier(random_state=0)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
