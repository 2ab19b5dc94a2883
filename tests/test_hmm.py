import itertools
import warnings

import numpy as np
import pytest
from scipy import stats as st

import emkit
from emkit import ARHMM, CategoricalHMM, ConvergenceWarning, GaussianHMM, GaussianMixture, NotFittedError, PoissonHMM
from emkit.emissions.gaussian import COVARIANCE_TYPES

COV_TYPES = ["full", "diag", "spherical", "tied"]


def random_stochastic(rng, K, zeros=False):
    A = rng.dirichlet(np.ones(K) * 2, size=K)
    if zeros and K > 2:
        A[0, 2] = 0.0
        A[0] /= A[0].sum()
    return A


def random_covars(rng, cov_type, K, D):
    if cov_type == "full":
        out = []
        for _ in range(K):
            B = rng.normal(size=(D, D)) * 0.4
            out.append(B @ B.T + np.eye(D) * 0.5)
        return np.array(out)
    if cov_type == "tied":
        B = rng.normal(size=(D, D)) * 0.4
        return B @ B.T + np.eye(D) * 0.5
    if cov_type == "diag":
        return rng.uniform(0.3, 1.5, size=(K, D))
    return rng.uniform(0.3, 1.5, size=K)


def make_model(family, K, rng, D=2, cov_type="diag", zeros=False):
    startprob = rng.dirichlet(np.ones(K))
    transmat = random_stochastic(rng, K, zeros)
    if family == "gaussian":
        return GaussianHMM.from_params(startprob, transmat, means=rng.normal(scale=2, size=(K, D)),
                                       covars=random_covars(rng, cov_type, K, D), covariance_type=cov_type)
    if family == "categorical":
        return CategoricalHMM.from_params(startprob, transmat, emissionprob=rng.dirichlet(np.ones(4), size=K))
    if family == "poisson":
        return PoissonHMM.from_params(startprob, transmat, lambdas=rng.uniform(0.5, 6, size=(K, D)))
    if family == "ar":
        coefs = rng.uniform(-0.5, 0.5, size=(K, D, D))
        return ARHMM.from_params(startprob, transmat, coefs=coefs, intercepts=rng.normal(size=(K, D)),
                                 covars=random_covars(rng, "full", K, D))
    raise AssertionError(family)


def independent_frame_loglik(model, X, lengths):
    """Per-state emission log-densities from scipy, independent of emkit's emission code."""
    K = model.n_components
    T = X.shape[0]
    out = np.zeros((T, K))
    if isinstance(model, GaussianHMM):
        D = X.shape[1]
        full = COVARIANCE_TYPES[model.covariance_type].full_covariances(np.asarray(model.covars_), K, D)
        for k in range(K):
            out[:, k] = st.multivariate_normal(model.means_[k], full[k]).logpdf(X).reshape(T)
    elif isinstance(model, CategoricalHMM):
        out = np.log(model.emissionprob_[:, X[:, 0].astype(int)]).T
    elif isinstance(model, PoissonHMM):
        for k in range(K):
            out[:, k] = st.poisson(model.lambdas_[k]).logpmf(X).sum(axis=1)
    else:
        start = 0
        for L in lengths:
            for t in range(start + 1, start + L):  # order 1: first frame of each sequence carries no evidence
                for k in range(K):
                    mean = model.coefs_[k] @ X[t - 1] + model.intercepts_[k]
                    out[t, k] = st.multivariate_normal(mean, model.covars_[k]).logpdf(X[t])
            start += L
    return out


def enumerate_paths(startprob, transmat, frame):
    """log p(x, z) for every path z of one sequence."""
    T, K = frame.shape
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    with np.errstate(divide="ignore"):
        lp = np.log(startprob[paths[:, 0]]) + frame[0, paths[:, 0]]
        for t in range(1, T):
            lp = lp + np.log(transmat[paths[:, t - 1], paths[:, t]]) + frame[t, paths[:, t]]
    return paths, lp


