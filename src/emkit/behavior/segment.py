"""From pose-tracker files (or feature tables) to behavioural states, usage and dwell times.

:func:`segment` reads the recordings, computes features (:class:`~emkit.behavior.PoseFeatures`
for poses), fits an autoregressive or Gaussian HMM to all recordings at once (optionally
choosing the number of states), decodes each recording, and returns a :class:`Segmentation`
whose tables give per-frame states, per-recording usage and dwell times in seconds, and
transition counts; :meth:`Segmentation.write` writes them with the model file, an ethogram
of every recording and the HTML report.  Composes the public estimators only.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

from .features import PoseFeatures
from .recordings import Recording, read_poses, read_table_recordings

__all__ = ["MODELS", "Segmentation", "segment"]

#: Models :func:`segment` fits.
MODELS = ("arhmm", "gaussian-hmm")


def _check_fps(fps):
    if fps is None:
        return None
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0 or isinstance(fps, bool):
        raise ValueError(f"fps must be a positive number of frames per second; got {fps!r}")
    return value


def _template(model, n_states, kappa, order, n_init, max_iter, random_state):
    from ..models.hmm import ARHMM, GaussianHMM

    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    common = dict(kappa=float(kappa), n_init=n_init, max_iter=max_iter, random_state=random_state)
    if model == "arhmm":
        return ARHMM(n_states, order=order, **common)
    return GaussianHMM(n_states, covariance_type="full", **common)


def _parse_candidates(select):
    from ..selection import parse_candidates

    if select is None:
        return None
    if isinstance(select, str):
        return parse_candidates(select.strip(), "select")
    values = [int(v) for v in select]
    if not values or min(values) < 1:
        raise ValueError(f"select must list numbers of states >= 1; got {select!r}")
    return values


class Segmentation:
    """The result of :func:`segment`.

    Attributes
    ----------
    model : fitted ARHMM or GaussianHMM
        States are numbered by decreasing overall usage (state 0 is the most frequent).
    recordings : list of str
        Recording names, in order.
    lengths : ndarray (n_recordings,)
        Frames per recording.
    fps : float or None
        Frames per second (times and durations are in seconds when set, else in frames).
    features : PoseFeatures or None
        The fitted feature pipeline (pose files only).
    feature_names : list of str
    X : list of ndarray (T_i, n_features)
        Features of every recording (NaN where a keypoint was missing).
    states : ndarray (n_frames,)
        Viterbi state of every frame, recordings concatenated.
    probability : ndarray (n_frames,)
        Posterior probability of that state given the whole recording.
    selection : pandas.DataFrame or None
        The model-selection table when the number of states was chosen.
    seconds : float
        Time spent reading, computing features, fitting and decoding.
    notes : list of str
        What the user should know about the data (missing values and how the model used them).
    """

    def __init__(self, model, recordings, lengths, fps, features, feature_names, X, states, probability,
                 selection, seconds, notes=()):
        self.model, self.recordings, self.lengths, self.fps = model, recordings, lengths, fps
        self.features, self.feature_names, self.X = features, feature_names, X
        self.states, self.probability, self.selection, self.seconds = states, probability, selection, seconds
        self.notes = list(notes)

    @property
    def n_states(self):
        """Number of states K."""
        return int(self.model.n_components)

    def _frame_seconds(self):
        return 1.0 if self.fps is None else 1.0 / self.fps

    def states_table(self):
        """One row per frame: ``recording, frame, time_s, state, probability`` (a DataFrame)."""
        import pandas as pd

        frame = np.concatenate([np.arange(L) for L in self.lengths])
        return pd.DataFrame({"recording": np.repeat(np.array(self.recordings, dtype=object), self.lengths),
                             "frame": frame, "time_s": frame * self._frame_seconds(),
                             "state": self.states, "probability": self.probability})

    def _per_recording(self):
        bounds = np.concatenate([[0], np.cumsum(self.lengths)])
        for i, name in enumerate(self.recordings):
            yield name, self.states[bounds[i]:bounds[i + 1]]

    def summary(self):
        """One row per recording x state (a DataFrame).

        Columns: ``recording, state, usage`` (fraction of the recording's frames), ``bouts``
        (number of visits), ``dwell_mean_s, dwell_median_s, dwell_iqr_s`` (bout durations in
        seconds, or in frames without ``fps``; NaN for a state never visited).  A bout cut by
        the start or end of a recording counts with its observed length.
        """
        import pandas as pd

        from ..report import state_runs

        K, dt = self.n_states, self._frame_seconds()
        rows = []
        for name, s in self._per_recording():
            run_states, _, run_lengths = state_runs(s)
            for k in range(K):
                d = run_lengths[run_states == k] * dt
                q1, med, q3 = np.percentile(d, [25, 50, 75]) if d.size else (np.nan,) * 3
                rows.append({"recording": name, "state": k, "usage": float(np.mean(s == k)), "bouts": int(d.size),
                             "dwell_mean_s": float(d.mean()) if d.size else np.nan, "dwell_median_s": float(med),
                             "dwell_iqr_s": float(q3 - q1)})
        return pd.DataFrame(rows)

    def overall(self):
        """Each state pooled over every recording (a DataFrame indexed by ``state``).

        Columns: ``usage`` (fraction of all frames), ``bouts`` (visits in all recordings; a bout
        never spans two recordings) and ``dwell_mean_s`` (mean bout duration in seconds, or in
        frames without ``fps``; NaN for a state never visited).
        """
        import pandas as pd

        from ..report import state_runs

        K, dt = self.n_states, self._frame_seconds()
        runs = [state_runs(s) for _, s in self._per_recording()]
        run_states = np.concatenate([r[0] for r in runs])
        run_lengths = np.concatenate([r[2] for r in runs]) * dt
        bouts = np.bincount(run_states, minlength=K)
        total = np.bincount(run_states, weights=run_lengths, minlength=K)
        with np.errstate(invalid="ignore", divide="ignore"):
            dwell = np.where(bouts > 0, total / np.maximum(bouts, 1), np.nan)
        usage = np.bincount(self.states, minlength=K)[:K] / self.states.size
        return pd.DataFrame({"usage": usage, "bouts": bouts[:K], "dwell_mean_s": dwell[:K]},
                            index=pd.RangeIndex(K, name="state"))

    def transitions(self):
        """Counts of state switches per recording: ``recording, from_state, to_state, count`` (a DataFrame).

        One row per ordered pair of different states; a switch is a frame whose state
        differs from the previous frame's within the recording.
        """
        import pandas as pd

        from ..report import state_statistics

        K = self.n_states
        rows = []
        for name, s in self._per_recording():
            counts = state_statistics(s, n_states=K).transition_counts
            rows += [{"recording": name, "from_state": i, "to_state": j, "count": int(counts[i, j])}
                     for i in range(K) for j in range(K) if i != j]
        return pd.DataFrame(rows)

    def plot_ethogram(self):
        """States of every recording over time (a matplotlib Figure)."""
        from ..plot import plot_ethograms

        return plot_ethograms(self.states, self.lengths, names=self.recordings, fps=self.fps, n_states=self.n_states)

    def write(self, output_dir):
        """Write ``states.csv, summary.csv, transitions.csv, model.npz, ethogram.png, report.html``.

        Every file is written to a temporary file and all are moved into place together once
        complete: the outputs appear together or not at all.

        Returns
        -------
        dict
            Output kind -> path.
        """
        from .._atomic import Outputs
        from ..plot import save_figure
        from ..report import write_report

        os.makedirs(output_dir, exist_ok=True)
        path = {k: os.path.join(output_dir, f) for k, f in (
            ("states", "states.csv"), ("summary", "summary.csv"), ("transitions", "transitions.csv"),
            ("model", "model.npz"), ("ethogram", "ethogram.png"), ("report", "report.html"))}
        summary = self.summary()
        transitions = self.transitions()
        Xc = np.concatenate(self.X)
        with Outputs() as out, warnings.catch_warnings():  # all six appear together or not at all
            self.states_table().to_csv(out.path(path["states"]), index=False)
            summary.to_csv(out.path(path["summary"]), index=False)
            transitions.to_csv(out.path(path["transitions"]), index=False)
            self.model.save(out.path(path["model"]))
            save_figure(self.plot_ethogram(), out.path(path["ethogram"]))
            # the features are the model's own (same columns); the arrays passed on carry no names
            warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
            write_report(
                self.model, Xc, out.path(path["report"]), lengths=self.lengths, feature_names=self.feature_names,
                selection=self.selection, sequence_names=self.recordings, fps=self.fps,
                tables={"Usage and dwell times per recording": summary,
                        "State switches per recording": transitions[transitions["count"] > 0]},
                title=f"emkit behaviour segmentation: {len(self.recordings)} recordings, K={self.n_states}")
        return path


def _load(data, source_software, fps, columns, sequence_column, key, min_confidence):
    if isinstance(data, Recording):
        return [data]
    if isinstance(data, (list, tuple)) and data and all(isinstance(r, Recording) for r in data):
        return list(data)
    if isinstance(data, (str, os.PathLike)):
        data = [data]
    if not data:
        raise ValueError("data must name at least one file (or be a list of Recording)")
    if source_software is not None:
        if columns is not None or sequence_column is not None:
            raise ValueError("columns and sequence_column apply to tables, not to pose files (source_software="
                             f"{source_software!r})")
        return read_poses(data, source_software, fps=fps, min_confidence=min_confidence)
    return read_table_recordings(data, columns=columns, sequence_column=sequence_column, key=key, fps=fps)


def segment(data, *, source_software=None, fps=None, n_states=None, model="arhmm", kappa=0.0, order=1, pca=None,
            select=None, criterion="bic", anchor=None, heading=None, kinematics=True, min_confidence=None,
            columns=None, sequence_column=None, key=None, n_init=1, max_iter=100, random_state=None):
    """Segment recordings of behaviour into discrete states with an autoregressive or Gaussian HMM.

    Parameters
    ----------
    data : str, list of str, or list of Recording
        Pose files (with ``source_software``), or tables (CSV/TSV/Parquet/HDF5/.npy) whose
        numeric columns are features, or recordings already in memory.
    source_software : str, optional
        ``DeepLabCut``, ``SLEAP``, ``LightningPose``, ``Anipose`` or ``NWB``: read ``data`` as
        pose files with ``movement``.  Without it, ``data`` are tables.
    fps : float, optional
        Frames per second: times and durations in seconds (required for poses with
        kinematics to be in per-second units; without it, everything is in frames).
    n_states : int, optional
        Number of states K (required unless ``select`` is given).
    model : {"arhmm", "gaussian-hmm"}, default="arhmm"
        ``arhmm``: x_t ~ N(A_k x_{t-1} + b_k, Q_k), as keypoint-MoSeq; ``gaussian-hmm``: full covariances.
    kappa : float, default=0.0
        Sticky self-transition prior weight (pseudo-counts on the diagonal of the transition
        matrix); larger values give longer bouts.
    order : int, default=1
        Autoregressive order (``arhmm``).
    pca : int or float, optional
        Principal components of the egocentric pose to keep (see :class:`PoseFeatures`).
    select : str or iterable of int, optional
        Candidate numbers of states, e.g. ``"2-12"``: K is chosen by ``criterion``.
    criterion : {"bic", "aic", "icl", "heldout"}, default="bic"
    anchor, heading, kinematics
        Passed to :class:`PoseFeatures`.
    min_confidence : float, optional
        Pose files: keypoints tracked with a lower confidence become missing (see :func:`read_poses`).
    columns, sequence_column, key
        For tables: feature columns, the column naming recordings, the HDF5 dataset.
    n_init, max_iter, random_state
        Passed to the HMM.

    Returns
    -------
    Segmentation
    """
    t0 = time.perf_counter()
    fps = _check_fps(fps)
    candidates = _parse_candidates(select)
    if n_states is None and candidates is None:
        raise ValueError("give n_states (the number of states) or select (candidates like '2-12')")
    recordings = _load(data, source_software, fps, columns, sequence_column, key, min_confidence)
    if fps is None and recordings[0].fps is not None:
        fps = recordings[0].fps
    features, notes = None, []
    if recordings[0].positions is not None:
        features = PoseFeatures(recordings[0].keypoints, anchor=anchor, heading=heading, pca=pca,
                                kinematics=kinematics, fps=fps)
        X = features.fit_transform([r.positions for r in recordings])
        names = list(features.feature_names_)
    else:
        names = list(recordings[0].columns)
        X = [r.table for r in recordings]
        if columns is None:
            from ..io import counter_columns

            counters = counter_columns(np.concatenate(X), [x.shape[0] for x in X])
            if counters and len(counters) < len(names):
                notes.append(f"left out {', '.join(repr(names[j]) for j in counters)}: like a row index or "
                             "frame counter (integers increasing by one); name the columns to use it")
                keep = [j for j in range(len(names)) if j not in counters]
                X, names = [x[:, keep] for x in X], [names[j] for j in keep]
        if pca is not None:
            raise ValueError("pca applies to pose files (source_software=...); tables are used as they are")
        mean = np.nanmean(np.concatenate(X), axis=0)
        sd = np.nanstd(np.concatenate(X), axis=0)
        X = [(x - mean) / np.where(sd > 0, sd, 1.0) for x in X]
    lengths = np.array([x.shape[0] for x in X], dtype=np.int64)
    template = _template(model, n_states or candidates[0], kappa, order, n_init, max_iter, random_state)
    table = None
    if candidates is not None:
        from ..selection import select as select_k

        result = select_k(template, X, candidates, criterion=criterion, random_state=random_state)
        hmm, table = result.best_model, result.table
    else:
        hmm = template.fit(X)
    Xc = np.concatenate(X)
    states = np.asarray(hmm.predict(Xc, lengths))
    hmm, states = _order_by_usage(hmm, states)
    post = np.asarray(hmm.predict_proba(Xc, lengths))
    probability = post[np.arange(states.shape[0]), states]
    hmm.feature_names_in_ = np.array(names, dtype=object)   # the model file remembers its columns
    return Segmentation(hmm, [r.name for r in recordings], lengths, fps, features, names, X, states, probability,
                        table, time.perf_counter() - t0, notes + _missing_notes(X, model, order))


def _missing_notes(X, model, order):
    """How much is missing, and how the model uses frames with missing values."""
    missing = np.concatenate([np.isnan(x).any(axis=1) for x in X])
    if not missing.any():
        return []
    values = float(np.mean(np.isnan(np.concatenate(X))))
    notes = [f"{100 * values:.1f}% of feature values are missing (untracked keypoints; kinematics at the first "
             f"frame): the model integrates them out, nothing is filled in"]
    if model == "arhmm":
        blind = np.concatenate([np.convolve(np.isnan(x).any(axis=1), np.ones(order + 1), "full")[:len(x)] > 0
                                for x in X])
        notes.append(f"arhmm: {100 * blind.mean():.0f}% of frames have a missing value in the frame or its "
                     f"{order} lag(s) and carry no emission evidence; --model gaussian-hmm uses the observed "
                     "coordinates of every frame")
    return notes


def _order_by_usage(model, states):
    """Relabel the states by decreasing usage (state 0 the most frequent)."""
    from ..selection import align_to

    K = int(model.n_components)
    perm = np.argsort(-np.bincount(states, minlength=K), kind="stable")
    inverse = np.argsort(perm)
    return align_to(model, model, perm=perm), inverse[states]
