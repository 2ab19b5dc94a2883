"""Small problems take numpy paths instead of the compiled kernels (nothing to import or compile for a
first fit): each numpy twin against its kernel, whole fits against the compiled paths to 1e-12, and a
fresh process that fits small models without importing numba."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emkit import GaussianHMM, GaussianMixture, KMeans
from emkit.emissions import gaussian as G
from emkit.inference import _kernels as K
from emkit.inference import _numpy_kernels as N
from emkit.inference import hmm as H

from conftest import make_blobs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def compiled(monkeypatch):
    """Every kernel compiled, whatever the size of the problem (the numpy paths switched off)."""
    for name in ("SMALL_RESP_CELLS", "SMALL_FULL_DISTANCES", "SMALL_OUTER_PRODUCTS", "SMALL_LLOYD_CELLS"):
        monkeypatch.setattr(N, name, -1)
    monkeypatch.setattr(G, "_SMALL_DIAG_CELLS", -1)
    monkeypatch.setattr(H, "_SMALL_CELLS", -1)


def _fitted(model):
    return {k: np.asarray(v) for k, v in vars(model).items()
            if k.endswith("_") and not k.startswith("_") and k not in ("collapse_events_", "feature_names_in_")}


def _assert_same_fit(a, b, rtol=1e-12):
    fa, fb = _fitted(a), _fitted(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        if fa[key].dtype.kind in "fc":
            np.testing.assert_allclose(fa[key], fb[key], rtol=rtol, atol=rtol * max(1.0, np.abs(fb[key]).max()),
                                       err_msg=key)
        else:
            np.testing.assert_array_equal(fa[key], fb[key], err_msg=key)


# -- the numpy twins against the kernels ----------------------------------------------------------------


@pytest.mark.parametrize("n, k", [(1, 3), (37, 2), (300, 5), (257, 17)])
def test_normalize_log_resp_twin(n, k):
    rng = np.random.default_rng(n)
    lp = rng.normal(scale=30.0, size=(n, k)) - 400.0
    lp[::5, 1] = -np.inf
    lp[::9, 0] = lp[::9, 1] - 750.0  # below exp(-708) of the row's largest: flushed to 0 by both
    if n > 3:
        lp[2] = -np.inf
    a, b = lp.copy(), lp.copy()
    na, nb = np.empty(n), np.empty(n)
    K.normalize_log_resp(a, na)
    N.normalize_log_resp(b, nb)
    np.testing.assert_allclose(nb, na, rtol=1e-15)
    np.testing.assert_allclose(b, a, rtol=1e-14, atol=1e-300)
    assert np.array_equal(a == 0.0, b == 0.0)


@pytest.mark.parametrize("D", [1, 2, 7])
def test_distance_and_moment_twins(D):
    rng = np.random.default_rng(D)
    X = rng.normal(size=(123, D)) * 3.0 + 10.0
    means = rng.normal(size=(4, D)) + 10.0
    U = np.triu(rng.normal(scale=0.3, size=(4, D, D))) + np.eye(D) * 1.5
    U_lower_garbage = U + np.tril(rng.normal(size=(4, D, D)), -1)  # only the upper triangle is used
    XT = np.ascontiguousarray(X.T)
    a, b = np.empty((123, 4)), np.empty((123, 4))
    K.full_mahalanobis_t(XT, means, U, a)
    N.full_mahalanobis_t(XT, means, U_lower_garbage, b)
    np.testing.assert_allclose(b, a, rtol=1e-13)
    P = rng.uniform(0.2, 3.0, size=(4, D))
    K.diag_mahalanobis(X, means, P, a)
    N.diag_mahalanobis(X, means, P, b)
    np.testing.assert_allclose(b, a, rtol=1e-13)
    obs = (rng.random(X.shape) > 0.3).astype(np.float64)
    Xz = X * obs
    M = means.copy()
    from emkit.inference import _missing_kernels as MK
    MK.diag_marginal_mahalanobis(Xz, obs, M, P, a)
    N.diag_marginal_mahalanobis(Xz, obs, M, P, b)
    np.testing.assert_allclose(b, a, rtol=1e-13)
    m = D * (D + 1) // 2
    oa, ob = np.empty((123, m)), np.empty((123, m))
    K.outer_products(X - 10.0, oa)
    N.outer_products(X - 10.0, ob)
    assert np.array_equal(oa, ob)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("D", [1, 3, 12])
def test_kmeans_twins_are_bit_identical(dtype, weighted, D):
    rng = np.random.default_rng(D)
    n, k = 301, 6
    X = (rng.normal(size=(n, D)) + rng.integers(0, 3, size=(n, 1)) * 2.0).astype(dtype)
    C = rng.normal(size=(k, D))
    c_sq = np.einsum("ij,ij->i", C, C)
    sw = rng.uniform(0.5, 2.0, size=n) if weighted else np.empty(0)
    out = []
    for mod in (K, N):
        labels = np.zeros(n, dtype=np.int64)
        labels[::2] = 3
        sums, counts = np.zeros((k, D)), np.zeros(k)
        changed = mod.lloyd_fused(X, C, c_sq, sw, labels, sums, counts, True)
        s2, c2 = np.zeros((k, D)), np.zeros(k)
        mod.cluster_sums(X, labels, sw, s2, c2)
        inertia = mod.weighted_inertia(X, C, labels, sw)
        l3, s3, c3 = np.empty(n, dtype=np.int64), np.zeros((k, D)), np.zeros(k)
        chunk_inertia = mod.lloyd_chunk(X, X @ C.astype(dtype).T, c_sq, sw, l3, s3, c3)
        out.append((changed, labels, sums, counts, s2, c2, inertia, l3, s3, c3, chunk_inertia))
    for a, b in zip(*out):
        assert np.array_equal(a, b)


# -- whole fits: the numpy paths against the compiled ones ------------------------------------------------


@pytest.mark.parametrize("cov, missing", [("full", False), ("tied", False), ("diag", False), ("spherical", False),
                                           ("diag", True), ("spherical", True)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.filterwarnings("ignore:Best performing initialization")
def test_small_gaussian_mixture_equals_compiled_path(cov, missing, weighted, request):
    """Every covariance type, sample weights and (diag, spherical: numpy all the way) missing values."""
    X, _, _ = make_blobs(n=300, D=3, K=3, seed=4, spread=1.5)
    if missing:
        X[np.random.default_rng(2).random(X.shape) < 0.1] = np.nan
    sw = np.random.default_rng(1).uniform(0.2, 3.0, size=X.shape[0]) if weighted else None
    kw = dict(covariance_type=cov, random_state=0, n_init=2, tol=1e-10, max_iter=200)
    small = GaussianMixture(3, **kw).fit(X, sample_weight=sw)
    request.getfixturevalue("compiled")
    full = GaussianMixture(3, **kw).fit(X, sample_weight=sw)
    assert small.n_iter_ == full.n_iter_ > 5
    _assert_same_fit(small, full)
    np.testing.assert_allclose(small.predict_proba(X), full.predict_proba(X), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("D", [2, 12])
def test_small_kmeans_equals_compiled_path(D, request):
    """Bit-identical to the compiled fused pass (from 10 features on, the compiled path uses bounds)."""
    from emkit.models import kmeans

    X, _, _ = make_blobs(n=400, D=D, K=4, seed=D, spread=3.0)
    small = KMeans(4, random_state=0, n_init=3).fit(X)
    request.getfixturevalue("compiled")
    request.getfixturevalue("monkeypatch").setattr(kmeans, "BOUNDS_MIN_FEATURES", 10**9)
    full = KMeans(4, random_state=0, n_init=3).fit(X)
    _assert_same_fit(small, full, rtol=0)


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_small_gaussian_hmm_equals_compiled_path(cov, request):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(m, 1.0, size=(40, 2)) for m in (0.0, 4.0, 0.0, 8.0, 4.0)] * 3)
    lengths = [100, 200, 300]
    kw = dict(covariance_type=cov, random_state=0, tol=1e-10, max_iter=50)
    small = GaussianHMM(3, **kw).fit(X, lengths)
    request.getfixturevalue("compiled")
    full = GaussianHMM(3, **kw).fit(X, lengths)
    assert small.n_iter_ == full.n_iter_
    _assert_same_fit(small, full, rtol=1e-10)


# -- a first small fit in a fresh process imports no numba -------------------------------------------------

FRESH = """
import json, sys, warnings
import numpy as np
import emkit
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
X = rng.normal(size=(272, 2)) + rng.integers(0, 2, size=(272, 1)) * 4.0
out = {}
for cov in ("full", "tied", "diag", "spherical"):
    m = emkit.GaussianMixture(2, covariance_type=cov, random_state=0).fit(X, sample_weight=rng.uniform(1, 2, 272))
    m.predict(X), m.score(X), m.bic(X)
    out[cov] = "numba" in sys.modules
