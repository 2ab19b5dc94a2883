"""The public emission protocol: registry, the backtracking helper of generalised M-steps, the
built-in families as instances of it, and (below) the generic estimators over any family."""

import numpy as np
import pytest

import emkit.emissions as E
from emkit.emissions.base import EmissionFamily, improving_step, register_family
from emkit.em import run_em
from emkit.sources import ArraySource
from emkit.structures import Mixture, MixtureParams


# -- registry ------------------------------------------------------------------------------------

def test_builtin_families_registered_and_instances_of_the_protocol():
    assert {"gaussian", "categorical", "poisson", "autoregressive"} <= set(E.family_names())
    for name, cls in (("gaussian", E.Gaussian), ("categorical", E.Categorical), ("poisson", E.Poisson),
                      ("autoregressive", E.Autoregressive)):
        assert E.get_family(name) is cls
        assert issubclass(cls, EmissionFamily)
        assert cls.family_name == name
    # the engines of the named estimators are instances too
    from emkit.emissions.autoregressive import AREmission
    from emkit.emissions.categorical import CategoricalEmission
    from emkit.emissions.poisson import PoissonEmission
    for cls in (E.GaussianEmission, CategoricalEmission, PoissonEmission, AREmission):
        assert issubclass(cls, EmissionFamily)


def test_hyperparameters_repr_and_set_params():
    g = E.Gaussian(covariance_type="diag")
    assert g.get_params() == {"covariance_type": "diag", "reg_covar": 1e-6}
    assert repr(g) == "Gaussian(covariance_type='diag')"
    assert g.hyperparameters() == {"covariance_type": "diag", "reg_covar": 1e-6}
    g.set_params(reg_covar=1e-3)
    assert g.reg_covar == 1e-3
    with pytest.raises(ValueError, match="'df' is not a hyperparameter of Gaussian"):
        g.set_params(df=3)
    assert E.make_family("poisson", lambdas_weight=2.0).lambdas_weight == 2.0
    with pytest.raises(ValueError, match="has no hyperparameter order"):
        E.make_family("poisson", order=2)
    bound = E.Poisson().with_components(3)
    assert bound.n_components == 3


def test_bad_hyperparameters_and_unknown_family_are_clear_errors():
    with pytest.raises(ValueError, match="covariance_type"):
        E.Gaussian(covariance_type="banana")
    with pytest.raises(ValueError, match="order"):
        E.Autoregressive(order=0)
    with pytest.raises(ValueError, match="unknown emission family 'nope'.*import it before loading"):
        E.get_family("nope")
    with pytest.raises(TypeError, match="instance such as Poisson\\(\\), not the class"):
        E.check_family(E.Poisson)
    with pytest.raises(TypeError, match="emission must be an emission family"):
        E.check_family(42)
    assert isinstance(E.check_family("gaussian"), E.Gaussian)


def test_register_family_refuses_bad_names_classes_and_taken_names():
    with pytest.raises(ValueError, match="lowercase"):
        register_family("Bad Name")
    with pytest.raises(TypeError, match="subclass of emkit.emissions.EmissionFamily"):
        register_family("thing")(object)

    class Other(EmissionFamily):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_family("gaussian")(Other)

    class Clash(EmissionFamily):
        attributes = {"weights": "w"}

    with pytest.raises(ValueError, match="reserved"):
        register_family("clash-test")(Clash)


# -- improving_step -----------------------------------------------------------------------------

def test_improving_step_takes_an_improving_proposal_whole():
    theta, halvings = improving_step(lambda x: -(x - 3.0) ** 2, 0.0, 2.0)
    assert theta == 2.0 and halvings == 0


def test_improving_step_backtracks_an_overshoot_until_no_decrease():
    f = lambda x: -(x - 1.0) ** 2  # noqa: E731
    theta, halvings = improving_step(f, 0.0, 10.0)  # 10 overshoots; 10/8 = 1.25 is the first that helps
    assert halvings == 3 and theta == pytest.approx(1.25)
    assert f(theta) >= f(0.0)