FAMILIES = ["gaussian", "categorical", "poisson", "ar"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("K", [1, 2, 3])
@pytest.mark.parametrize("zeros", [False, True])
def test_brute_force_against_enumeration(family, K, zeros):
    rng = np.random.default_rng(K * 10 + zeros + FAMILIES.index(family) * 100)
    model = make_model(family, K, rng, zeros=zeros)
    lengths = np.array([4, 1, 6, 2]) if family != "ar" else np.array([4, 2, 5, 1])
    seqs = [model.sample(int(L), random_state=rng)[0] for L in lengths]
    X = np.concatenate(seqs)
    frame = independent_frame_loglik(model, X, lengths)
    total = 0.0
    post = np.zeros((X.shape[0], K))
    filt = np.zeros((X.shape[0], K))
    viterbi_lp = 0.0
    viterbi_paths = []
    trans = np.zeros((K, K))
    start = 0
    for L in lengths:
        f = frame[start:start + L]
        paths, lp = enumerate_paths(model.startprob_, model.transmat_, f)
        ll = np.logaddexp.reduce(lp)
        total += ll
        w = np.exp(lp - ll)
        for t in range(L):
            post[start + t] = np.bincount(paths[:, t], weights=w, minlength=K)
            # filtered: enumerate the prefix
            pp, lpp = enumerate_paths(model.startprob_, model.transmat_, f[:t + 1])
            wp = np.exp(lpp - np.logaddexp.reduce(lpp))
            filt[start + t] = np.bincount(pp[:, t], weights=wp, minlength=K)
        for t in range(L - 1):
            np.add.at(trans, (paths[:, t], paths[:, t + 1]), w)
        best = np.argmax(lp)
        viterbi_lp += lp[best]
        viterbi_paths.append(paths[best])
        start += L
    np.testing.assert_allclose(model.score(X, lengths), total, rtol=1e-10)
    np.testing.assert_allclose(model.predict_proba(X, lengths), post, atol=1e-10)
    np.testing.assert_allclose(model.filter(X, lengths), filt, atol=1e-10)
    lp, path = model.decode(X, lengths, algorithm="viterbi")
    np.testing.assert_allclose(lp, viterbi_lp, rtol=1e-10)
    np.testing.assert_array_equal(path, np.concatenate(viterbi_paths))
    # expected transition counts from the E-step statistics
    chain = model._em_model_for_fitted()
    stats = chain.e_step(model._fitted_params(), X, lengths)
    np.testing.assert_allclose(stats.trans, trans, atol=1e-10)
    np.testing.assert_allclose(stats.log_likelihood, total, rtol=1e-10)
    if zeros and K > 2:
        assert stats.trans[0, 2] == 0.0


def test_hmm_with_rows_equal_to_start_is_a_mixture():
    rng = np.random.default_rng(0)
    K, D = 3, 2
    w = rng.dirichlet(np.ones(K))
    means = rng.normal(scale=3, size=(K, D))
    covs = random_covars(rng, "full", K, D)
    hmm = GaussianHMM.from_params(w, np.tile(w, (K, 1)), means=means, covars=covs, covariance_type="full")
    X, _ = hmm.sample(300, random_state=1)
    gm = GaussianMixture(K, covariance_type="full")
    gm.weights_, gm.means_, gm.covariances_ = w, means, covs
    gm.precisions_cholesky_ = COVARIANCE_TYPES["full"].precisions_cholesky(covs, 0)
    gm.precisions_ = COVARIANCE_TYPES["full"].precisions(gm.precisions_cholesky_)
    np.testing.assert_allclose(hmm.predict_proba(X), gm.predict_proba(X), atol=1e-12)
    np.testing.assert_allclose(hmm.score(X), gm.score_samples(X).sum(), rtol=1e-12)


def _training_data(family, seed=0, n_seq=3, T=150, cov_type="diag"):
    rng = np.random.default_rng(seed)
    gen = make_model(family, 3, rng, D=2, cov_type=cov_type)
    gen.transmat_ = 0.8 * np.eye(3) + 0.2 * gen.transmat_
    seqs = [gen.sample(T, random_state=rng)[0] for _ in range(n_seq)]
    return np.concatenate(seqs), np.full(n_seq, T)


MONOTONE_CASES = [
    ("gaussian", dict(covariance_type=c)) for c in COV_TYPES
] + [
    ("gaussian", dict(covariance_type="diag", kappa=20.0, transmat_prior=2.0, startprob_prior=3.0)),
    ("categorical", dict()),
    ("categorical", dict(emissionprob_prior=2.0, kappa=5.0)),
    ("poisson", dict()),
    ("poisson", dict(lambdas_prior=1.0, lambdas_weight=0.5, transmat_prior=1.5)),
    ("ar", dict()),
    ("ar", dict(kappa=10.0)),
]
CLASSES = {"gaussian": GaussianHMM, "categorical": CategoricalHMM, "poisson": PoissonHMM, "ar": ARHMM}


@pytest.mark.parametrize("family, kw", MONOTONE_CASES)
def test_em_never_lowers_the_objective(family, kw):
    X, lengths = _training_data(family, seed=3, cov_type=kw.get("covariance_type", "diag"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = CLASSES[family](3, tol=0, max_iter=40, random_state=0, **kw).fit(X, lengths)
    lb = np.array(model.lower_bounds_)
    assert len(lb) == 40 and np.all(np.isfinite(lb))
    assert np.all(np.diff(lb) >= -1e-10 * np.abs(lb[1:])), np.diff(lb).min()


def _path_log_prob(model, X, lengths, z):
    frame = independent_frame_loglik(model, X, lengths)
    lp, start = 0.0, 0
    for L in lengths:
        zz = z[start:start + L]
        lp += (np.log(model.startprob_[zz[0]]) + np.log(model.transmat_[zz[:-1], zz[1:]]).sum()
               + frame[start + np.arange(L), zz].sum())
        start += L
    return lp


def _hmmlearn_agree(ours, ref, X, lengths, n_iter, discrete=False):
    assert ours.n_iter_ == n_iter
    np.testing.assert_allclose(ours.startprob_, ref.startprob_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.lower_bounds_[-1] * X.shape[0], ref.monitor_.history[-1], rtol=1e-6)
    np.testing.assert_allclose(ours.score(X, lengths), ref.score(X, lengths), rtol=1e-6)
    ours_path, ref_path = ours.predict(X, lengths), ref.predict(X, lengths)
    if discrete and not np.array_equal(ours_path, ref_path):
        # discrete data can have several most probable paths (exact ties): both must be optimal
        np.testing.assert_allclose(_path_log_prob(ours, X, lengths, ours_path),
                                   _path_log_prob(ours, X, lengths, ref_path), rtol=1e-12)
    else:
        np.testing.assert_array_equal(ours_path, ref_path)
    np.testing.assert_allclose(ours.decode(X, lengths)[0], ref.decode(X, lengths)[0], rtol=1e-6)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_gaussian_agrees_with_hmmlearn(cov_type):
    hmm = pytest.importorskip("hmmlearn.hmm")
    X, lengths = _training_data("gaussian", seed=5, cov_type=cov_type)
    rng = np.random.default_rng(1)
    K, D = 3, 2
    start = rng.dirichlet(np.ones(K) * 3)
    trans = rng.dirichlet(np.ones(K) * 3, size=K)
    means = X[rng.choice(len(X), K, replace=False)]
    covars = random_covars(rng, cov_type, K, D)
    n_iter = 10
    ref = hmm.GaussianHMM(K, covariance_type=cov_type, n_iter=n_iter, tol=-np.inf, init_params="", params="stmc",
                          covars_prior=0.0, covars_weight=1.0, means_prior=0.0, means_weight=0.0)
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = start, trans, means, covars
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X, lengths)
        ours = GaussianHMM(K, covariance_type=cov_type, reg_covar=0.0, tol=0, max_iter=n_iter, startprob_init=start,
                           transmat_init=trans, means_init=means, covars_init=covars).fit(X, lengths)
    _hmmlearn_agree(ours, ref, X, lengths, n_iter)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6)
    if cov_type == "spherical":  # hmmlearn's covars_ getter expands these to K*D matrices; compare its storage
        np.testing.assert_allclose(ours.covars_, ref._covars_[:, 0], rtol=1e-6)
    else:
        full = COVARIANCE_TYPES[cov_type].full_covariances(ours.covars_, K, D)
        np.testing.assert_allclose(np.broadcast_to(full, (K, D, D)), ref.covars_, rtol=1e-6, atol=1e-12)
    assert np.shape(ours.covars_) == COVARIANCE_TYPES[cov_type].compact_shape(K, D)


def test_categorical_agrees_with_hmmlearn():
    hmm = pytest.importorskip("hmmlearn.hmm")
    X, lengths = _training_data("categorical", seed=6)
    rng = np.random.default_rng(2)
    K = 3
    start, trans = rng.dirichlet(np.ones(K) * 3), rng.dirichlet(np.ones(K) * 3, size=K)
    emis = rng.dirichlet(np.ones(4) * 3, size=K)
    ref = hmm.CategoricalHMM(K, n_features=4, n_iter=10, tol=-np.inf, init_params="", params="ste")
    ref.startprob_, ref.transmat_, ref.emissionprob_ = start, trans, emis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X.astype(int), lengths)
        ours = CategoricalHMM(K, n_features=4, tol=0, max_iter=10, startprob_init=start, transmat_init=trans,
                              emissionprob_init=emis).fit(X.astype(int), lengths)
    _hmmlearn_agree(ours, ref, X.astype(int), lengths, 10, discrete=True)
    np.testing.assert_allclose(ours.emissionprob_, ref.emissionprob_, rtol=1e-6)


