"""Online EM, out-of-core EM over files, and distributed EM on Dask."""

import tracemalloc
import warnings

import numpy as np
import pytest

import emkit
from emkit import ConvergenceWarning, GaussianHMM, GaussianMixture, KMeans, PoissonHMM
from emkit.em import StepSchedule

from conftest import make_blobs


def _gmm_start(X, K=3, cov="full"):
    ref = GaussianMixture(K, covariance_type=cov, random_state=0, max_iter=2, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(X)
    return dict(n_components=K, covariance_type=cov, weights_init=ref.weights_, means_init=ref.means_,
                precisions_init=ref.precisions_, tol=0, max_iter=8)


def _fit_quiet(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(*args, **kwargs)


# -- stochastic EM ---------------------------------------------------------------------------------

def test_schedule():
    s = StepSchedule(kappa=0.7, tau=1.0)
    assert s.step(1) == 1.0
    assert s.step(3) == pytest.approx(4.0 ** -0.7)
    assert StepSchedule(kappa=1.0, min_step=0.05).step(1000) == 0.05
    # tau=0, kappa=1 is the running mean of the batches
    from emkit.em import online_update
    from emkit.models.kmeans import HardMixture, KMeansStats

    state, centers = None, np.zeros((1, 1))
    for i, v in enumerate([1.0, 2.0, 6.0]):
        batch = KMeansStats(counts=np.array([1.0]), sums=np.array([[v]]), inertia=0.0, n_samples=1.0)
        centers, state = online_update(HardMixture(), centers, state, batch, StepSchedule(kappa=1.0, tau=0.0))
    assert centers[0, 0] == pytest.approx(3.0)
    for bad in (dict(kappa=0.5), dict(kappa=1.2), dict(tau=-1.0), dict(min_step=1.0)):
        with pytest.raises(ValueError, match="schedule"):
            StepSchedule(**bad)
    with pytest.raises(ValueError, match="unknown keys"):
        StepSchedule.make({"kapa": 0.7})


def test_stochastic_gmm_reaches_batch_likelihood():
    X, _, _ = make_blobs(n=20000, D=3, K=4, seed=1, spread=4.0)
    batch = GaussianMixture(4, random_state=0, tol=1e-6, max_iter=500).fit(X)
    online = _fit_quiet(GaussianMixture(4, random_state=0, max_iter=3, tol=0), X, algorithm="stochastic",
                        batch_size=500)
    assert online.n_iter_ == 3 and len(online.lower_bounds_) == 3
    assert abs(online.score(X) - batch.score(X)) <= 0.005 * abs(batch.score(X))


def test_partial_fit_stream_gmm_and_hmm():
    X, _, _ = make_blobs(n=12000, D=2, K=3, seed=4, spread=6.0)
    batch = GaussianMixture(3, random_state=0).fit(X)
    model = GaussianMixture(3, random_state=0)
    for i in range(0, len(X), 500):
        model.partial_fit(X[i:i + 500])
        assert np.isfinite(model.lower_bound_)
    assert model.n_batches_ == 24
    assert abs(model.score(X) - batch.score(X)) <= 0.005 * abs(batch.score(X))

    gen = GaussianHMM.from_params([0.5, 0.5], [[0.95, 0.05], [0.1, 0.9]], means=[[0.0], [3.0]], covars=[[1.0], [1.0]])
    Xh, _ = gen.sample(20000, random_state=0)
    hb = GaussianHMM(2, random_state=0).fit(Xh)
    hp = GaussianHMM(2, random_state=0)
    for i in range(0, len(Xh), 1000):
        hp.partial_fit(Xh[i:i + 1000])
    assert abs(hp.score(Xh) - hb.score(Xh)) <= 0.005 * abs(hb.score(Xh))
    hs = _fit_quiet(GaussianHMM(2, random_state=0, max_iter=3, tol=0), Xh, algorithm="stochastic", batch_size=500)
    assert abs(hs.score(Xh) - hb.score(Xh)) <= 0.005 * abs(hb.score(Xh))


@pytest.mark.parametrize("cls", [PoissonHMM, emkit.CategoricalHMM, emkit.ARHMM])
def test_stochastic_every_hmm(cls):
    rng = np.random.default_rng(0)
    if cls is PoissonHMM:
        gen = PoissonHMM.from_params([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], lambdas=[[1.0], [8.0]])
    elif cls is emkit.CategoricalHMM:
        gen = emkit.CategoricalHMM.from_params([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]],
                                               emissionprob=[[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    else:
        gen = emkit.ARHMM.from_params([0.5, 0.5], [[0.95, 0.05], [0.05, 0.95]], coefs=[[[0.5]], [[-0.5]]],
                                      intercepts=[[0.0], [3.0]], covars=[[[0.2]], [[0.2]]])
    seqs = [gen.sample(400, random_state=rng)[0] for _ in range(10)]
    batch = cls(2, random_state=0, n_init=2).fit(seqs)
    online = _fit_quiet(cls(2, random_state=0, max_iter=20, tol=0), seqs, algorithm="stochastic", batch_size=100)
    assert abs(online.score(seqs) - batch.score(seqs)) <= 0.01 * abs(batch.score(seqs))
    stream = cls(2, random_state=0)
    for s in seqs:
        stream.partial_fit(s)
    assert np.isfinite(stream.score(seqs))


def test_minibatch_kmeans():
    X, _, _ = make_blobs(n=20000, D=3, K=5, seed=2, spread=6.0)
    full = KMeans(5, random_state=0).fit(X)
    mb = KMeans(5, random_state=0, max_iter=3).fit(X, algorithm="stochastic", batch_size=500)
    assert mb.inertia_ <= 1.01 * full.inertia_
    stream = KMeans(5, random_state=0)
    for i in range(0, len(X), 1000):
        stream.partial_fit(X[i:i + 1000])
    assert -stream.score(X) <= 1.02 * full.inertia_


def test_partial_fit_bad_input_leaves_state_intact():
    X, _, _ = make_blobs(n=2000, D=2, K=3, seed=5)
    for model, bad in ((GaussianMixture(3, random_state=0), np.zeros((10, 3))),
                       (KMeans(3, random_state=0), np.zeros((10, 3))),
                       (GaussianHMM(3, random_state=0), np.zeros((10, 3)))):
        model.partial_fit(X[:500])
        model.partial_fit(X[500:1000])
        before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(model).items()
                  if k.endswith("_") and not k.startswith("_")}
        with pytest.raises(ValueError, match=r"3 features, but \w+ is expecting 2 features"):
            model.partial_fit(bad)
        with pytest.raises(ValueError, match="infinity"):
            model.partial_fit(np.full((5, 2), np.inf))
        with pytest.raises(ValueError, match="schedule"):
            model.partial_fit(X[:100], schedule={"kappa": 0.9})
        for k, v in before.items():
            np.testing.assert_array_equal(getattr(model, k), v)


def test_bad_stochastic_arguments():
    X, _, _ = make_blobs(n=500, D=2, K=2, seed=1)
    with pytest.raises(ValueError, match="batch_size"):
        GaussianMixture(2).fit(X, algorithm="stochastic", batch_size=0)
    with pytest.raises(ValueError, match="kappa"):
        GaussianMixture(2).fit(X, algorithm="stochastic", schedule=0.4)
    with pytest.raises(ValueError, match="algorithm"):
        GaussianHMM(2).fit(X, algorithm="online")
    with pytest.raises(ValueError, match="kappa"):
        KMeans(2).fit(X, algorithm="stochastic", schedule={"kappa": 1.5})


# -- out-of-core -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def table():
    X, _, _ = make_blobs(n=30000, D=3, K=3, seed=7, spread=5.0)
    return X


@pytest.mark.parametrize("fmt", ["npy", "memmap", "csv", "parquet", "hdf5"])
def test_out_of_core_matches_in_memory(tmp_path, table, fmt):
    X = table
    kw = _gmm_start(X)
    ref = _fit_quiet(GaussianMixture(**kw), X)
    if fmt in ("npy", "memmap"):
        path = tmp_path / "x.npy"
        np.save(path, X)
        data = np.load(path, mmap_mode="r") if fmt == "memmap" else str(path)
    elif fmt == "csv":
        path = tmp_path / "x.csv"
        np.savetxt(path, X, delimiter=",", header="a,b,c", comments="", fmt="%.17g")
        data = str(path)
    elif fmt == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        path = tmp_path / "x.parquet"
        pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}), path, row_group_size=7000)
        data = str(path)
    else:
        h5py = pytest.importorskip("h5py")
        path = tmp_path / "x.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("pose/xyz", data=X)
        data = str(path)
    ours = _fit_quiet(GaussianMixture(**kw), data)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-9)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-9)
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-9)


