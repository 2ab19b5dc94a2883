"""The emission protocol: what a family of per-state distributions implements to work in every
latent structure of emkit (mixtures and hidden Markov models), with every fitting mode
(batch, out-of-core, Dask, stochastic/online EM, restarts, warm starts).

A family is an object that holds *hyperparameters only* (a covariance type, a prior, a fixed
number of degrees of freedom); it never holds data, parameters or running statistics.  The
parameters of the K states are a separate, immutable object (usually a frozen dataclass of
arrays whose first axis is the state), and the statistics of weighted data are an additive
:class:`emkit.stats.Stats`.  EM then needs only these methods:

===========================================  ==================================================
method                                       contract and guarantee
===========================================  ==================================================
``log_likelihood(params, data)``             (n, K) array of ``log p(x_n | z_n = k)``.  Missing
                                             entries are integrated out (a row with nothing
                                             observed gets 0) or refused in ``check_data``.
``statistics(params, data, weights)``        a ``Stats`` of the data weighted by ``weights``
                                             (n, K).  **Additive**: the statistics of two
                                             chunks added equal those of the chunks together,
                                             and scaling them by ``c`` equals weighting every
                                             row by ``c`` (online EM mixes scaled statistics).
                                             ``params`` are the current parameters (they give
                                             conditional expectations of missing entries, or
                                             the latent scales of a Student-t); ``params=None``
                                             is the seeding pass (hard initial assignments).
``m_step(stats, params=None, learn=None)``   new parameters.  **Must not decrease** the
                                             expected complete-data log-likelihood
                                             ``J(theta) = E[log p(x, z | theta)]`` (plus
                                             ``log_prior``) that ``stats`` define, compared
                                             with ``params``: the exact maximiser, or any
                                             improving step (generalised EM; use
                                             :func:`improving_step`).  ``learn`` (a set of
                                             names from ``param_names``, None: all) lists what
                                             is re-estimated; the rest is kept from ``params``.
                                             A state without weight keeps its parameters.
``init_params(stats)``                       parameters from the statistics of the seeding
                                             pass (default: ``m_step(stats)``).  They must
                                             give every observation a finite likelihood.
``sample(params, z, rng)``                   one row per state of ``z`` (n,), an (n, D) array
                                             (a sequence, for families with memory).
``n_parameters(n_features)``                 free parameters of the K states (BIC, AIC).
===========================================  ==================================================

and these, which have defaults:

``prepare(X, lengths)``            the data as ``log_likelihood``/``statistics`` want it
                                   (default: ``X``); ``lengths`` are the sequence lengths, for
                                   families that look back in time.
``check_data(X)``                  validates ``X`` (n, D) at the public boundary and returns
                                   it (default: numbers; NaN only if ``handles_missing``).
``configured(X)``                  a copy with settings that depend on the data fixed (the
                                   number of symbols of a categorical family); default: self.
``configured_for(params)``         the same, from parameters (a model set by hand or loaded).
``n_features_of(params)``          data columns the parameters describe (default: last axis of
                                   the first public array).
``seeding_view(X)``                the rows k-means++ seeding looks at (default: ``X``): the
                                   generic seeding assigns each row to its nearest k-means++
                                   centre, runs ``statistics(None, ...)`` on those hard
                                   assignments and calls ``init_params``.
``log_prior(params)``              log prior density of MAP estimation (default 0: maximum
                                   likelihood); part of the objective EM reports.
``collapsed(params, occupancy)``   (K,) bool: states degenerate beyond emptiness (default:
                                   none; emptiness is detected for every family, see
                                   :mod:`emkit.collapse`).
``split(params, j, k)``            parameters with state ``k`` re-seeded as a perturbed copy of
                                   state ``j`` (collapse recovery); default None: not possible,
                                   so a collapse is reported instead of recovered.
``check_params(params, n_features)``  raise ``ValueError`` naming the bad parameter.
``conditional_expectations(params, X)``  optional: (K, n, D) ``E[x | observed, z = k]``;
                                   with it, ``impute`` is available.

Declarations (class attributes):

``param_names``     names ``learn`` may hold (e.g. ``("means", "covars")``).
``attributes``      ``{public name: params field}``: the arrays a user sees as fitted attributes
                    (``means_``), sets in ``*_init``/``from_params`` and finds in model files.
                    ``params_from(**arrays)`` builds parameters from them.
``handles_missing`` whether NaN (missing values) is accepted.

Families are registered by name with :func:`register_family`; model files store the name,
the hyperparameters (plain numbers and strings) and the parameter arrays, and loading looks
the name up among the families already imported -- nothing in a file can run code.  A family
defined outside emkit must therefore be imported before a model file that uses it is loaded.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import re

import numpy as np

from .._validation import check_array

_FAMILIES = {}
#: emkit's own families by registered name, with the module that registers each: imported when the
#: name is first looked up, so a fit with one family does not import (or compile) the others
_BUILTIN_FAMILIES = {"autoregressive": "autoregressive", "categorical": "categorical", "gaussian": "gaussian",
                     "negbinom": "negbinom", "poisson": "poisson", "studentt": "studentt", "vonmises": "vonmises"}
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
#: Names a family's ``attributes`` may not use: the estimators' own fitted attributes.
RESERVED_ATTRIBUTES = frozenset({
    "weights", "startprob", "transmat", "emission_params", "converged", "n_iter", "lower_bound", "lower_bounds",
    "init_lower_bounds", "n_features_in", "feature_names_in", "collapse_events", "n_recoveries", "n_batches"})


class EmissionFamily:
    """Base class of emission families (see the module documentation for the protocol).

    Subclasses implement ``log_likelihood``, ``statistics``, ``m_step``, ``sample`` and
    ``n_parameters`` and declare ``param_names`` and ``attributes``; the other methods have
    defaults.  The constructor takes hyperparameters only, stored under their own names
    (scikit-learn's convention: ``get_params``, ``set_params`` and ``repr`` are derived from
    the signature).  The number of states is bound by the estimator (:meth:`with_components`).
    """

    #: registered name (set by :func:`register_family`)
    family_name = None
    #: number of states, bound by the estimator through :meth:`with_components`
    n_components = None
    #: parameter names ``learn`` may hold
    param_names = ()
    #: public name -> field of the parameters object
    attributes = {}
    #: whether NaN marks a missing value the family integrates out
    handles_missing = False

    # -- hyperparameters ------------------------------------------------------------------------
    @classmethod
    def _hyperparameter_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name not in ("self", "n_components") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep=True):
        """The hyperparameters (constructor arguments) as a dict."""
        return {name: getattr(self, name) for name in self._hyperparameter_names()}

    def set_params(self, **params):
        """Set hyperparameters by name (scikit-learn's ``emission__name`` reaches here); returns self."""
        valid = self._hyperparameter_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"{name!r} is not a hyperparameter of {type(self).__name__}; valid: {valid}")
            setattr(self, name, value)
        return self

    def hyperparameters(self):
        """Hyperparameters as plain Python numbers and strings (what a model file stores)."""
        out = {}
        for name, value in self.get_params().items():
            if isinstance(value, np.generic):
                value = value.item()
            if not (value is None or isinstance(value, (bool, int, float, str))):
                raise TypeError(f"hyperparameter {name}={value!r} of {type(self).__name__} is not a plain number or "
                                "string, so it cannot be stored in a model file")
            out[name] = value
        return out

    def __repr__(self):
        params = self.get_params()
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        shown = [f"{k}={v!r}" for k, v in params.items()
                 if not (k in defaults and _same(defaults[k], v))]
        return f"{type(self).__name__}({', '.join(shown)})"

    def with_components(self, n_components):
        """A copy of this family bound to ``n_components`` states."""
        out = copy.copy(self)
        out.n_components = int(n_components)
        return out

    # -- data ------------------------------------------------------------------------------------
    def check_data(self, X):
        """``X`` (n, D) validated for this family (a clear ``ValueError`` otherwise)."""
        return check_array(X, "X", allow_nan=self.handles_missing)

    def configured(self, X):
        """A copy with the settings that depend on the (validated) data fixed; default: ``self``."""
        return self

    def configured_for(self, params):
        """A copy with the data-dependent settings taken from ``params`` (a model set by hand or loaded);
        default: ``self``."""
        return self

    def seeding_view(self, X):
        """The rows k-means++ seeding clusters (n, D'); default: ``X`` itself."""
        return X

    def prepare(self, X, lengths=None):
        """``X`` (n, D) as ``log_likelihood`` and ``statistics`` take it; default: unchanged."""
        return X

    # -- the EM contract -------------------------------------------------------------------------
    def log_likelihood(self, params, data):
        """``log p(x_n | z_n = k)``, (n, K)."""
        raise NotImplementedError(f"{type(self).__name__} must implement log_likelihood(params, data)")

    def statistics(self, params, data, weights):
        """Additive statistics (a :class:`emkit.stats.Stats`) of ``data`` weighted by ``weights`` (n, K)."""
        raise NotImplementedError(f"{type(self).__name__} must implement statistics(params, data, weights)")

    def m_step(self, stats, params=None, learn=None):
        """Parameters that do not decrease ``J`` compared with ``params`` (see the module documentation)."""
        raise NotImplementedError(f"{type(self).__name__} must implement m_step(stats, params, learn)")

    def init_params(self, stats):
        """Parameters from the statistics of the seeding pass; default: ``m_step(stats)``."""
        return self.m_step(stats)

    def log_prior(self, params):
        """Log prior density of the parameters (0: maximum likelihood)."""
        return 0.0

    def sample(self, params, z, rng):
        """One row per state in ``z`` (n,): an (n, D) array."""
        raise NotImplementedError(f"{type(self).__name__} must implement sample(params, z, rng)")

    def n_parameters(self, n_features):
        """Number of free parameters of the ``n_components`` states."""
        raise NotImplementedError(f"{type(self).__name__} must implement n_parameters(n_features)")

    # -- collapse (see emkit.collapse) -------------------------------------------------------------
    def collapsed(self, params, occupancy):
        """(K,) bool: states degenerate beyond emptiness; default: none."""
        return np.zeros(len(occupancy), dtype=bool)

    def split(self, params, j, k):
        """Parameters with state ``k`` re-seeded from state ``j``, or None (default) if the family cannot."""
        return None

    # -- parameters as arrays ----------------------------------------------------------------------
    def params_from(self, **arrays):
        """Parameters from the public arrays named in ``attributes`` (checked by :meth:`check_params`)."""
        expected = set(self.attributes)
        if set(arrays) != expected:
            raise ValueError(f"{type(self).__name__} parameters are {sorted(expected)}; got {sorted(arrays)}")
        raise NotImplementedError(f"{type(self).__name__} must implement params_from(**arrays)")

    def params_arrays(self, params):
        """``{public name: array}`` of ``params`` (the inverse of :meth:`params_from`)."""
        return {name: getattr(params, field) for name, field in self.attributes.items()}

    def n_features_of(self, params):
        """The number of data columns ``params`` describe; default: the last axis of the first public array."""
        first = next(iter(self.params_arrays(params).values()))
        return int(np.shape(first)[-1])

    def check_params(self, params, n_features):
        """Raise a ``ValueError`` naming the parameter if ``params`` are not valid for ``n_features``.

        The default checks that every public array is finite and has one entry per state on its
        first axis.
        """
        K = self.n_components
        for name, value in self.params_arrays(params).items():
            a = np.asarray(value)
            if a.dtype.kind not in "fiub":
                raise ValueError(f"{name} must be numeric; got dtype {a.dtype}")
            if K is not None and (a.ndim == 0 or a.shape[0] != K):
                raise ValueError(f"{name} must have one row per state ({K}) on its first axis; got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} must be finite; got NaN or infinity")


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False


