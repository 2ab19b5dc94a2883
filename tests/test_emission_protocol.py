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
