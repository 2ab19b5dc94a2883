"""Plots (emkit.plot) and the HTML report (emkit.report)."""

import base64
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

from emkit import CategoricalHMM, GaussianHMM, GaussianMixture, KMeans
from emkit import plot as P
from emkit.datasets import load_faithful
from emkit.report import state_runs, state_statistics, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# -- fixtures: small fitted models --------------------------------------------------------------------
@pytest.fixture(scope="module")
def faithful():
    return load_faithful().data


@pytest.fixture(scope="module")
def gmm(faithful):
    return GaussianMixture(2, random_state=0).fit(faithful)


@pytest.fixture(scope="module")
def kmeans(faithful):
    return KMeans(3, random_state=0).fit(faithful)


@pytest.fixture(scope="module")
def hmm_data():
    gen = GaussianHMM.from_params(np.full(3, 1 / 3), np.array([[0.92, 0.05, 0.03], [0.04, 0.92, 0.04],
                                                               [0.03, 0.05, 0.92]]),
                                  means=np.array([[0.0, 0.0, 0.0], [4.0, 1.0, 0.0], [0.0, 4.0, 2.0]]),
                                  covars=np.ones((3, 3)), covariance_type="diag")
    X, _ = gen.sample(360, random_state=1)
    return X, np.array([200, 160])


@pytest.fixture(scope="module")
def ghmm(hmm_data):
    X, lengths = hmm_data
    return GaussianHMM(3, covariance_type="full", random_state=0).fit(X, lengths)


@pytest.fixture(scope="module")
def selection(hmm_data):
    X, lengths = hmm_data
    rows = []
    for k in (1, 2, 3, 4):
        m = GaussianHMM(k, random_state=0, max_iter=30).fit(X[:200])
        rows.append({"n_components": k, "bic": m.bic(X[:200]), "aic": m.aic(X[:200]),
                     "heldout": m.score(X[200:]) / 160})
    try:
        import pandas as pd
    except ImportError:  # the report also takes a dict of columns
        return {c: [r[c] for r in rows] for c in rows[0]}
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def cat_data():
    gen = CategoricalHMM.from_params(np.array([0.5, 0.5]), np.array([[0.9, 0.1], [0.1, 0.9]]),
                                     emissionprob=np.array([[0.7, 0.2, 0.1, 0.0], [0.0, 0.1, 0.3, 0.6]]))
    X, _ = gen.sample(240, random_state=2)
    return X, np.array([120, 120])


@pytest.fixture(scope="module")
def chmm(cat_data):
    X, lengths = cat_data
    return CategoricalHMM(2, random_state=0).fit(X, lengths)


def _check_png(path):
    data = open(path, "rb").read()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)


# -- state statistics ---------------------------------------------------------------------------------
def test_state_statistics_splits_runs_at_sequence_boundaries():
    #         seq 0: 0 0 1 1 1 | seq 1: 1 1 0 2 2 2 2
    states = np.array([0, 0, 1, 1, 1, 1, 1, 0, 2, 2, 2, 2])
    lengths = [5, 7]
    s = state_statistics(states, lengths, n_states=4)
    np.testing.assert_array_equal(s.usage, np.array([3, 5, 4, 0]) / 12)
    np.testing.assert_array_equal(s.visits, [2, 2, 1, 0])  # state 1: one run per sequence, not one merged run
    np.testing.assert_array_equal(s.mean_duration[:3], [1.5, 2.5, 4.0])
    assert np.isnan(s.mean_duration[3])
    expected = np.zeros((4, 4), dtype=int)
    for i, j in [(0, 0), (0, 1), (1, 1), (1, 1),                     # inside sequence 0
                 (1, 1), (1, 0), (0, 2), (2, 2), (2, 2), (2, 2)]:    # inside sequence 1
        expected[i, j] += 1
    np.testing.assert_array_equal(s.transition_counts, expected)
    assert s.transition_counts.sum() == len(states) - len(lengths)
    usage, mean_duration, visits, counts = s  # a plain tuple too
    # one sequence: the runs of state 1 merge
    one = state_statistics(states)
    np.testing.assert_array_equal(one.visits, [2, 1, 1])
    np.testing.assert_array_equal(one.mean_duration, [1.5, 5.0, 4.0])
    assert one.transition_counts[1, 1] == 4
    # a list of per-sequence arrays is the same as states + lengths; plot re-exports it
    lst = P.state_statistics([states[:5], states[5:]], n_states=4)
    for a, b in zip(lst, s):
        np.testing.assert_array_equal(a, b)
    rs, starts, rl = state_runs(states, lengths)
    np.testing.assert_array_equal(rs, [0, 1, 1, 0, 2])
    np.testing.assert_array_equal(starts, [0, 2, 5, 7, 8])
    np.testing.assert_array_equal(rl, [2, 3, 2, 1, 4])