# -- registry ------------------------------------------------------------------------------------

def register_family(name):
    """Class decorator: register an emission family under ``name`` (lowercase, e.g. ``"gamma"``).

    Registered families can be named in the CLI (``--emission NAME``) and stored in model
    files.  Registering a different class under a name already taken is an error; registering
    the same class again (a reloaded module) replaces it.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"a family name must be lowercase letters, digits, '_' or '-', starting with a letter; "
                         f"got {name!r}")

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, EmissionFamily)):
            raise TypeError(f"register_family({name!r}) decorates a subclass of emkit.emissions.EmissionFamily; "
                            f"got {cls!r}")
        if name in _BUILTIN_FAMILIES and cls.__module__ != _builtin_module(name):
            _import_builtin(name)  # the name is emkit's own even before its module is imported
        old = _FAMILIES.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"emission family name {name!r} is already registered to "
                             f"{old.__module__}.{old.__qualname__}")
        bad = set(cls.attributes) & RESERVED_ATTRIBUTES
        if bad:
            raise ValueError(f"{cls.__name__}.attributes uses names reserved for the estimators' own attributes: "
                             f"{sorted(bad)}")
        cls.family_name = name
        _FAMILIES[name] = cls
        return cls

    return decorate


def _builtin_module(name):
    return f"{__package__}.{_BUILTIN_FAMILIES[name]}"


def _import_builtin(name):
    """Import the module of emkit's own family ``name`` (it registers the family)."""
    importlib.import_module(_builtin_module(name))


