"""Smoke test of the benchmark harness (benchmarks/run.py): it runs, reports every configuration it was
given, emkit agrees with every peer setting, and the README table is rendered from the run.  No timing
assertions: the numbers of a tiny run mean nothing."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"

# one configuration of every kind (k-means, Gaussian / Poisson / categorical HMM, GMM, cold start, memory,
# import, threads): each row kind's code runs; the other rows differ only in sizes (see --list below)
SMOKE = ["kmeans-lowd", "hmm-diag-1seq", "gmm-full-d100", "poisson-hmm", "categorical-hmm", "cold-cli-help",
         "gmm-memory", "import-time", "threads"]
ALL = ["kmeans-lowd", "kmeans", "hmm-diag-long", "hmm-diag-1seq", "hmm-diag-k50", "gmm-diag", "gmm-full-d100",
       "gmm-full", "cold-gmm", "cold-hmm", "cold-cli-fit", "cold-cli-help", "gmm-spherical", "gmm-tied",
       "hmm-full-long", "hmm-diag-short", "poisson-hmm", "categorical-hmm", "gmm-memory", "import-time", "threads"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def test_every_configuration_listed():
    proc = subprocess.run([sys.executable, str(RUN), "--list"], env=_env(), capture_output=True, text=True)
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert listed == ALL


def test_benchmark_harness_smoke(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(RUN), "--scale", "0.002", "--iters", "2", "--repeat", "1",
                           "--no-marginal", "--peer-blas", "default", "--only", ",".join(SMOKE), "--json", str(out)],
                          env=_env(), cwd=str(ROOT), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

    doc = json.loads(out.read_text())
    results = {r["name"]: r for r in doc["results"]}
    assert list(results) == SMOKE == doc["configurations"]
    for key in ("cpu_model", "cpu_count", "python", "versions", "date", "loadavg_start", "loadavg_end"):
        assert key in doc["machine"]

    for name, r in results.items():
        assert r["error"] is None, f"{name}: {r['error']}"
        if r["kind"] in ("gmm", "kmeans", "ghmm", "phmm", "chmm"):
            # every setting of the peer ran, and emkit agrees with each of them
            assert sorted(r["peers"]) == sorted(r["peer_settings"]), name
            assert r["peer"]["seconds_per_iter"] == min(p["seconds_per_iter"] for p in r["peers"].values())
            assert math.isfinite(r["agreement"]) and r["agreement"] <= 1e-6, f"{name}: agreement {r['agreement']}"
            assert r["emkit"]["seconds_per_iter"] > 0 and r["ratio"] > 0
            assert r["emkit"]["memory"]["peak_increase_mb"] >= 0
    assert sorted(results["kmeans-lowd"]["peers"]) == ["sklearn elkan", "sklearn lloyd"]
    assert sorted(results["hmm-diag-1seq"]["peers"]) == ["hmmlearn log", "hmmlearn scaling"]
    cold = results["cold-cli-help"]
    assert cold["emkit"]["seconds"] > 0 and cold["emkit"]["warm_seconds"] > 0 and cold["peer"] is None
    assert results["threads"]["threads"] is not None
    assert results["import-time"]["emkit"]["seconds"] > 0
    assert results["gmm-memory"]["emkit"]["memory"]["peak_increase_mb"] >= 0

    # the README table is rendered from the saved run, between its markers, and only there
    readme = tmp_path / "README.md"
    spec = importlib.util.spec_from_file_location("emkit_benchmarks_run", RUN)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    readme.write_text("# title\n\nbefore\n\n" + bench.README_START + "\nold table\n" + bench.README_END + "\n\nafter\n")
    bench.write_readme(doc, readme)
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "old table" not in text
    for r in doc["results"]:
        if r["kind"] in ("gmm", "kmeans", "ghmm", "phmm", "chmm", "cold"):
            assert f"| {r['desc']} |" in text
    assert text.count(bench.README_START) == 1 and text.count(bench.README_END) == 1
