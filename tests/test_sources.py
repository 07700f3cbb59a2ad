"""Every data source on files the tests write, the validation messages, and splits."""

import gzip
import pickle
import struct

import numpy as np
import pytest

from datasets import DataWarning, SourceOptions, load_source, nested_subset, parse_source, stratified_split

OPTIONS = SourceOptions()


def write_idx(path, array, compress=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def mnist_like(folder, prefix, n, seed=0, compress=False):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 6, 6), dtype=np.uint8)
    labels = np.arange(n) % 3
    suffix = ".gz" if compress else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    return images, labels


# --- sklearn ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, shape, classes",
    [("digits", (1797, 1, 8, 8), 10), ("iris", (150, 4), 3), ("wine", (178, 13), 3), ("breast_cancer", (569, 30), 2)],
)
def test_sklearn_sources(name, shape, classes):
    if name == "iris":  # iris really has a duplicated row, and the source says so
        with pytest.warns(DataWarning, match="1 duplicate feature rows"):
            raw = load_source(f"sklearn:{name}")
    else:
        raw = load_source(f"sklearn:{name}")
    assert raw.x.shape == shape and len(raw.class_names) == classes
    assert raw.y.min() == 0 and raw.y.max() == classes - 1


# --- IDX ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_idx_folder_with_train_and_test(tmp_path, compress):
    train_x, train_y = mnist_like(tmp_path, "train", 30, compress=compress)
    test_x, test_y = mnist_like(tmp_path, "t10k", 12, seed=1, compress=compress)
    raw = load_source(f"idx:{tmp_path}")
    np.testing.assert_array_equal(raw.x[:, 0], train_x)
    np.testing.assert_array_equal(raw.y, train_y)
    np.testing.assert_array_equal(raw.test[0][:, 0], test_x)
    assert raw.class_names == ["0", "1", "2"]


def test_idx_folder_with_only_test_files(tmp_path):
    mnist_like(tmp_path, "t10k", 12)
    raw = load_source(f"idx:{tmp_path}")
    assert raw.x.shape == (12, 1, 6, 6) and raw.test is None


def test_idx_plain_and_gzipped_files_side_by_side_say_which_was_read(tmp_path):
    images, _ = mnist_like(tmp_path, "t10k", 12)
    mnist_like(tmp_path, "t10k", 9, seed=5, compress=True)
    with pytest.warns(DataWarning) as caught:
        raw = load_source(f"idx:{tmp_path}")
    messages = [str(w.message) for w in caught]
    assert any(f"{tmp_path} holds both t10k-images-idx3-ubyte and t10k-images-idx3-ubyte.gz; reading t10k-images-idx3-ubyte" in m for m in messages)
    assert any("both t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz" in m for m in messages)
    np.testing.assert_array_equal(raw.x[:, 0], images)


@pytest.mark.parametrize(
    "setup, pattern",
    [
        (lambda d: None, r"no IDX files found; expected train-images-idx3-ubyte"),
        (lambda d: write_idx(d / "t10k-images-idx3-ubyte", np.zeros((2, 2, 2))), r"has t10k-images-idx3-ubyte but not t10k-labels-idx1-ubyte"),
    ],
)
def test_idx_folder_errors(tmp_path, setup, pattern):
    setup(tmp_path)
    with pytest.raises(ValueError, match=pattern):
        load_source(f"idx:{tmp_path}")


def test_idx_label_count_mismatch(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 2, 2)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4))
    with pytest.raises(ValueError, match=r"holds 5 images but .*t10k-labels-idx1-ubyte holds 4 labels"):
        load_source(f"idx:{tmp_path}")


# --- torchvision files on disk ------------------------------------------------------------------------


def test_torchvision_mnist_from_root(tmp_path):
    raw_dir = tmp_path / "FashionMNIST" / "raw"
    raw_dir.mkdir(parents=True)
    mnist_like(raw_dir, "train", 30)
    mnist_like(raw_dir, "t10k", 9, seed=2)
    raw = load_source("torchvision:FashionMNIST", SourceOptions(root=str(tmp_path)))
    assert raw.x.shape == (30, 1, 6, 6) and raw.test[0].shape == (9, 1, 6, 6)
    assert raw.class_names == ["T-shirt/top", "Trouser", "Pullover"]