def test_poisson_agrees_with_hmmlearn():
    hmm = pytest.importorskip("hmmlearn.hmm")
    X, lengths = _training_data("poisson", seed=7)
    rng = np.random.default_rng(3)
    K = 3
    start, trans = rng.dirichlet(np.ones(K) * 3), rng.dirichlet(np.ones(K) * 3, size=K)
    lam = rng.uniform(1, 5, size=(K, 2))
    ref = hmm.PoissonHMM(K, n_iter=10, tol=-np.inf, init_params="", params="stl", lambdas_prior=0.0,
                         lambdas_weight=0.0)
    ref.startprob_, ref.transmat_, ref.lambdas_ = start, trans, lam
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X.astype(int), lengths)
        ours = PoissonHMM(K, tol=0, max_iter=10, startprob_init=start, transmat_init=trans,
                          lambdas_init=lam).fit(X, lengths)
    _hmmlearn_agree(ours, ref, X.astype(int), lengths, 10, discrete=True)
    np.testing.assert_allclose(ours.lambdas_, ref.lambdas_, rtol=1e-6)


def test_arhmm_recovers_ar_matrices():
    rng = np.random.default_rng(0)
    K, D = 2, 2
    coefs = np.array([[[0.9, -0.2], [0.1, 0.7]], [[-0.5, 0.3], [0.2, -0.6]]])
    gen = ARHMM.from_params([0.5, 0.5], [[0.98, 0.02], [0.02, 0.98]], coefs=coefs,
                            intercepts=np.array([[1.0, -1.0], [-2.0, 2.0]]),
                            covars=np.array([np.eye(D) * 0.1, np.eye(D) * 0.2]))
    seqs = [gen.sample(1500, random_state=rng)[0] for _ in range(4)]
    X = np.concatenate(seqs)
    lengths = [1500] * 4
    fit = ARHMM(2, n_init=3, random_state=0, max_iter=200).fit(X, lengths)
    order = np.argsort(fit.intercepts_[:, 0])[::-1]  # match states by intercept sign
    np.testing.assert_allclose(fit.coefs_[order], coefs, atol=0.05)
    np.testing.assert_allclose(fit.intercepts_[order], gen.intercepts_, atol=0.15)
    np.testing.assert_allclose(fit.transmat_[np.ix_(order, order)], gen.transmat_, atol=0.02)


