"""Collapsed components and states: detection, recovery and the record of what happened.

EM with a covariance floor (``reg_covar``) is not an exact EM for any objective once a
component has shrunk onto a few (or identical) points: its covariance sits at the floor, its
density at those points spikes, and EM may then *lower* its objective.  A component or state
that EM leaves almost empty is wasted too.  Both are detected after every M-step:

* **empty**: its occupancy (expected number of samples or frames) is below
  ``MIN_OCCUPANCY`` (0.1%) of its fair share ``N / K``;
* **at the floor**: in some direction its covariance (Gaussian components, autoregressive noise)
  is at most ``FLOOR_FACTOR * reg_covar`` -- the floor makes up at least half of it, so the
  component's own spread there is below ``reg_covar`` -- while the data (all components
  together) varies more than ``SPREAD_FACTOR`` times as much in that direction.  A feature that
  is constant in the whole data set is not a collapse, and neither is a genuinely tight cluster
  whose spread is well above ``reg_covar`` (lower ``reg_covar`` for data on a very small scale).

What is done is chosen by ``on_collapse`` (every estimator fitted by EM has it):

``"recover"`` (default)
    The collapsed component is re-seeded by splitting the healthy component with the largest
    occupancy in two (means moved half a standard deviation apart along its main axis, weights,
    start and transition probabilities shared), and EM continues.  At most ``n_components``
    recoveries per run.  If the objective would still decrease (which only a component at the
    floor can cause), the run stops at the parameters with the higher objective.
``"warn"``
    EM runs as it would without detection; a warning names each collapsed component once.
``"raise"``
    :class:`emkit.exceptions.CollapseError` at the first collapse.

Detection runs in batch EM (``fit``); stochastic EM (``algorithm="stochastic"``,
``partial_fit``) does not look for collapses.  Every event is recorded in the fitted
``collapse_events_`` (and counted in ``n_recoveries_``).
``lower_bounds_`` has one entry per iteration; a recovery starts a new segment of it (the
first entry after a recovery may be lower than the last before): EM is monotone within each
segment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ON_COLLAPSE = ("recover", "warn", "raise")
#: A component or state whose occupancy is below this fraction of N / K is empty.
MIN_OCCUPANCY = 1e-3
#: A covariance within this factor of ``reg_covar`` in some direction is at the floor (2: the
#: component's own spread there is at most ``reg_covar``) ...
FLOOR_FACTOR = 2.0
#: ... when the data varies more than this factor times as much in that direction.
SPREAD_FACTOR = 100.0


@dataclass(frozen=True)
class CollapseEvent:
    """One collapse: at ``iteration`` (1-based; the M-step of that iteration produced it),
    ``component`` (None: not attributed) for ``reason``; ``action`` is "recovered", "warned" or
    "stopped"; ``source`` is the component split to re-seed it (recovered only)."""

    iteration: int
    component: int | None
    reason: str
    action: str
    source: int | None = None

    def as_dict(self):
        return asdict(self)

    def describe(self):
        who = "EM" if self.component is None else f"component {self.component}"
        text = f"iteration {self.iteration}: {who} {self.reason}"
        if self.action == "recovered":
            text += f"; re-seeded by splitting component {self.source}"
        elif self.action == "stopped":
            text += "; the run stopped at the parameters with the higher objective"
        return text


def empty_components(occupancy):
    """Boolean (K,): occupancy below ``MIN_OCCUPANCY`` of the fair share ``sum / K``."""
    occupancy = np.asarray(occupancy, dtype=np.float64)
    return occupancy < MIN_OCCUPANCY * occupancy.sum() / occupancy.size


def floor_collapsed(covariances, reference, reg_covar):
    """Boolean (K,): covariances at the ``reg_covar`` floor in a direction the data spans.

    Parameters
    ----------
    covariances : ndarray (K, D, D)
        Regularised covariances of the components.
    reference : ndarray (D, D)
        Covariance of the data (all components together).
    reg_covar : float
        The floor added to every covariance; 0 disables the test.
    """
    K = covariances.shape[0]
    out = np.zeros(K, dtype=bool)
    if not reg_covar > 0:
        return out
    floor = FLOOR_FACTOR * reg_covar
    for k in range(K):
        vals, vecs = np.linalg.eigh(covariances[k])
        U = vecs[:, vals <= floor]
        if U.shape[1]:
            spread = np.linalg.eigvalsh(U.T @ reference @ U).max()
            out[k] = spread > SPREAD_FACTOR * floor
    return out


def main_axis_offset(covariance):
    """Half a standard deviation along the main axis of ``covariance`` (D, D), shape (D,)."""
    vals, vecs = np.linalg.eigh(covariance)
    return 0.5 * np.sqrt(max(vals[-1], 0.0)) * vecs[:, -1]


def recover_pairs(collapsed, occupancy):
    """Pair each collapsed component with a healthy one to split: ``[(k, j), ...]``.

    Healthy components are used in decreasing order of occupancy, each at most once; collapsed
    components left without one are not in the list.
    """
    healthy = [int(j) for j in np.argsort(-np.asarray(occupancy), kind="stable") if not collapsed[j]]
    return list(zip((int(k) for k in np.flatnonzero(collapsed)), healthy))


def detect(occupancy, at_floor):
    """``{component: reason}`` of the collapsed components from occupancy (K,) and floor flags (K,)."""
    empty = empty_components(occupancy)
    reasons = {}
    for k in np.flatnonzero(empty | np.asarray(at_floor, dtype=bool)):
        reasons[int(k)] = ("is empty (occupancy {:.3g})".format(float(occupancy[k])) if empty[k]
                           else "collapsed onto a few points (covariance at the reg_covar floor)")
    return reasons
