"""Arrays kept as 8-bit codes and a table of what each code means, decoded when first read.

The scale stage maps every value of an 8-bit feature through the same function, so a feature
holds at most 256 distinct results: the cache stores the codes (the unscaled bytes) and a
float32 table of 256 rows (one column per channel, or per feature), little more than a
quarter of the float32 array's bytes, and `DecodedArrays` gives readers the float32 array
itself, with the very bits scaling each value would give.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

LEVELS = 256


@dataclass(frozen=True)
class LookupCoded:
    """`table[codes[i, ...].view(uint8)]` at each value's position: `codes` of any 8-bit dtype with
    samples first, `table` float32 of shape (256, *units), the units' shape broadcasting over a
    sample (`(C, 1, 1)` for a table per channel, the sample's shape for one per feature)."""

    codes: np.ndarray
    table: np.ndarray

    def __post_init__(self) -> None:
        if self.codes.dtype.itemsize != 1 or self.codes.dtype.kind not in "uib" or self.codes.ndim < 1:
            raise ValueError(f"lookup codes must be 8-bit with samples first, not {self.codes.dtype} of shape {self.codes.shape}")
        sample = self.codes.shape[1:]
        fits = self.table.ndim == self.codes.ndim and all(unit in (1, size) for unit, size in zip(self.table.shape[1:], sample))
        if self.table.dtype != np.float32 or self.table.shape[:1] != (LEVELS,) or not fits:
            raise ValueError(f"a lookup table for codes of shape {self.codes.shape} must be float32 of shape (256, ...) broadcasting over {sample}, not {self.table.dtype} {self.table.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)

    @property
    def ndim(self) -> int:
        return self.codes.ndim

    def decode(self) -> np.ndarray:
        """The float32 array the codes stand for (by torch's gather: twice numpy's fancy indexing)."""
        from transforms.scalers import look_up

        return look_up(np.ascontiguousarray(self.table), np.ascontiguousarray(self.codes))


class DecodedArrays(Mapping[str, np.ndarray]):
    """A stage's arrays as a mapping of plain arrays: lookup-coded ones decoded on first read, once."""

    def __init__(self, stored: Mapping[str, np.ndarray | LookupCoded]) -> None:
        self._stored = dict(stored)
        self._decoded: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        value = self._stored[name]
        if not isinstance(value, LookupCoded):
            return value
        if name not in self._decoded:
            self._decoded[name] = value.decode()
        return self._decoded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)

    def stored(self, name: str) -> np.ndarray | LookupCoded:
        """The array as the cache holds it: a lookup-coded one undecoded."""
        return self._stored[name]


def shape_of(arrays: Mapping[str, Any], name: str) -> tuple[int, ...]:
    """The shape of `arrays[name]`, without decoding a lookup-coded array to learn it."""
    value = arrays.stored(name) if isinstance(arrays, DecodedArrays) else arrays[name]
    return tuple(value.shape)
