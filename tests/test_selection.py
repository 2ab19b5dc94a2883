"""Model selection (select) and state matching across restarts (match_states, align_to, state_stability)."""

import copy
import sys
import warnings

import numpy as np
import pytest

import emkit
from emkit.exceptions import ConvergenceWarning
from emkit.selection import Selection, align_to, bhattacharyya_matrix, match_states, select, state_stability

from conftest import make_blobs

pd = pytest.importorskip("pandas")

TRUE_PERM = np.array([2, 0, 3, 1])  # other's state j is reference state TRUE_PERM[j]; not an involution


@pytest.fixture(scope="module")
def blobs3():
    X, _, _ = make_blobs(n=600, D=2, K=3, seed=0)
    return X


def _true_hmm():
    transmat = np.array([[0.90, 0.05, 0.05], [0.10, 0.85, 0.05], [0.04, 0.06, 0.90]])
    return emkit.GaussianHMM.from_params([0.5, 0.3, 0.2], transmat, means=[[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]],
                                         covars=np.ones((3, 2)))


@pytest.fixture(scope="module")
def hmm_sequences():
    rng = np.random.default_rng(1)
    true = _true_hmm()
    return [true.sample(80, random_state=rng)[0] for _ in range(10)]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# ------------------------------------------------------------------------------------------------
# select
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("criterion", ["bic", "aic", "icl", "heldout"])
def test_select_gaussian_mixture_finds_true_k(blobs3, criterion):
    sel = select(emkit.GaussianMixture(), blobs3, range(1, 7), criterion=criterion, n_init=2, random_state=0)
    assert isinstance(sel, Selection)
    assert sel.best_n_components == 3
    assert sel.best_model.n_components == 3
    assert sel.criterion == criterion
    assert sel.models is None


@pytest.mark.parametrize("criterion", ["bic", "heldout"])
def test_select_gaussian_hmm_finds_true_k(hmm_sequences, criterion):
    sel = select(emkit.GaussianHMM(covariance_type="diag"), hmm_sequences, range(1, 6), criterion=criterion,
                 n_init=2, random_state=0)
    assert sel.best_n_components == 3
    assert isinstance(sel.best_model, emkit.GaussianHMM)
    # for heldout the best model is refitted on all sequences
    assert sel.best_model.n_components == 3
    if criterion == "heldout":
        assert sel.table.attrs["n_test"] + sel.table.attrs["n_train"] == sum(len(s) for s in hmm_sequences)
        assert sel.table.attrs["n_test"] == 2 * 80  # round(0.2 x 10) whole sequences


def test_select_hmm_with_lengths_equals_list(hmm_sequences):
    X = np.concatenate(hmm_sequences)
    lengths = [len(s) for s in hmm_sequences]
    a = select(emkit.GaussianHMM(), X, [2, 3], lengths=lengths, random_state=3)
    b = select(emkit.GaussianHMM(), hmm_sequences, [2, 3], random_state=3)
    np.testing.assert_allclose(a.table["bic"], b.table["bic"])


def test_select_table_columns_values_and_sorting(blobs3):
    template = emkit.GaussianMixture(covariance_type="diag", random_state=5)
    before = template.get_params()
    sel = select(template, blobs3, [4, 1, 2, 3, 3], return_models=True)
    t = sel.table
    assert list(t.columns) == ["n_components", "bic", "mean_loglik", "n_parameters", "converged", "n_iter",
                               "recovered", "collapsed", "fit_seconds", "rank"]
    assert t.shape == (4, 10)
    assert sorted(t["n_components"]) == [1, 2, 3, 4]
    assert list(t["rank"]) == sorted(t["rank"]) and t["rank"].iloc[0] == 1
    assert np.all(np.diff(t["bic"].to_numpy()) >= 0)  # best (lowest BIC) first
    assert sel.best_n_components == t["n_components"].iloc[0]
    assert set(sel.models) == {1, 2, 3, 4}
    assert sel.best_model is sel.models[sel.best_n_components]
    for _, row in t.iterrows():
        m = sel.models[row["n_components"]]
        assert m.n_components == row["n_components"]
        assert m.covariance_type == "diag" and m.random_state == 5
        assert row["bic"] == pytest.approx(m.bic(blobs3))
        assert row["mean_loglik"] == pytest.approx(m.score(blobs3))
        assert row["n_parameters"] == m._n_parameters()
        assert row["n_iter"] == m.n_iter_ and row["fit_seconds"] >= 0
    # the template is untouched
    assert template.get_params() == before
    assert not hasattr(template, "means_")


