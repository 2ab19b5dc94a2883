"""BayesianGaussianMixture: scikit-learn's iterates from identical starts, a monotone lower bound,
pruning of surplus components, the engine's data sources, model files and bad input."""

import warnings

import numpy as np
import pytest
from sklearn import mixture as skm

import emkit
from emkit import BayesianGaussianMixture

COV_TYPES = ("full", "tied", "diag", "spherical")
PRIORS = ("dirichlet_process", "dirichlet_distribution")
CENTRES = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 2.0], [0.0, 10.0, -3.0], [9.0, 9.0, 9.0]])


def recording_like(seed=0, n=240):
    """Four clusters of unequal size, repeated rows and an off-centre scale, like real feature tables."""
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n, [0.4, 0.3, 0.2, 0.1])
    scales = np.array([[1.0, 0.5, 2.0], [0.7, 1.5, 1.0], [1.2, 1.2, 0.3], [0.4, 0.8, 1.1]])
    X = np.concatenate([rng.normal(c, s, size=(m, 3)) for c, s, m in zip(CENTRES, scales, sizes)])
    X = np.concatenate([X, X[:15]])  # repeated samples
    return (X[rng.permutation(X.shape[0])] * [1.0, 3.0, 0.5] + [100.0, -50.0, 0.0])


def start_resp(n, K, seed=1):
    """Random starting responsibilities with one nearly empty component."""
    rng = np.random.default_rng(seed)
    resp = rng.dirichlet(np.ones(K) * 0.5, size=n)
    resp[:, -1] *= 1e-4
    return resp / resp.sum(axis=1, keepdims=True)


class SklearnRecorder(skm.BayesianGaussianMixture):
    """scikit-learn's model started from given responsibilities, recording the parameters after every M-step."""

    def __init__(self, resp=None, **kwargs):
        super().__init__(**kwargs)
        self.resp = resp

    def _initialize_parameters(self, X, random_state, xp=None):
        self.history = []
        self._initialize(X, self.resp)

    def _m_step(self, X, log_resp, xp=None):
        super()._m_step(X, log_resp)
        self.history.append({"means": self.means_.copy(), "covariances": self.covariances_.copy(),
                             "mean_precision": self.mean_precision_.copy(),
                             "degrees_of_freedom": np.copy(self.degrees_of_freedom_),
                             "weight_concentration": np.array(self.weight_concentration_, dtype=float)})


class EmkitFromResp(BayesianGaussianMixture):
    """emkit's model started from the responsibilities in ``start`` (a module-level hook for the test)."""

    start = None

    def _init_statistics(self, X, sw, rng, model):
        return model.emission.moments(X, self.start if sw is None else self.start * sw[:, None])