def test_torchvision_cifar10_from_root(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {"data": rng.integers(0, 256, size=(4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 1]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["airplane", "automobile", "bird"]}))
    raw = load_source("torchvision:CIFAR10", SourceOptions(root=str(tmp_path)))
    assert raw.x.shape == (20, 3, 32, 32) and raw.test[0].shape == (4, 3, 32, 32)
    assert raw.class_names == ["airplane", "automobile", "bird"]


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("MNIST", r"torchvision:MNIST: files not found; expected train-images-idx3-ubyte\[\.gz\].* in .*MNIST/raw.*data\.download=true"),
        ("CIFAR100", r"expected train, test, meta in .*cifar-100-python"),
        ("SVHN", r"Unknown torchvision dataset 'SVHN'"),
    ],
)
def test_torchvision_missing_files_say_where_they_go(tmp_path, name, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_source(f"torchvision:{name}", SourceOptions(root=str(tmp_path)))


def test_torchvision_needs_a_root():
    with pytest.raises(ValueError, match=r"needs data\.root"):
        load_source("torchvision:MNIST")


# --- image folders ---------------------------------------------------------------------------------


def write_images(root, sizes, mode="L"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for index, (label, size) in enumerate(sizes):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
        Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode).save(folder / f"{index}.png")


def test_image_folder(tmp_path):
    write_images(tmp_path, [("cat", (5, 4)), ("cat", (5, 4)), ("dog", (5, 4))], mode="RGB")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    raw = load_source(f"folder:{tmp_path}")
    assert raw.x.shape == (3, 3, 4, 5) and raw.x.dtype == np.uint8
    assert raw.class_names == ["cat", "dog"] and raw.y.tolist() == [0, 0, 1]


def test_sixteen_bit_images_are_scaled_by_their_depth_and_empty_classes_are_said(tmp_path):
    from PIL import Image

    levels = np.array([[0, 1000], [32768, 65535]], dtype=np.uint16)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(levels).save(tmp_path / name / "0.png")
    (tmp_path / "empty").mkdir()
    with pytest.warns(DataWarning, match="class folder 'empty' holds no image and is left out"):
        raw = load_source(f"folder:{tmp_path}")
    assert raw.x[0, 0].tolist() == [[0, 4], [128, 255]]  # not clipped to {0, 255}


def _tiffs(root, *images):
    from PIL import Image

    for index, values in enumerate(images):
        (root / f"c{index}").mkdir()
        Image.fromarray(values).save(root / f"c{index}" / "0.tif")
    return f"folder:{root}"


@pytest.mark.parametrize(("values", "expected"), [
    (np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32), [[0, 64], [128, 255]]),  # floats in [0, 1]: white is 1
    (np.array([[0.0, 2.0], [100.0, 255.0]], dtype=np.float32), [[0, 2], [100, 255]]),  # floats in [0, 255]: as 8-bit gray
    (np.array([[0, 1000], [32768, 65535]], dtype=np.int32), [[0, 4], [128, 255]]),  # 32-bit integers within 16 bits
])
def test_float_and_32_bit_tiffs_keep_their_gray_levels(tmp_path, values, expected):
    raw = load_source(_tiffs(tmp_path, values, values))
    assert raw.x[0, 0].tolist() == expected and raw.x.dtype == np.uint8


def test_a_folder_of_float_tiffs_is_read_on_one_scale(tmp_path):
    dark = np.full((2, 2), 0.9, dtype=np.float32)  # in [0, 1] alone, but its neighbour is on [0, 255]
    raw = load_source(_tiffs(tmp_path, dark, np.array([[0.0, 10.0], [200.0, 255.0]], dtype=np.float32)))
    assert raw.x[0, 0].tolist() == [[1, 1], [1, 1]] and raw.x[1, 0].tolist() == [[0, 10], [200, 255]]


@pytest.mark.parametrize(("values", "message"), [
    (np.array([[-1.0, 0.0], [0.5, 2.0]], dtype=np.float32), r"c0.0\.tif is a 32-bit float image with values in \[-1, 2\]"),
    (np.array([[0.0, np.nan], [0.5, 1.0]], dtype=np.float32), r"c0.0\.tif is a 32-bit float image holding NaN"),
    (np.array([[-5, 0], [3, 9]], dtype=np.int32), r"c0.0\.tif is a 32-bit integer image with negative pixels \(down to -5\)"),
])
def test_images_no_gray_level_reads_faithfully_are_refused(tmp_path, values, message):
    with pytest.raises(ValueError, match=message):
        load_source(_tiffs(tmp_path, values, np.zeros((2, 2), dtype=values.dtype)))


def test_a_decompression_bomb_is_a_clear_error(tmp_path, monkeypatch):
    from PIL import Image

    write_images(tmp_path, [("a", (5, 4)), ("b", (5, 4))])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4)  # as a 14000x14000 image would meet the real limit
    with pytest.raises(ValueError, match=r"Image .*0\.png is too large to read safely"):
        load_source(f"folder:{tmp_path}")


