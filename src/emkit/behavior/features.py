"""Features a behaviour model needs, computed from keypoint positions.

The pipeline (:class:`PoseFeatures`), in order:

1. **Egocentric alignment.**  Every keypoint is expressed relative to an ``anchor`` keypoint
   and rotated so that the heading (the vector from ``heading[0]`` to ``heading[1]``) points
   along +x.  Coordinates that are zero by construction (the anchor itself, the lateral
   coordinate of a heading keypoint that is the anchor's partner) are dropped.  A frame whose
   anchor or heading keypoint is missing has no egocentric frame: all of its pose coordinates
   are NaN.  3-D poses are rotated about the vertical (z) axis; z is kept relative to the anchor.
2. **PCA** (optional): the egocentric coordinates projected on their principal axes, to
   ``pca`` components (an int) or to the fewest components explaining a fraction ``pca`` of
   the variance (a float in (0, 1)).  The axes are fitted on the frames where every
   coordinate is observed; a frame with a missing coordinate has no projection and all of
   its components are NaN (they are never filled in).
3. **Kinematics** (optional): speed of the anchor (length units per second) and angular
   velocity of the heading (radians per second), from consecutive frames; NaN where either
   frame is missing, and at the first frame.
4. **Standardisation**: each feature minus its mean, divided by its standard deviation,
   both taken over the observed values of every recording given to ``fit``.

Missing keypoints stay NaN from end to end: no value is interpolated or imputed; the
models' missing-data EM integrates the missing coordinates out.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["PoseFeatures", "egocentric", "kinematics"]


def _heading_angle(positions, i_from, i_to):
    """Heading angle (T,) in radians of the vector from keypoint i_from to i_to (NaN where missing)."""
    v = positions[:, i_to, :2] - positions[:, i_from, :2]
    return np.arctan2(v[:, 1], v[:, 0])


def egocentric(positions, anchor, heading):
    """Keypoints relative to the anchor, rotated so that the heading points along +x.

    Parameters
    ----------
    positions : ndarray (T, n_keypoints, n_space)
        Positions (n_space is 2 or 3), NaN where a keypoint was not tracked.
    anchor : int
        Index of the keypoint placed at the origin.
    heading : (int, int)
        Indices of the keypoints whose difference (``heading[1] - heading[0]``) defines +x.

    Returns
    -------
    ndarray (T, n_keypoints, n_space)
        Egocentric positions; a frame whose anchor or heading keypoints are missing is all NaN.
    """
    P = np.asarray(positions, dtype=np.float64)
    theta = _heading_angle(P, heading[0], heading[1])
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    rel = P - P[:, anchor:anchor + 1, :]
    out = rel.copy()
    out[:, :, 0] = c * rel[:, :, 0] + s * rel[:, :, 1]
    out[:, :, 1] = -s * rel[:, :, 0] + c * rel[:, :, 1]
    lost = ~np.isfinite(theta) | ~np.all(np.isfinite(P[:, anchor, :]), axis=1)
    out[lost] = np.nan
    return out


def kinematics(positions, anchor, heading, fps=None):
    """Speed of the anchor and angular velocity of the heading between consecutive frames.

    Parameters
    ----------
    positions : ndarray (T, n_keypoints, n_space)
    anchor : int
    heading : (int, int)
    fps : float, optional
        Frames per second: speeds in length units per second and radians per second
        (per frame without it).

    Returns
    -------
    ndarray (T, 2)
        ``[speed, angular_velocity]``; row 0 and rows next to a missing frame are NaN.
    """
    P = np.asarray(positions, dtype=np.float64)
    rate = 1.0 if fps is None else float(fps)
    out = np.full((P.shape[0], 2), np.nan)
    if P.shape[0] > 1:
        step = np.diff(P[:, anchor, :], axis=0)
        out[1:, 0] = np.sqrt(np.sum(step ** 2, axis=1)) * rate
        theta = _heading_angle(P, heading[0], heading[1])
        turn = np.angle(np.exp(1j * np.diff(theta)))  # wrapped to (-pi, pi]
        out[1:, 1] = turn * rate
    return out


class PoseFeatures:
    """Egocentric alignment, optional PCA, kinematics and standardisation of keypoint tracks.

    Parameters
    ----------
    keypoints : list of str
        Names of the keypoints, in the order of the positions' second axis.
    anchor : str, optional
        Keypoint placed at the origin (default ``heading[0]``).
    heading : (str, str), optional
        Keypoints ``(back, front)`` whose difference points forward (default: the last and
        the first keypoint, as in trackers' tail-to-nose skeletons).
    pca : int or float, optional
        Number of principal components (int >= 1) or fraction of variance to keep
        (float in (0, 1)); default: no PCA.
    kinematics : bool, default=True
        Append the anchor's speed and the heading's angular velocity.
    standardize : bool, default=True
        Scale every feature to zero mean and unit variance.
    fps : float, optional
        Frames per second (kinematics in per-second units).

    Attributes
    ----------
    feature_names_ : list of str
        Names of the output features, e.g. ``nose_x, nose_y, ..., speed, angular_velocity``.
    mean_, scale_ : ndarray (n_features,)
        Standardisation (zeros and ones when ``standardize=False``).
    pca_ : sklearn.decomposition.PCA or None
    """

    def __init__(self, keypoints, *, anchor=None, heading=None, pca=None, kinematics=True, standardize=True,
                 fps=None):
        self.keypoints = [str(k) for k in keypoints]
        if len(self.keypoints) < 2:
            raise ValueError(f"keypoints must name at least 2 keypoints (for a heading); got {self.keypoints}")
        if heading is None:
            heading = (self.keypoints[-1], self.keypoints[0])
        if isinstance(heading, str) or len(heading) != 2:
            raise ValueError(f"heading must be two keypoint names (back, front); got {heading!r}")
        self.heading = tuple(str(h) for h in heading)
        if self.heading[0] == self.heading[1]:
            raise ValueError(f"heading must name two different keypoints; got {self.heading}")
        self.anchor = str(anchor) if anchor is not None else self.heading[0]
        for what, name in (("anchor", self.anchor), ("heading", self.heading[0]), ("heading", self.heading[1])):
            if name not in self.keypoints:
                raise ValueError(f"{what} keypoint {name!r} is not among the keypoints: {', '.join(self.keypoints)}")
        if pca is not None:
            if isinstance(pca, bool) or not isinstance(pca, numbers.Real):
                raise ValueError(f"pca must be an int >= 1 or a fraction of variance in (0, 1); got {pca!r}")
            if isinstance(pca, numbers.Integral) or float(pca) >= 1:
                if float(pca) != int(pca) or pca < 1:
                    raise ValueError(f"pca must be an int >= 1 or a fraction of variance in (0, 1); got {pca!r}")
                pca = int(pca)
            elif not 0 < pca < 1:
                raise ValueError(f"pca must be an int >= 1 or a fraction of variance in (0, 1); got {pca!r}")
        self.pca = pca
        self.kinematics = bool(kinematics)
        self.standardize = bool(standardize)
        if fps is not None and not (isinstance(fps, numbers.Real) and np.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number of frames per second; got {fps!r}")
        self.fps = None if fps is None else float(fps)

    # -- pieces ------------------------------------------------------------------------------------
    def _indices(self):
        ix = self.keypoints.index
        return ix(self.anchor), (ix(self.heading[0]), ix(self.heading[1]))

    def _check_positions(self, positions, name="positions"):
        P = np.asarray(positions, dtype=np.float64)
        if P.ndim != 3 or P.shape[1] != len(self.keypoints) or P.shape[2] not in (2, 3):
            raise ValueError(f"{name} must have shape (n_frames, {len(self.keypoints)} keypoints, 2 or 3); "
                             f"got {P.shape}")
        if np.isinf(P).any():
            raise ValueError(f"{name} contains infinity; missing keypoints must be NaN")
        return P

    def _pose_columns(self, n_space):
        """(keypoint index, axis) pairs kept after alignment: those not zero by construction."""
        anchor, (back, front) = self._indices()
        cols = []
        for k in range(len(self.keypoints)):
            for a in range(n_space):
                if k == anchor:
                    continue
                if a == 1 and anchor in (back, front) and k in (back, front):
                    continue  # the heading partner of the anchor lies on the x axis
                cols.append((k, a))
        return cols

    def _pose(self, P):
        anchor, heading = self._indices()
        ego = egocentric(P, anchor, heading)
        cols = self._pose_columns(P.shape[2])
        names = [f"{self.keypoints[k]}_{'xyz'[a]}" for k, a in cols]
        return ego[:, [k for k, _ in cols], [a for _, a in cols]], names

    def _raw(self, P):
        X, names = self._pose(P)
        if self.pca_ is not None:
            complete = np.all(np.isfinite(X), axis=1)
            Z = np.full((X.shape[0], self.pca_.n_components_), np.nan)
            if complete.any():
                Z[complete] = self.pca_.transform(X[complete])
            X, names = Z, [f"pc{j + 1}" for j in range(Z.shape[1])]
        if self.kinematics:
            anchor, heading = self._indices()
            X = np.hstack([X, kinematics(P, anchor, heading, self.fps)])
            names = names + ["speed", "angular_velocity"]
        return X, names

    # -- estimator -------------------------------------------------------------------------------
    def fit(self, recordings):
        """Fit the PCA axes and the standardisation on a list of recordings.

        Parameters
        ----------
        recordings : list of ndarray (T_i, n_keypoints, n_space)

        Returns
        -------
        self
        """
        if isinstance(recordings, np.ndarray):
            recordings = [recordings]
        Ps = [self._check_positions(P, f"recordings[{i}]") for i, P in enumerate(recordings)]
        if not Ps:
            raise ValueError("recordings must hold at least one recording")
        self.pca_ = None
        if self.pca is not None:
            from sklearn.decomposition import PCA

            poses = np.concatenate([self._pose(P)[0] for P in Ps])
            complete = poses[np.all(np.isfinite(poses), axis=1)]
            if complete.shape[0] < 2:
                raise ValueError("pca needs at least 2 frames with every keypoint tracked; got "
                                 f"{complete.shape[0]}")
            if isinstance(self.pca, int) and self.pca > min(complete.shape):
                raise ValueError(f"pca={self.pca} components requested but the poses have only "
                                 f"{min(complete.shape)} dimensions")
            self.pca_ = PCA(n_components=self.pca, svd_solver="full").fit(complete)
        raws = [self._raw(P) for P in Ps]
        X = np.concatenate([r[0] for r in raws])
        self.feature_names_ = raws[0][1]
        if self.standardize:
            observed = np.isfinite(X).sum(axis=0)
            if np.any(observed == 0):
                bad = [n for n, c in zip(self.feature_names_, observed) if c == 0]
                raise ValueError(f"feature(s) {', '.join(bad)} are never observed (every frame NaN); check the "
                                 "anchor and heading keypoints and any confidence threshold")
            self.mean_ = np.nanmean(X, axis=0)
            sd = np.nanstd(X, axis=0)
            self.scale_ = np.where(sd > 0, sd, 1.0)
        else:
            self.mean_ = np.zeros(X.shape[1])
            self.scale_ = np.ones(X.shape[1])
        return self

    def transform(self, positions):
        """Features of one recording.

        Parameters
        ----------
        positions : ndarray (T, n_keypoints, n_space)

        Returns
        -------
        ndarray (T, n_features)
            NaN where a feature depends on a missing keypoint.
        """
        if not hasattr(self, "mean_"):
            raise ValueError("PoseFeatures is not fitted: call fit(recordings) first")
        X, _ = self._raw(self._check_positions(positions))
        return (X - self.mean_) / self.scale_

    def fit_transform(self, recordings):
        """``fit(recordings)`` then the list of ``transform(P)`` for each recording."""
        if isinstance(recordings, np.ndarray):
            recordings = [recordings]
        self.fit(recordings)
        return [self.transform(P) for P in recordings]