def _fit_pair(X, resp, cov, prior, max_iter, **extra):
    kwargs = dict(n_components=resp.shape[1], covariance_type=cov, weight_concentration_prior_type=prior,
                  max_iter=max_iter, tol=0.0, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SklearnRecorder(resp=resp, **kwargs).fit(X)
        EmkitFromResp.start = resp
        history = []

        def record(info):
            p = info["params"]
            history.append({"means": p.emission.means, "covariances": p.emission.covariances,
                            "mean_precision": p.mean_precision, "degrees_of_freedom": p.degrees_of_freedom,
                            "weight_concentration": p.weight_concentration})

        em = EmkitFromResp(**kwargs).fit(X, callback=record)
    return sk, em, history


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("cov", COV_TYPES)
def test_identical_start_equals_sklearn_iterates(cov, prior):
    X = recording_like()
    resp = start_resp(X.shape[0], 6)
    sk, em, history = _fit_pair(X, resp, cov, prior, max_iter=40)
    assert len(history) == len(sk.history) == 40
    for it, (a, b) in enumerate(zip(history, sk.history)):
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-8, atol=1e-10, err_msg=f"{name} at iteration {it}")
    np.testing.assert_allclose(em.lower_bounds_, np.ravel(sk.lower_bounds_), rtol=1e-8)
    assert em.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-8)
    assert em.n_iter_ == sk.n_iter_
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_", "mean_precision_",
                 "degrees_of_freedom_", "mean_prior_", "covariance_prior_", "weight_concentration_prior_",
                 "mean_precision_prior_", "degrees_of_freedom_prior_"):
        np.testing.assert_allclose(getattr(em, name), getattr(sk, name), rtol=1e-8, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(np.array(em.weight_concentration_), np.array(sk.weight_concentration_), rtol=1e-8)
    assert isinstance(em.weight_concentration_, tuple) == isinstance(sk.weight_concentration_, tuple)
    np.testing.assert_allclose(em.score_samples(X), sk.score_samples(X), rtol=1e-9)
    np.testing.assert_allclose(em.predict_proba(X), sk.predict_proba(X), atol=1e-9)


def test_identical_start_with_given_priors_and_convergence():
    """User priors, and tol > 0: the same stopping iteration as scikit-learn."""
    X = recording_like(seed=3)
    resp = start_resp(X.shape[0], 5, seed=4)
    priors = dict(weight_concentration_prior=0.05, mean_precision_prior=0.3, mean_prior=np.array([100.0, -40, 1]),
                  degrees_of_freedom_prior=4.5, covariance_prior=np.diag([2.0, 5.0, 0.5]))
    kwargs = dict(n_components=5, covariance_type="full", max_iter=200, tol=1e-4, **priors)
    sk = SklearnRecorder(resp=resp, **kwargs).fit(X)
    EmkitFromResp.start = resp
    em = EmkitFromResp(**kwargs).fit(X)
    assert sk.converged_ and em.converged_ and em.n_iter_ == sk.n_iter_
    np.testing.assert_allclose(em.lower_bounds_, np.ravel(sk.lower_bounds_), rtol=1e-8)
    np.testing.assert_allclose(em.means_, sk.means_, rtol=1e-8)


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("cov", COV_TYPES)
def test_lower_bound_never_decreases(cov, prior):
    X = recording_like(seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BayesianGaussianMixture(8, covariance_type=cov, weight_concentration_prior_type=prior, tol=0.0,
                                    max_iter=80, init_params="random", random_state=0).fit(X)
    lb = np.array(m.lower_bounds_)
    assert lb.size == 80 and np.all(np.isfinite(lb))
    assert np.all(np.diff(lb) >= -1e-10 * np.abs(lb[1:])), np.diff(lb).min()


@pytest.mark.parametrize("prior", PRIORS)
def test_prunes_surplus_components_and_reaches_sklearn_optimum(prior):
    rng = np.random.default_rng(7)
    X = np.concatenate([rng.normal(c, 0.6, size=(150, 3)) for c in CENTRES])
    kwargs = dict(n_components=10, n_init=2, max_iter=500, random_state=0, weight_concentration_prior_type=prior)
    em = BayesianGaussianMixture(**kwargs).fit(X)
    sk = skm.BayesianGaussianMixture(**kwargs).fit(X)
    assert em.converged_
    assert np.sum(em.weights_ > 0.02) == 4 == np.sum(sk.weights_ > 0.02)
    assert em.n_effective_components() == 4 and em.n_effective_components(0.3) == 0
    big_em, big_sk = em.weights_ > 0.02, sk.weights_ > 0.02
    order = lambda m, keep: np.lexsort(m.means_[keep].T)  # noqa: E731
    np.testing.assert_allclose(em.means_[big_em][order(em, big_em)], sk.means_[big_sk][order(sk, big_sk)], atol=1e-2)
    np.testing.assert_allclose(np.sort(em.weights_[big_em]), np.sort(sk.weights_[big_sk]), atol=5e-3)
    if prior == "dirichlet_distribution":
        # the components are exchangeable: both reach the same optimum
        assert em.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-9)
    # (under stick-breaking the bound also depends on the order of the components, which differs between runs)
    assert np.unique(em.predict(X)).size == 4


def test_engine_sources_give_the_same_fit(tmp_path):
    """A memory map, a file and a Dask array give the in-memory fit; sample weights act as repeats."""
    X = recording_like(seed=2, n=400)
    kwargs = dict(n_components=6, covariance_type="diag", max_iter=30, tol=0.0, init_params="random",
                  random_state=0, chunk_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = BayesianGaussianMixture(**kwargs).fit(X)
        path = tmp_path / "X.npy"
        np.save(path, X)
        mm = BayesianGaussianMixture(**kwargs).fit(np.load(path, mmap_mode="r"))
        fromfile = BayesianGaussianMixture(**kwargs).fit(str(path))
        for m in (mm, fromfile):
            np.testing.assert_allclose(m.means_, ref.means_, rtol=1e-10)
            np.testing.assert_allclose(m.lower_bounds_, ref.lower_bounds_, rtol=1e-10)
        da = pytest.importorskip("dask.array")
        dk = BayesianGaussianMixture(**kwargs).fit(da.from_array(X, chunks=(97, 3)))
        np.testing.assert_allclose(dk.means_, ref.means_, rtol=1e-9)
        np.testing.assert_allclose(dk.lower_bounds_, ref.lower_bounds_, rtol=1e-9)
        # weights: the posterior from weighted rows equals the posterior from repeated rows
        w = np.where(np.arange(X.shape[0]) % 3 == 0, 2.0, 1.0)
        EmkitFromResp.start = start_resp(X.shape[0], 4)
        weighted = EmkitFromResp(4, max_iter=10, tol=0.0, mean_prior=np.zeros(3),
                                 covariance_prior=np.eye(3)).fit(X, sample_weight=w)
        rep = np.repeat(np.arange(X.shape[0]), w.astype(int))
        EmkitFromResp.start = EmkitFromResp.start[rep]
        repeated = EmkitFromResp(4, max_iter=10, tol=0.0, mean_prior=np.zeros(3),
                                 covariance_prior=np.eye(3)).fit(X[rep])
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-9)
    np.testing.assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-9)


