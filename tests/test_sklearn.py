"""emkit estimators inside scikit-learn: pipelines, search, cloning, feature names."""

import json
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_clusterer
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

import emkit
from emkit import GaussianHMM, GaussianMixture, KMeans


@pytest.fixture(scope="module")
def three():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    X = np.concatenate([rng.normal(c, 1.0, size=(60, 2)) for c in centres])
    return X[rng.permutation(X.shape[0])] * [1.0, 50.0] + [0.0, 1000.0]


def test_pipeline_fit_predict_score(three):
    pipe = make_pipeline(StandardScaler(), GaussianMixture(3, random_state=0)).fit(three)
    labels = pipe.predict(three)
    assert labels.shape == (three.shape[0],) and np.unique(labels).size == 3
    assert np.isfinite(pipe.score(three))
    assert pipe.predict_proba(three).shape == (three.shape[0], 3)
    km = make_pipeline(StandardScaler(), KMeans(3, random_state=0)).fit(three)
    assert np.unique(km.predict(three)).size == 3


def test_grid_search_over_pipeline_finds_three(three):
    pipe = make_pipeline(StandardScaler(), GaussianMixture(random_state=0))
    search = GridSearchCV(pipe, {"gaussianmixture__n_components": [1, 2, 3]}, cv=KFold(3))
    search.fit(three)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))
    assert search.best_params_ == {"gaussianmixture__n_components": 3}
    assert search.best_estimator_[-1].n_components == 3


def test_cross_val_score_clone_and_conventions(three):
    gm = GaussianMixture(2, random_state=0)
    scores = cross_val_score(gm, three, cv=KFold(3))
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    copy = clone(gm)
    assert copy is not gm and copy.get_params() == gm.get_params()
    assert is_clusterer(KMeans(2))
    # the same kind of estimator as scikit-learn's own: GaussianMixture is a density estimator
    from sklearn import mixture
    assert gm.__sklearn_tags__().estimator_type == mixture.GaussianMixture().__sklearn_tags__().estimator_type
    for model in (gm, KMeans(2)):
        with pytest.raises(SklearnNotFittedError):
            check_is_fitted(model)
        check_is_fitted(clone(model).fit(three))
    hmm = GaussianHMM(2, random_state=0)
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(hmm)
    check_is_fitted(hmm.fit(three))
    assert issubclass(emkit.NotFittedError, SklearnNotFittedError)
    assert issubclass(emkit.ConvergenceWarning, SklearnConvergenceWarning)


def test_kmeans_transform_set_output_pandas(three):
    km = KMeans(3, random_state=0).set_output(transform="pandas").fit(three)
    out = km.transform(three)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["kmeans0", "kmeans1", "kmeans2"]
    np.testing.assert_allclose(out.to_numpy(), KMeans(3, random_state=0).fit(three).transform(three))
    assert isinstance(make_pipeline(StandardScaler(), KMeans(3, random_state=0)).set_output(transform="pandas")
                      .fit_transform(three), pd.DataFrame)


@pytest.mark.parametrize("make", [lambda: GaussianMixture(2, random_state=0), lambda: KMeans(2, random_state=0),
                                  lambda: GaussianHMM(2, random_state=0)])
