"""Where the rows come from: in-memory arrays, memory maps, files read in chunks, Dask.

A *source* hands the EM driver chunks of data and knows how to run an E-step over all of
them: ``source.expectation(model, params)`` returns the summed :class:`~emkit.stats.Stats`.

* :class:`ArraySource` -- a numpy array or memory map (never copied whole: chunks are views,
  cast to float per chunk when the file holds integers); chunks run on the thread pool.
* :class:`TableSource` -- a CSV/TSV, Parquet or HDF5 file read chunk by chunk on every pass
  (see :func:`open_table`).
* :class:`DaskSource` -- a ``dask.array``: statistics are computed on the workers, where the
  blocks live, and tree-reduced; only parameters and statistics cross the network.

Row sources yield ``(X_chunk, sample_weight_chunk_or_None)``; sequence sources (for HMMs)
yield ``(X_chunk, lengths_chunk)`` with whole sequences in every chunk.
"""

from __future__ import annotations

import os

import numpy as np

from .em import expectation_local_chunks, imap_chunks, parallel_kernels_threadsafe
from .stats import reduce_stats

#: Rows read per chunk from files.
FILE_CHUNK_ROWS = 1 << 16


def sample_indices(N, n, rng):
    """``n`` distinct indices drawn uniformly from ``range(N)``, sorted, without an array of size N."""
    if n >= N:
        return np.arange(N)
    if N <= 4 * n:
        return np.sort(rng.choice(N, size=n, replace=False))
    picked = np.unique(rng.integers(0, N, size=n + n // 4 + 16))
    while picked.size < n:  # rare: too many repeats
        picked = np.union1d(picked, rng.integers(0, N, size=n))
    return np.sort(rng.choice(picked, size=n, replace=False))


def _as_float(chunk):
    chunk = np.asarray(chunk)
    if chunk.dtype not in (np.float32, np.float64):
        chunk = chunk.astype(np.float64)
    return chunk


class FileWatch:
    """The size and modification time of a data file, checked before every pass over it.

    A file rewritten while it is fitted (a memory-mapped ``.npy`` in particular, which can
    otherwise crash the process) raises a clear ``ValueError`` at the next pass.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._stamp = self._now()

    def _now(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def check(self):
        if self._now() != self._stamp:
            raise ValueError(f"{self.path} changed (size or modification time) while it was being read; a data file "
                             "must not change during a fit")

    @classmethod
    def of(cls, X):
        """A watch on the file behind a memory map (or a column view of one), else None."""
        X = getattr(X, "_X", X)
        name = getattr(X, "filename", None) if isinstance(X, np.memmap) else None
        return cls(name) if name else None


class ArraySource:
    """Rows of an in-memory array or memory map, in chunks of ``rows`` rows.

    Parameters
    ----------
    X : ndarray (n, D)
    sample_weight : ndarray (n,), optional
    rows : int
        Rows per chunk.
    """

    #: an array's columns have no names (see :class:`TableSource`)
    feature_names = None

    def __init__(self, X, sample_weight=None, rows=4096):
        self.X = X
        self.sample_weight = sample_weight
        self.rows = max(1, int(rows))
        self.n_features = X.shape[1]
        self._watch = FileWatch.of(X)

    @property
    def n_rows(self):
        return self.X.shape[0]

    def chunks(self):
        n, r, sw = self.X.shape[0], self.rows, self.sample_weight
        if self._watch is not None:
            self._watch.check()
        for s in range(0, n, r):
            yield _as_float(self.X[s:s + r]), None if sw is None else sw[s:s + r]

    def expectation(self, model, params):
        return _local_expectation(model, params, self.chunks())

    def sample(self, n, rng):
        """Up to ``n`` random rows (all rows if fewer) for initialisation: ``(X, sample_weight)``."""
        N = self.X.shape[0]
        if N <= n:
            return _as_float(self.X[:]), self.sample_weight
        idx = sample_indices(N, n, rng)
        sw = None if self.sample_weight is None else self.sample_weight[idx]
        return _as_float(self.X[idx]), sw


def _local_expectation(model, params, chunks):
    # a model with parallel kernels runs its chunks in turn on numba's fallback threading layer (asked
    # only when the pool would run chunks: a one-chunk E-step does not import numba for it)
    pool_allowed = parallel_kernels_threadsafe if getattr(model, "uses_parallel_kernels", False) else None
    return reduce_stats(imap_chunks(lambda *c: model.e_step(params, *c), chunks, pool_allowed))


def reservoir_sample(chunks, n, rng):
    """Uniform sample of ``n`` rows from an iterable of (X_chunk, w_chunk), in one pass."""
    reservoir, weights = None, None
    seen = 0
    for X, w in chunks:
        m = X.shape[0]
        if reservoir is None:
            reservoir = np.empty((n, X.shape[1]), dtype=np.float64)
            weights = np.ones(n)
        take = min(max(n - seen, 0), m)
        if take:
            reservoir[seen:seen + take] = X[:take]
            if w is not None:
                weights[seen:seen + take] = w[:take]
        if take < m:
            idx = np.arange(seen + take, seen + m)  # global indices of the remaining rows
            j = (rng.random(idx.size) * (idx + 1)).astype(np.int64)
            hit = np.flatnonzero(j < n)
            for h in hit:  # later rows overwrite earlier ones, as in sequential Algorithm R
                reservoir[j[h]] = X[take + h]
                if w is not None:
                    weights[j[h]] = w[take + h]
        seen += m
    if reservoir is None:
        raise ValueError("the data source is empty: no rows were read")
    k = min(seen, n)
    return reservoir[:k], (None if np.all(weights[:k] == 1) else weights[:k])


class TableSource:
    """Rows of a CSV/TSV, Parquet or HDF5 file, read in chunks on every pass.

    Use :func:`open_table` to make one.
    """

    def __init__(self, path, kind, columns, names, n_features, reader, rows=FILE_CHUNK_ROWS, named=True):
        self.path, self.kind, self.columns, self.names = path, kind, columns, names
        #: the selected columns' names when the file names its columns (a header), else None;
        #: a model fitted on the source records them as ``feature_names_in_``
        self.feature_names = list(names) if named else None
        self.n_features = n_features
        self._reader = reader
        self.rows = rows
        self.sample_weight = None
        self._watch = FileWatch(path)

    def chunks(self):
        self._watch.check()
        for X in self._reader(self.rows):
            yield _as_float(X), None

    def expectation(self, model, params):
        return _local_expectation(model, params, self.chunks())

    def sample(self, n, rng):
        return reservoir_sample(self.chunks(), n, rng)

    def __repr__(self):
        return f"TableSource({self.path!r}, kind={self.kind!r}, columns={self.names})"


def _select_columns(names, columns, path):
    if columns is None:
        return list(range(len(names)))
    idx = []
    for c in columns:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= c < len(names):
                raise ValueError(f"column index {c} out of range: {path} has {len(names)} columns")
            idx.append(int(c))
        elif c in names:
            idx.append(names.index(c))
        elif isinstance(c, str) and c.isdigit() and 0 <= int(c) < len(names):
            idx.append(int(c))
        else:
            raise ValueError(f"column {c!r} not found in {path}; available columns: {', '.join(map(str, names))}")
    return idx


def open_table(path, columns=None, *, key=None, rows=FILE_CHUNK_ROWS):
    """Open a data file for chunked reading without loading it whole.

    Parameters
    ----------
    path : str or PathLike
        ``.npy`` (memory-mapped), ``.csv`` / ``.tsv`` / ``.txt`` (needs pandas), ``.parquet`` /
        ``.pq`` (needs pyarrow), ``.h5`` / ``.hdf5`` (needs h5py: a 2-D dataset).
    columns : list of str or int, optional
        Columns to use, by name or 0-based index.
    key : str, optional
        HDF5 dataset name (default: the only 2-D dataset in the file).

    Returns
    -------
    ArraySource or TableSource
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path} is not a readable .npy file: {exc}") from None
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        if X.ndim != 2:
            raise ValueError(f"{path} must hold a 2-D array; got shape {X.shape}")
        names = [f"x{i}" for i in range(X.shape[1])]
        idx = _select_columns(names, columns, path)
        if idx != list(range(X.shape[1])):
            X = _ColumnView(X, idx)
        source = ArraySource(X, rows=rows)
        source.names = [names[i] for i in idx]
        source.path = path
        return source
    if ext in (".csv", ".tsv", ".txt"):
        return _csv_source(path, columns, rows, "\t" if ext == ".tsv" else None)
    if ext in (".parquet", ".pq"):
        return _parquet_source(path, columns, rows)
    if ext in (".h5", ".hdf5", ".hdf"):
        return _hdf5_source(path, columns, key, rows)
    raise ValueError(f"unsupported data file type {ext!r} for {path}; use .npy, .csv, .tsv, .parquet or .h5")


class _ColumnView:
    """Lazy column selection of a memory map: rows are read, then columns picked, per chunk."""

    def __init__(self, X, idx):
        self._X, self._idx = X, np.asarray(idx)
        self.shape = (X.shape[0], len(idx))
        self.dtype = X.dtype
        self.ndim = 2

    def __getitem__(self, rows):
        return np.asarray(self._X[rows])[..., self._idx]


def _need(module, extra):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ImportError(f"reading this file type needs {module}: pip install 'emkit[{extra}]'") from None


def csv_layout(path, sep=None):
    """Separator, header flag and column names of a delimited text file, from its first line.

    The separator is ``sep`` if given, else a tab, comma or semicolon found in the first line
    (a comma when there is none: one column).  The first line is a header unless every cell in
    it is a number; without a header the columns are named ``x0, x1, ...``.
    """
    try:
        with open(path, encoding="utf-8-sig") as fh:
            first = fh.readline().rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a text table (CSV/TSV): byte {exc.start} is not UTF-8 text") from None
    if "\0" in first:
        raise ValueError(f"{path} is not a text table (CSV/TSV): it holds binary data")
    if not first.strip():
        raise ValueError(f"{path} is empty")
    if sep is None:
        sep = next((c for c in ("\t", ",", ";") if c in first), ",")
    cells = [c.strip().strip('"').strip("'") for c in first.split(sep)]
    header = not all(_is_number(c) for c in cells)
    names = cells if header else [f"x{i}" for i in range(len(cells))]
    return sep, header, names


def _csv_source(path, columns, rows, sep):
    try:
        import pandas as pd
    except ImportError:
        return _csv_source_numpy(path, columns, rows, sep)
    sep, header, names = csv_layout(path, sep)
    idx = _select_columns(names, columns, path)
    order = np.argsort(np.argsort(idx))  # pandas returns the used columns in file order

    selected = [names[i] for i in idx]

    def reader(n):
        first_line = 2 if header else 1
        try:
            for chunk in pd.read_csv(path, sep=sep, header=0 if header else None, usecols=idx, chunksize=n,
                                     encoding="utf-8-sig"):
                values = numeric_block(chunk.iloc[:, order], selected, path, first_line)
                if values.dtype.kind == "f" and np.isnan(values).any():
                    _check_ragged(path, sep, len(names))
                first_line += values.shape[0]
                yield values
        except pd.errors.ParserError as exc:
            raise ValueError(f"{path}: could not parse: {' '.join(str(exc).split())}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} is not a text table (CSV/TSV): byte {exc.start} is not UTF-8 text") from None

    return TableSource(path, "csv", idx, [names[i] for i in idx], len(idx), reader, rows, named=header)


def numeric_block(frame, names, path, first_line=None):
    """A chunk of a table (a pandas DataFrame) as a numeric array; a non-numeric column is named."""
    import pandas as pd

    for j, name in enumerate(names):
        column = frame.iloc[:, j]
        if column.dtype == object or not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            converted = pd.to_numeric(column, errors="coerce")
            bad = np.flatnonzero(converted.isna().to_numpy() & column.notna().to_numpy())
            if bad.size:
                where = f" on line {first_line + bad[0]}" if first_line is not None else f" in row {bad[0]}"
                raise ValueError(f"{path}: column {name!r} holds non-numeric values (for example "
                                 f"{column.iloc[bad[0]]!r}{where}); choose numeric feature columns "
                                 "(--columns, or columns=...)")
    values = frame.to_numpy()
    if values.dtype == object:
        values = values.astype(np.float64)
    return values


def _check_ragged(path, sep, n_fields):
    """Name the first line whose number of fields differs from the first line's (a ragged table)."""
    with open(path, encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if line and len(line.split(sep)) != n_fields:
                raise ValueError(f"{path}: line {number} has {len(line.split(sep))} fields but the first line has "
                                 f"{n_fields} (rows of different lengths)")


def _csv_source_numpy(path, columns, rows, sep):
    """CSV reading without pandas (numeric cells only)."""
    sep, header, names = csv_layout(path, sep)
    idx = _select_columns(names, columns, path)

    def reader(n):
        with open(path, encoding="utf-8-sig") as fh:
            if header:
                fh.readline()
            while True:
                try:
                    block = np.loadtxt(fh, delimiter=sep, usecols=idx, ndmin=2, max_rows=n)
                except ValueError as exc:
                    raise ValueError(f"{path}: could not read numeric values: {exc}") from None
                if block.shape[0] == 0:
                    return
                yield block
                if block.shape[0] < n:
                    return

    return TableSource(path, "csv", idx, [names[i] for i in idx], len(idx), reader, rows, named=header)


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def _parquet_source(path, columns, rows):
    pq = _need("pyarrow.parquet", "io")
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable Parquet file: {exc}") from None
    names = list(pf.schema_arrow.names)
    idx = _select_columns(names, columns, path)
    selected = [names[i] for i in idx]

    def reader(n):
        for batch in pf.iter_batches(batch_size=n, columns=selected):
            values = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in selected])
            if values.dtype.kind not in "biuf":
                values = numeric_block(batch.to_pandas(), selected, path)
            yield values

    return TableSource(path, "parquet", idx, selected, len(idx), reader, rows)


