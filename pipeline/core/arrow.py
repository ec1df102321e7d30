"""Arrow helpers the per-batch work at a million files depends on."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

# Up to this many keys, `among` compares each (0.6 ms per key over a million paths); past it,
# one hash lookup per value (`is_in`: 15 ms over a million paths, whatever the keys).
FEW_KEYS = 8


def among(values: pa.Array | pa.ChunkedArray, keys: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Which `values` are one of `keys` (a boolean mask, false for a null value). A watcher's
    batch asks this of the million-row manifest for one or two paths, several times a batch:
    `is_in` hashes every value each time."""
    if len(keys) > FEW_KEYS:
        return pc.is_in(
            values, value_set=keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
        )
    mask = None
    for key in keys.to_pylist():
        if key is None:
            continue
        one = pc.equal(values, pa.scalar(key, values.type))
        mask = one if mask is None else pc.or_(mask, one)
    if mask is None:  # no key: nothing is among them
        import numpy as np  # (not at import: parse workers import this module's users)

        if isinstance(values, pa.ChunkedArray):
            return pa.chunked_array([pa.array(np.zeros(len(c), bool)) for c in values.chunks], pa.bool_())
        return pa.array(np.zeros(len(values), bool))
    return pc.fill_null(mask, False)
