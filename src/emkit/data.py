"""Chunking of rows and sequences."""

from __future__ import annotations

import numpy as np

#: Target number of float64 values in the (rows x K x D)-sized temporaries of one chunk.
CHUNK_ELEMENTS = 1 << 20


def chunk_rows(n_components, n_features, chunk_size=None):
    """Rows per chunk so that per-chunk temporaries stay small (memory O(chunk x K)).

    ``chunk_size`` (a positive integer) overrides the automatic choice.
    """
    if chunk_size is not None:
        from ._validation import check_int

        return check_int(chunk_size, "chunk_size", minimum=1)
    return int(np.clip(CHUNK_ELEMENTS // max(1, n_components * n_features), 256, 1 << 16))


def row_slices(n_rows, rows_per_chunk):
    """``slice`` objects covering ``range(n_rows)`` in chunks."""
    return [slice(s, min(s + rows_per_chunk, n_rows)) for s in range(0, n_rows, rows_per_chunk)]
