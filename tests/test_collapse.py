"""Collapsed components and states: EM is monotone, collapses are detected, recovered and recorded.

Property tests draw hundreds of tiny data sets, many with repeated points so that components
collapse; the examples of the docstring of :mod:`emkit.collapse` are tested by name.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emkit import ARHMM, CategoricalHMM, GaussianHMM, GaussianMixture, PoissonHMM
from emkit.collapse import FLOOR_FACTOR, empty_components, floor_collapsed
from emkit.em import DECREASE_TOLERANCE
from emkit.exceptions import CollapseError, CollapseWarning

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])
# values with many repeats: identical points are what makes components collapse
VALUES = st.sampled_from([0.0, 0.0, 0.0, 1.0, 9.5, 9.5, -3.25, 133.0, 231.59])


pytestmark = pytest.mark.usefixtures("one_compiled_thread")


def _quiet_fit(model, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(*args)


def assert_monotone_between_recoveries(model):
    """``lower_bounds_`` never decreases, except into the first iteration after a recovery."""
    lb = np.asarray(model.lower_bounds_)
    restarts = {e["iteration"] for e in model.collapse_events_ if e["action"] == "recovered"}
    for i in range(1, lb.size):
        if i in restarts:  # entry i is the first objective of the parameters re-seeded at iteration i
            continue
        assert lb[i] >= lb[i - 1] - DECREASE_TOLERANCE * max(1.0, abs(lb[i - 1])), (i, lb[i - 1], lb[i])


def _rows(draw, n_min, n_max, D):
    n = draw(st.integers(n_min, n_max))
    return np.array(draw(st.lists(st.lists(VALUES, min_size=D, max_size=D), min_size=n, max_size=n)))


@st.composite
def mixture_case(draw):
    D = draw(st.integers(1, 2))
    X = _rows(draw, 3, 14, D)
    K = draw(st.integers(1, min(3, X.shape[0])))
    cov = draw(st.sampled_from(["full", "diag", "spherical", "tied"]))
    return X, K, cov, draw(st.integers(0, 2**16))


@st.composite
def sequence_case(draw, kind):
    D = 1 if kind == "categorical" else draw(st.integers(1, 2))
    X = _rows(draw, 4, 16, D)
    if kind == "categorical":
        X = np.abs(X).astype(np.int64) % 4
    elif kind == "poisson":
        X = np.abs(np.round(X)).astype(np.int64) % 7
    cuts = sorted(set(draw(st.lists(st.integers(1, X.shape[0] - 1), max_size=3))))
    lengths = np.diff([0] + cuts + [X.shape[0]])
    K = draw(st.integers(1, 3))
    return X, lengths, K, draw(st.integers(0, 2**16))


@PROPERTY
@given(mixture_case())
def test_gaussian_mixture_em_is_monotone(case):
    X, K, cov, seed = case
    m = _quiet_fit(GaussianMixture(K, covariance_type=cov, tol=0, max_iter=25, random_state=seed), X)
    assert_monotone_between_recoveries(m)


def _sequences_fit_is_monotone(cls, case, **kwargs):
    X, lengths, K, seed = case
    if X.shape[0] < K or (cls is ARHMM and np.all(lengths <= 1)):
        return
    m = _quiet_fit(cls(K, tol=0, max_iter=25, random_state=seed, **kwargs), X, lengths)
    assert_monotone_between_recoveries(m)


@PROPERTY
@given(sequence_case("gaussian"), st.sampled_from(["full", "diag", "spherical", "tied"]))
def test_gaussian_hmm_em_is_monotone(case, cov):
    _sequences_fit_is_monotone(GaussianHMM, case, covariance_type=cov)


@PROPERTY
@given(sequence_case("categorical"))
def test_categorical_hmm_em_is_monotone(case):
    _sequences_fit_is_monotone(CategoricalHMM, case)


@PROPERTY
@given(sequence_case("poisson"))
def test_poisson_hmm_em_is_monotone(case):
    _sequences_fit_is_monotone(PoissonHMM, case)


@PROPERTY
@given(sequence_case("gaussian"))
def test_arhmm_em_is_monotone(case):
    _sequences_fit_is_monotone(ARHMM, case)


# -- the collapses seen on real fits -------------------------------------------------------------

def test_mixture_on_two_distinct_points_is_monotone_and_reported():
    X = np.array([[231.59, 0.0]] + 11 * [[0.0, 0.0]])
    with pytest.warns(CollapseWarning, match="reg_covar floor"):
        m = GaussianMixture(2, tol=0, max_iter=50, random_state=0).fit(X)
    assert_monotone_between_recoveries(m)
    assert {0, 1} <= {e["component"] for e in m.collapse_events_}


def test_hmm_on_constant_values_with_one_outlier_is_monotone():
    X = np.full((20, 1), 9.5)
    X[7] = 0.0
    m = _quiet_fit(GaussianHMM(2, tol=0, max_iter=50, random_state=0), X)
    assert_monotone_between_recoveries(m)
    assert m.collapse_events_


def test_arhmm_example_is_monotone_and_stops_instead_of_descending():
    X = np.array([[133, 0], [0, 0], [0, 0], [0, 1], [0, 0], [0, 0]], dtype=float)
    plain = _quiet_fit(ARHMM(2, tol=0, max_iter=40, random_state=0, on_collapse="warn"), X)
    # with centred regression moments plain EM no longer descends here; it never goes below its start
    assert np.min(plain.lower_bounds_) >= plain.lower_bounds_[0] - 1e-9
    m = _quiet_fit(ARHMM(2, tol=0, max_iter=40, random_state=0), X)
    assert_monotone_between_recoveries(m)
    # the guard acted (a recovery, or a stop); once n_components recoveries are spent it only warns
    assert {"stopped", "recovered"} & {e["action"] for e in m.collapse_events_}
    assert m.lower_bound_ >= max(plain.lower_bounds_[:m.n_iter_]) - 1e-12


def _blobs_with_repeated_point(seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal([0, 0], 1, (100, 2)), rng.normal([8, 0], 1, (100, 2)),
                           rng.normal([0, 8], 1, (100, 2)), np.tile([[0.5, 0.5]], (15, 1))])


def _collapsing_start():
    return dict(means_init=np.array([[0.5, 0.5], [8, 0], [4, 4]]),
                precisions_init=np.array([np.eye(2) * 100, np.eye(2), np.eye(2)]), weights_init=np.full(3, 1 / 3))


def test_recovery_ends_with_healthy_components_at_least_as_good_as_the_best_restart():
    X = _blobs_with_repeated_point()
    with pytest.warns(CollapseWarning, match="re-seeded by splitting"):
        m = GaussianMixture(3, max_iter=300, tol=1e-8, random_state=0, **_collapsing_start()).fit(X)
    assert m.n_recoveries_ >= 1
    event = next(e for e in m.collapse_events_ if e["action"] == "recovered")
    assert event["component"] == 0 and event["source"] in (1, 2)
    assert_monotone_between_recoveries(m)
    # K healthy components: none empty, none at the covariance floor
    assert np.linalg.eigvalsh(m.covariances_).min() > FLOOR_FACTOR * m.reg_covar
    assert np.all(m.weights_ > 0.1)
    # the same start without recovery collapses onto the repeated point
    plain = _quiet_fit(GaussianMixture(3, max_iter=300, tol=1e-8, random_state=0, on_collapse="warn",
                                       **_collapsing_start()), X)
    assert plain.collapse_events_ and np.linalg.eigvalsh(plain.covariances_).min() < FLOOR_FACTOR * plain.reg_covar
    # and the recovered fit is as good as the best of several restarts that did not collapse
    healthy = []
    for seed in range(6):
        r = _quiet_fit(GaussianMixture(3, max_iter=300, tol=1e-8, random_state=seed, on_collapse="warn"), X)
        if not r.collapse_events_:
            healthy.append(r.lower_bound_)
    assert healthy
    assert m.lower_bound_ >= max(healthy) - 1e-9


def test_hmm_recovery_reseeds_an_empty_state():
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0, 1, 60), rng.normal(6, 1, 60), rng.normal(0, 1, 60)])[:, None]
    # state 2 starts far from every point: it is empty after the first E-step
    m = _quiet_fit(GaussianHMM(3, tol=1e-8, max_iter=200, means_init=np.array([[0.0], [6.0], [500.0]]),
                               covars_init=np.ones((3, 1)), random_state=0), X)
    event = m.collapse_events_[0]
    assert event["component"] == 2 and event["action"] == "recovered" and "empty" in event["reason"]
    occupancy = m.predict_proba(X).sum(axis=0)
    assert np.all(occupancy > 5)
    assert_monotone_between_recoveries(m)


def test_on_collapse_raise_and_validation():
    X = _blobs_with_repeated_point()
    with pytest.raises(CollapseError, match="component 0 .*on_collapse='raise'"):
        GaussianMixture(3, max_iter=300, on_collapse="raise", random_state=0, **_collapsing_start()).fit(X)
    with pytest.raises(ValueError, match="on_collapse"):
        GaussianMixture(2, on_collapse="ignore").fit(X)
    with pytest.raises(ValueError, match="on_collapse"):
        GaussianHMM(2, on_collapse=None).fit(X)


def test_warn_policy_changes_nothing_but_reports():
    X = _blobs_with_repeated_point()
    kw = dict(max_iter=300, tol=1e-8, random_state=0, **_collapsing_start())
    with pytest.warns(CollapseWarning, match="collapsed onto a few points"):
        m = GaussianMixture(3, on_collapse="warn", **kw).fit(X)
    assert [e["action"] for e in m.collapse_events_] == ["warned"]
    assert m.n_recoveries_ == 0


def test_detection_thresholds():
    assert empty_components(np.array([100.0, 100.0, 0.01])).tolist() == [False, False, True]
    reg = 1e-6
    ref = np.eye(2)
    covs = np.array([np.eye(2), np.diag([reg, 1.0]), np.diag([reg * FLOOR_FACTOR * 2, 1.0])])
    assert floor_collapsed(covs, ref, reg).tolist() == [False, True, False]
    # a feature constant in the whole data set is not a collapse
    assert floor_collapsed(covs[1:2], np.diag([reg, 1.0]), reg).tolist() == [False]
    assert floor_collapsed(covs, ref, 0.0).tolist() == [False, False, False]


def test_warning_points_at_the_callers_line():
    X = np.array([[231.59, 0.0]] + 11 * [[0.0, 0.0]])
    with pytest.warns(CollapseWarning) as record:
        GaussianMixture(2, tol=0, max_iter=5, random_state=0).fit(X)
    assert record[0].filename == __file__


def test_tol_zero_runs_max_iter_without_a_convergence_warning():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = GaussianMixture(2, tol=0, max_iter=7, random_state=0).fit(X)
        h = GaussianHMM(2, tol=0, max_iter=7, random_state=0).fit(X)
    assert m.n_iter_ == 7 and h.n_iter_ == 7


def test_select_marks_collapsed_fits_and_warns_at_the_edge_of_the_range():
    from emkit import select

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (60, 1)), rng.normal(8, 1, (60, 1)), np.full((40, 1), 3.0)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sel = select(GaussianMixture(covariance_type="diag", random_state=0, on_collapse="warn"), X, [1, 2, 3])
    t = sel.table.set_index("n_components")
    # the third component sits on the 40 identical values: a spike that BIC would reward
    assert t.loc[3, "collapsed"] >= 1 and t.loc[3, "recovered"] == 0
    messages = [str(w.message) for w in caught]
    assert sel.best_n_components == 3  # BIC rewards the spike: hence the mark and the warnings
    assert any("largest candidate" in m for m in messages)
    assert any("not recovered" in m for m in messages)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_tight_cluster_well_above_the_floor_is_not_a_collapse(covariance_type):
    # 300 points with sd 0.005 (variance 25 x reg_covar) beside a wide cluster: a real cluster,
    # not a collapse; the fit equals plain EM's and nothing is reported
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0.0, 0.005, (300, 2)), rng.normal(10.0, 1.0, (300, 2))]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        m = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    plain = _quiet_fit(GaussianMixture(2, covariance_type=covariance_type, random_state=0, on_collapse="warn"), X)
    assert m.n_recoveries_ == 0 and m.collapse_events_ == []
    assert m.lower_bound_ == plain.lower_bound_
