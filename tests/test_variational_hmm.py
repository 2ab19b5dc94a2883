"""Variational HMMs: agreement with hmmlearn from identical starts, the lower bound, pruning, features."""

import itertools
import json

import numpy as np
import pytest

import emkit
from emkit.inference.hmm import forward_backward
from emkit.variational import VariationalMarkovChain

hmmlearn_vhmm = pytest.importorskip("hmmlearn.vhmm")

COVARIANCE_TYPES = ["full", "diag", "spherical", "tied"]
LOG_2PI = np.log(2 * np.pi)


def recordings(rng, n_seq=50, K=3, D=3, low=3, high=30, repeat=True):
    """Many short sequences from a K-state sticky HMM, with repeated frames (frozen video)."""
    means = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 1.0], [0.0, 5.0, -1.0], [5.0, 5.0, 3.0]])[:K, :D]
    A = np.full((K, K), 0.1 / (K - 1)) + np.eye(K) * (0.9 - 0.1 / (K - 1))
    X, lengths = [], []
    for _ in range(n_seq):
        T = int(rng.integers(low, high))
        z = [rng.integers(K)]
        for _ in range(T - 1):
            z.append(rng.choice(K, p=A[z[-1]]))
        x = means[z] + rng.normal(size=(T, D)) * np.array([1.0, 0.6, 1.4])[:D]
        if repeat and T > 4:
            x[2] = x[1]  # a repeated sample
        X.append(x)
        lengths.append(T)
    return np.concatenate(X), np.array(lengths)


def random_gaussian_start(rng, K, D, N, n_seq, covariance_type, X):
    """Posterior and prior hyperparameters to start both libraries from."""
    counts = rng.dirichlet(np.ones(K)) * N + 1.0
    cov = np.cov(X.T) + 1e-3 * np.eye(D)
    start = dict(
        startprob_posterior_init=rng.dirichlet(np.ones(K)) * n_seq + 0.3,
        transmat_posterior_init=rng.dirichlet(np.ones(K), size=K) * N / K + 0.3,
        means_posterior_init=X[rng.choice(len(X), K, replace=False)],
        beta_posterior_init=counts,
    )
    prior = dict(startprob_prior=np.full(K, 0.4), transmat_prior=np.full((K, K), 0.3),
                 means_prior=np.tile(X.mean(axis=0), (K, 1)), beta_prior=np.full(K, 0.8))
    if covariance_type == "tied":
        dof = float(counts.sum())
        start["dof_posterior_init"] = dof
        start["scale_posterior_init"] = cov * dof
        prior.update(dof_prior=float(D + 0.5), scale_prior=np.eye(D) * 2e-3)
    else:
        start["dof_posterior_init"] = counts
        prior["dof_prior"] = np.full(K, D + 0.5)
        if covariance_type == "full":
            start["scale_posterior_init"] = cov[None] * counts[:, None, None]
            prior["scale_prior"] = np.tile(np.eye(D) * 2e-3, (K, 1, 1))
        elif covariance_type == "diag":
            start["scale_posterior_init"] = np.diag(cov)[None] * counts[:, None]
            prior["scale_prior"] = np.full((K, D), 2e-3)
        else:
            start["scale_posterior_init"] = np.diag(cov).mean() * counts
            prior["scale_prior"] = np.full(K, 2e-3)
    return start, prior