def test_state_statistics_rejects_bad_input():
    with pytest.raises(ValueError, match="sum"):
        state_statistics([0, 1, 1], lengths=[2, 2])
    with pytest.raises(ValueError, match=">= 0"):
        state_statistics([0, -1])
    with pytest.raises(ValueError, match="n_states"):
        state_statistics([0, 3], n_states=2)
    with pytest.raises(ValueError, match="integer"):
        state_statistics([0.5, 1.0])


def test_matplotlib_is_imported_lazily():
    code = "import sys, emkit, emkit.plot, emkit.report; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_state_colors_are_consistent():
    assert P.state_colors(3) == P.state_colors(12)[:3]
    assert len(set(P.state_colors(20))) == 20 and len(P.state_colors(25)) == 25


# -- plots --------------------------------------------------------------------------------------------
def test_plot_model(tmp_path, faithful, gmm, kmeans, ghmm, hmm_data, chmm, cat_data):
    X, lengths = hmm_data
    for name, ax in [("gmm", P.plot_model(gmm, faithful)), ("km", P.plot_model(kmeans, faithful)),
                     ("hmm", P.plot_model(ghmm, X, lengths)), ("cat", P.plot_model(chmm, *cat_data))]:
        path = P.save_figure(ax, tmp_path / f"{name}.png")
        _check_png(path)
    x1 = faithful[:, :1]  # one feature: histogram with component densities
    _check_png(P.save_figure(P.plot_model(GaussianMixture(2, random_state=0).fit(x1), x1), tmp_path / "d1.png"))
    ax = P.plot_model(GaussianMixture(2, random_state=0).fit(X), X)  # D=3: projected
    assert ax.get_xlabel() == "PC 1"
    P.save_figure(ax, tmp_path / "proj.png")


def test_plot_ethogram(tmp_path, ghmm, hmm_data):
    X, lengths = hmm_data
    states = ghmm.predict(X, lengths)
    fig = P.plot_ethogram(states, X, lengths, feature_names=["a", "b", "c"])
    assert len(fig.axes) == 2 and fig.axes[0].get_shared_x_axes().joined(fig.axes[0], fig.axes[1])
    assert fig.axes[1].get_xlim() == (0.0, 200.0)  # first sequence by default
    _check_png(P.save_figure(fig, tmp_path / "etho.png"))
    fig = P.plot_ethogram(states, X[:, :1], lengths, time=np.arange(360) / 30.0, sequence=1)
    assert fig.axes[1].get_xlim()[0] == pytest.approx(200 / 30)
    _check_png(P.save_figure(fig, tmp_path / "etho1.png"))
    fig = P.plot_ethogram(states, X, lengths, sequence=1, window=(10, 60))  # zoom
    assert fig.axes[1].get_xlim() == (10.0, 60.0)
    _check_png(P.save_figure(fig, tmp_path / "etho_zoom.png"))
    fig = P.plot_ethogram(states, lengths=lengths)  # states only
    _check_png(P.save_figure(fig, tmp_path / "etho0.png"))
    with pytest.raises(ValueError, match="sequence"):
        P.plot_ethogram(states, X, lengths, sequence=2)


def test_plot_transition_matrix_png_and_svg(tmp_path, ghmm):
    ax = P.plot_transition_matrix(ghmm.transmat_)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9 and f"{ghmm.transmat_[0, 0]:.2f}" in texts
    _check_png(P.save_figure(ax, tmp_path / "tm.png"))
    svg = P.save_figure(P.plot_transition_matrix(ghmm.transmat_), tmp_path / "tm.svg")
    text = open(svg).read()
    assert len(text) > 1000 and "<svg" in text


def test_plot_durations_and_usage(tmp_path, ghmm, hmm_data):
    X, lengths = hmm_data
    states = ghmm.predict(X, lengths)
    _check_png(P.save_figure(P.plot_durations(states, lengths, n_states=3), tmp_path / "dur.png"))
    long = np.repeat(np.arange(400) % 3, np.random.default_rng(0).geometric(0.01, size=400))
    _check_png(P.save_figure(P.plot_durations(long), tmp_path / "dur_log.png"))  # log bins
    ax = P.plot_state_usage(states, n_states=4)
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, state_statistics(states, n_states=4).usage)
    _check_png(P.save_figure(ax, tmp_path / "usage.png"))