def _hdf5_source(path, columns, key, rows):
    h5py = _need("h5py", "io")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path} is not a readable HDF5 file: {exc}") from None
    with f:
        if key is None:
            found = []
            f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim == 2 else None)
            if len(found) != 1:
                raise ValueError(f"{path} holds {len(found)} 2-D datasets ({', '.join(found[:5])}); choose one with key= (--key on the command line)")
            key = found[0]
        if key not in f:
            raise ValueError(f"dataset {key!r} not found in {path}")
        ds = f[key]
        if ds.ndim != 2:
            raise ValueError(f"dataset {key!r} in {path} must be 2-D; got shape {ds.shape}")
        named = "columns" in ds.attrs
        names = [str(c) for c in ds.attrs.get("columns", [f"x{i}" for i in range(ds.shape[1])])]
        n_rows = ds.shape[0]
    idx = _select_columns(names, columns, path)

    def reader(n):
        with h5py.File(path, "r") as fh:
            d = fh[key]
            for s in range(0, n_rows, n):
                yield d[s:s + n][:, idx]

    return TableSource(path, f"hdf5:{key}", idx, [names[i] for i in idx], len(idx), reader, rows, named=named)


class DaskSource:
    """Rows of a ``dask.array`` (n, D), kept on the workers; E-steps run where the blocks are."""

    def __init__(self, X, sample_weight=None, rows=4096):
        self.rows = rows
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D dask array; got {X.ndim}-D")
        if len(X.chunks[1]) != 1:
            X = X.rechunk({1: -1})
        self.X = X.persist()
        self.n_features = X.shape[1]
        self.sample_weight = None
        blocks = self.X.to_delayed().ravel().tolist()
        if sample_weight is not None:
            import dask.array as da

            sw = da.asarray(sample_weight).rechunk((self.X.chunks[0],)).persist()
            self.sample_weight = sw
            wblocks = sw.to_delayed().ravel().tolist()
        else:
            wblocks = [None] * len(blocks)
        self._blocks = list(zip(blocks, wblocks))

    @property
    def n_rows(self):
        return self.X.shape[0]

    def expectation(self, model, params):
        return _dask_expectation(expectation_local_chunks, model, params,
                                 [(Xb, wb, self.rows) for Xb, wb in self._blocks])

    def sample(self, n, rng):
        N = self.X.shape[0]
        if N <= n:
            X = self.X.compute()
            sw = None if self.sample_weight is None else self.sample_weight.compute()
            return _as_float(X), sw
        idx = sample_indices(N, n, rng)
        X = self.X[idx].compute()
        sw = None if self.sample_weight is None else self.sample_weight[idx].compute()
        return _as_float(X), sw