def test_open_table_column_selection(tmp_path, table):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": table[:, 0], "b": table[:, 1], "c": table[:, 2]}), path)
    kw = _gmm_start(table[:, [2, 0]], K=2)
    ref = _fit_quiet(GaussianMixture(**kw), table[:, [2, 0]])
    ours = _fit_quiet(GaussianMixture(**kw), emkit.open_table(path, columns=["c", "a"]))
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-9)
    with pytest.raises(ValueError, match="column 'zz' not found"):
        emkit.open_table(path, columns=["zz"])
    csv = tmp_path / "x.csv"
    np.savetxt(csv, table[:100], delimiter=",", header="a,b,c", comments="")
    with pytest.raises(ValueError, match="column 'q' not found"):
        emkit.open_table(csv, columns=["q"])
    src = emkit.open_table(csv, columns=["c", "a"])
    got = np.concatenate([c for c, _ in src.chunks()])
    np.testing.assert_allclose(got, table[:100][:, [2, 0]])


def test_missing_and_corrupt_files(tmp_path):
    gm = GaussianMixture(2)
    with pytest.raises(FileNotFoundError, match="not found"):
        gm.fit(str(tmp_path / "nope.npy"))
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not a numpy file at all")
    with pytest.raises(ValueError, match="not a readable .npy"):
        gm.fit(str(bad))
    badpq = tmp_path / "bad.parquet"
    badpq.write_bytes(b"PAR1 garbage")
    with pytest.raises(ValueError, match="Parquet"):
        gm.fit(str(badpq))
    with pytest.raises(ValueError, match="unsupported data file type"):
        (tmp_path / "x.xyz").write_text("1,2")
        gm.fit(str(tmp_path / "x.xyz"))
    assert getattr(gm, "means_", None) is None