def test_plot_criterion(tmp_path, selection):
    ax = P.plot_criterion(selection)  # default: bic, minimum is best
    bic = np.asarray(selection["bic"])
    best_k = int(np.asarray(selection["n_components"])[np.argmin(bic)])
    assert ax.get_ylabel() == "bic" and f"best: K={best_k}" in [t.get_text() for t in ax.get_legend().get_texts()]
    _check_png(P.save_figure(ax, tmp_path / "bic.png"))
    ax = P.plot_criterion(selection, "heldout")  # maximum is best
    held = np.asarray(selection["heldout"])
    best_k = int(np.asarray(selection["n_components"])[np.argmax(held)])
    assert f"best: K={best_k}" in [t.get_text() for t in ax.get_legend().get_texts()]
    _check_png(P.save_figure(ax, tmp_path / "heldout.png"))
    with pytest.raises(ValueError, match="not a column"):
        P.plot_criterion(selection, "nope")


def test_plot_lower_bounds_still_works(tmp_path, gmm):
    _check_png(P.save_figure(P.plot_lower_bounds(gmm.lower_bounds_), tmp_path / "lb.png"))


# -- report -------------------------------------------------------------------------------------------
class _Checker(HTMLParser):
    """Checks that every non-void element is closed in order; collects ids and image sources."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.ids, self.images, self.errors, self.text = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else None}")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _check_report(path, expected_ids, absent_ids=()):
    doc = open(path, encoding="utf-8").read()
    assert doc.startswith("<!DOCTYPE html>")
    p = _Checker()
    p.feed(doc)
    p.close()
    assert not p.errors, p.errors[:3]
    assert not p.stack, f"unclosed: {p.stack[:3]}"
    assert len(p.ids) == len(set(p.ids)), "duplicate ids"
    for sid in expected_ids:
        assert sid in p.ids, f"missing section {sid!r}"
    for sid in absent_ids:
        assert sid not in p.ids
    assert p.images, "no images"
    for src in p.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_MAGIC)
    assert "http://" not in doc and "https://" not in doc
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", doc), "reference to an external resource"
    return doc, p


def test_report_gaussian_mixture(tmp_path, gmm, faithful):
    path = write_report(gmm, faithful, tmp_path / "sub" / "gmm.html", feature_names=["eruption & <min>", "waiting"],
                        title="Old Faithful <b>test</b>")
    assert path == str(tmp_path / "sub" / "gmm.html")
    doc, p = _check_report(path, ["summary", "parameters", "states", "fit", "clusters"], ["selection"])
    assert "<b>test</b>" not in doc and "Old Faithful &lt;b&gt;test&lt;/b&gt;" in doc
    assert "eruption &amp; &lt;min&gt;" in doc
    text = " ".join(p.text)
    assert "GaussianMixture" in text and "BIC" in text and "0.1.0" in text
    assert f"{gmm.bic(faithful):.1f}" in text


def test_report_kmeans(tmp_path, kmeans, faithful):
    doc, p = _check_report(write_report(kmeans, faithful, tmp_path / "km.html"),
                           ["summary", "parameters", "states", "fit", "clusters"], ["selection"])
    text = " ".join(p.text)
    assert "Cluster centres" in text and "Transition" not in text and "dwell" not in text


def test_report_gaussian_hmm_with_selection(tmp_path, ghmm, hmm_data, selection):
    X, lengths = hmm_data
    doc, p = _check_report(write_report(ghmm, X, tmp_path / "hmm.html", lengths=lengths, selection=selection),
                           ["summary", "parameters", "selection", "states", "fit", "clusters"])
    text = " ".join(p.text)
    assert "Transition matrix" in text and "mean duration" in text and "sequences" in text
    assert len(p.images) >= 8  # criteria, usage, transitions, ethogram, durations, clusters, fit
    assert 'class="best"' in doc


def test_report_categorical_hmm(tmp_path, chmm, cat_data):
    X, lengths = cat_data
    doc, p = _check_report(write_report(chmm, X, tmp_path / "cat.html", lengths=lengths),
                           ["summary", "parameters", "states", "fit"])
    assert "Emission probabilities" in " ".join(p.text)


def test_report_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError, match="GaussianMixture"):
        write_report(object(), np.zeros((3, 2)), tmp_path / "x.html")