def _covers_clusters(m, centres):
    """Every component of weight > 2% sits on a true cluster centre, and every centre has one."""
    big = m.weights_ > 0.02
    d = np.linalg.norm(m.means_[big][:, None, :] - centres[None], axis=2)
    assert np.all(d.min(axis=1) < 0.5), d.min(axis=1)
    assert set(d.argmin(axis=1)) == set(range(len(centres)))


def test_stochastic_and_partial_fit_find_the_clusters():
    rng = np.random.default_rng(11)
    X = np.concatenate([rng.normal(c, 0.6, size=(500, 3)) for c in CENTRES])
    X = X[rng.permutation(X.shape[0])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = BayesianGaussianMixture(8, random_state=0, max_iter=20).fit(X, algorithm="stochastic", batch_size=250)
    _covers_clusters(st, CENTRES)
    assert np.isfinite(st.lower_bound_) and len(st.lower_bounds_) == st.n_iter_
    on = BayesianGaussianMixture(8, random_state=0)
    for _ in range(3):
        for s in range(0, X.shape[0], 250):
            on.partial_fit(X[s:s + 250])
    _covers_clusters(on, CENTRES)
    assert on.n_batches_ == 3 * X.shape[0] // 250
    with pytest.raises(ValueError, match="batch fit"):
        on.elbo()  # a stochastic fit has no ELBO
    with pytest.raises(ValueError, match="batch fit"):
        st.elbo()
    # a stream keeps going from a batch fit: the surplus components stay off
    batch = BayesianGaussianMixture(8, random_state=0, max_iter=200).fit(X)
    assert batch.n_effective_components(0.02) == 4
    batch.partial_fit(X[:250])
    assert batch.n_effective_components(0.02) == 4


def test_save_load_round_trip(tmp_path):
    X = recording_like(seed=8)
    for prior, cov in (("dirichlet_process", "full"), ("dirichlet_distribution", "tied")):
        m = BayesianGaussianMixture(5, covariance_type=cov, weight_concentration_prior_type=prior,
                                    random_state=0, max_iter=200).fit(X)
        back = emkit.load(m.save(tmp_path / f"{cov}.npz"))
        assert back.elbo() == m.elbo()
        assert type(back) is BayesianGaussianMixture and back.get_params()["covariance_type"] == cov
        np.testing.assert_allclose(back.predict_proba(X), m.predict_proba(X), rtol=1e-12)
        np.testing.assert_allclose(back.score_samples(X), m.score_samples(X), rtol=1e-12)
        assert back.lower_bound_ == m.lower_bound_
        back.warm_start = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            back.fit(X)  # continues from the loaded posterior
        assert back.lower_bound_ >= m.lower_bound_ - 1e-8 * abs(m.lower_bound_)
    back.partial_fit(X[:50])
    with pytest.raises(ValueError, match="batch fit"):
        emkit.load(back.save(tmp_path / "stream.npz")).elbo()  # also after a round trip


def test_bad_input_is_refused_clearly():
    X = recording_like()
    with pytest.raises(ValueError, match="degrees_of_freedom_prior"):
        BayesianGaussianMixture(2, degrees_of_freedom_prior=1.5).fit(X)
    with pytest.raises(ValueError, match="covariance_prior"):
        BayesianGaussianMixture(2, covariance_prior=np.eye(2)).fit(X)
    with pytest.raises(ValueError, match="covariance_prior"):
        BayesianGaussianMixture(2, covariance_type="diag", covariance_prior=[1.0, -1.0, 1.0]).fit(X)
    with pytest.raises(ValueError, match="mean_prior"):
        BayesianGaussianMixture(2, mean_prior=[0.0, 1.0]).fit(X)
    with pytest.raises(ValueError, match="weight_concentration_prior_type"):
        BayesianGaussianMixture(2, weight_concentration_prior_type="dp").fit(X)
    with pytest.raises(ValueError, match="weight_concentration_prior"):
        BayesianGaussianMixture(2, weight_concentration_prior=0.0).fit(X)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="missing values"):
        BayesianGaussianMixture(2).fit(Xn)
    m = BayesianGaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="missing values"):
        m.predict(Xn)
    with pytest.raises(ValueError, match="elbo"):
        m.bic(X)


