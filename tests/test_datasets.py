import gzip
import struct

import numpy as np
import pytest

from datasets import stratified_split
from datasets.idx import read_idx


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compressed", [False, True])
def test_read_idx_round_trip(tmp_path, compressed):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    data = idx_bytes(images)
    path = tmp_path / ("images.idx.gz" if compressed else "images.idx")
    path.write_bytes(gzip.compress(data) if compressed else data)
    np.testing.assert_array_equal(read_idx(path), images)


def test_read_idx_big_endian_ints(tmp_path):
    values = np.array([1, -2, 300], dtype=np.int32)
    path = tmp_path / "ints.idx"
    path.write_bytes(idx_bytes(values, 0x0C))
    np.testing.assert_array_equal(read_idx(path), values)


@pytest.mark.parametrize(
    "content, pattern",
    [(b"\x01\x02\x03\x04", r"not an IDX file"), (idx_bytes(np.zeros((2, 2), np.uint8))[:-1], r"should hold 4 bytes")],
)
def test_read_idx_names_the_file(tmp_path, content, pattern):
    path = tmp_path / "broken.idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"broken\.idx.*{pattern}"):
        read_idx(path)


def test_stratified_split_keeps_class_shares_and_is_seeded():
    y = np.repeat(np.arange(4), 50)
    train, val, test = stratified_split(y, 0.2, 0.2, seed=3)
    assert len(set(train) | set(val) | set(test)) == 200 and len(train) + len(val) + len(test) == 200
    for split in (train, val, test):
        counts = np.bincount(y[split], minlength=4)
        assert counts.max() - counts.min() <= 1
    again = stratified_split(y, 0.2, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