def test_image_folder_mixed_sizes_rejected_or_resized(tmp_path):
    write_images(tmp_path, [("a", (5, 4)), ("b", (7, 7))])
    with pytest.raises(ValueError, match=r"Image .*1\.png is 7x7 but .*0\.png is 5x4; set data\.image_size"):
        load_source(f"folder:{tmp_path}")
    raw = load_source(f"folder:{tmp_path}", SourceOptions(image_size=(6, 6)))
    assert raw.x.shape == (2, 1, 6, 6)


def test_image_folder_unreadable_file(tmp_path):
    write_images(tmp_path, [("a", (5, 4)), ("b", (5, 4))])
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"Cannot read image .*broken\.png"):
        load_source(f"folder:{tmp_path}")


# --- tables ------------------------------------------------------------------------------------------


def write_table(path, delimiter=",", rows=None):
    rows = rows or [("1.5", "red", "yes"), ("2.5", "blue", "no"), ("3.0", "red", "yes"), ("0.5", "green", "no")]
    lines = [delimiter.join(("size", "colour", "label"))] + [delimiter.join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_csv_sniffs_the_delimiter_and_one_hot_encodes(tmp_path, delimiter):
    path = tmp_path / "table.csv"
    write_table(path, delimiter)
    raw = load_source(f"csv:{path}", SourceOptions(target="label"))
    assert raw.feature_names == ["size", "colour=blue", "colour=green", "colour=red"]
    np.testing.assert_array_equal(raw.x[0], [1.5, 0, 0, 1])
    assert raw.class_names == ["no", "yes"] and raw.y.tolist() == [1, 0, 1, 0]
    assert raw.provenance["delimiter"] == delimiter


@pytest.mark.parametrize(
    "options, rows, pattern",
    [
        (SourceOptions(), None, r"needs data\.target=<column name or position, e\.g\. -1 for the last>\. Columns: size, colour, label"),
        (SourceOptions(target="lable"), None, r"no target column 'lable'\. Did you mean 'label'\?"),
        (SourceOptions(target="label", categorical="error"), None, r"column 'colour' is not numeric .*data\.categorical=error"),
        (SourceOptions(target="label"), [("1", "red", "yes"), ("", "red", "no"), ("2", "blue", "yes")], r"column 'size' has NaN or inf at row 1"),
        (SourceOptions(target="label"), [("1", "red", "yes"), ("2", "red", "no"), ("3x", "blue", "yes")], r"column 'size' is numeric except at row 2 \(value '3x'\)"),
        (SourceOptions(target="label"), [("1", "red", "yes"), ("2", "red", "")], r"target column 'label' is empty at row 1"),
    ],
)
def test_csv_errors_name_the_column(tmp_path, options, rows, pattern):
    path = tmp_path / "table.csv"
    write_table(path, rows=rows)
    with pytest.raises(ValueError, match=pattern):
        load_source(f"csv:{path}", options)


def test_a_header_less_csv_keeps_every_row_and_takes_the_target_by_position(tmp_path):
    path = tmp_path / "uci.csv"
    path.write_text("5.1,3.5,1.4,0\n4.9,3.0,1.4,0\n6.3,3.3,6.0,2\n5.8,2.7,5.1,2\n")
    raw = load_source(f"csv:{path}", SourceOptions(target=-1))
    assert raw.x.shape == (4, 3) and raw.feature_names == ["0", "1", "2"]
    np.testing.assert_allclose(raw.x[0], [5.1, 3.5, 1.4])
    assert raw.class_names == ["0", "2"] and raw.provenance["header"] is False
    assert load_source(f"csv:{path}", SourceOptions(target=3)).x.shape == (4, 3)
    forced = load_source(f"csv:{path}", SourceOptions(target="0", header=True))  # the first row as names, as asked
    assert forced.x.shape == (3, 3) and forced.feature_names == ["5.1", "3.5", "1.4"]
    named = tmp_path / "named.csv"
    write_table(named)
    assert load_source(f"csv:{named}", SourceOptions(target=-1)).class_names == ["no", "yes"]  # a header row stays a header


def test_spaces_around_labels_are_stripped_and_said(tmp_path):
    path = tmp_path / "spaced.csv"
    path.write_text("a,label\n1, setosa\n2,setosa\n3,virginica \n4,virginica\n")
    with pytest.warns(DataWarning, match="stripped spaces around 2 labels of 'label'"):
        raw = load_source(f"csv:{path}", SourceOptions(target="label"))
    assert raw.class_names == ["setosa", "virginica"] and raw.y.tolist() == [0, 0, 1, 1]


def test_float_idx_labels_that_are_not_whole_numbers_are_refused(tmp_path):
    import struct

    images = np.zeros((4, 2, 2), dtype=np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">III", 4, 2, 2) + images.tobytes())
    labels = np.array([0.2, 0.8, 1.0, 0.0], dtype=">f4")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">BBBB", 0, 0, 0x0D, 1) + struct.pack(">I", 4) + labels.tobytes())
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: the target 'labels' has 4 distinct values .* looks continuous"):
        load_source(f"idx:{tmp_path}")