Xm = X.copy()
Xm[::7, 1] = np.nan
for cov in ("diag", "spherical"):
    m = emkit.GaussianMixture(2, covariance_type=cov, random_state=0).fit(Xm)
    m.predict(Xm), m.impute(Xm)
    out[cov + "-missing"] = "numba" in sys.modules
km = emkit.KMeans(3, random_state=0).fit(X)
km.predict(X), km.score(X)
out["kmeans"] = "numba" in sys.modules
h = emkit.GaussianHMM(3, covariance_type="diag", random_state=0).fit(np.tile(X, (4, 1)), [272] * 4)
h.predict(X), h.score(X)
out["hmm"] = "numba" in sys.modules
print(json.dumps(out))
"""


def _in_fresh_process(code):
    """The JSON object printed last by ``code`` run in a new interpreter on this source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_small_fits_in_a_fresh_process_do_not_import_numba():
    out = _in_fresh_process(FRESH)
    assert not any(out.values()), out


LAZY_FAMILIES = """
import json, sys
import numpy as np
import emkit
from emkit.emissions import EmissionFamily, register_family
X = np.random.default_rng(0).normal(size=(100, 2))
gm = emkit.GaussianMixture(2, random_state=0).fit(X)
out = {"after_gmm": sorted(m for m in sys.modules if m.startswith("emkit.emissions."))}
from emkit.plot import plot_model
plot_model(gm, X)  # deciding which kind of model it is imports no other model module
out["plot_imported"] = sorted(m for m in ("emkit.models.hmm", "emkit.models.generic") if m in sys.modules)
class Mine(EmissionFamily):
    pass
try:  # a name of emkit's own family is taken even before that family's module is imported
    register_family("studentt")(Mine)
    out["refused"] = False
except ValueError as exc:
    out["refused"] = "already registered to emkit.emissions.studentt.StudentT" in str(exc)
from emkit.emissions import family_names, get_family
out["vonmises"] = get_family("vonmises").__module__
out["names"] = family_names()
print(json.dumps(out))
"""


def test_emission_families_and_model_modules_are_imported_when_first_used():
    out = _in_fresh_process(LAZY_FAMILIES)
    assert out["after_gmm"] == ["emkit.emissions.base", "emkit.emissions.gaussian", "emkit.emissions.missing"]
    assert out["plot_imported"] == []
    assert out["refused"] is True
    assert out["vonmises"] == "emkit.emissions.vonmises"
    assert out["names"] == ["autoregressive", "categorical", "gaussian", "negbinom", "poisson", "studentt", "vonmises"]