def test_feature_names_checked_like_scikit_learn(three, make):
    df = pd.DataFrame(three, columns=["waiting", "eruptions"])
    model = make().fit(df)
    assert list(model.feature_names_in_) == ["waiting", "eruptions"]
    expected = model.predict(df)
    np.testing.assert_array_equal(model.predict(df[["waiting", "eruptions"]]), expected)
    with pytest.raises(ValueError, match="same order"):
        model.predict(df[["eruptions", "waiting"]])
    with pytest.raises(ValueError, match="unseen at fit time"):
        model.score(df.rename(columns={"waiting": "wait"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        model.predict(three)
    # fitted without names: a DataFrame warns, names are not invented
    plain = make().fit(three)
    assert not hasattr(plain, "feature_names_in_")
    with pytest.warns(UserWarning, match="fitted without feature names"):
        plain.predict(df)
    # a refit on an array forgets the names
    assert not hasattr(model.fit(three), "feature_names_in_")


def test_feature_names_from_a_file_header_and_list_of_frames(tmp_path, three):
    path = tmp_path / "data.csv"
    pd.DataFrame(three, columns=["a", "b"]).to_csv(path, index=False)
    gm = GaussianMixture(2, random_state=0).fit(emkit.open_table(path, columns=["b", "a"]))
    assert list(gm.feature_names_in_) == ["b", "a"]
    headerless = tmp_path / "plain.csv"
    pd.DataFrame(three).to_csv(headerless, index=False, header=False)
    assert not hasattr(GaussianMixture(2, random_state=0).fit(str(headerless)), "feature_names_in_")
    frames = [pd.DataFrame(three[:90], columns=["a", "b"]), pd.DataFrame(three[90:], columns=["a", "b"])]
    hmm = GaussianHMM(2, random_state=0).fit(frames)
    assert list(hmm.feature_names_in_) == ["a", "b"]
    with pytest.raises(ValueError, match="same order"):
        hmm.predict([f[["b", "a"]] for f in frames])


def test_feature_names_saved_in_model_files(tmp_path, three):
    df = pd.DataFrame(three, columns=["waiting", "eruptions"])
    for model in (GaussianMixture(2, random_state=0), KMeans(2, random_state=0), GaussianHMM(2, random_state=0)):
        path = model.fit(df).save(tmp_path / f"{type(model).__name__}.npz")
        back = emkit.load(path)
        assert list(back.feature_names_in_) == ["waiting", "eruptions"]
        np.testing.assert_array_equal(back.predict(df), model.predict(df))
        with pytest.raises(ValueError, match="same order"):
            back.predict(df[["eruptions", "waiting"]])
        plain = type(model)(2, random_state=0).fit(three)
        assert not hasattr(emkit.load(plain.save(tmp_path / "plain.npz")), "feature_names_in_")


def _rewrite_meta(path, out, change):
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "__emkit__.npy":
                arr = np.load(__import__("io").BytesIO(data))
                meta = json.loads(arr.tobytes().decode())
                change(meta)
                buf = __import__("io").BytesIO()
                np.save(buf, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
                data = buf.getvalue()
            zout.writestr(item, data)


@pytest.mark.parametrize("bad", [{"__class__": "x"}, ["a"], ["a", "a"], ["a", 3], ["a", ""], "ab", ["a", "b" * 2000]])
def test_crafted_feature_names_are_refused(tmp_path, three, bad):
    path = GaussianMixture(2, random_state=0).fit(pd.DataFrame(three, columns=["a", "b"])).save(tmp_path / "m.npz")
    out = tmp_path / "crafted.npz"
    _rewrite_meta(path, out, lambda meta: meta.__setitem__("feature_names_in", bad))
    with pytest.raises(ValueError, match="feature_names_in"):
        emkit.load(out)


def test_no_warning_when_names_match(three):
    df = pd.DataFrame(three, columns=["a", "b"])
    gm = GaussianMixture(2, random_state=0).fit(df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gm.predict(df)
        gm.bic(df)
        gm.aic(df)
        gm.score_samples(df)


# -- scikit-learn's generic estimator checks -------------------------------------------------------------
from sklearn.utils import estimator_checks as checks  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

#: Fitting with a weight of 2 differs from repeating the row because the random seeding (k-means++ for
#: KMeans, and the K-means initialisation of GaussianMixture) draws different rows; scikit-learn's own
#: KMeans declares the same expected failure.
EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": "random seeding draws differ between weighted and "
                                                     "repeated rows (as for scikit-learn's KMeans)",
}


@parametrize_with_checks([GaussianMixture(2, random_state=0), KMeans(2, random_state=0),
                          emkit.BayesianGaussianMixture(2, random_state=0)],
                         expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_check_estimator(estimator, check):
    check(estimator)


class _SequenceAdapter:
    """The generic checks call ``fit(X, y)`` and ``score(X, y=y)``; an HMM's second argument is
    ``lengths``, so the checks see ``y`` dropped and ``X`` as one sequence (the adapter adds nothing else)."""

    def fit(self, X, y=None):
        return super().fit(X)

    def partial_fit(self, X, y=None):
        return super().partial_fit(X)

    def score(self, X, y=None):
        return super().score(X)


class GaussianHMMChecked(_SequenceAdapter, GaussianHMM):
    pass


class ARHMMChecked(_SequenceAdapter, emkit.ARHMM):
    pass


class VariationalGaussianHMMChecked(_SequenceAdapter, emkit.VariationalGaussianHMM):
    pass


#: The generic checks that apply to sequence models: parameters, cloning, fitting twice, dtypes,
#: pickling, n_features_in_, feature names, input checks (not "NaN is an error": NaN marks a missing
#: value; infinity is refused, see test_missing.py).  (Sample-order and subset invariance do not
#: apply: an HMM's states depend on the neighbouring frames.)
HMM_CHECKS_NO_FIT = ("check_parameters_default_constructible", "check_get_params_invariance", "check_set_params",
                     "check_estimator_cloneable", "check_estimator_repr", "check_no_attributes_set_in_init",
                     "check_estimator_tags_renamed", "check_valid_tag_types", "check_estimator_sparse_tag")
HMM_CHECKS_FIT = ("check_fit_idempotent", "check_estimators_dtypes", "check_estimators_pickle", "check_n_features_in",
                  "check_n_features_in_after_fitting", "check_dont_overwrite_parameters", "check_fit_check_is_fitted",
                  "check_estimators_overwrite_params", "check_dict_unchanged", "check_readonly_memmap_input",
                  "check_dataframe_column_names_consistency",
                  "check_estimators_empty_data_messages", "check_fit2d_1feature", "check_fit2d_predict1d",
                  "check_estimators_unfitted", "check_complex_data", "check_dtype_object",
                  "check_estimator_sparse_array", "check_estimator_sparse_matrix", "check_fit_score_takes_y")


@pytest.mark.parametrize("check", HMM_CHECKS_NO_FIT)
@pytest.mark.parametrize("cls", [GaussianHMM, emkit.ARHMM, emkit.PoissonHMM, emkit.CategoricalHMM,
                                 emkit.VariationalGaussianHMM, emkit.VariationalCategoricalHMM])
def test_hmm_generic_checks_without_fitting(cls, check):
    estimator = cls(2, random_state=0, max_iter=5)
    getattr(checks, check)(cls.__name__, estimator)


@pytest.mark.parametrize("check", HMM_CHECKS_FIT)
@pytest.mark.parametrize("cls", [GaussianHMMChecked, ARHMMChecked, VariationalGaussianHMMChecked])
def test_hmm_generic_checks(cls, check):
    estimator = cls(2, random_state=0, max_iter=5)
    getattr(checks, check)(cls.__name__, estimator)


def test_progress_bar(capsys, three):
    from emkit._progress import ProgressBar

    seen = []
    bar = ProgressBar(10, True, seen.append, delay=0.0, mininterval=0.0)
    for init in (0, 1):
        for it in (1, 2, 3):
            bar({"init": init, "iteration": it, "lower_bound": -1.5})
    bar.close()
    err = capsys.readouterr().err
    assert "restart 1" in err and "restart 2" in err and "3/10" in err and "log-lik/sample -1.5" in err
    assert len(seen) == 6
    calls = []
    GaussianMixture(2, random_state=0, max_iter=3, tol=0).fit(three, callback=calls.append, progress=False)
    assert [c["iteration"] for c in calls] == [1, 2, 3]
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress must be True, False or None"):
        GaussianMixture(2).fit(three, progress="yes")


def test_import_is_lazy_and_files_load_in_a_fresh_process(tmp_path, three):
    import subprocess
    import sys

    path = GaussianMixture(2, random_state=0).fit(pd.DataFrame(three, columns=["a", "b"])).save(tmp_path / "m.npz")
    code = ("import sys, emkit\n"
            "assert not any(m in sys.modules for m in ('sklearn', 'numba', 'pandas')), 'eager import'\n"
            f"m = emkit.load({str(path)!r})\n"
            "print(type(m).__name__, list(m.feature_names_in_), emkit.KMeans.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["GaussianMixture", "['a',", "'b']", "KMeans"]
    assert set(emkit.__all__) <= set(dir(emkit))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        emkit.nothing