def test_decimal_commas_are_numbers_not_categories(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("a;b;label\n5,1;3,5;x\n4,9;3;y\n6,3;3,3;x\n5,8;2,7;y\n")
    raw = load_source(f"csv:{path}", SourceOptions(target="label"))
    assert raw.feature_names == ["a", "b"] and raw.provenance["decimal"] == ","
    np.testing.assert_allclose(raw.x[:, 0], [5.1, 4.9, 6.3, 5.8])
    headerless = tmp_path / "eu-headerless.csv"
    headerless.write_text("5,1;3,5;0\n4,9;3,0;1\n")
    np.testing.assert_allclose(load_source(f"csv:{headerless}", SourceOptions(target=-1)).x, [[5.1, 3.5], [4.9, 3.0]], rtol=1e-6)
    quoted = tmp_path / "quoted.csv"  # a comma-separated file whose numbers are quoted with decimal commas
    quoted.write_text('a,label\n"5,1",x\n"4,9",y\n')
    assert load_source(f"csv:{quoted}", SourceOptions(target="label")).x[:, 0].tolist() == pytest.approx([5.1, 4.9])
    point = load_source(f"csv:{quoted}", SourceOptions(target="label", decimal="."))
    assert point.feature_names == ["a=4,9", "a=5,1"]  # data.decimal="." as asked: text, one-hot


def test_channels_last_images_are_recognised(tmp_path):
    images = np.random.default_rng(0).random((8, 6, 5, 1)).astype(np.float32)
    labels = np.arange(8) % 2
    last = load_source(npz_source(tmp_path, images, labels))
    first = load_source(npz_source(tmp_path, images.transpose(0, 3, 1, 2), labels))
    assert last.x.shape == first.x.shape == (8, 1, 6, 5)
    np.testing.assert_array_equal(last.x, first.x)
    assert last.provenance["layout"] == "channels_last"
    rgb = load_source(npz_source(tmp_path, np.zeros((4, 6, 5, 3)) + np.arange(4)[:, None, None, None], labels[:4]))
    assert rgb.x.shape == (4, 3, 6, 5)
    forced = load_source(npz_source(tmp_path, np.ones((4, 3, 4, 4)), labels[:4]), SourceOptions(layout="channels_last"))
    assert forced.x.shape == (4, 4, 3, 4)


def test_parquet(tmp_path):
    import pandas as pd

    path = tmp_path / "table.parquet"
    pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0, 1, 0, 1], "y": ["u", "v", "u", "v"]}).to_parquet(path)
    raw = load_source(f"parquet:{path}", SourceOptions(target="y"))
    assert raw.x.shape == (4, 2) and raw.class_names == ["u", "v"]


def test_npz_with_configurable_keys(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, features=np.random.default_rng(0).normal(size=(6, 3)), target=np.array([5, 7, 5, 7, 5, 7]))
    raw = load_source(f"npz:{path}", SourceOptions(x_key="features", y_key="target"))
    assert raw.x.shape == (6, 3) and raw.class_names == ["5", "7"] and raw.y.tolist() == [0, 1, 0, 1, 0, 1]
    with pytest.raises(ValueError, match=r"has no array 'x'\. Arrays: features, target"):
        load_source(f"npz:{path}")


# --- validation -----------------------------------------------------------------------------------


def npz_source(tmp_path, x, y):
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    return f"npz:{path}"