def test_select_icl_is_bic_plus_twice_entropy(blobs3):
    sel = select(emkit.GaussianMixture(), blobs3, [2, 4], criterion="icl", random_state=0, return_models=True)
    assert "entropy" in sel.table.columns
    for _, row in sel.table.iterrows():
        m = sel.models[row["n_components"]]
        r = m.predict_proba(blobs3)
        ent = -np.sum(r[r > 0] * np.log(r[r > 0]))
        assert row["entropy"] == pytest.approx(ent)
        assert row["icl"] == pytest.approx(m.bic(blobs3) + 2 * ent)
        assert row["icl"] >= m.bic(blobs3)


def test_select_aic_values_for_hmm(hmm_sequences):
    sel = select(emkit.GaussianHMM(), hmm_sequences, [2, 3], criterion="aic", random_state=0, return_models=True)
    for _, row in sel.table.iterrows():
        m = sel.models[row["n_components"]]
        assert row["aic"] == pytest.approx(m.aic(hmm_sequences))
        n = sum(len(s) for s in hmm_sequences)
        assert row["mean_loglik"] == pytest.approx(m.score(hmm_sequences) / n)


def test_select_heldout_refits_best_on_all_data(blobs3):
    sel = select(emkit.GaussianMixture(), blobs3, [1, 3], criterion="heldout", random_state=0, return_models=True)
    assert sel.table.attrs["n_test"] == 120 and sel.table.attrs["n_train"] == 480
    best = sel.best_model
    assert best is not sel.models[3]  # refitted on all of X
    assert best.n_features_in_ == 2
    assert list(sel.table.columns[:2]) == ["n_components", "heldout"]
    assert np.all(np.diff(sel.table["heldout"].to_numpy()) <= 0)  # higher is better, best first


def test_select_is_reproducible(blobs3):
    a = select(emkit.GaussianMixture(), blobs3, [2, 3], criterion="heldout", random_state=7)
    b = select(emkit.GaussianMixture(), blobs3, [2, 3], criterion="heldout", random_state=7)
    np.testing.assert_array_equal(a.table["heldout"], b.table["heldout"])


def test_select_n_init_overrides_template(blobs3):
    sel = select(emkit.GaussianMixture(n_init=1), blobs3, [2], n_init=3, random_state=0)
    assert sel.best_model.n_init == 3
    assert len(sel.best_model.restart_models()) == 3


def test_select_kmeans(blobs3):
    sel = select(emkit.KMeans(), blobs3, range(1, 4), criterion="heldout", random_state=0)
    assert isinstance(sel.best_model, emkit.KMeans)
    assert set(sel.table["n_components"]) == {1, 2, 3}
    assert sel.table["converged"].isna().all()
    with pytest.raises(ValueError, match="KMeans"):
        select(emkit.KMeans(), blobs3, [2, 3], criterion="bic")


def test_select_categorical_hmm_heldout():
    true = emkit.CategoricalHMM.from_params([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]],
                                            emissionprob=[[0.7, 0.3, 0.0, 0.0], [0.0, 0.1, 0.5, 0.4]])
    rng = np.random.default_rng(0)
    seqs = [true.sample(60, random_state=rng)[0] for _ in range(6)]
    sel = select(emkit.CategoricalHMM(), seqs, [1, 2, 3], criterion="heldout", random_state=0)
    assert np.isfinite(sel.table["heldout"]).all()
    assert sel.best_model.emissionprob_.shape[1] == 4


def test_selection_repr(blobs3):
    sel = select(emkit.GaussianMixture(), blobs3, [1, 2, 3], random_state=0, return_models=True)
    text = repr(sel)
    assert "best n_components = 3" in text and "BIC (lower is better)" in text
    assert "rank" in text and "mean_loglik" in text and "best_model: GaussianMixture(" in text
    assert text.count("\n") >= 5


@pytest.mark.parametrize("kwargs, message", [
    ({"criterion": "bick"}, "criterion must be one of"),
    ({"criterion": None}, "criterion must be one of"),
    ({"n_components": []}, "n_components must hold at least one"),
    ({"n_components": range(1, 1)}, "n_components must hold at least one"),
    ({"n_components": [0, 1, 2]}, "n_components must hold integers >= 1; got 0"),
    ({"n_components": [-2]}, "n_components must hold integers >= 1"),
    ({"n_components": [1.5]}, "n_components must hold integers"),
    ({"n_components": "3"}, "n_components must be an iterable"),
    ({"heldout_fraction": 0.0, "criterion": "heldout"}, "heldout_fraction"),
    ({"heldout_fraction": 1.5, "criterion": "heldout"}, "heldout_fraction"),
    ({"n_init": 0}, "n_init must be >= 1"),
    ({"lengths": [300, 300]}, "lengths is only used for HMMs"),
    ({"n_components": [1000]}, "more than the 600 rows"),
])
def test_select_bad_input(blobs3, kwargs, message):
    kwargs = {"n_components": [1, 2], **kwargs}
    with pytest.raises(ValueError, match=message):
        select(emkit.GaussianMixture(), blobs3, **kwargs)