def test_improving_step_keeps_current_when_nothing_improves_and_rejects_nan():
    f = lambda x: np.where(x > 0, np.nan, -x ** 2)  # noqa: E731
    theta, halvings = improving_step(f, 0.0, 1.0, max_halvings=5)
    assert theta == 0.0 and halvings == -1


def test_improving_step_per_state_backtracks_each_state_on_its_own():
    target = np.array([1.0, -2.0, 0.5])

    def J(x):
        return -np.sum((x - target[:, None]) ** 2, axis=1)

    current = np.zeros((3, 2))
    proposal = np.array([[1.0, 1.0], [-20.0, -20.0], [0.5, 0.5]])  # state 1 overshoots by far
    theta, halvings = improving_step(J, current, proposal)
    assert list(halvings) == [0, 3, 0]
    assert np.all(J(theta) >= J(current))
    np.testing.assert_allclose(theta[1], [-2.5, -2.5])
    with pytest.raises(ValueError, match="first axis must be the state"):
        improving_step(lambda x: np.zeros(4), np.zeros((2, 2)), np.zeros((2, 2)))


# -- the Mixture structure over any family -----------------------------------------------------------

def test_mixture_over_a_categorical_family_prepares_data_and_counts_the_prior():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.choice(3, 300, p=[0.8, 0.1, 0.1]), rng.choice(3, 300, p=[0.1, 0.1, 0.8])])[:, None]
    fam = E.Categorical(emissionprob_prior=2.0).configured(X).with_components(2)
    params = MixtureParams(weights=np.array([0.5, 0.5]),
                           emission=fam.params_from(np.array([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])))
    model = Mixture(fam)
    result = run_em(model, params, ArraySource(X.astype(np.float64), None, 1000), tol=0, max_iter=30)
    lb = np.array(result.lower_bounds)
    assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[1:]))
    prob = result.params.emission.emissionprob
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
    # the objective includes the Dirichlet log prior of the emission probabilities
    stats = ArraySource(X.astype(np.float64), None, 1000).expectation(model, result.params)
    expected = (stats.log_likelihood + np.sum(np.log(prob))) / stats.n_samples
    assert model.objective(stats, result.params) == pytest.approx(expected)


# -- generic estimators -----------------------------------------------------------------------------

import dataclasses  # noqa: E402
import json  # noqa: E402
import itertools  # noqa: E402

import emkit  # noqa: E402
from emkit.stats import Stats  # noqa: E402


@dataclasses.dataclass(frozen=True)
class ExpParams:
    rates: np.ndarray  # (K, D)


@dataclasses.dataclass
class ExpStats(Stats):
    n: np.ndarray
    sx: np.ndarray


@register_family("test-exponential")
class Exponential(EmissionFamily):
    """A user's family: independent exponential coordinates (written against the public protocol only)."""

    param_names = ("rates",)
    attributes = {"rates": "rates"}

    def __init__(self, floor=1e-9):
        self.floor = floor

    def check_data(self, X):
        X = super().check_data(X)
        if np.any(X < 0):
            raise ValueError("X must be non-negative for exponential emissions")
        return X

    def log_likelihood(self, params, X):
        return np.log(params.rates).sum(axis=1) - X @ params.rates.T

    def statistics(self, params, X, weights):
        return ExpStats(n=weights.sum(axis=0), sx=weights.T @ X)

    def m_step(self, stats, params=None, learn=None):
        return ExpParams(rates=stats.n[:, None] / np.maximum(stats.sx, self.floor))

    def params_from(self, rates):
        return ExpParams(rates=np.asarray(rates, dtype=np.float64))

    def split(self, params, j, k):
        rates = params.rates.copy()
        rates[k], rates[j] = rates[j] * 1.5, rates[j] / 1.5
        return ExpParams(rates=rates)

    def sample(self, params, z, rng):
        return rng.exponential(1.0 / params.rates[z])

    def n_parameters(self, n_features):
        return self.n_components * n_features


