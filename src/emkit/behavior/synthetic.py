"""Synthetic animals with known behaviours, for tests, examples and benchmarks.

:func:`simulate_poses` moves a six-keypoint body (``nose, head, neck, body, hips,
tail_base``) through bouts of three behaviours, each with its own posture and motion:

* ``0`` resting: curled posture, no motion;
* ``1`` walking: stretched, straight posture with a gait sway, moving forward;
* ``2`` turning: bent posture, rotating to the left on the spot.

Bout durations are gamma-distributed (shape 4) around the means in ``mean_dwell_s``; the
next behaviour is drawn uniformly from the other two.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BEHAVIOURS", "KEYPOINTS", "simulate_poses"]

KEYPOINTS = ["nose", "head", "neck", "body", "hips", "tail_base"]
BEHAVIOURS = ("resting", "walking", "turning")
#: Distances of the keypoints from the body keypoint along a straight spine (pixels), nose first.
_SPINE = np.array([30.0, 20.0, 10.0, 0.0, -12.0, -24.0])


def _posture(behaviour, phase):
    """Egocentric keypoint positions (6, 2) of a posture, body keypoint at the origin, facing +x."""
    s = _SPINE.copy()
    if behaviour == 0:
        s = s * 0.75
        bend = 0.004
    elif behaviour == 1:
        s = s * 1.15
        bend = 0.0
    else:
        bend = 0.02
    x = s.copy()
    y = bend * s ** 2 * np.sign(s)
    if behaviour == 1:
        y = y + 3.0 * np.sin(phase) * (s / 30.0)
    return np.stack([x, y], axis=1)


def simulate_poses(n_frames, fps=30.0, *, mean_dwell_s=(2.0, 1.0, 0.7), noise=0.5, missing=0.1,
                   random_state=None):
    """Simulate one animal's keypoint track with known behaviour bouts.

    Parameters
    ----------
    n_frames : int
    fps : float, default=30
    mean_dwell_s : tuple of 3 float, default=(2.0, 1.0, 0.7)
        Mean bout durations in seconds of resting, walking and turning.
    noise : float, default=0.5
        Standard deviation of the tracking noise on every coordinate (pixels).
    missing : float, default=0.1
        Fraction of keypoints dropped (set to NaN) independently in every frame.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    positions : ndarray (n_frames, 6, 2)
        Keypoint positions in pixels (NaN where dropped), in the order of ``KEYPOINTS``.
    states : ndarray (n_frames,) of int
        The behaviour of every frame (index into ``BEHAVIOURS``).
    """
    from .._validation import check_random_state

    rng = check_random_state(random_state)
    n_frames = int(n_frames)
    dwell = np.asarray(mean_dwell_s, dtype=np.float64) * fps
    states = np.empty(n_frames, dtype=np.int64)
    t, k = 0, int(rng.integers(3))
    while t < n_frames:
        d = max(1, int(round(rng.gamma(4.0, dwell[k] / 4.0))))
        states[t:t + d] = k
        t += d
        k = int(rng.choice([j for j in range(3) if j != k]))
    speed = np.array([0.0, 150.0, 10.0]) / fps          # pixels per frame
    turn = np.array([0.0, 0.0, 2.5]) / fps               # radians per frame
    pos = np.array([320.0, 240.0])
    theta = rng.uniform(-np.pi, np.pi)
    out = np.empty((n_frames, len(KEYPOINTS), 2))
    for t in range(n_frames):
        k = states[t]
        theta += turn[k] + rng.normal(0, 0.01)
        pos = pos + speed[k] * np.array([np.cos(theta), np.sin(theta)])
        ego = _posture(k, 2 * np.pi * 4.0 * t / fps)
        c, s = np.cos(theta), np.sin(theta)
        out[t] = pos + ego @ np.array([[c, s], [-s, c]])
    out += rng.normal(0.0, noise, size=out.shape)
    if missing > 0:
        out[rng.random(out.shape[:2]) < missing] = np.nan
    return out, states