@pytest.mark.parametrize("cov", COV_TYPES)
def test_elbo_is_the_exact_log_evidence_for_one_component(cov):
    """One component, no reg_covar: q is the exact posterior, so elbo() is the Normal-Wishart log evidence."""
    from scipy.special import multigammaln

    rng = np.random.default_rng(0)
    D = 1 if cov in ("diag", "spherical") else 2
    X = rng.normal(1.0, 2.0, size=(7, D))
    m0, b0, nu0 = np.full(D, 0.5), 0.7, D + 0.5
    T0 = np.array([[1.5, 0.3], [0.3, 0.8]])[:D, :D]
    prior = {"full": T0, "tied": T0, "diag": np.diag(T0), "spherical": float(T0[0, 0])}[cov]
    m = BayesianGaussianMixture(1, covariance_type=cov, weight_concentration_prior_type="dirichlet_distribution",
                                reg_covar=0.0, mean_prior=m0, mean_precision_prior=b0, degrees_of_freedom_prior=nu0,
                                covariance_prior=prior, tol=1e-12, max_iter=3).fit(X)
    # Murphy (2007), eq. 266: the marginal likelihood of a Normal-Wishart model, T the Wishart scale inverse
    n, xbar = X.shape[0], X.mean(axis=0)
    S = (X - xbar).T @ (X - xbar)
    bn, nun = b0 + n, nu0 + n
    Tn = T0 + S + b0 * n / bn * np.outer(xbar - m0, xbar - m0)
    exact = (-n * D / 2 * np.log(np.pi) + multigammaln(nun / 2, D) - multigammaln(nu0 / 2, D)
             + nu0 / 2 * np.linalg.slogdet(T0)[1] - nun / 2 * np.linalg.slogdet(Tn)[1] + D / 2 * np.log(b0 / bn))
    assert m.elbo() == pytest.approx(exact, rel=1e-10)