def hmmlearn_iterates(model, X, lengths, n_iter):
    """hmmlearn's fit loop (E-step, lower bound, M-step), recording the bound at every iteration."""
    model._check()
    bounds = []
    for _ in range(n_iter):
        stats, logprob = model._do_estep(X, lengths)
        bounds.append(model._compute_lower_bound(logprob))
        model._do_mstep(stats)
    return np.array(bounds)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussian_equals_hmmlearn_from_identical_start(covariance_type):
    rng = np.random.default_rng(3)
    X, lengths = recordings(rng)
    K, D, n_iter = 4, X.shape[1], 30
    start, prior = random_gaussian_start(rng, K, D, len(X), len(lengths), covariance_type, X)
    ours = emkit.VariationalGaussianHMM(K, covariance_type=covariance_type, max_iter=n_iter, tol=0.0,
                                        **start, **prior).fit(X, lengths)
    theirs = hmmlearn_vhmm.VariationalGaussianHMM(K, covariance_type=covariance_type, init_params="",
                                                  implementation="log")
    theirs.n_features = D
    for name, value in itertools.chain(start.items(), prior.items()):
        setattr(theirs, name.replace("_init", "_") if name.endswith("_init") else name + "_",
                np.copy(value) if np.ndim(value) else value)
    bounds = hmmlearn_iterates(theirs, X, lengths, n_iter)
    # hmmlearn leaves out the Gaussian constant -D/2 log(2 pi) of every frame
    expected = (bounds - 0.5 * len(X) * D * LOG_2PI) / len(X)
    assert len(ours.lower_bounds_) == n_iter
    np.testing.assert_allclose(ours.lower_bounds_, expected, rtol=1e-9)
    for name in ("startprob_posterior_", "transmat_posterior_", "means_posterior_", "beta_posterior_",
                 "dof_posterior_", "scale_posterior_", "startprob_", "transmat_", "means_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-8, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(ours.covars_, theirs._covars_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ours.score(X, lengths), theirs.score(X, lengths), rtol=1e-9)
    np.testing.assert_array_equal(ours.predict(X, lengths), theirs.predict(X, lengths))


def test_categorical_equals_hmmlearn_from_identical_start():
    rng = np.random.default_rng(5)
    K, S, n_iter = 4, 6, 30
    B = rng.dirichlet(np.full(S, 0.3), size=3)
    seqs = []
    for _ in range(60):
        T = int(rng.integers(2, 25))
        z = np.cumsum(rng.random(T) < 0.15) % 3
        seqs.append(np.array([rng.choice(S, p=B[k]) for k in z])[:, None])
    X, lengths = np.concatenate(seqs), np.array([len(s) for s in seqs])
    N = len(X)
    start = dict(startprob_posterior_init=rng.dirichlet(np.ones(K)) * len(lengths) + 0.2,
                 transmat_posterior_init=rng.dirichlet(np.ones(K), size=K) * N / K + 0.2,
                 emissionprob_posterior_init=rng.dirichlet(np.ones(S), size=K) * N / K + 0.2)
    prior = dict(startprob_prior=np.full(K, 0.25), transmat_prior=np.full((K, K), 0.3),
                 emissionprob_prior=np.full((K, S), 1.0 / S))
    ours = emkit.VariationalCategoricalHMM(K, n_features=S, max_iter=n_iter, tol=0.0, **start, **prior).fit(X, lengths)
    theirs = hmmlearn_vhmm.VariationalCategoricalHMM(K, n_features=S, init_params="", implementation="log")
    for name, value in itertools.chain(start.items(), prior.items()):
        setattr(theirs, name.replace("_init", "_") if name.endswith("_init") else name + "_",
                np.copy(value) if np.ndim(value) else value)
    bounds = hmmlearn_iterates(theirs, X, lengths, n_iter)
    np.testing.assert_allclose(ours.lower_bounds_, bounds / N, rtol=1e-9)
    for name in ("startprob_posterior_", "transmat_posterior_", "emissionprob_posterior_", "startprob_",
                 "transmat_", "emissionprob_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-8, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(ours.score(X, lengths), theirs.score(X, lengths), rtol=1e-9)


def symbol_sequences(rng, n_seq=50, S=6):
    B = rng.dirichlet(np.full(S, 0.3), size=3)
    seqs = []
    for _ in range(n_seq):
        T = int(rng.integers(2, 30))
        z = np.cumsum(rng.random(T) < 0.1) % 3
        seqs.append(np.array([rng.choice(S, p=B[k]) for k in z])[:, None])
    return seqs


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_lower_bound_never_decreases(covariance_type):
    rng = np.random.default_rng(11)
    X, lengths = recordings(rng, n_seq=25)
    model = emkit.VariationalGaussianHMM(5, covariance_type=covariance_type, max_iter=40, tol=0.0, n_init=2,
                                         random_state=0).fit(X, lengths)
    for run in model.restart_models():
        bounds = np.asarray(run.lower_bounds_)
        assert len(bounds) == 40 and np.all(np.isfinite(bounds))
        assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:])), np.diff(bounds).min()