def test_select_rejects_state_shaped_template_and_class(blobs3):
    with pytest.raises(ValueError, match="means_init"):
        select(emkit.GaussianMixture(means_init=np.zeros((2, 2))), blobs3, [1, 2])
    with pytest.raises(ValueError, match="transmat_prior"):
        select(emkit.GaussianHMM(transmat_prior=np.ones((2, 2))), blobs3, [1, 2])
    with pytest.raises(ValueError, match="estimator instance"):
        select(emkit.GaussianMixture, blobs3, [1, 2])


def test_select_heldout_needs_two_sequences(hmm_sequences):
    with pytest.raises(ValueError, match="at least 2 sequences; got 1"):
        select(emkit.GaussianHMM(), hmm_sequences[0], [1, 2], criterion="heldout")
    X = np.concatenate(hmm_sequences[:2])
    with pytest.raises(ValueError, match="at least 2 sequences"):
        select(emkit.GaussianHMM(), X, [1, 2], lengths=[len(X)], criterion="heldout")
    # bic with a single sequence is fine
    select(emkit.GaussianHMM(), hmm_sequences[0], [1, 2], criterion="bic", random_state=0)


def test_pandas_missing_gives_clear_import_error(blobs3, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        select(emkit.GaussianMixture(), blobs3, [1, 2])
    gm = emkit.GaussianMixture(2, n_init=2, random_state=0).fit(blobs3)
    with pytest.raises(ImportError, match="pip install pandas"):
        state_stability(gm)


# ------------------------------------------------------------------------------------------------
# match_states / align_to
# ------------------------------------------------------------------------------------------------
def _hand_permuted(model, q):
    """A copy of ``model`` whose state j is the model's state q[j] (set by hand, independently of align_to)."""
    out = copy.deepcopy(model)
    if isinstance(out, emkit.KMeans):
        out.cluster_centers_ = out.cluster_centers_[q]
        out.labels_ = np.argsort(q)[out.labels_]
        return out
    if isinstance(out, emkit.GaussianMixture):
        for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
            if name in ("weights_", "means_") or out.covariance_type != "tied":
                setattr(out, name, getattr(out, name)[q])
        return out
    out.startprob_ = out.startprob_[q]
    out.transmat_ = out.transmat_[q][:, q]
    for name in type(out)._emission_attributes:
        if not (name == "covars_" and getattr(out, "covariance_type", None) == "tied"):
            setattr(out, name, getattr(out, name)[q])
    return out


def _hmm_models():
    rng = np.random.default_rng(4)
    K, D = 4, 2
    start = rng.dirichlet(np.ones(K))
    trans = rng.dirichlet(np.ones(K) * 2, size=K)
    means = rng.normal(scale=5, size=(K, D))
    A = rng.normal(size=(K, D, D))
    full = A @ A.transpose(0, 2, 1) + np.eye(D)
    models = {}
    for ct, cov in (("full", full), ("diag", rng.uniform(0.5, 2, (K, D))), ("spherical", rng.uniform(0.5, 2, K)),
                    ("tied", full[0])):
        models[f"gaussian-{ct}"] = emkit.GaussianHMM.from_params(start, trans, means=means, covars=cov,
                                                                 covariance_type=ct)
    models["categorical"] = emkit.CategoricalHMM.from_params(start, trans,
                                                             emissionprob=rng.dirichlet(np.ones(6) * 0.5, size=K))
    models["poisson"] = emkit.PoissonHMM.from_params(start, trans, lambdas=rng.uniform(0.5, 20, (K, 3)))
    models["ar"] = emkit.ARHMM.from_params(start, trans, coefs=rng.normal(scale=0.3, size=(K, D, 2 * D)),
                                           intercepts=rng.normal(size=(K, D)), covars=full, order=2)
    return models


@pytest.fixture(scope="module")
def blobs4():
    X, _, _ = make_blobs(n=400, D=2, K=4, seed=2)
    return X


@pytest.fixture(scope="module")
def fitted_models(blobs4):
    models = _hmm_models()
    for ct in ("full", "diag", "spherical", "tied"):
        models[f"mixture-{ct}"] = emkit.GaussianMixture(4, covariance_type=ct, random_state=0).fit(blobs4)
    models["kmeans"] = emkit.KMeans(4, random_state=0).fit(blobs4)
    return models


MODEL_KEYS = ["gaussian-full", "gaussian-diag", "gaussian-spherical", "gaussian-tied", "categorical", "poisson",
              "ar", "mixture-full", "mixture-diag", "mixture-spherical", "mixture-tied", "kmeans"]


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_match_states_recovers_known_permutation(fitted_models, key):
    ref = fitted_models[key]
    other = _hand_permuted(ref, TRUE_PERM)
    perm, dist = match_states(ref, other)
    np.testing.assert_array_equal(perm, np.argsort(TRUE_PERM))
    np.testing.assert_allclose(dist, 0.0, atol=1e-6)
    # self-match is the identity, and the full distance matrix is positive off the diagonal
    np.testing.assert_array_equal(match_states(ref, ref).perm, np.arange(4))
    db = bhattacharyya_matrix(ref, ref)
    np.testing.assert_allclose(np.diag(db), 0.0, atol=1e-9)
    assert np.all(db[~np.eye(4, dtype=bool)] > 1e-3)


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_align_to_undoes_permutation(fitted_models, blobs4, key):
    ref = fitted_models[key]
    other = _hand_permuted(ref, TRUE_PERM)
    aligned = align_to(ref, other)
    perm = match_states(ref, other).perm
    if isinstance(ref, emkit.KMeans):
        np.testing.assert_allclose(aligned.cluster_centers_, ref.cluster_centers_)
        np.testing.assert_array_equal(aligned.labels_, ref.labels_)
        np.testing.assert_array_equal(perm[aligned.predict(blobs4)], other.predict(blobs4))
        return
    if isinstance(ref, emkit.GaussianMixture):
        for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
            np.testing.assert_allclose(getattr(aligned, name), getattr(ref, name))
        np.testing.assert_array_equal(aligned.predict(blobs4), ref.predict(blobs4))
        np.testing.assert_array_equal(perm[aligned.predict(blobs4)], other.predict(blobs4))
        np.testing.assert_allclose(aligned.predict_proba(blobs4), other.predict_proba(blobs4)[:, perm])
        assert aligned.score(blobs4) == pytest.approx(other.score(blobs4))
        return
    np.testing.assert_allclose(aligned.startprob_, ref.startprob_)
    np.testing.assert_allclose(aligned.transmat_, ref.transmat_)
    for name in type(ref)._emission_attributes:
        np.testing.assert_allclose(getattr(aligned, name), getattr(ref, name))
    X, _ = ref.sample(150, random_state=1)
    np.testing.assert_array_equal(perm[aligned.predict(X)], other.predict(X))
    np.testing.assert_allclose(aligned.predict_proba(X), other.predict_proba(X)[:, perm], atol=1e-12)
    assert aligned.score(X) == pytest.approx(other.score(X))
    # other is not modified
    np.testing.assert_allclose(other.startprob_, ref.startprob_[TRUE_PERM])


def test_align_to_with_given_perm_and_bad_perm(fitted_models):
    ref = fitted_models["mixture-full"]
    other = _hand_permuted(ref, TRUE_PERM)
    aligned = align_to(ref, other, perm=np.argsort(TRUE_PERM))
    np.testing.assert_allclose(aligned.means_, ref.means_)
    with pytest.raises(ValueError, match="perm must be a permutation"):
        align_to(ref, other, perm=[0, 0, 1, 2])
    with pytest.raises(ValueError, match="perm must be a permutation"):
        align_to(ref, other, perm=[0, 1, 2])


def test_align_independent_restarts_agree_on_labels(blobs4):
    gm = emkit.GaussianMixture(4, n_init=4, random_state=1).fit(blobs4)
    labels = gm.predict(blobs4)
    for run in gm.restart_models():
        aligned = align_to(gm, run)
        assert np.mean(aligned.predict(blobs4) == labels) > 0.99


def test_match_states_bad_pairs(fitted_models, blobs4):
    ref = fitted_models["mixture-full"]
    with pytest.raises(ValueError, match="same class"):
        match_states(ref, fitted_models["kmeans"])
    gm3 = emkit.GaussianMixture(3, random_state=0).fit(blobs4)
    with pytest.raises(ValueError, match="same number of states"):
        match_states(ref, gm3)
    with pytest.raises(emkit.NotFittedError):
        match_states(emkit.GaussianMixture(4), emkit.GaussianMixture(4))


def test_hellinger_distance_closed_form():
    # two 1-D unit-variance Gaussians 1 SD apart: H = sqrt(1 - exp(-1/8))
    a = emkit.GaussianHMM.from_params([0.5, 0.5], np.full((2, 2), 0.5), means=[[0.0], [10.0]], covars=[1.0, 1.0],
                                      covariance_type="spherical")
    b = emkit.GaussianHMM.from_params([0.5, 0.5], np.full((2, 2), 0.5), means=[[11.0], [1.0]], covars=[1.0, 1.0],
                                      covariance_type="spherical")
    perm, dist = match_states(a, b)
    np.testing.assert_array_equal(perm, [1, 0])
    np.testing.assert_allclose(dist, np.sqrt(1 - np.exp(-1 / 8)))
    # the full-covariance path gives the same
    c = emkit.GaussianHMM.from_params([0.5, 0.5], np.full((2, 2), 0.5), means=[[0.0], [10.0]],
                                      covars=np.ones((2, 1, 1)), covariance_type="full")
    d = emkit.GaussianHMM.from_params([0.5, 0.5], np.full((2, 2), 0.5), means=[[11.0], [1.0]],
                                      covars=np.ones((2, 1, 1)), covariance_type="full")
    np.testing.assert_allclose(match_states(c, d).distances, np.sqrt(1 - np.exp(-1 / 8)))
    # variance ratio only: D_B = log((1 + r) / (2 sqrt(r))) / 2
    e = emkit.GaussianHMM.from_params([1.0], [[1.0]], means=[[0.0]], covars=[1.0], covariance_type="spherical")
    f = emkit.GaussianHMM.from_params([1.0], [[1.0]], means=[[0.0]], covars=[4.0], covariance_type="spherical")
    db = 0.5 * np.log(5 / 4)
    np.testing.assert_allclose(match_states(e, f).distances, np.sqrt(1 - np.exp(-db)))


# ------------------------------------------------------------------------------------------------
# state_stability
# ------------------------------------------------------------------------------------------------
def test_state_stability_well_separated_mixture(blobs3):
    gm = emkit.GaussianMixture(3, n_init=5, random_state=0).fit(blobs3)
    df = state_stability(gm)
    assert list(df.columns) == ["state", "stability", "mean_distance", "max_distance", "weight", "weight_sd"]
    assert len(df) == 3
    np.testing.assert_array_equal(df["stability"], 1.0)
    assert (df["max_distance"] < 0.05).all()
    np.testing.assert_allclose(df["weight"], gm.weights_)
    assert df.attrs["n_restarts"] == 4 and df.attrs["threshold"] == 0.2


def test_state_stability_well_separated_hmm(hmm_sequences):
    hmm = emkit.GaussianHMM(3, n_init=5, random_state=0).fit(hmm_sequences)
    df = state_stability(hmm)
    assert {"self_transition", "self_transition_sd"} <= set(df.columns)
    np.testing.assert_array_equal(df["stability"], 1.0)
    np.testing.assert_allclose(df["self_transition"], np.diag(hmm.transmat_))
    assert (df["self_transition_sd"] < 0.01).all()


def test_state_stability_over_split_model(blobs3):
    gm = emkit.GaussianMixture(8, n_init=5, random_state=0).fit(blobs3)
    df = state_stability(gm)
    assert len(df) == 8
    assert df["stability"].between(0, 1).all()
    assert df["mean_distance"].between(0, 1).all() and df["max_distance"].between(0, 1).all()
    assert (df["stability"] < 1).any()  # splitting 3 blobs 8 ways is not reproducible
    # a looser threshold can only raise stability
    loose = state_stability(gm, threshold=1.0)
    np.testing.assert_array_equal(loose["stability"], 1.0)
    assert (loose["stability"] >= df["stability"]).all()


def test_state_stability_errors_and_others(blobs3):
    single = emkit.GaussianMixture(3, n_init=1, random_state=0).fit(blobs3)
    with pytest.raises(ValueError, match="n_init >= 2"):
        state_stability(single)
    with pytest.raises(ValueError, match="threshold"):
        state_stability(single, threshold=0.0)
    km = emkit.KMeans(3, random_state=0).fit(blobs3)
    with pytest.raises(ValueError, match="KMeans"):
        state_stability(km)
    others = [emkit.KMeans(3, random_state=s).fit(blobs3) for s in (1, 2)]
    df = state_stability(km, others=others)
    np.testing.assert_array_equal(df["stability"], 1.0)
    assert df.attrs["n_restarts"] == 2