def test_select_ranks_by_elbo():
    rng = np.random.default_rng(7)
    X = np.concatenate([rng.normal(c, 0.6, size=(100, 3)) for c in CENTRES])
    template = BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_distribution", max_iter=300,
                                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = emkit.select(template, X, [1, 2, 4, 6], criterion="elbo", return_models=True)
    t = sel.table.set_index("n_components")
    for k, m in sel.models.items():
        assert t.loc[k, "elbo"] == pytest.approx(m.elbo())
        assert t.loc[k, "n_effective"] == m.n_effective_components()
    assert list(sel.table["elbo"]) == sorted(sel.table["elbo"], reverse=True)  # higher is better
    assert sel.best_n_components == 4 and not sel.lower_is_better
    assert t.loc[6, "n_effective"] == 4  # the surplus components are switched off
    with pytest.raises(ValueError, match="elbo"):
        emkit.select(emkit.GaussianMixture(), X, [1, 2], criterion="elbo")
    with pytest.raises(ValueError, match="elbo"):
        emkit.select(template, X, [1, 2], criterion="bic")


def test_cli_fit_select_report_show_effective_components(tmp_path, capsys):
    import json

    from emkit.cli import main

    rng = np.random.default_rng(7)
    X = np.concatenate([rng.normal(c, 0.6, size=(80, 3)) for c in CENTRES])
    csv = tmp_path / "x.csv"
    np.savetxt(csv, X, delimiter=",", header="a,b,c", comments="")
    out = tmp_path / "fit"
    assert main(["fit", str(csv), "--model", "bayesian-gmm", "-k", "10", "--seed", "0", "--max-iter", "300",
                 "--json", "-o", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "BayesianGaussianMixture" and info["n_effective_components"] == 4
    assert np.isfinite(info["elbo"]) and len(info["weights"]) == 10
    model = emkit.load(out / "model.npz")
    assert model.n_effective_components() == 4
    from emkit.plot import plot_model

    ax = plot_model(model, X)  # the switched-off components are not drawn
    assert "4 effective" in ax.get_title() and len(ax.patches) == 2 * 4
    assert main(["fit", str(csv), "--model", "bayesian-gmm", "-k", "10", "--seed", "0", "--max-iter", "300",
                 "-o", str(out)]) == 0
    assert "4 of 10 components effective (weight > 0.01)" in capsys.readouterr().out
    assert main(["score", str(out / "model.npz"), "--data", str(csv), "--json"]) == 0
    assert np.isfinite(json.loads(capsys.readouterr().out)["score"])
    sel = tmp_path / "sel"
    assert main(["select", str(csv), "--model", "bayesian-gmm", "-k", "2,4,6", "--criterion", "elbo", "--seed", "0",
                 "--max-iter", "300", "--json", "-o", str(sel)]) == 0
    assert json.loads(capsys.readouterr().out)["best_n_components"] == 4
    html = tmp_path / "report.html"
    assert main(["report", str(out / "model.npz"), "--data", str(csv), "--selection", str(sel / "selection.csv"),
                 "-o", str(html)]) == 0
    text = html.read_text()
    assert "effective components (weight &gt; 0.01)" in text and "evidence lower bound" in text


@pytest.mark.parametrize("criterion", ["bic", "aic", "icl"])
def test_select_refuses_point_estimate_criteria_before_fitting(criterion, monkeypatch):
    def no_fit(self, *args, **kwargs):
        raise AssertionError("select fitted a candidate before refusing the criterion")

    monkeypatch.setattr(BayesianGaussianMixture, "fit", no_fit)
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match=f"criterion='{criterion}'.*elbo"):
        emkit.select(BayesianGaussianMixture(random_state=0), X, n_components=[1, 2], criterion=criterion)