def test_categorical_lower_bound_never_decreases():
    seqs = symbol_sequences(np.random.default_rng(12), n_seq=30)
    model = emkit.VariationalCategoricalHMM(5, max_iter=40, tol=0.0, n_init=2, random_state=0).fit(seqs)
    for run in model.restart_models():
        bounds = np.asarray(run.lower_bounds_)
        assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:])), np.diff(bounds).min()


def test_lower_bound_is_a_bound_and_matches_brute_force():
    """On a tiny problem the ELBO equals log Z - KL with log Z enumerated over every state path,
    and it lies below the log evidence (estimated by averaging the likelihood over q(theta))."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4, 1))
    model = emkit.VariationalGaussianHMM(2, covariance_type="diag", max_iter=3, tol=0.0, random_state=0).fit(X)
    params = model._params_from_attributes()
    chain = VariationalMarkovChain(model._variational_emission(1))
    pi, A = chain.subnormalised(params)
    frame = chain.emission.expected_log_likelihood(params.emission, X)
    paths = itertools.product(range(2), repeat=4)
    log_z = np.logaddexp.reduce([np.log(pi[z[0]]) + sum(np.log(A[z[t - 1], z[t]]) for t in range(1, 4))
                                 + sum(frame[t, z[t]] for t in range(4)) for z in paths])
    elbo = model.elbo(X)
    assert elbo == pytest.approx(log_z - chain.kl(params), rel=1e-12)
    assert forward_backward(pi, A, frame).log_likelihood == pytest.approx(log_z, rel=1e-12)
    assert forward_backward(pi, A, frame, _force_log=True).log_likelihood == pytest.approx(log_z, rel=1e-12)


def test_surplus_states_are_switched_off():
    """Documented check: 6 states on data from 3 well-separated states -> 3 states keep more than
    2% of the expected occupancy; the others are (nearly) never visited."""
    rng = np.random.default_rng(1)
    X, lengths = recordings(rng, n_seq=30, low=10, high=40)
    for covariance_type in ("full", "diag"):
        model = emkit.VariationalGaussianHMM(6, covariance_type=covariance_type, max_iter=400, tol=1e-7,
                                             random_state=0).fit(X, lengths)
        assert model.n_effective_components(0.02) == 3, covariance_type
        counts = np.sort(np.bincount(model.predict(X, lengths), minlength=6))
        assert counts[:3].sum() <= 0.02 * len(X), counts


def test_sequences_as_list_lengths_and_restarts():
    rng = np.random.default_rng(4)
    X, lengths = recordings(rng, n_seq=20)
    seqs = np.split(X, np.cumsum(lengths)[:-1])
    a = emkit.VariationalGaussianHMM(3, covariance_type="diag", max_iter=15, random_state=7).fit(X, lengths)
    b = emkit.VariationalGaussianHMM(3, covariance_type="diag", max_iter=15, random_state=7).fit(seqs)
    np.testing.assert_allclose(a.means_posterior_, b.means_posterior_)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_)
    assert isinstance(b.predict(seqs), list) and len(b.predict(seqs)) == len(seqs)
    assert len(b.filter(seqs)) == len(seqs)
    np.testing.assert_allclose(np.concatenate(b.predict_proba(seqs)).sum(axis=1), 1.0)
    multi = emkit.VariationalGaussianHMM(3, covariance_type="diag", max_iter=15, n_init=3, random_state=7).fit(X, lengths)
    assert multi.lower_bound_ == pytest.approx(max(multi.init_lower_bounds_))
    # elbo(): the bound the fit reached (total); one more E-step on the training data can only raise it
    assert multi.elbo() == pytest.approx(multi.lower_bound_ * len(X), rel=1e-10)
    assert multi.elbo(X, lengths) >= multi.elbo() - 1e-9 * abs(multi.elbo())
    assert 1 <= multi.n_effective_components() <= 3
    table = emkit.select(emkit.VariationalGaussianHMM(covariance_type="diag", max_iter=15), X, [1, 3], lengths=lengths,
                         criterion="elbo", random_state=0, return_models=True)
    assert table.best_n_components == 3
    log_prob, states = multi.decode(X, lengths, algorithm="map")
    assert states.shape == (len(X),) and np.isfinite(log_prob)
    # score is the log-likelihood under the posterior-mean parameters (hmmlearn's meaning)
    point = emkit.GaussianHMM.from_params(multi.startprob_, multi.transmat_, means=multi.means_,
                                          covars=multi.covars_, covariance_type="diag")
    assert multi.score(X, lengths) == pytest.approx(point.score(X, lengths), rel=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_save_load_round_trip(tmp_path, covariance_type):
    rng = np.random.default_rng(6)
    X, lengths = recordings(rng, n_seq=15)
    model = emkit.VariationalGaussianHMM(3, covariance_type=covariance_type, max_iter=10,
                                         random_state=0).fit(X, lengths)
    path = model.save(tmp_path / "m.npz")
    loaded = emkit.load(path)
    assert type(loaded) is emkit.VariationalGaussianHMM
    for name in model._fitted_attributes:
        np.testing.assert_allclose(np.asarray(getattr(loaded, name), dtype=float),
                                   np.asarray(getattr(model, name), dtype=float), err_msg=name)
    assert loaded.score(X, lengths) == model.score(X, lengths)
    assert loaded.elbo(X, lengths) == pytest.approx(model.elbo(X, lengths), rel=1e-12)


def test_categorical_features_and_round_trip(tmp_path):
    seqs = symbol_sequences(np.random.default_rng(8), n_seq=20)
    model = emkit.VariationalCategoricalHMM(3, max_iter=20, tol=0.0, random_state=0).fit(seqs)
    assert model.emissionprob_.shape == (3, 6)
    np.testing.assert_allclose(model.emissionprob_.sum(axis=1), 1.0)
    loaded = emkit.load(model.save(tmp_path / "c.npz"))
    np.testing.assert_allclose(loaded.emissionprob_posterior_, model.emissionprob_posterior_)
    assert loaded.score(seqs) == model.score(seqs)
    # a missing symbol (-1 or NaN) carries no evidence
    X = np.concatenate(seqs).astype(float)
    lengths = [len(s) for s in seqs]
    X_missing = X.copy()
    X_missing[3] = np.nan
    assert np.isfinite(model.elbo(X_missing, lengths))


def test_partial_fit_and_warm_continuation():
    rng = np.random.default_rng(9)
    X, lengths = recordings(rng, n_seq=30)
    model = emkit.VariationalGaussianHMM(3, covariance_type="diag", random_state=0)
    bounds = []
    for s in range(0, 30, 10):
        first, last = lengths[:s].sum(), lengths[:s + 10].sum()
        model.partial_fit(X[first:last], lengths[s:s + 10])
        bounds.append(model.lower_bound_)
    assert np.all(np.isfinite(bounds)) and model.beta_posterior_.sum() > len(X) * 0.9


def test_bad_input_errors():
    X, lengths = recordings(np.random.default_rng(0), n_seq=5)
    with pytest.raises(ValueError, match="NaN"):
        Xn = X.copy()
        Xn[0, 0] = np.nan
        emkit.VariationalGaussianHMM(2).fit(Xn, lengths)
    with pytest.raises(ValueError, match="dof_prior"):
        emkit.VariationalGaussianHMM(2, dof_prior=1.0).fit(X, lengths)
    with pytest.raises(ValueError, match="beta_prior"):
        emkit.VariationalGaussianHMM(2, beta_prior=-1.0).fit(X, lengths)
    with pytest.raises(ValueError, match="scale_prior"):
        emkit.VariationalGaussianHMM(2, covariance_type="diag", scale_prior=np.ones((3, 3))).fit(X, lengths)
    with pytest.raises(ValueError, match="startprob_prior"):
        emkit.VariationalGaussianHMM(2, startprob_prior=[1.0, 0.0]).fit(X, lengths)
    with pytest.raises(ValueError, match="covariance_type"):
        emkit.VariationalGaussianHMM(2, covariance_type="banana").fit(X, lengths)
    with pytest.raises(ValueError, match="scale_posterior_init"):
        emkit.VariationalGaussianHMM(2, scale_posterior_init=np.zeros((2, 3, 3))).fit(X, lengths)
    with pytest.raises(ValueError, match="means_posterior_init"):
        emkit.VariationalGaussianHMM(2, means_posterior_init=np.zeros(3)).fit(X, lengths)
    with pytest.raises(ValueError, match="emissionprob_prior"):
        emkit.VariationalCategoricalHMM(2, emissionprob_prior=np.ones(3)).fit([[0], [1], [2]])


def test_cli_fit_predict_and_select(tmp_path, capsys):
    from emkit.cli import main

    X, lengths = recordings(np.random.default_rng(0), n_seq=12)
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.column_stack([np.repeat(np.arange(len(lengths)), lengths), X]), delimiter=",",
               header="seq,a,b,c", comments="")
    seq = ["--sequence-column", "seq"]
    assert main(["fit", str(csv), "--model", "variational-gaussian-hmm", "-k", "4", *seq, "--seed", "0",
                 "--max-iter", "20", "--json", "-o", str(tmp_path / "fit")]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["n_effective_components"] >= 1
    model = emkit.load(tmp_path / "fit" / "model.npz")
    assert type(model) is emkit.VariationalGaussianHMM and model.covariance_type == "diag"
    assert main(["predict", str(tmp_path / "fit" / "model.npz"), "--data", str(csv), *seq, "-o",
                 str(tmp_path / "p.csv")]) == 0
    assert main(["select", str(csv), "--model", "variational-gaussian-hmm", "-k", "2-3", *seq, "--seed", "0",
                 "--max-iter", "15", "-o", str(tmp_path / "sel")]) == 0
    assert main(["select", str(csv), "--model", "variational-gaussian-hmm", "-k", "2-3", *seq, "--seed", "0",
                 "--criterion", "elbo", "--max-iter", "15", "-o", str(tmp_path / "sel-elbo")]) == 0
    capsys.readouterr()
    assert main(["score", str(tmp_path / "fit" / "model.npz"), "--data", str(csv), *seq, "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["log_likelihood"] == pytest.approx(model.score(X, lengths), rel=1e-9)
    assert main(["report", str(tmp_path / "fit" / "model.npz"), "--data", str(csv), *seq, "-o",
                 str(tmp_path / "r.html")]) == 0
    assert "lower bound per frame" in (tmp_path / "r.html").read_text()
    assert main(["fit", str(csv), "--model", "variational-gaussian-hmm", "--kappa", "2", *seq]) == 2
    assert "kappa" in capsys.readouterr().err


def test_out_of_core_and_stochastic_fits():
    """Additive statistics: a Dask array gives the in-memory fit; stochastic passes approach it."""
    da = pytest.importorskip("dask.array")
    X, lengths = recordings(np.random.default_rng(0), n_seq=30)
    batch = emkit.VariationalGaussianHMM(3, covariance_type="diag", max_iter=25, tol=0.0, random_state=0)
    batch.fit(X, lengths)
    dask = emkit.VariationalGaussianHMM(3, covariance_type="diag", max_iter=25, tol=0.0, random_state=0)
    dask.fit(da.from_array(X, chunks=200), lengths)
    np.testing.assert_allclose(dask.lower_bounds_, batch.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(dask.means_posterior_, batch.means_posterior_, rtol=1e-9, atol=1e-9)
    online = emkit.VariationalGaussianHMM(3, covariance_type="diag", max_iter=5, tol=0.0, random_state=0)
    online.fit(X, lengths, algorithm="stochastic", batch_size=200)
    assert online.elbo(X, lengths) > batch.elbo(X, lengths) - 0.05 * abs(batch.elbo(X, lengths))
    with pytest.raises(ValueError, match="batch fit"):
        online.elbo()
    assert np.isfinite(batch.elbo())
