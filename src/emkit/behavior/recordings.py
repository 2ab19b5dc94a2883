"""Recordings for behaviour segmentation: pose-tracker files (read by ``movement``) and tables.

A :class:`Recording` is one animal's track in one file: keypoint positions
``(n_frames, n_keypoints, n_space)`` for pose files, or a ready feature table
``(n_frames, n_features)`` for generic tables (accelerometers, precomputed features).
Pose files are read by the `movement <https://movement.neuroinformatics.dev>`_ package
(DeepLabCut .h5/.csv, SLEAP .slp/.h5 analysis files, LightningPose .csv, Anipose .csv,
NWB); a multi-animal file gives one recording per individual, named
``<file stem>_<individual>``.  Untracked keypoints are NaN.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Recording", "SOURCE_SOFTWARE", "read_poses", "read_table_recordings"]

#: ``source_software`` names accepted by :func:`read_poses` (``movement``'s names).
SOURCE_SOFTWARE = ("DeepLabCut", "SLEAP", "LightningPose", "Anipose", "NWB")
_ALIASES = {s.lower(): s for s in SOURCE_SOFTWARE}
_ALIASES.update({"dlc": "DeepLabCut", "lp": "LightningPose", "lightning-pose": "LightningPose"})


@dataclass
class Recording:
    """One animal's track in one file.

    Attributes
    ----------
    name : str
        File stem, or file stem + ``_`` + individual for multi-animal files.
    fps : float or None
        Frames per second.
    positions : ndarray (n_frames, n_keypoints, n_space) or None
        Keypoint positions (NaN where not tracked); None for tables.
    keypoints : list of str
        Keypoint names (pose files).
    table : ndarray (n_frames, n_features) or None
        Feature values (tables); None for pose files.
    columns : list of str
        Feature names of ``table``.
    source : str
        The file the recording came from.
    """

    name: str
    fps: float | None = None
    positions: np.ndarray | None = None
    keypoints: list = field(default_factory=list)
    table: np.ndarray | None = None
    columns: list = field(default_factory=list)
    source: str = ""

    @property
    def n_frames(self):
        """Number of frames."""
        return int((self.positions if self.positions is not None else self.table).shape[0])


def source_software_name(name):
    """``movement``'s spelling of a tracker name (case-insensitive; ``dlc`` and ``lp`` accepted)."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"source_software must be one of {', '.join(SOURCE_SOFTWARE)}; got {name!r}")
    return _ALIASES[key]


def _movement():
    try:
        from movement.io import load_dataset
    except ImportError:
        raise ImportError("reading pose-tracker files needs the movement package: "
                          "pip install 'emkit[behavior]'") from None
    return load_dataset


def _stem(path):
    base = os.path.basename(os.fspath(path))
    for suffix in (".analysis.h5", ".predictions.slp"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return os.path.splitext(base)[0]


def read_poses(paths, source_software, fps=None, min_confidence=None):
    """Read pose-tracker files with ``movement``: one :class:`Recording` per file and individual.

    Parameters
    ----------
    paths : str or list of str
        Pose files.
    source_software : str
        ``DeepLabCut``, ``SLEAP``, ``LightningPose``, ``Anipose`` or ``NWB`` (case-insensitive).
    fps : float, optional
        Frames per second of the videos.
    min_confidence : float, optional
        Keypoints whose tracker confidence is below this become missing (NaN), by
        ``movement.filtering.filter_by_confidence``.  Trackers report a confidence for every
        keypoint rather than leaving it out (DeepLabCut: a likelihood in [0, 1]; SLEAP's
        scores can exceed 1): choose the threshold for your tracker.

    Returns
    -------
    list of Recording
        In file order, individuals in the file's order.  Names are unique (a clash raises).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    software = source_software_name(source_software)
    load_dataset = _movement()
    out = []
    for path in paths:
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"pose file not found: {path}")
        try:
            ds = load_dataset(path, source_software=software, fps=fps)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{path} could not be read as a {software} pose file: {first}") from None
        position = ds["position"]
        if min_confidence is not None:
            from movement.filtering import filter_by_confidence

            position = filter_by_confidence(position, ds["confidence"], threshold=float(min_confidence))
        pos = position.transpose("time", "keypoints", "space", "individuals").values.astype(np.float64)
        keypoints = [str(k) for k in ds["keypoints"].values]
        individuals = [str(i) for i in ds["individuals"].values]
        file_fps = getattr(ds, "fps", None) or fps
        for j, ind in enumerate(individuals):
            name = _stem(path) if len(individuals) == 1 else f"{_stem(path)}_{ind}"
            out.append(Recording(name=name, fps=None if file_fps is None else float(file_fps),
                                 positions=np.ascontiguousarray(pos[..., j]), keypoints=keypoints, source=path))
    _check_unique([r.name for r in out])
    _check_same_keypoints(out)
    return out


def read_table_recordings(paths, *, columns=None, sequence_column=None, key=None, fps=None):
    """Read generic tables (CSV, TSV, Parquet, HDF5, .npy) as recordings of ready features.

    Parameters
    ----------
    paths : str or list of str
    columns : list of str, optional
        Feature columns (default: every numeric column except the sequence column).
    sequence_column : str, optional
        Column naming the recording of each row (rows of one recording contiguous); without
        it each file is one recording named after its stem.
    key : str, optional
        HDF5 dataset.
    fps : float, optional

    Returns
    -------
    list of Recording
    """
    from ..io import read_table

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    names0 = None
    for path in paths:
        path = os.fspath(path)
        X, names, lengths, ids = read_table(path, columns, sequence_column=sequence_column, key=key)
        if names0 is not None and names != names0:
            raise ValueError(f"{path} has columns {names}, but {paths[0]} has {names0}; every file needs the same "
                             "feature columns")
        names0 = names
        X = np.asarray(X, dtype=np.float64)
        if lengths is None:
            out.append(Recording(name=_stem(path), fps=fps, table=X, columns=list(names), source=path))
            continue
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        label = (lambda i: f"{_stem(path)}_{i}") if len(paths) > 1 else str
        for i, sid in enumerate(ids):
            out.append(Recording(name=label(sid), fps=fps, table=X[bounds[i]:bounds[i + 1]], columns=list(names),
                                 source=path))
    _check_unique([r.name for r in out])
    return out


def _check_unique(names):
    seen = set()
    for n in names:
        if n in seen:
            raise ValueError(f"two recordings are named {n!r}; give files distinct names")
        seen.add(n)


def _check_same_keypoints(recordings):
    first = recordings[0]
    for r in recordings[1:]:
        if r.keypoints != first.keypoints or r.positions.shape[2] != first.positions.shape[2]:
            raise ValueError(f"{r.source} has keypoints {r.keypoints} ({r.positions.shape[2]}-D) but {first.source} "
                             f"has {first.keypoints} ({first.positions.shape[2]}-D); segment recordings of one skeleton")