def family_names():
    """Names of the registered families, sorted."""
    for name in _BUILTIN_FAMILIES:
        if name not in _FAMILIES:
            _import_builtin(name)
    return sorted(_FAMILIES)


def get_family(name):
    """The family class registered under ``name`` (a clear ``ValueError`` when there is none)."""
    if isinstance(name, str) and name not in _FAMILIES and name in _BUILTIN_FAMILIES:
        _import_builtin(name)
    cls = _FAMILIES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown emission family {name!r}; registered families: {', '.join(family_names())}. "
                         "A family defined outside emkit registers itself when its module is imported "
                         "(emkit.emissions.register_family): import it before loading a model file that uses it")
    return cls


def make_family(name, **hyperparameters):
    """An instance of the family registered under ``name`` with the given hyperparameters."""
    cls = get_family(name)
    valid = cls._hyperparameter_names()
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        raise ValueError(f"emission family {name!r} has no hyperparameter {', '.join(unknown)}; "
                         f"its hyperparameters are: {', '.join(valid) or 'none'}")
    return cls(**hyperparameters)


def check_family(emission, name="emission"):
    """``emission`` as a family instance: an :class:`EmissionFamily` instance or a registered name."""
    if isinstance(emission, str):
        return get_family(emission)()
    if isinstance(emission, type):
        raise TypeError(f"{name} must be an emission family instance such as {emission.__name__}(), not the class "
                        "itself")
    if not isinstance(emission, EmissionFamily):
        raise TypeError(f"{name} must be an emission family (an instance of a subclass of "
                        f"emkit.emissions.EmissionFamily, e.g. emkit.emissions.Gaussian()) or a registered family "
                        f"name ({', '.join(family_names())}); got {type(emission).__name__}: {emission!r}")
    return emission