@pytest.mark.parametrize(
    "x, y, pattern",
    [
        (np.array([[1.0, np.nan], [2.0, 3.0]]), np.array([0, 1]), r"nan at sample 0, feature 1"),
        (np.array([[1.0, 2.0], [np.inf, 3.0]]), np.array([0, 1]), r"inf at sample 1, feature 0"),
        (np.zeros((0, 3)), np.zeros(0), r"has no samples"),
        (np.ones((4, 2)) * np.arange(4)[:, None], np.zeros(4), r"fewer than two classes"),
        (np.ones((3, 2)), np.array([0, 1]), r"3 samples but labels of shape \(2,\)"),
    ],
)
def test_validation_errors(tmp_path, x, y, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_source(npz_source(tmp_path, x, y))


def test_validation_warnings(tmp_path):
    x = np.arange(48, dtype=float).reshape(24, 2)
    x[1] = x[0]
    y = np.array([0] * 22 + [1] * 2)
    with pytest.warns(DataWarning) as caught:
        load_source(npz_source(tmp_path, x, y))
    messages = " ".join(str(w.message) for w in caught)
    assert "heavily imbalanced: class '1' has 2 samples" in messages and "1 duplicate feature rows" in messages


def test_unknown_source_kind():
    with pytest.raises(ValueError, match=r"Unknown data source kind 'xls'.*Known kinds: csv, folder, idx"):
        parse_source("xls:file.xls")


# --- splits ---------------------------------------------------------------------------------------


def test_nested_subsets_are_nested_and_stratified():
    y = np.repeat(np.arange(5), 40)
    quarter, half = nested_subset(y, 0.25, seed=1), nested_subset(y, 0.5, seed=1)
    assert set(quarter) <= set(half)
    assert np.bincount(y[quarter]).tolist() == [10] * 5 and np.bincount(y[half]).tolist() == [20] * 5
    assert not set(nested_subset(y, 0.25, seed=2)) == set(quarter)


def test_stratified_split_without_test_share():
    y = np.repeat(np.arange(3), 20)
    train, val, test = stratified_split(y, 0.25, 0.0, seed=0)
    assert len(test) == 0 and len(train) == 45 and np.bincount(y[val]).tolist() == [5, 5, 5]


def test_three_decimals_after_a_sniffed_decimal_comma_are_decimals_not_digit_groups(tmp_path):
    """A `;` file of "0,125" has a decimal comma (sniffed); the same shape in a comma file ("5,100"
    beside "200") is refused as ambiguous (tests/test_faults.py)."""
    path = tmp_path / "eu3.csv"
    path.write_text("a;b;label\n0,125;1,500;x\n0,250;2,750;y\n0,375;1,125;x\n0,500;2,250;y\n")
    np.testing.assert_allclose(load_source(f"csv:{path}", SourceOptions(target="label")).x, [[0.125, 1.5], [0.25, 2.75], [0.375, 1.125], [0.5, 2.25]])


def test_a_header_of_numbered_columns_over_a_text_label_is_still_a_header(tmp_path):
    """Numbers where the rows below have numbers and a text label: data when the label recurs in its
    column (iris.data), a header when it never does (`label` over columns named 0, 1)."""
    path = tmp_path / "numbered.csv"
    path.write_text("0,1,label\n" + "".join(f"{i}.5,{i % 3}.25,{'xy'[i % 2]}\n" for i in range(12)))
    raw = load_source(f"csv:{path}", SourceOptions(target="label"))
    assert raw.feature_names == ["0", "1"] and raw.x.shape == (12, 2) and raw.class_names == ["x", "y"]


def test_text_labels_are_one_class_however_they_are_spelled_or_stored(tmp_path):
    """Bytes labels are decoded (not "b'a'"), and "café" composed and decomposed is one class, in
    an npz and in a CSV alike; the decomposed ones are noted."""
    import unicodedata

    composed, decomposed = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    np.savez(tmp_path / "bytes.npz", x=np.arange(12.0).reshape(6, 2), y=np.array([b"a", b"b"] * 3))
    assert load_source(f"npz:{tmp_path / 'bytes.npz'}").class_names == ["a", "b"]
    labels = [composed, decomposed, "tea"] * 4
    np.savez(tmp_path / "cafe.npz", x=np.arange(24.0).reshape(12, 2), y=np.array(labels))
    (tmp_path / "cafe.csv").write_text("a,label\n" + "".join(f"{i},{label}\n" for i, label in enumerate(labels)), encoding="utf-8")
    for text, options in ((f"npz:{tmp_path / 'cafe.npz'}", SourceOptions()), (f"csv:{tmp_path / 'cafe.csv'}", SourceOptions(target="label"))):
        with pytest.warns(DataWarning, match="4 labels of .* were in decomposed Unicode; read in composed form"):
            data = load_source(text, options)
        assert data.class_names == [composed, "tea"] and np.bincount(data.y).tolist() == [8, 4]


def test_long_double_features_are_read_as_float64(tmp_path):
    np.savez(tmp_path / "long.npz", x=np.linspace(0, 1, 12).reshape(6, 2).astype(np.longdouble), y=np.arange(6) % 2)
    data = load_source(f"npz:{tmp_path / 'long.npz'}")
    assert data.x.dtype == np.float64 and data.x[5, 1] == 1.0