def _dask_expectation(func, model, params, blocks):
    """``func(model, params, *block)`` on the workers for every block, tree-reduced; the sum comes back."""
    import dask

    params_d = dask.delayed(params, traverse=False)  # sent once per iteration, not once per block
    model_d = dask.delayed(model, traverse=False)
    parts = [dask.delayed(func)(model_d, params_d, *block) for block in blocks]
    return dask.compute(_tree_sum(parts))[0]


def _tree_sum(parts):
    import dask
    import operator

    while len(parts) > 1:
        nxt = [dask.delayed(operator.add)(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    return parts[0]


class SequenceSource:
    """Whole sequences of an array or memory map (concatenated rows + ``lengths``), grouped
    into chunks of about ``frames`` frames (a chunk never splits a sequence)."""

    def __init__(self, X, lengths, frames=1 << 17, validate=None):
        self.X = X
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.n_features = X.shape[1]
        self.frames = frames
        self._validate = validate
        self._groups = sequence_groups(self.lengths, frames)
        self._watch = FileWatch.of(X)

    @property
    def n_rows(self):
        return self.X.shape[0]

    def chunks(self):
        if self._watch is not None:
            self._watch.check()
        for a, b, lens in self._groups:
            X = np.asarray(self.X[a:b])
            yield (X if self._validate is None else self._validate(X)), lens

    def expectation(self, model, params):
        return _local_expectation(model, params, self.chunks())

    def sample(self, n, rng):
        """Up to ``n`` random frames (for k-means++ seeding)."""
        N = self.X.shape[0]
        if N <= n:
            return _as_float(self.X[:])
        idx = sample_indices(N, n, rng)
        return _as_float(self.X[idx])


def sequence_groups(lengths, frames):
    """Group consecutive sequences into chunks of about ``frames`` frames: list of (start, stop, lengths)."""
    out = []
    start = 0
    i = 0
    n = len(lengths)
    while i < n:
        j = i
        total = 0
        while j < n and (total == 0 or total + lengths[j] <= frames):
            total += int(lengths[j])
            j += 1
        out.append((start, start + total, lengths[i:j]))
        start += total
        i = j
    return out


class DaskSequenceSource:
    """Sequences held in a ``dask.array`` (rows concatenated, with ``lengths``): blocks are
    re-chunked at sequence boundaries and E-steps run on the workers.  ``validate(block)``, if
    given, checks every block where it is read (on the workers) and returns it."""

    def __init__(self, X, lengths, frames=1 << 17, validate=None):
        lengths = np.asarray(lengths, dtype=np.int64)
        groups = sequence_groups(lengths, frames)
        X = X.rechunk((tuple(b - a for a, b, _ in groups), -1)).persist()
        self.X = X
        self.lengths = lengths
        self.n_features = X.shape[1]
        self.frames = frames
        self._validate = validate
        self._blocks = [(Xb, lens, validate) for Xb, lens in zip(X.to_delayed().ravel().tolist(), [g[2] for g in groups])]

    @property
    def n_rows(self):
        return self.X.shape[0]

    def expectation(self, model, params):
        return _dask_expectation(_sequence_e_step, model, params, self._blocks)

    def chunks(self):
        for Xb, lens, validate in self._blocks:
            X = np.asarray(Xb.compute())
            yield (X if validate is None else validate(X)), lens

    def sample(self, n, rng):
        N = self.X.shape[0]
        X = self.X.compute() if N <= n else self.X[sample_indices(N, n, rng)].compute()
        return _as_float(X if self._validate is None else self._validate(X))


def _sequence_e_step(model, params, X, lengths, validate=None):
    X = np.asarray(X)
    return model.e_step(params, X if validate is None else validate(X), lengths)


def is_dask_array(X):
    return type(X).__module__.startswith("dask.") and hasattr(X, "dask") and hasattr(X, "chunks")
