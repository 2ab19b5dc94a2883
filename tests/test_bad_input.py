"""Careless and hostile input: clear errors that name the parameter, file or column."""

import numpy as np
import pytest

import emkit


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return np.r_[rng.normal(0, 1, (60, 2)), rng.normal(6, 1, (60, 2))]


@pytest.mark.parametrize("chunk_size, match", [(0, "chunk_size must be >= 1; got 0"), (-5, "chunk_size must be >= 1"),
                                               (2.5, "chunk_size must be an integer; got 2.5"),
                                               ("x", "chunk_size must be an integer; got 'x'")])
def test_chunk_size_is_checked(X, chunk_size, match):
    with pytest.raises(ValueError, match=match):
        emkit.GaussianMixture(2, chunk_size=chunk_size).fit(X)


@pytest.mark.parametrize("make", [lambda: emkit.KMeans(2, random_state=0),
                                  lambda: emkit.GaussianMixture(2, random_state=0)])
def test_overflowing_data_is_refused_by_kmeans_and_mixtures_alike(X, make):
    with np.errstate(all="raise"):
        with pytest.raises(ValueError, match=r"squares overflow\); rescale X"):
            make().fit(X * 1e154)


@pytest.mark.parametrize("attribute, value, match", [
    ("means_", lambda m: np.full_like(m.means_, np.nan), "means_ must be finite"),
    ("weights_", lambda m: np.array([-0.5, 1.5]), "weights_ must be non-negative and sum to 1"),
    ("weights_", lambda m: np.array([0.5, 0.6]), "weights_ must be non-negative and sum to 1"),
    ("precisions_", lambda m: np.full_like(m.precisions_, np.nan), "precisions_ must be finite"),
    ("precisions_cholesky_", lambda m: np.full_like(m.precisions_cholesky_, np.nan),
     "precisions_cholesky_ must be finite"),
])
def test_hand_set_mixture_attributes_are_validated_at_first_use(X, attribute, value, match):
    gm = emkit.GaussianMixture(2, random_state=0).fit(X)
    setattr(gm, attribute, value(gm))
    for method in (gm.score_samples, gm.predict):
        with pytest.raises(ValueError, match=match):
            method(X)


def test_hand_set_kmeans_centres_are_validated_at_first_use(X):
    km = emkit.KMeans(2, random_state=0).fit(X)
    km.cluster_centers_ = np.array([[np.nan, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="cluster_centers_ must be finite"):
        km.predict(X)
    km.cluster_centers_ = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"cluster_centers_ must have shape \(2, n_features\)"):
        km.transform(X)


def test_categorical_emissionprob_with_too_few_columns(X):
    S = np.random.default_rng(0).integers(0, 3, size=(100, 1))
    hmm = emkit.CategoricalHMM(2, random_state=0, max_iter=3).fit(S)
    hmm.emissionprob_ = np.full((2, 2), 0.5)
    with pytest.raises(ValueError, match=r"X holds symbol 2, outside the range 0..1 of the model's 2 symbols"):
        hmm.predict(S)
    fixed = emkit.CategoricalHMM(2, n_features=3).fit(S)
    fixed.emissionprob_ = np.full((2, 2), 0.5)
    with pytest.raises(ValueError, match="emissionprob_ must have n_features=3 columns"):
        fixed.score(S)


def test_categorical_alphabet_far_larger_than_the_data_is_refused():
    S = np.random.default_rng(0).integers(0, 3, size=(100, 1))
    with pytest.raises(ValueError, match="X holds symbol 1000000000, so the alphabet would have 1000000001 symbols"):
        emkit.CategoricalHMM(2).fit(np.r_[S, [[10**9]]])
    emkit.CategoricalHMM(2, max_iter=2).fit(np.r_[S, [[999]]])  # sparse but small alphabets are fine


def test_data_file_rewritten_during_a_fit(tmp_path, X):
    path = tmp_path / "x.npy"
    np.save(path, X)

    def rewrite(info):
        if info["iteration"] == 1:
            np.save(path, X[:10])

    with pytest.raises(ValueError, match="x.npy changed .* must not change during a fit"):
        emkit.GaussianMixture(2, tol=0, max_iter=4, random_state=0).fit(str(path), callback=rewrite)
    np.save(path, X)
    with pytest.raises(ValueError, match="x.npy changed"):
        emkit.GaussianHMM(2, tol=0, max_iter=4, random_state=0).fit(np.load(path, mmap_mode="r"), callback=rewrite)
    csv = tmp_path / "x.csv"
    np.savetxt(csv, X, delimiter=",")

    def rewrite_csv(info):
        if info["iteration"] == 1:
            np.savetxt(csv, X[:10], delimiter=",")

    with pytest.raises(ValueError, match="x.csv changed"):
        emkit.GaussianMixture(2, tol=0, max_iter=4, random_state=0).fit(str(csv), callback=rewrite_csv)


def test_dask_input_is_validated_like_arrays(X):
    da = pytest.importorskip("dask.array")
    bad = X.copy()
    bad[70, 1] = np.inf
    with pytest.raises(ValueError, match="X contains infinity"):
        emkit.GaussianHMM(2, random_state=0).fit(da.from_array(bad, chunks=30), lengths=[60, 60])
    S = np.random.default_rng(0).integers(0, 3, size=(120, 1))
    S[100] = -2
    with pytest.raises(ValueError, match=r"X must hold symbols >= 0 \(-1 or NaN marks a missing symbol\); got -2"):
        emkit.CategoricalHMM(2, random_state=0).fit(da.from_array(S, chunks=30), lengths=[60, 60])


def test_file_names_and_sparse_matrices_are_named(X):
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(ValueError, match=r"X is a file name \('x.npy'\), not an array"):
        emkit.GaussianHMM(2).fit("x.npy")
    for model in (emkit.GaussianMixture(2), emkit.KMeans(2), emkit.GaussianHMM(2)):
        with pytest.raises(TypeError, match=r"X is a sparse .*; sparse input is not supported: pass a dense array"):
            model.fit(sparse.csr_matrix(X))


@pytest.mark.parametrize("content, match", [
    (b"a,b,c\n1,2,3\n4,5\n7,8,9\n", "bad.csv: line 3 has 2 fields but the first line has 3"),
    (b"a,b\n1,2\n3,x\n", "bad.csv: column 'b' holds non-numeric values \\(for example 'x' on line 3\\)"),
    (bytes(range(256)) * 8, "bad.csv is not a text table"),
    (b"\x00\x01\x02,\x03\n", "bad.csv is not a text table \\(CSV/TSV\\): it holds binary data"),
])
def test_bad_tables_are_named(tmp_path, capsys, content, match):
    from emkit.cli import main

    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        emkit.GaussianMixture(1).fit(str(path))
    assert main(["fit", str(path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.csv" in err and "Traceback" not in err