# -- generalised M-steps ----------------------------------------------------------------------------

def improving_step(objective, current, proposal, *, max_halvings=40):
    """Backtrack from ``proposal`` towards ``current`` until the objective does not decrease.

    The one mechanism for M-steps without a closed form (generalised EM): a family proposes a
    step (Newton, gradient, fixed point...) and keeps ``current + t (proposal - current)`` with
    the largest ``t`` in ``1, 1/2, 1/4, ...`` for which ``objective`` is not lower than at
    ``current``; if none is found within ``max_halvings`` halvings, ``current`` is kept.  So
    the M-step never lowers ``J`` and EM stays monotone.

    Work in unconstrained coordinates (e.g. the log of a positive parameter) so that every
    point of the segment is valid.

    Parameters
    ----------
    objective : callable
        ``objective(theta)`` for ``theta`` of the shape of ``current``: a scalar, or an array
        (K,) of per-state objectives when the states are independent (row ``k`` of ``theta``
        then only affects entry ``k``); each state backtracks on its own.
    current, proposal : ndarray
        The current point and the proposed one, same shape; with per-state objectives the
        first axis is the state.
    max_halvings : int
        Largest number of halvings tried.

    Returns
    -------
    theta : ndarray
        The accepted point (shape of ``current``).
    halvings : ndarray of int
        Halvings each state needed (0: the proposal itself; ``-1``: none accepted, ``current``
        kept); a 0-d array for a scalar objective.
    """
    current = np.asarray(current, dtype=np.float64)
    proposal = np.asarray(proposal, dtype=np.float64)
    if current.shape != proposal.shape:
        raise ValueError(f"improving_step: proposal shape {proposal.shape} differs from current shape {current.shape}")
    base = np.asarray(objective(current), dtype=np.float64)
    per_state = base.ndim == 1
    if per_state and (current.ndim == 0 or current.shape[0] != base.shape[0]):
        raise ValueError(f"improving_step: a per-state objective returned {base.shape[0]} values for a point of "
                         f"shape {current.shape} (the first axis must be the state)")
    step = proposal - current
    expand = (slice(None),) + (None,) * (current.ndim - 1) if per_state else ()
    t = np.ones(base.shape)
    halvings = np.full(base.shape, -1, dtype=np.int64)
    out = current.copy()
    pending = np.ones(base.shape, dtype=bool)
    for i in range(max_halvings + 1):
        candidate = current + (t[expand] if per_state else t) * step
        value = np.asarray(objective(candidate), dtype=np.float64)
        ok = pending & (value >= base)  # NaN never passes
        if per_state:
            out[ok] = candidate[ok]
        elif ok:
            out = candidate
        halvings = np.where(ok, i, halvings)
        pending &= ~ok
        if not pending.any():
            break
        t = np.where(pending, 0.5 * t, t)
    return out, halvings