@pytest.mark.parametrize("family", FAMILIES)
def test_recovers_states(family):
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(42)
    K = 3
    if family == "gaussian":
        gen = GaussianHMM.from_params(np.ones(K) / K, 0.9 * np.eye(K) + 0.1 / K, means=[[0, 0], [5, 0], [0, 5]],
                                      covars=np.ones((K, 2)))
    elif family == "categorical":
        gen = CategoricalHMM.from_params(np.ones(K) / K, 0.95 * np.eye(K) + 0.05 / K,
                                         emissionprob=[[0.8, 0.1, 0.05, 0.05], [0.05, 0.8, 0.1, 0.05],
                                                       [0.05, 0.05, 0.1, 0.8]])
    elif family == "poisson":
        gen = PoissonHMM.from_params(np.ones(K) / K, 0.9 * np.eye(K) + 0.1 / K,
                                     lambdas=[[1, 10], [10, 1], [20, 20]])
    else:
        gen = ARHMM.from_params(np.ones(K) / K, 0.95 * np.eye(K) + 0.05 / K,
                                coefs=np.stack([np.eye(2) * a for a in (0.5, -0.5, 0.0)]),
                                intercepts=[[0, 0], [5, 5], [-5, 5]], covars=np.stack([np.eye(2) * 0.3] * 3))
    X, z = gen.sample(3000, random_state=rng)
    fit = CLASSES[family](K, n_init=4, random_state=0, max_iter=300).fit(X)
    assert adjusted_rand_score(z, fit.predict(X)) > 0.9