def test_memmap_is_never_copied_whole(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(200_000, 10)) + rng.integers(0, 4, size=(200_000, 1)) * 5).astype(np.float32)
    path = tmp_path / "big.npy"
    np.save(path, X)
    del X
    mm = np.load(path, mmap_mode="r")
    data_bytes = mm.nbytes
    kw = dict(random_state=0, init_sample_size=10_000, chunk_size=2048)
    # compile every kernel this fit uses first (which ones depends on the data's size), so only the fit is measured
    _fit_quiet(GaussianMixture(4, max_iter=1, **kw), mm)
    tracemalloc.start()
    _fit_quiet(GaussianMixture(4, max_iter=3, tol=0, **kw), mm)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < data_bytes / 2, (peak, data_bytes)


def test_hmm_on_memmap_matches_in_memory(tmp_path):
    gen = GaussianHMM.from_params([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], means=[[0.0, 0.0], [3.0, 3.0]],
                                  covars=[[1.0, 1.0], [1.0, 1.0]])
    X, _ = gen.sample(6000, random_state=0)
    path = tmp_path / "seq.npy"
    np.save(path, X)
    lengths = [1000] * 6
    kw = dict(n_components=2, startprob_init=[0.5, 0.5], transmat_init=[[0.8, 0.2], [0.3, 0.7]],
              means_init=[[0.5, 0.5], [2.0, 2.0]], covars_init=np.ones((2, 2)), tol=0, max_iter=5)
    a = _fit_quiet(GaussianHMM(**kw), X, lengths)
    b = _fit_quiet(GaussianHMM(**kw), np.load(path, mmap_mode="r"), lengths)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.transmat_, b.transmat_, rtol=1e-10)


# -- Dask --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=40)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_gmm_matches_in_memory(dask_client, table):
    da = pytest.importorskip("dask.array")
    X = table
    for cov in ("full", "diag"):
        kw = _gmm_start(X, cov=cov)
        ref = _fit_quiet(GaussianMixture(**kw), X)
        ours = _fit_quiet(GaussianMixture(**kw), da.from_array(X, chunks=(7000, 3)))
        np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-8)
        np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-8)
        np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-8)
    # initialisation from the Dask data itself also works
    gm = GaussianMixture(3, random_state=0).fit(da.from_array(X, chunks=(7000, 3)))
    assert gm.converged_


def test_dask_hmm_matches_in_memory(dask_client):
    da = pytest.importorskip("dask.array")
    gen = GaussianHMM.from_params([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], means=[[0.0], [3.0]], covars=[[1.0], [1.0]])
    X, _ = gen.sample(5000, random_state=1)
    lengths = [700, 1300, 1000, 2000]
    kw = dict(n_components=2, startprob_init=[0.5, 0.5], transmat_init=[[0.8, 0.2], [0.3, 0.7]],
              means_init=[[0.5], [2.0]], covars_init=np.ones((2, 1)), tol=0, max_iter=5)
    a = _fit_quiet(GaussianHMM(**kw), X, lengths)
    b = _fit_quiet(GaussianHMM(**kw), da.from_array(X, chunks=(900, 1)), lengths)
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-8)
    np.testing.assert_allclose(b.transmat_, a.transmat_, rtol=1e-8)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=1e-8)


