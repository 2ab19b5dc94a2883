"""Smoke test of the benchmark harness (benchmarks/run.py): it runs, covers every configuration, and
emkit agrees with the anchors.  No timing assertions: the numbers of a tiny run mean nothing."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"

CONFIGURATIONS = ["gmm-full", "gmm-diag", "gmm-spherical", "gmm-tied", "kmeans", "hmm-diag-long", "hmm-full-long",
                  "hmm-diag-short", "poisson-hmm", "categorical-hmm", "gmm-memory", "import-time", "threads"]


def test_benchmark_harness_smoke(tmp_path):
    out = tmp_path / "results.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, str(RUN), "--scale", "0.002", "--iters", "2", "--repeat", "1",
                           "--json", str(out)], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

    doc = json.loads(out.read_text())
    results = {r["name"]: r for r in doc["results"]}
    assert sorted(results) == sorted(CONFIGURATIONS)
    assert doc["configurations"] == list(results)
    for key in ("cpu_model", "cpu_count", "python", "versions", "date"):
        assert key in doc["machine"]

    for name, r in results.items():
        assert r["error"] is None, f"{name}: {r['error']}"
        if r.get("anchor") is not None:  # the anchor ran: agreement is mandatory
            assert r["agreement"] is not None, name
            assert math.isfinite(r["agreement"]) and r["agreement"] <= 1e-6, f"{name}: agreement {r['agreement']}"
            assert r["emkit"]["seconds_per_iter"] > 0 and r["anchor"]["seconds_per_iter"] > 0
    assert results["threads"]["threads"] is not None
    assert results["import-time"]["emkit"]["seconds"] > 0
    assert results["gmm-memory"]["emkit"]["memory"]["peak_increase_mb"] >= 0
