"""One and two threads give bit-identical results (chunk statistics are summed in a fixed order), and
``EMKIT_NUM_THREADS=1`` means one thread for everything: emkit's pool, numba and BLAS."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, warnings
    import numpy as np
    import emkit
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40000, 5)) + rng.integers(0, 4, size=(40000, 1)) * 3
    out = {}
    for cov in ("full", "diag"):
        gm = emkit.GaussianMixture(4, covariance_type=cov, random_state=0, max_iter=5, tol=0).fit(X)
        out["gmm-" + cov] = [float(v).hex() for v in gm.lower_bounds_] + [float(v).hex() for v in gm.means_.ravel()]
    km = emkit.KMeans(6, random_state=0, max_iter=20).fit(X)
    out["kmeans"] = [float(km.inertia_).hex()] + [float(v).hex() for v in km.cluster_centers_.ravel()]
    Xw = np.concatenate([X, X ** 2, np.sin(X)], axis=1)  # 15 features: the Lloyd path with Yinyang bounds
    km = emkit.KMeans(24, random_state=0, max_iter=20).fit(Xw)
    out["kmeans-bounds"] = [float(km.inertia_).hex()] + [float(v).hex() for v in km.cluster_centers_.ravel()]
    hmm = emkit.GaussianHMM(3, random_state=0, max_iter=5, tol=0).fit(X[:20000], [5000] * 4)
    out["hmm"] = [float(v).hex() for v in hmm.lower_bounds_] + [float(v).hex() for v in hmm.transmat_.ravel()]
    import numba, threadpoolctl
    out["threads"] = [numba.get_num_threads()] + sorted(
        {m["num_threads"] for m in threadpoolctl.threadpool_info() if m["user_api"] == "blas"})
    print(json.dumps(out))
""")


def _run(threads):
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env["EMKIT_NUM_THREADS"] = str(threads)
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs")
def test_one_and_two_threads_agree_bitwise():
    one, two = _run(1), _run(2)
    # EMKIT_NUM_THREADS alone (numba and BLAS not told) makes numba and BLAS single-threaded too
    assert one.pop("threads") == [1, 1]
    assert two.pop("threads")[0] == 2
    for key in one:
        assert one[key] == two[key], key


def test_env_threads_is_checked(monkeypatch):
    from emkit import em

    monkeypatch.setenv("EMKIT_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="EMKIT_NUM_THREADS"):
        em.n_threads()
    monkeypatch.setenv("EMKIT_NUM_THREADS", "0")
    with pytest.raises(ValueError, match="EMKIT_NUM_THREADS"):
        em.n_threads()
    monkeypatch.setenv("EMKIT_NUM_THREADS", "3")
    assert em.n_threads() == 3


def test_chunk_thread_tolerates_numba_being_imported(monkeypatch):
    """A chunk starting while another chunk's first compiled kernel is importing numba (a partly initialised
    module in sys.modules) runs without touching it."""
    import types

    from emkit import em

    monkeypatch.setitem(sys.modules, "numba", types.ModuleType("numba"))
    assert em._single_threaded(lambda a, b: a + b, 1, 2) == 3