def _exp_data(seed=0, n_seq=30):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 40, n_seq)
    z = np.concatenate([np.repeat(rng.integers(0, 2, 4), -(-L // 4))[:L] for L in lengths])
    X = rng.exponential(np.where(z[:, None] == 0, [[0.5, 2.0]], [[4.0, 0.3]]))
    return X, lengths, z


def _monotone(lower_bounds):
    lb = np.asarray(lower_bounds)
    return np.all(np.diff(lb) >= -1e-10 * np.maximum(1.0, np.abs(lb[1:])))


def test_user_family_in_a_mixture_fit_save_load_partial_fit(tmp_path):
    X, _, z = _exp_data()
    m = emkit.MixtureModel(2, emission=Exponential(), n_init=2, random_state=0, tol=0, max_iter=40).fit(X)
    assert _monotone(m.lower_bounds_)
    assert m.rates_.shape == (2, 2) and isinstance(m.emission_params_, ExpParams)
    ari = _ari(m.predict(X), z)
    assert ari > 0.5
    assert m.score(X) == pytest.approx(m.score_samples(X).mean())
    assert m.bic(X) == pytest.approx(-2 * m.score_samples(X).sum() + (1 + 4) * np.log(len(X)))
    loaded = emkit.load(m.save(tmp_path / "exp-mix.npz"))
    assert isinstance(loaded.emission, Exponential)
    np.testing.assert_array_equal(loaded.predict_proba(X), m.predict_proba(X))
    loaded.partial_fit(X[:100])
    assert loaded.n_batches_ >= 1 and np.all(loaded.rates_ > 0)
    Xs, zs = m.sample(50)
    assert Xs.shape == (50, 2) and np.all(Xs >= 0)
    with pytest.raises(ValueError, match="non-negative for exponential"):
        m.predict(-X)


def test_user_family_in_an_hmm_fit_save_load_partial_fit_and_brute_force(tmp_path):
    X, lengths, z = _exp_data(1)
    h = emkit.HMM(2, emission=Exponential(), random_state=0, tol=0, max_iter=30).fit(X, lengths)
    assert _monotone(h.lower_bounds_)
    assert _ari(h.predict(X, lengths), z) > 0.8
    loaded = emkit.load(h.save(tmp_path / "exp-hmm.npz"))
    assert loaded.score(X, lengths) == h.score(X, lengths)
    # brute force: sum over every state path of a short sequence
    x = X[:6]
    ll = h._make_emission(2).log_likelihood(h.emission_params_, x)
    total = -np.inf
    for path in itertools.product(range(2), repeat=len(x)):
        lp = np.log(h.startprob_[path[0]]) + ll[0, path[0]]
        for t in range(1, len(x)):
            lp += np.log(h.transmat_[path[t - 1], path[t]]) + ll[t, path[t]]
        total = np.logaddexp(total, lp)
    assert h.score(x) == pytest.approx(total, rel=1e-12)
    stream = emkit.HMM(2, emission=Exponential(), random_state=0)
    for s in range(0, len(lengths), 10):
        start, stop = lengths[:s].sum(), lengths[:s + 10].sum()
        stream.partial_fit(X[start:stop], lengths[s:s + 10])
    assert stream.n_batches_ == 3 and np.all(stream.rates_ > 0)


def _ari(a, b):
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(a, b)


def test_model_file_naming_an_unregistered_family_fails_clearly(tmp_path, monkeypatch):
    X, _, _ = _exp_data()
    path = emkit.MixtureModel(2, emission=Exponential(), random_state=0).fit(X).save(tmp_path / "m.npz")
    from emkit.emissions import base

    monkeypatch.delitem(base._FAMILIES, "test-exponential")
    with pytest.raises(ValueError, match="unknown emission family 'test-exponential'.*import it before loading"):
        emkit.load(path)


def test_bad_emission_argument_is_a_clear_error():
    X = np.abs(np.random.default_rng(0).normal(size=(50, 2)))
    with pytest.raises(TypeError, match="emission must be an emission family"):
        emkit.MixtureModel(2, emission=object()).fit(X)
    with pytest.raises(TypeError, match="not the class itself"):
        emkit.HMM(2, emission=Exponential).fit(X)
    with pytest.raises(ValueError, match="unknown emission family 'gausian'"):
        emkit.HMM(2, emission="gausian").fit(X)
    with pytest.raises(ValueError, match="use emkit.HMM"):
        emkit.MixtureModel(2, emission=E.Autoregressive()).fit(X)
    with pytest.raises(ValueError, match="emission_init has unknown names"):
        emkit.MixtureModel(2, emission=Exponential(), emission_init={"means": np.ones((2, 2))}).fit(X)
    with pytest.raises(ValueError, match="learn contains unknown"):
        emkit.HMM(2, emission=Exponential(), learn={"means"}).fit(X)


def _poisson_data(seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(10, 60, 25)
    z = np.concatenate([np.repeat(rng.integers(0, 3, 3), -(-L // 3))[:L] for L in lengths])
    rates = np.array([[1.0, 6.0], [5.0, 0.5], [12.0, 12.0]])
    return rng.poisson(rates[z]).astype(np.float64), lengths


def test_generic_hmm_equals_named_hmms_from_the_same_start():
    X, lengths = _poisson_data()
    start = dict(startprob_init=np.full(3, 1 / 3), transmat_init=np.full((3, 3), 0.1) + 0.7 * np.eye(3))
    lam = np.array([[2.0, 4.0], [4.0, 1.0], [9.0, 9.0]])
    named = emkit.PoissonHMM(3, lambdas_init=lam, tol=0, max_iter=25, **start).fit(X, lengths)
    generic = emkit.HMM(3, emission=E.Poisson(), emission_init={"lambdas": lam}, tol=0, max_iter=25,
                        **start).fit(X, lengths)
    np.testing.assert_allclose(generic.lambdas_, named.lambdas_, rtol=1e-10)
    np.testing.assert_allclose(generic.transmat_, named.transmat_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(generic.lower_bounds_, named.lower_bounds_, rtol=1e-12)
    assert generic.score(X, lengths) == pytest.approx(named.score(X, lengths), rel=1e-12)
    assert generic.bic(X, lengths) == pytest.approx(named.bic(X, lengths), rel=1e-12)

    G = X + np.random.default_rng(1).normal(size=X.shape)
    means = lam + 0.5
    for cov in ("diag", "full"):
        covars = np.ones((3, 2)) * 4 if cov == "diag" else np.tile(np.eye(2) * 4, (3, 1, 1))
        named = emkit.GaussianHMM(3, covariance_type=cov, means_init=means, covars_init=covars, tol=0, max_iter=20,
                                  **start).fit(G, lengths)
        generic = emkit.HMM(3, emission=E.Gaussian(covariance_type=cov), tol=0, max_iter=20,
                            emission_init={"means": means, "covars": covars}, **start).fit(G, lengths)
        np.testing.assert_allclose(generic.means_, named.means_, rtol=1e-9)
        np.testing.assert_allclose(generic.covars_, named.covars_, rtol=1e-9)
        np.testing.assert_allclose(generic.lower_bounds_, named.lower_bounds_, rtol=1e-12)


def test_generic_mixture_equals_gaussian_mixture_from_the_same_start():
    X, _ = _poisson_data(2)
    X = X + np.random.default_rng(3).normal(size=X.shape)
    means = np.array([[2.0, 4.0], [4.0, 1.0], [9.0, 9.0]])
    covs = np.tile(np.eye(2) * 3.0, (3, 1, 1))
    w = np.full(3, 1 / 3)
    gm = emkit.GaussianMixture(3, weights_init=w, means_init=means, precisions_init=np.linalg.inv(covs), tol=0,
                               max_iter=30).fit(X)
    mm = emkit.MixtureModel(3, emission=E.Gaussian(), weights_init=w, emission_init={"means": means, "covars": covs},
                            tol=0, max_iter=30).fit(X)
    np.testing.assert_allclose(mm.means_, gm.means_, rtol=1e-9)
    np.testing.assert_allclose(mm.covars_, gm.covariances_, rtol=1e-9)
    np.testing.assert_allclose(mm.weights_, gm.weights_, rtol=1e-9)
    np.testing.assert_allclose(mm.lower_bounds_, gm.lower_bounds_, rtol=1e-12)
    assert mm.score(X) == pytest.approx(gm.score(X), rel=1e-12)
    assert mm.bic(X) == pytest.approx(gm.bic(X), rel=1e-12)


@pytest.mark.parametrize("family", [E.Gaussian(covariance_type="diag"), E.Poisson(), E.Categorical()],
                         ids=lambda f: type(f).__name__)
def test_generic_estimators_are_monotone_for_builtin_families(family):
    X, lengths = _poisson_data(4)
    if isinstance(family, E.Categorical):
        X = np.minimum(X[:, :1], 9)
    h = emkit.HMM(3, emission=family, random_state=0, tol=0, max_iter=15).fit(X, lengths)
    assert _monotone(h.lower_bounds_)
    if not isinstance(family, E.Categorical):
        m = emkit.MixtureModel(3, emission=family, random_state=0, tol=0, max_iter=15).fit(X)
        assert _monotone(m.lower_bounds_)


def test_generic_hmm_sequences_lists_dask_and_sklearn_clone():
    from sklearn.base import clone

    X, lengths = _poisson_data(5)
    seqs = np.split(X, np.cumsum(lengths)[:-1])
    a = emkit.HMM(2, emission=E.Poisson(), random_state=0, max_iter=10).fit(X, lengths)
    b = emkit.HMM(2, emission=E.Poisson(), random_state=0, max_iter=10).fit(seqs)
    np.testing.assert_array_equal(a.lambdas_, b.lambdas_)
    assert isinstance(b.predict(seqs), list)
    c = clone(a)
    assert c.emission is not a.emission and c.emission.get_params() == a.emission.get_params()
    assert a.get_params()["emission__lambdas_weight"] == 0.0
    dask = pytest.importorskip("dask.array")
    d = emkit.HMM(2, emission=E.Poisson(), random_state=0, max_iter=10).fit(dask.from_array(X, chunks=200), lengths)
    np.testing.assert_allclose(d.score(X, lengths), a.score(X, lengths), rtol=1e-6)


def test_cli_fit_select_info_with_an_emission_family(tmp_path, capsys):
    from emkit.cli import main

    X, lengths = _poisson_data(6)
    data = tmp_path / "counts.csv"
    np.savetxt(data, X, delimiter=",", header="a,b", comments="", fmt="%d")
    out = tmp_path / "fit"
    assert main(["fit", str(data), "--model", "hmm", "--emission", "poisson", "-k", "3", "--seed", "0",
                 "-o", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "HMM" and info["emission"] == "poisson" and np.shape(info["lambdas"]) == (3, 2)
    model = emkit.load(out / "model.npz")
    assert isinstance(model.emission, E.Poisson)
    assert main(["info", str(out / "model.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["emission"] == {"family": "poisson", "params": {
        "lambdas_prior": 0.0, "lambdas_weight": 0.0}}
    assert main(["select", str(data), "--model", "mixture", "--emission", "gaussian", "--emission-param",
                 "covariance_type=diag", "-k", "1-2", "--seed", "0", "-o", str(tmp_path / "sel"), "--json"]) == 0
    best = emkit.load(tmp_path / "sel" / "model.npz")
    assert best.emission.covariance_type == "diag"
    for model_file in (out / "model.npz", tmp_path / "sel" / "model.npz"):
        assert main(["report", str(model_file), "--data", str(data), "-o", str(tmp_path / "r.html")]) == 0
        assert "Emission family" in (tmp_path / "r.html").read_text()
    capsys.readouterr()
    assert main(["fit", str(data), "--model", "mixture", "--emission", "poisson", "--emission-param", "df=3",
                 "-o", str(tmp_path / "bad")]) == 2
    assert "has no hyperparameter df" in capsys.readouterr().err
    assert main(["fit", str(data), "--model", "mixture", "-o", str(tmp_path / "bad")]) == 2
    assert "needs --emission NAME" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::emkit.exceptions.ConvergenceWarning")
def test_generic_mixture_out_of_core_dask_stochastic_and_plot(tmp_path):
    X, _ = _poisson_data(7)
    lam = np.array([[2.0, 4.0], [4.0, 1.0], [9.0, 9.0]])
    kw = dict(emission=E.Poisson(), weights_init=np.full(3, 1 / 3), emission_init={"lambdas": lam}, tol=0,
              max_iter=10)
    ref = emkit.MixtureModel(3, **kw).fit(X)
    path = tmp_path / "counts.npy"
    np.save(path, X)
    from_file = emkit.MixtureModel(3, **kw).fit(str(path))
    np.testing.assert_allclose(from_file.lambdas_, ref.lambdas_, rtol=1e-10)
    with pytest.raises(ValueError, match="non-negative counts"):
        np.save(path, -X)
        emkit.MixtureModel(3, **kw).fit(str(path))  # chunks of a file are checked by the family
    dask = pytest.importorskip("dask.array")
    on_dask = emkit.MixtureModel(3, **kw).fit(dask.from_array(X, chunks=250))
    np.testing.assert_allclose(on_dask.lambdas_, ref.lambdas_, rtol=1e-10)
    online = emkit.MixtureModel(3, emission=E.Poisson(), random_state=0, max_iter=3).fit(X, algorithm="stochastic",
                                                                                       batch_size=200)
    assert np.all(np.isfinite(online.lambdas_))
    pytest.importorskip("matplotlib")
    from emkit.plot import plot_model

    assert plot_model(ref, X) is not None
    g = emkit.MixtureModel(2, emission=E.Gaussian(covariance_type="diag"), random_state=0).fit(X + 0.5)
    assert plot_model(g, X + 0.5) is not None


from sklearn.utils import estimator_checks as checks  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks([emkit.MixtureModel(2, random_state=0)], expected_failed_checks=lambda est: {
    "check_sample_weight_equivalence_on_dense_data": "random seeding draws differ between weighted and repeated "
                                                     "rows (as for scikit-learn's KMeans)"})
def test_mixture_model_check_estimator(estimator, check):
    check(estimator)


class _HMMChecked(emkit.HMM):
    """The generic checks call ``fit(X, y)``: ``y`` dropped, ``X`` one sequence."""

    def fit(self, X, y=None):
        return super().fit(X)

    def partial_fit(self, X, y=None):
        return super().partial_fit(X)

    def score(self, X, y=None):
        return super().score(X)


@pytest.mark.filterwarnings("ignore::emkit.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("check", ["check_estimator_cloneable", "check_estimator_repr", "check_get_params_invariance",
                                   "check_set_params", "check_no_attributes_set_in_init", "check_fit_idempotent",
                                   "check_estimators_pickle", "check_dict_unchanged", "check_n_features_in",
                                   "check_fit_check_is_fitted", "check_estimators_unfitted",
                                   "check_dataframe_column_names_consistency"])
def test_hmm_generic_checks(check):
    getattr(checks, check)("HMM", _HMMChecked(2, emission=E.Gaussian(covariance_type="diag"), random_state=0,
                                              max_iter=5))
