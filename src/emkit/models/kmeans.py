"""K-means: hard EM on an isotropic Gaussian mixture (Lloyd's algorithm), seeded by greedy k-means++."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin

from .._base import BaseEstimator
from .._validation import (check_array, check_choice, check_float, check_int, check_n_features,
                           check_random_state, check_sample_weight, check_squares_finite)
from ..data import chunk_rows, row_slices
from ..em import OnlineState, StepSchedule, blas_single_threaded, map_chunks, online_update, run_stochastic_em
from ..exceptions import ConvergenceWarning
from .._registry import register
from .._lazy import LazyModule
from ..inference import _numpy_kernels as _npk
from ..sources import ArraySource
from ..stats import Stats, reduce_stats

_EMPTY = np.empty(0)
_k = LazyModule("emkit.inference._kernels")  # compiled kernels: imported (with numba) when first used


def _kernels(X, K):
    """The kernels for Lloyd passes over ``X`` (n, D) with ``K`` centres: the numpy twins on small
    data (see :data:`emkit.inference._numpy_kernels.SMALL_LLOYD_CELLS`), else the compiled ones."""
    return _npk if X.shape[0] * K * X.shape[1] <= _npk.SMALL_LLOYD_CELLS else _k


@dataclass
class KMeansStats(Stats):
    """Hard-assignment statistics: weight (K,), weighted sums (K, D), inertia and total weight of some rows."""

    counts: np.ndarray
    sums: np.ndarray
    inertia: float
    n_samples: float = 0.0


class HardMixture:
    """K-means as an EM model (hard assignments, isotropic equal-variance components) for the
    online-EM driver: parameters are the centres (K, D)."""

    def e_step(self, centers, X, sample_weight=None):
        return lloyd_step(X, centers, sample_weight)[1]

    def m_step(self, stats, centers):
        new = np.array(centers, dtype=np.float64, copy=True)
        nonempty = stats.counts > 0
        new[nonempty] = stats.sums[nonempty] / stats.counts[nonempty, None]
        return new

    def objective(self, stats, centers):
        return -stats.inertia / stats.n_samples


def _sq_distances(X, centers, centers_sq=None):
    """Squared Euclidean distances (n, K), clipped at zero."""
    if centers_sq is None:
        centers_sq = np.einsum("ij,ij->i", centers, centers)
    x_sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    d2 = x_sq[:, None] - 2.0 * (X @ centers.T) + centers_sq[None, :]
    np.maximum(d2, 0.0, out=d2)
    return d2


def assign(X, centers, sample_weight=None):
    """Labels (n,) of the nearest centre and the weighted squared distance of each row (n,)."""
    centers = np.asarray(centers, dtype=X.dtype)
    c_sq = np.einsum("ij,ij->i", centers, centers)
    rows = chunk_rows(centers.shape[0], 1)

    def one(sl):
        d2 = _sq_distances(X[sl], centers, c_sq)
        lab = d2.argmin(axis=1)
        return lab, d2[np.arange(lab.size), lab]

    parts = map_chunks(one, [(sl,) for sl in row_slices(X.shape[0], rows)])
    labels = np.concatenate([p[0] for p in parts])
    dist = np.concatenate([p[1] for p in parts]).astype(np.float64)
    if sample_weight is not None:
        dist = dist * sample_weight
    return labels, dist


def _refuse_missing(X):
    """K-means needs complete rows: NaN (missing values) get an error that points to GaussianMixture."""
    if X.dtype.kind == "f" and np.isnan(X).any():
        raise ValueError("X contains NaN (missing values): KMeans needs complete rows. GaussianMixture fits data with "
                         "missing values exactly (and its impute() fills them in); or remove such rows")
    return X


#: Complete rows (per cluster) that suffice to seed centres when some rows have missing values.
SEED_COMPLETE_ROWS_PER_CLUSTER = 10


def seeding_rows(X, n_clusters, sample_weight=None, name="X"):
    """Rows to place initial centres on when ``X`` (n, D) may hold NaN (missing values).

    Without NaN: ``X`` itself.  Otherwise the complete rows if there are at least
    ``SEED_COMPLETE_ROWS_PER_CLUSTER * n_clusters`` of them, else every row that observes
    something, its missing entries replaced by the mean of their column (for seeding only).

    Returns
    -------
    rows : ndarray (m, D)
    sample_weight : ndarray (m,) or None

    Raises
    ------
    ValueError
        If a feature is never observed, or fewer than ``n_clusters`` rows observe anything.
    """
    if X.dtype.kind != "f":
        return X, sample_weight
    nan = np.isnan(X)
    if not nan.any():
        return X, sample_weight
    informative = ~nan.all(axis=1)
    if informative.sum() < n_clusters:
        raise ValueError(f"{name} has only {int(informative.sum())} row(s) with an observed value (the others are "
                         f"all NaN); at least n_components={n_clusters} are needed to initialise")
    never = np.flatnonzero(nan.all(axis=0))
    if never.size:
        raise ValueError(f"{name}: feature {int(never[0])} has no observed value (all NaN); drop that column")
    complete = ~nan.any(axis=1)
    if complete.sum() >= SEED_COMPLETE_ROWS_PER_CLUSTER * n_clusters:
        keep, rows = complete, np.asarray(X[complete], dtype=np.float64)
    else:
        keep = informative
        rows = np.where(nan, np.nanmean(X, axis=0), X)[informative].astype(np.float64)
    return rows, None if sample_weight is None else sample_weight[keep]


def assign_observed(X, centers):
    """Labels (n,) of the nearest centre by mean squared difference over each row's observed coordinates.

    Rows without NaN get exactly the labels of :func:`assign`; rows with nothing observed get -1.
    """
    if X.dtype.kind != "f" or not np.isnan(X).any():
        return assign(X, centers)[0]
    centers = np.asarray(centers, dtype=np.float64)
    nan = np.isnan(X)
    obs = (~nan).astype(np.float64)
    Xf = np.where(nan, 0.0, X).astype(np.float64)
    d2 = (Xf * Xf).sum(axis=1)[:, None] - 2.0 * Xf @ centers.T + obs @ (centers * centers).T
    labels = (d2 / np.maximum(obs.sum(axis=1), 1.0)[:, None]).argmin(axis=1)
    labels[~obs.any(axis=1)] = -1
    return labels


def _lloyd_stats(X, centers, c_sq, sample_weight, sl):
    Xc = X[sl]
    G = Xc @ centers.T
    K, D = centers.shape
    labels = np.empty(Xc.shape[0], dtype=np.int64)
    sums = np.zeros((K, D))
    counts = np.zeros(K)
    sw = _EMPTY if sample_weight is None else sample_weight[sl]
    inertia = _kernels(Xc, K).lloyd_chunk(Xc, G, c_sq.astype(np.float64), sw, labels, sums, counts)
    n = float(Xc.shape[0]) if sample_weight is None else float(sw.sum())
    return labels, KMeansStats(counts=counts, sums=sums, inertia=float(inertia), n_samples=n)


def lloyd_step(X, centers, sample_weight=None, chunk_size=None):
    """One assignment + accumulation pass: labels (n,) and the summed :class:`KMeansStats`."""
    centers = np.asarray(centers, dtype=X.dtype)
    c_sq = np.einsum("ij,ij->i", centers, centers)
    rows = chunk_rows(centers.shape[0], 8, chunk_size)
    parts = map_chunks(lambda sl: _lloyd_stats(X, centers, c_sq, sample_weight, sl),
                       [(sl,) for sl in row_slices(X.shape[0], rows)])
    labels = np.concatenate([p[0] for p in parts])
    return labels, reduce_stats(p[1] for p in parts)


def kmeans_plusplus(X, n_clusters, rng, sample_weight=None, n_local_trials=None):
    """Greedy k-means++ seeding.

    At each step ``n_local_trials`` candidates (default ``2 + log(K)``) are drawn with
    probability proportional to their weighted squared distance to the nearest chosen
    centre, and the one that lowers the potential most is kept.

    Returns
    -------
    centers : ndarray (K, D) float64
    indices : ndarray (K,) int
    """
    n, D = X.shape
    w = np.ones(n) if sample_weight is None else sample_weight
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    centers = np.empty((n_clusters, D), dtype=np.float64)
    indices = np.empty(n_clusters, dtype=np.int64)
    first = rng.choice(n, p=w / w.sum())
    centers[0] = X[first]
    indices[0] = first
    closest = _sq_distances(X, centers[:1]).ravel()
    pot = float(closest @ w)
    for c in range(1, n_clusters):
        cum = np.cumsum(w * closest)
        if pot <= 0 or cum[-1] <= 0:  # fewer distinct points than clusters: any point will do
            cand = rng.choice(n, size=n_local_trials, p=w / w.sum())
        else:
            cand = np.searchsorted(cum, rng.uniform(size=n_local_trials) * cum[-1])
            np.clip(cand, 0, n - 1, out=cand)
        d_cand = _sq_distances(X, np.asarray(X[cand], dtype=np.float64)).T  # (trials, n)
        np.minimum(closest[None, :], d_cand, out=d_cand)
        pots = d_cand @ w
        best = int(np.argmin(pots))
        pot = float(pots[best])
        closest = d_cand[best]
        centers[c] = X[cand[best]]
        indices[c] = cand[best]
    return centers, indices


def _relocate_empty(X, stats, labels, centers_old, sample_weight):
    """Move empty clusters to the points farthest from their centres (scikit-learn's rule)."""
    empty = np.flatnonzero(stats.counts == 0)
    if empty.size == 0:
        return stats
    diff = X - centers_old[labels]
    dist = np.einsum("ij,ij->i", diff, diff)
    far = np.argsort(-dist, kind="stable")[: empty.size]
    counts, sums = stats.counts.copy(), stats.sums.copy()
    for new_id, idx in zip(empty, far):
        wgt = 1.0 if sample_weight is None else sample_weight[idx]
        old_id = labels[idx]
        sums[old_id] -= X[idx] * wgt
        counts[old_id] -= wgt
        sums[new_id] = X[idx] * wgt
        counts[new_id] = wgt
    return KMeansStats(counts=counts, sums=sums, inertia=stats.inertia, n_samples=stats.n_samples)


def _half_separation(centers):
    """Half the distance from each centre to its nearest other centre, (K,)."""
    K = centers.shape[0]
    if K == 1:
        return np.full(1, np.inf)
    from scipy.spatial.distance import cdist

    d = cdist(centers, centers)  # computed from the differences: exact enough for a bound
    np.fill_diagonal(d, np.inf)
    return 0.5 * d.min(axis=1)


def _over_chunks(func, n, rows=1 << 15):
    """``func(slice)`` over fixed chunks of rows on the thread pool; results in chunk order."""
    return map_chunks(func, [(sl,) for sl in row_slices(n, rows)])


#: Lloyd iterations use Yinyang bounds from this many features on, a fused full pass below.
#: Measured (CPU time of 15 iterations from random rows, 60 000 rows of overlapping Gaussian
#: blobs, one thread; fused / bounds, ms):  D=2: K=8 8.3/16.3, K=64 22.6/55.7, K=128 41/66;
#: D=4: K=8 12.9/20.3, K=64 49/67;  D=8: K=4 14.6/12.6, K=8 18.5/20.8, K=64 60/67, K=128 110/113;
#: D=10: K=4 22/12, K=8 24.2/25.3, K=64 77/60;  D=12: K=8 29/24, K=64 103/68;  D=16: K=4 31/28,
#: K=8 37/23, K=64 122/57;  D=32: K=8 116/48, K=64 265/115.  At low D a distance costs about as
#: much as a bound test and bounds fail for many rows of overlapping clusters, so the fused pass
#: wins at almost every K; from D=10 on the bounds win at almost every K.  K hardly moves the
#: crossover, so the rule is on D alone.
BOUNDS_MIN_FEATURES = 10

#: On the bounds path, reassignments rank the centres by a float32 product (:func:`yinyang_step`)
#: from this many centres x features on; below, the exact distances of :func:`yinyang_step_plain`
#: cost less.  Measured (CPU time of 15 iterations, 60 000 rows of overlapping blobs, one thread,
#: plain / ranked, ms): D=16: K=16 78/73, K=32 119/90, K=64 193/111; D=10 K=64 135/102;
#: D=32 K=8 133/98; below 256: D=16 K=8 47/54, D=10 K=8 34/43, D=12 K=4 24/31, D=12 K=16 46/49.
RANKED_MIN_WORK = 256


def _centre_groups(centers):
    """Groups of centres for Yinyang bounds: K // 10 groups (at least one, at most D so that the
    bounds take no more memory than the data) by a few Lloyd iterations on the centres
    themselves, from evenly spaced centres.  Returns group_of (K,)."""
    K, D = centers.shape
    n_groups = max(1, min(K // 10, D))
    if n_groups == 1:
        return np.zeros(K, dtype=np.int64)
    means = centers[np.linspace(0, K - 1, n_groups).astype(np.int64)].copy()
    for _ in range(5):
        group = _sq_distances(centers, means).argmin(axis=1)
        for g in range(n_groups):
            if (group == g).any():
                means[g] = centers[group == g].mean(axis=0)
    return np.unique(group, return_inverse=True)[1].astype(np.int64).ravel()


class _LloydPass:
    """One Lloyd E-step over all rows, chunk by chunk on the thread pool (a single barrier): labels
    (kept between passes), per-cluster sums and weights, and the number of labels that changed.

    With ``bounds`` the rows also keep Yinyang bounds between passes (:func:`yinyang_step`);
    otherwise each pass is a fused full assignment (:func:`lloyd_fused`).
    """

    def __init__(self, X, centers, sw, bounds):
        n = X.shape[0]
        self.X, self.sw, self.bounds = X, sw, bounds
        self.labels = np.zeros(n, dtype=np.int64)
        self.slices = [(sl,) for sl in row_slices(n, 1 << 15)]
        if bounds:
            self.group_of = _centre_groups(centers)
            G = int(self.group_of.max()) + 1
            self.upper = np.full(n, np.inf)
            self.ranked = centers.shape[0] * centers.shape[1] >= RANKED_MIN_WORK
            if self.ranked:
                self.glower = np.zeros((n, G), dtype=np.float32)  # rounded down: still lower bounds
                # running totals of the centres' moves and of each group's largest move (yinyang_step)
                self.drift = np.zeros(centers.shape[0])
                self.group_drift = np.zeros(G)
            else:
                self.glower = np.zeros((n, G))

    def __call__(self, centers, shift, with_inertia=False):
        """Returns sums (K, D), weights (K,), the number of labels changed and, ``with_inertia``, the
        inertia under the new labels (summed as :func:`_inertia` does; else 0)."""
        X, sw, labels = self.X, self.sw, self.labels
        K, D = centers.shape
        if self.bounds:
            group_shift = np.zeros(self.glower.shape[1])
            np.maximum.at(group_shift, self.group_of, shift)
            half = _half_separation(centers)
        if self.bounds and not self.ranked:
            def one(sl):
                sums, counts = np.zeros((K, D)), np.zeros(K)
                w = sw[sl] if sw.size else sw
                changed = _k.yinyang_step_plain(X[sl], centers, self.group_of, shift, group_shift, half, w,
                                                labels[sl], self.upper[sl], self.glower[sl], sums, counts)
                inertia = _k.weighted_inertia(X[sl], centers, labels[sl], w) if with_inertia else 0.0
                return sums, counts, changed, inertia
        elif self.bounds:
            self.drift += shift
            self.group_drift += group_shift

            def one(sl):
                sums, counts = np.zeros((K, D)), np.zeros(K)
                changed, inertia = _k.yinyang_step(X[sl], centers, self.group_of, self.drift, self.group_drift,
                                                   half, sw[sl] if sw.size else sw, labels[sl], self.upper[sl],
                                                   self.glower[sl], sums, counts, with_inertia)
                return sums, counts, changed, inertia
        else:
            c_sq = np.einsum("ij,ij->i", centers, centers)
            lloyd_fused = _kernels(X, K).lloyd_fused

            def one(sl):
                sums, counts = np.zeros((K, D)), np.zeros(K)
                changed, inertia = lloyd_fused(X[sl], centers, c_sq, sw[sl] if sw.size else sw, labels[sl], sums,
                                               counts, with_inertia)
                return sums, counts, changed, inertia

        parts = map_chunks(one, self.slices)
        sums, counts, changed, inertia = parts[0]
        for p in parts[1:]:  # in chunk order: the same sums for any number of threads
            sums = sums + p[0]
            counts = counts + p[1]
            changed += p[2]
            inertia += p[3]
        return sums, counts, changed, inertia


def _cluster_sums(X, labels, sw, K):
    cluster_sums = _kernels(X, K).cluster_sums

    def one(sl):
        sums, counts = np.zeros((K, X.shape[1])), np.zeros(K)
        cluster_sums(X[sl], labels[sl], sw[sl] if sw.size else sw, sums, counts)
        return sums, counts

    parts = _over_chunks(one, X.shape[0])
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def _inertia(X, centers, labels, sw):
    weighted_inertia = _kernels(X, centers.shape[0]).weighted_inertia
    parts = _over_chunks(lambda sl: weighted_inertia(X[sl], centers, labels[sl], sw[sl] if sw.size else sw),
                         X.shape[0])
    return float(sum(parts))


def lloyd(X, centers, *, sample_weight=None, max_iter=300, tol=1e-4, verbose=0):
    """Lloyd iterations from ``centers`` until labels stop changing or centres move less than ``tol``.

    Each iteration assigns every row to its nearest centre and moves the centres to the means of
    their rows, exactly as Lloyd's algorithm.  With few features (below
    :data:`BOUNDS_MIN_FEATURES`) every iteration is one fused pass (distances, nearest centre
    and the cluster sums together); with more, Yinyang bounds let most rows keep their label
    without computing distances once the centres settle.  Small data (see :func:`_kernels`) take
    the fused pass in numpy, whatever the number of features.  Empty clusters are moved to the rows
    farthest from their centres.  ``tol`` is absolute here (a squared distance);
    :class:`KMeans` scales it by the data's variance.

    Returns
    -------
    labels, inertia, centers, n_iter, converged
    """
    return _lloyd(X, centers, sample_weight, max_iter, tol, verbose)[:5]


def _lloyd(X, centers, sample_weight, max_iter, tol, verbose):
    """:func:`lloyd`, also returning the cluster sums (K, D) and weights (K,) of the final labels."""
    with blas_single_threaded():
        return _lloyd_iterations(np.asarray(X), np.array(centers, dtype=np.float64), sample_weight, max_iter, tol,
                                 verbose)


def _lloyd_iterations(X, centers, sample_weight, max_iter, tol, verbose):
    K, D = centers.shape
    sw = _EMPTY if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    # small data: the fused pass in numpy (nothing to compile; the bounds pay only on many rows)
    step = _LloydPass(X, centers, sw, bounds=D >= BOUNDS_MIN_FEATURES and _kernels(X, K) is _k)
    strict = converged = False
    shift = np.zeros(K)
    for it in range(1, max_iter + 1):
        sums, counts, changed, _ = step(centers, shift)
        stats = _relocate_empty(X, KMeansStats(counts=counts, sums=sums, inertia=np.nan), step.labels, centers,
                                sample_weight)
        nonempty = stats.counts > 0
        new_centers = centers.copy()
        new_centers[nonempty] = stats.sums[nonempty] / stats.counts[nonempty, None]
        shift = np.sqrt(((new_centers - centers) ** 2).sum(axis=1))
        shift_tot = float((shift**2).sum())
        centers = new_centers
        if verbose:
            print(f"  iteration {it}: centre shift {shift_tot:.3g}")
        if it > 1 and changed == 0:
            strict = converged = True
            break
        if shift_tot <= tol:
            converged = True
            break
    if strict:
        inertia = _inertia(X, centers, step.labels, sw)
    else:  # labels under the final centres
        sums, counts, _, inertia = step(centers, shift, with_inertia=True)
    return step.labels, float(inertia), centers, it, converged, sums, counts


@register
class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """K-means clustering by Lloyd's algorithm.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "random"} or ndarray (K, D), default="k-means++"
        Greedy k-means++ seeding, K distinct random rows, or given centres.
    n_init : int or "auto", default="auto"
        Restarts; the run with the lowest inertia is kept.  "auto" is 1 for
        k-means++ and given centres, 10 for "random".
    max_iter : int, default=300
    tol : float, default=1e-4
        Convergence when the squared centre shift falls below ``tol`` times the mean
        variance of the features (scikit-learn's meaning), or labels stop changing.
    verbose : int, default=0
    random_state : None, int or numpy.random.Generator

    Attributes
    ----------
    cluster_centers_ : ndarray (K, D)
    labels_ : ndarray (n,)
    inertia_ : float
        Sum of (weighted) squared distances to the nearest centre.
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray (n_features_in_,) of str
        Column names, when fitted on a DataFrame or a file with a header; checked by ``predict``,
        ``score`` and the like, and kept in model files.
    """

    _fitted_attributes = ("cluster_centers_", "labels_", "inertia_", "n_iter_", "n_features_in_")

    def __init__(self, n_clusters=8, *, init="k-means++", n_init="auto", max_iter=300, tol=1e-4, verbose=0,
                 random_state=None):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state

    def _check_params(self, X):
        K = check_int(self.n_clusters, "n_clusters", minimum=1)
        check_int(self.max_iter, "max_iter", minimum=1)
        check_float(self.tol, "tol", minimum=0.0)
        if isinstance(self.init, str):
            if self.init not in ("k-means++", "random"):
                raise ValueError(f"init must be 'k-means++', 'random' or an array of shape (n_clusters, n_features); got {self.init!r}")
            init = self.init
        else:
            init = check_array(self.init, "init").astype(np.float64)
            if init.shape != (K, X.shape[1]):
                raise ValueError(f"init must have shape ({K}, {X.shape[1]}) (n_clusters, n_features); got {init.shape}")
        if self.n_init == "auto":
            n_init = 10 if isinstance(init, str) and init == "random" else 1
        else:
            n_init = check_int(self.n_init, "n_init", minimum=1)
        if X.shape[0] < K:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={K}")
        return K, init, n_init

    def _initial_centers(self, X, K, init, rng, sample_weight):
        if not isinstance(init, str):
            return init
        if init == "k-means++":
            return kmeans_plusplus(X, K, rng, sample_weight)[0]
        idx = rng.choice(X.shape[0], size=K, replace=False)
        return np.asarray(X[idx], dtype=np.float64)

    def fit(self, X, y=None, sample_weight=None, *, algorithm="lloyd", batch_size=1024, schedule=None):
        """Cluster ``X`` (n, D); returns ``self``.

        Parameters
        ----------
        algorithm : {"lloyd", "stochastic"}, default="lloyd"
            ``"stochastic"``: mini-batch K-means by stochastic EM over shuffled batches of
            ``batch_size`` rows, ``max_iter`` passes (see :class:`emkit.em.StepSchedule`).
        """
        X = check_squares_finite(_refuse_missing(self._check_data(X, reset=True, allow_nan=True)))
        sw = check_sample_weight(sample_weight, X.shape[0])
        K, init, n_init = self._check_params(X)
        check_choice(algorithm, "algorithm", ("lloyd", "stochastic"))
        if algorithm == "stochastic":
            check_int(batch_size, "batch_size", minimum=1)
            schedule = StepSchedule.make(schedule)
        rng = check_random_state(self.random_state)
        tol = float(np.mean(np.var(X, axis=0))) * self.tol if self.tol > 0 else 0.0
        best = None
        for i in range(n_init):
            centers = self._initial_centers(X, K, init, rng, sw)
            if self.verbose:
                print(f"Initialization {i + 1}")
            if algorithm == "stochastic":
                centers, n_iter = self._stochastic(X, sw, centers, rng, batch_size, schedule)
                labels, dist = assign(X, centers, sw)
                inertia = float(dist.sum())
            else:
                labels, inertia, centers, n_iter, _, sums, counts = _lloyd(X, centers, sw, self.max_iter, tol,
                                                                           self.verbose)
            if best is None or inertia < best[1]:
                best = (labels, inertia, centers, n_iter, None if algorithm == "stochastic" else (sums, counts))
        labels, inertia, centers, n_iter, final_sums = best
        # the last Lloyd pass summed the rows under the final labels, chunk by chunk as _cluster_sums does
        sums, counts = _cluster_sums(X, labels, _EMPTY if sw is None else sw, K) if final_sums is None else final_sums
        self._online_state = OnlineState.from_batch(
            KMeansStats(counts=counts, sums=sums, inertia=inertia, n_samples=float(counts.sum())))
        n_distinct = int(np.count_nonzero(np.bincount(labels, minlength=K)))
        if n_distinct < K:
            warnings.warn(f"Number of distinct clusters ({n_distinct}) found smaller than n_clusters ({K}). "
                          "Possibly due to duplicate points in X.", ConvergenceWarning, stacklevel=2)
        self.cluster_centers_ = centers.astype(X.dtype, copy=False)
        self.labels_ = labels
        self.inertia_ = inertia
        self.n_iter_ = n_iter
        self.n_features_in_ = X.shape[1]
        return self

    def _stochastic(self, X, sw, centers, rng, batch_size, schedule):
        n = X.shape[0]
        rows = chunk_rows(self.n_clusters, 8)

        def batches(epoch):
            perm = rng.permutation(n)
            for s in range(0, n, batch_size):
                idx = np.sort(perm[s:s + batch_size])
                yield ArraySource(X[idx], None if sw is None else sw[idx], rows)

        result = run_stochastic_em(HardMixture(), centers, batches, schedule=schedule, tol=0.0,
                                   max_iter=self.max_iter, verbose=self.verbose)
        return result.params, result.n_iter

    def partial_fit(self, X, y=None, sample_weight=None, *, schedule=None):
        """Mini-batch K-means step (stochastic EM) on ``X``; can be called forever on a stream.

        The first call seeds the centres with k-means++ on its batch (or uses ``init`` if it is
        an array); ``labels_`` and ``inertia_`` describe the last batch.
        """
        fitted = getattr(self, "cluster_centers_", None) is not None
        X = check_squares_finite(_refuse_missing(self._check_data(X, reset=not fitted, allow_nan=True)))
        sw = check_sample_weight(sample_weight, X.shape[0])
        if fitted:
            check_n_features(X, self.cluster_centers_.shape[1])
            centers = np.asarray(self.cluster_centers_, dtype=np.float64)
            K = self.n_clusters
        else:
            K, init, _ = self._check_params(X)
        state = getattr(self, "_online_state", None)
        if (state is not None and state.schedule is not None and schedule is not None
                and StepSchedule.make(schedule) != state.schedule):
            raise ValueError("schedule cannot change between partial_fit calls; start a new model")
        StepSchedule.make(schedule)
        if not fitted:
            self._online_rng = getattr(self, "_online_rng", None) or check_random_state(self.random_state)
            centers = self._initial_centers(X, K, init, self._online_rng, sw)
        model = HardMixture()
        stats = ArraySource(X, sw, chunk_rows(K, 8)).expectation(model, centers)
        centers, state = online_update(model, centers, state, stats, schedule)
        labels, dist = assign(X, centers, sw)
        self.cluster_centers_ = centers.astype(X.dtype, copy=False)
        self.labels_, self.inertia_ = labels, float(dist.sum())
        self.n_features_in_ = X.shape[1]
        self._online_state = state
        self.n_iter_ = self.n_batches_ = state.n_updates
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).labels_

    def _validate_fitted(self):
        """Check the fitted attributes (set by hand or read from a file) before use."""
        K = check_int(self.n_clusters, "n_clusters", minimum=1)
        if isinstance(self.init, str) and self.init not in ("k-means++", "random"):
            raise ValueError(f"init must be 'k-means++', 'random' or an array of shape (n_clusters, n_features); "
                             f"got {self.init!r}")
        centers = np.asarray(self.cluster_centers_)
        if centers.ndim != 2 or centers.shape[0] != K:
            raise ValueError(f"cluster_centers_ must have shape ({K}, n_features); got {centers.shape}")
        if centers.dtype.kind not in "fiu" or not np.all(np.isfinite(centers)):
            raise ValueError("cluster_centers_ must be finite numbers; got NaN, infinity or non-numeric values")
        n_features = getattr(self, "n_features_in_", None)
        if n_features is not None and n_features != centers.shape[1]:
            raise ValueError(f"n_features_in_={n_features} does not match cluster_centers_ of shape {centers.shape}")

    def _check_X(self, X):
        self._check_is_fitted(["cluster_centers_"])
        self._validate_fitted()
        X = check_squares_finite(_refuse_missing(self._check_data(X, reset=False, allow_nan=True)))
        check_n_features(X, self.cluster_centers_.shape[1])
        return X

    @property
    def _n_features_out(self):
        """Number of columns of ``transform`` (one distance per centre), for ``get_feature_names_out``."""
        return self.cluster_centers_.shape[0]

    def predict(self, X):
        """Index of the nearest centre for each row, (n,)."""
        X = self._check_X(X)
        return assign(X, self.cluster_centers_)[0]

    def transform(self, X):
        """Euclidean distances to every centre, (n, K)."""
        X = self._check_X(X)
        return np.sqrt(_sq_distances(X, np.asarray(self.cluster_centers_, dtype=np.float64)))

    def fit_transform(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the inertia of ``X`` under the fitted centres."""
        X = self._check_X(X)
        sw = check_sample_weight(sample_weight, X.shape[0])
        return -float(assign(X, self.cluster_centers_, sw)[1].sum())