def test_long_sequence_is_finite():
    rng = np.random.default_rng(0)
    gen = GaussianHMM.from_params([0.5, 0.5], [[0.99, 0.01], [0.01, 0.99]], means=[[0.0], [3.0]], covars=[[1.0], [1.0]])
    z = emkit.inference.hmm.sample_states(gen.startprob_, gen.transmat_, 1_000_000, rng)
    X = (gen.means_[z] + rng.standard_normal((len(z), 1)))
    ll = gen.score(X)
    assert np.isfinite(ll) and ll < 0
    fit = GaussianHMM(2, max_iter=3, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit.fit(X)
    assert np.all(np.isfinite(fit.lower_bounds_))


def test_list_of_sequences_and_length_one():
    X, lengths = _training_data("gaussian", seed=1, n_seq=3, T=50)
    seqs = np.split(X, np.cumsum(lengths)[:-1])
    seqs.append(X[:1])
    a = GaussianHMM(3, random_state=0, max_iter=5, tol=0)
    b = GaussianHMM(3, random_state=0, max_iter=5, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a.fit(seqs)
        b.fit(np.concatenate(seqs), [50, 50, 50, 1])
    np.testing.assert_allclose(a.means_, b.means_)
    assert a.predict(X[:1]).shape == (1,)
    # a list of sequences gives one array per sequence; X with lengths gives one array (hmmlearn)
    for method, width in ((a.predict, ()), (a.predict_proba, (3,)), (a.filter, (3,))):
        per_seq = method(seqs)
        assert isinstance(per_seq, list) and [p.shape for p in per_seq] == [(len(q),) + width for q in seqs]
        whole = method(np.concatenate(seqs), [50, 50, 50, 1])
        assert isinstance(whole, np.ndarray) and whole.shape == (151,) + width
        np.testing.assert_allclose(np.concatenate(per_seq), whole)
    # all sequences of length 1
    c = GaussianHMM(2, random_state=0).fit(X[:40], np.ones(40, dtype=int))
    assert np.all(np.isfinite(c.transmat_))


def test_learn_subset_keeps_the_rest_fixed():
    X, lengths = _training_data("gaussian", seed=2)
    init = GaussianHMM(3, random_state=0, max_iter=2, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        init.fit(X, lengths)
        m = GaussianHMM(3, learn={"transmat", "means"}, startprob_init=init.startprob_, transmat_init=init.transmat_,
                        means_init=init.means_, covars_init=init.covars_, max_iter=5, tol=0).fit(X, lengths)
    np.testing.assert_array_equal(m.startprob_, init.startprob_)
    np.testing.assert_array_equal(m.covars_, init.covars_)
    assert not np.allclose(m.means_, init.means_)
    assert np.all(np.diff(m.lower_bounds_) >= -1e-10)


def test_sticky_prior_raises_self_transitions():
    X, lengths = _training_data("gaussian", seed=4)
    kw = dict(random_state=0, max_iter=100)
    plain = GaussianHMM(3, **kw).fit(X, lengths)
    sticky = GaussianHMM(3, kappa=500.0, **kw).fit(X, lengths)
    assert np.diag(sticky.transmat_).mean() > np.diag(plain.transmat_).mean()


def test_zero_transitions_stay_zero():
    X, lengths = _training_data("gaussian", seed=8)
    trans = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
    m = GaussianHMM(3, transmat_init=trans, random_state=0, max_iter=20).fit(X, lengths)
    assert m.transmat_[0, 2] == 0 and m.transmat_[1, 0] == 0 and m.transmat_[2, 1] == 0


def test_attributes_set_by_hand_and_from_params():
    m = GaussianHMM(2)
    with pytest.raises(NotFittedError):
        m.predict(np.zeros((3, 1)))
    m.startprob_ = np.array([0.5, 0.5])
    m.transmat_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    m.means_ = np.array([[0.0], [4.0]])
    m.covars_ = np.array([[1.0], [1.0]])
    m.n_features_in_ = 1
    X = np.array([[0.1], [0.2], [4.1], [3.9]])
    np.testing.assert_array_equal(m.predict(X), [0, 0, 1, 1])
    m.transmat_ = np.array([[0.9, 0.2], [0.2, 0.8]])
    with pytest.raises(ValueError, match="transmat_"):
        m.predict(X)
    f = GaussianHMM.from_params([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], means=[[0.0], [4.0]], covars=[1.0, 1.0],
                                covariance_type="spherical")
    np.testing.assert_array_equal(f.predict(X), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="needs"):
        GaussianHMM.from_params([1.0], [[1.0]], means=[[0.0]])


def test_model_files_round_trip(tmp_path):
    for family in FAMILIES:
        X, lengths = _training_data(family, seed=9)
        m = CLASSES[family](3, random_state=0, max_iter=20).fit(X, lengths)
        back = emkit.load(m.save(tmp_path / f"{family}.npz"))
        assert type(back) is type(m)
        np.testing.assert_array_equal(back.predict_proba(X, lengths), m.predict_proba(X, lengths))


def test_sample_shapes():
    rng = np.random.default_rng(0)
    for family in FAMILIES:
        m = make_model(family, 3, rng)
        X, z = m.sample(50, random_state=0)
        assert X.shape[0] == 50 and z.shape == (50,)
        X2, z2 = m.sample(50, random_state=0)
        np.testing.assert_array_equal(z, z2)
        _, z3 = m.sample(5, random_state=0, currstate=2)
        assert z3[0] == 2


# -- bad input ---------------------------------------------------------------------------------

def test_bad_lengths():
    X = np.zeros((10, 2))
    m = GaussianHMM(2)
    with pytest.raises(ValueError, match="sum to the number of rows"):
        m.fit(X, [3, 3])
    with pytest.raises(ValueError, match="positive"):
        m.fit(X, [10, 0])
    with pytest.raises(ValueError, match="positive"):
        m.fit(X, [12, -2])
    with pytest.raises(ValueError, match="integers"):
        m.fit(X, [2.5, 7.5])


def test_bad_symbols_and_counts():
    with pytest.raises(ValueError, match="outside the range"):
        CategoricalHMM(2, n_features=3).fit(np.array([[0], [1], [5]]))
    with pytest.raises(ValueError, match=">= 0"):
        CategoricalHMM(2).fit(np.array([[0], [-2], [1]]))  # -1 marks a missing symbol
    with pytest.raises(ValueError, match="integers"):
        CategoricalHMM(2).fit(np.array([[0.5], [1.0], [1.0]]))
    with pytest.raises(ValueError, match=r"shape \(n_samples, 1\)"):
        CategoricalHMM(2).fit(np.array([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match="non-negative"):
        PoissonHMM(2).fit(np.array([[1.0], [-2.0], [3.0]]))
    with pytest.raises(ValueError, match="integer counts"):
        PoissonHMM(2).fit(np.array([[1.5], [2.0], [3.0]]))
    m = CategoricalHMM(2, random_state=0).fit(np.array([[0], [1], [2], [1]]))
    with pytest.raises(ValueError, match="outside the range"):
        m.predict(np.array([[3]]))


@pytest.mark.parametrize("kw, match", [
    (dict(startprob_init=[0.5, 0.6]), "startprob_init must sum to 1"),
    (dict(startprob_init=[1.5, -0.5]), "startprob_init must be non-negative"),
    (dict(startprob_init=[1.0]), r"startprob_init must have shape \(2,\)"),
    (dict(transmat_init=[[0.5, 0.6], [0.5, 0.5]]), "row 0 sums to"),
    (dict(transmat_init=np.eye(3)), r"transmat_init must have shape \(2, 2\)"),
    (dict(means_init=np.zeros((3, 2))), r"means_init must have shape \(2, 2\)"),
    (dict(covars_init=-np.ones((2, 2))), "covars_init must be positive"),
    (dict(learn="stmc"), "not a string"),
    (dict(learn={"transmat", "bogus"}), "bogus"),
    (dict(kappa=-1.0), "kappa"),
    (dict(transmat_prior=-1.0), "transmat_prior"),
    (dict(algorithm="beam"), "algorithm"),
    (dict(covariance_type="weird"), "covariance_type"),
    (dict(n_components=0), "n_components"),
    (dict(tol=-1), "tol"),
])
def test_bad_hyperparameters(kw, match):
    X = np.random.default_rng(0).normal(size=(30, 2))
    kw = {"n_components": 2, **kw}
    with pytest.raises(ValueError, match=match):
        GaussianHMM(**kw).fit(X)


def test_bad_X():
    m = GaussianHMM(2)
    with pytest.raises(ValueError, match="infinity"):
        m.fit(np.array([[np.inf], [1.0], [2.0]]))
    with pytest.raises(ValueError, match="2-D"):
        m.fit(np.arange(5.0))
    fitted = GaussianHMM(2, random_state=0).fit(np.random.default_rng(0).normal(size=(30, 2)))
    with pytest.raises(ValueError, match="features"):
        fitted.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0)


def test_impossible_data_raises_clearly():
    m = PoissonHMM.from_params([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]], lambdas=[[0.0], [3.0]])
    assert m.score(np.array([[1.0]])) == -np.inf
    fit = PoissonHMM(2, startprob_init=[1.0, 0.0], transmat_init=[[1.0, 0.0], [0.0, 1.0]], lambdas_init=[[0.0], [3.0]])
    with pytest.raises(ValueError, match="zero probability"):
        fit.fit(np.array([[1.0], [2.0], [0.0]]))