def test_missing_values_out_of_core_and_on_dask(dask_client, tmp_path):
    da = pytest.importorskip("dask.array")
    X, _, _ = make_blobs(n=3000, D=3, K=3, seed=8, spread=5.0)
    X[np.random.default_rng(0).random(X.shape) < 0.15] = np.nan
    kw = dict(_gmm_start(np.nan_to_num(X)), max_iter=5)
    ref = _fit_quiet(GaussianMixture(**kw), X)
    csv = tmp_path / "x.csv"
    with open(csv, "w") as fh:  # missing values as empty cells
        fh.write("a,b,c\n")
        fh.writelines(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n" for row in X)
    npy = tmp_path / "x.npy"
    np.save(npy, X)
    for data in (str(csv), np.load(npy, mmap_mode="r"), da.from_array(X, chunks=(700, 3))):
        ours = _fit_quiet(GaussianMixture(**kw), data)
        np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-9)
        np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-9)
        np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-9)


@pytest.mark.parametrize("cls", [GaussianMixture, KMeans, GaussianHMM])
def test_partial_fit_continues_after_fit_and_after_reload(tmp_path, cls):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(4000, 2)), rng.normal(size=(4000, 2)) + 6])
    rng.shuffle(X)
    centres = (lambda m: m.cluster_centers_ if cls is KMeans else m.means_)
    # after a batch fit, one small batch moves the model a little, it does not refit on the batch
    fitted = cls(2, random_state=0).fit(X[:7000])
    before = np.sort(centres(fitted).copy(), axis=0)
    fitted.partial_fit(X[7000:7010])
    assert np.abs(np.sort(centres(fitted), axis=0) - before).max() < 0.05
    # a streamed model saved and loaded continues exactly as the one kept in memory
    stream = cls(2, random_state=0)
    for i in range(0, 7000, 500):
        stream.partial_fit(X[i:i + 500])
    back = emkit.load(stream.save(tmp_path / "m.npz"))
    stream.partial_fit(X[7000:7100])
    back.partial_fit(X[7000:7100])
    np.testing.assert_allclose(centres(back), centres(stream), rtol=1e-12)


def test_csv_layouts(tmp_path):
    cases = {
        "one.csv": ("value\n1.5\n2.5\n3.5\n", (3, 1), ["value"]),
        "symbols.csv": ("1\n2\n0\n1\n", (4, 1), ["x0"]),
        "nohead.csv": ("0.5,1,2.0\n0.7,1,2.1\n", (2, 3), ["x0", "x1", "x2"]),
        "repeat.csv": ("1.5,1.5,2\n3,4,5\n", (2, 3), ["x0", "x1", "x2"]),
        "semicolon.csv": ("a;b\n1;2\n3;4\n", (2, 2), ["a", "b"]),
        "tabs.tsv": ("a\tb\n1\t2\n", (1, 2), ["a", "b"]),
    }
    from emkit.io import read_table

    for name, (text, shape, names) in cases.items():
        (tmp_path / name).write_text(text)
        X, got_names, _, _ = read_table(tmp_path / name)
        assert X.shape == shape and got_names == names, name
    X, names, lengths, ids = read_table(tmp_path / "nohead.csv", sequence_column="x1")
    assert names == ["x0", "x2"] and lengths.tolist() == [2] and ids == [1]


def test_bad_sequence_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="each sequence must be a 2-D array"):
        GaussianHMM(2).fit([rng.normal(size=100), rng.normal(size=100)])
    with pytest.raises(ValueError, match="at most order=3 frames"):
        emkit.ARHMM(2, order=3).fit([rng.normal(size=(2, 2)), rng.normal(size=(3, 2))])
    impossible = PoissonHMM.from_params([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]], lambdas=[[0.0], [3.0]])
    for method in (impossible.predict, impossible.predict_proba, impossible.filter):
        with pytest.raises(ValueError, match="zero probability"):
            method(np.array([[1.0]]))
    with pytest.raises(ValueError, match="rescale X"):
        GaussianMixture(2, init_params="random", random_state=0).fit(rng.normal(size=(100, 2)) * 1e200)
