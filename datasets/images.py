"""`folder:<dir>`: one subfolder per class, images read with Pillow."""

from __future__ import annotations

import stat
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from datasets.base import RawData, SourceOptions, hash_files, host_memory_bytes, register_source

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def image_files(root: Path) -> dict[str, list[Path]]:
    """The image files of each class folder, sorted; hidden files and other suffixes are skipped
    (see `empty_classes` for folders left with none)."""
    if not root.is_dir():
        raise ValueError(f"folder:{root}: not a folder.")
    classes = {}
    for folder in _class_folders(root):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        for path in files:
            if not path.is_file():  # reading a FIFO named x.png would wait forever
                raise ValueError(f"folder:{root}: {path} is not a regular file ({_kind(path)}); an image folder holds image files.")
        if files:
            classes[folder.name] = files
    if not classes:
        raise ValueError(f"folder:{root}: no class subfolders with images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    seen: dict[str, str] = {}
    for name in classes:
        twin = seen.setdefault(unicodedata.normalize("NFC", name), name)
        if twin != name:  # "café" composed and decomposed: two folders, one name to a reader
            raise ValueError(f"folder:{root}: class folders {twin!r} and {name!r} are one name written in two Unicode forms; merge or rename them.")
    return classes


def _kind(path: Path) -> str:
    """What a path that is not a regular file is, in words."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "a broken link"
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a file")


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def empty_classes(root: Path, classes: dict[str, list[Path]]) -> list[str]:
    """Class folders with no image in them: dropped, and said so (a class may have gone missing)."""
    return [folder.name for folder in _class_folders(root) if folder.name not in classes]


GRAY_MODES = ("L", "1", "I;16", "I;16B", "I;16L", "I", "F")


def float_range(opened: list[tuple[Path, Any]]) -> float:
    """What a 32-bit float pixel of this folder's images counts as white: 1.0 where every such
    image lies in [0, 1] (the float convention), 255.0 where every one lies in [0, 255]; a
    `ValueError` naming the image otherwise (no 8-bit reading of it would be faithful)."""
    ranges = []
    for path, image in opened:
        if image.mode != "F":
            continue
        values = np.asarray(image)
        if not np.isfinite(values).all():
            raise ValueError(f"Image {path} is a 32-bit float image holding NaN or infinity; an image folder holds finite pixels.")
        ranges.append((path, float(values.min(initial=0.0)), float(values.max(initial=0.0))))
    if all(0.0 <= low and high <= 1.0 for _, low, high in ranges):
        return 1.0
    outside = next(((path, low, high) for path, low, high in ranges if low < 0.0 or high > 255.0), None)
    if outside is not None:
        path, low, high = outside
        raise ValueError(
            f"Image {path} is a 32-bit float image with values in [{low:g}, {high:g}]; float images are read as [0, 1] or "
            "[0, 255] (as 8-bit gray). Rescale the images, or save them as .npy arrays and use an npz: source."
        )
    return 255.0


def to_8_bits(path: Path, image: Any, white: float = 255.0) -> Any:
    """A 16- or 32-bit grayscale image as 8 bits: integers scaled by their bit depth (Pillow's own
    conversion to "L" clips every value above 255 to white), floats by `white` (see `float_range`);
    a `ValueError` for negative integer pixels, which no bit depth places."""
    from PIL import Image

    if image.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
        return image
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        depth = white
    else:
        if values.min(initial=0) < 0:
            raise ValueError(
                f"Image {path} is a 32-bit integer image with negative pixels (down to {values.min():g}); no bit depth maps them "
                "to gray levels. Rescale the images, or save them as .npy arrays and use an npz: source."
            )
        depth = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) <= 65535 else 2.0**32 - 1
    return Image.fromarray(np.round(values * (255.0 / depth)).astype(np.uint8), mode="L")


def _fingerprint(argument: str, options: SourceOptions) -> dict[str, Any]:
    root = Path(argument)
    return hash_files([f for files in image_files(root).values() for f in files], relative_to=root)


def check_room_for_images(count: int, size: tuple[int, int]) -> None:
    """Refuse, before reading any image, a `data.image_size` whose images (as bytes, then as the
    scale stage's float32) would not fit in this machine's memory."""
    height, width = size
    needed, total = count * 3 * height * width * (1 + 4), host_memory_bytes()  # RGB at worst: uint8 read, float32 scaled
    if total is not None and needed > total:
        raise ValueError(
            f"data.image_size=[{height}, {width}] makes {count:,} images of up to {3 * height * width / 2**30:,.1f} GiB each, about "
            f"{needed / 2**30:,.0f} GiB read and scaled, where this machine has {total / 2**30:,.1f} GiB of memory; choose a smaller data.image_size."
        )


@register_source("folder", fingerprint=_fingerprint, reads=("image_size",))
def load_folder(argument: str, options: SourceOptions) -> RawData:
    """Grayscale if every image is, else RGB; sizes must agree unless `data.image_size` resizes them all."""
    from PIL import Image, UnidentifiedImageError

    root = Path(argument)
    classes = image_files(root)
    notes = [f"folder:{argument}: class folder {name!r} holds no image and is left out" for name in empty_classes(root, classes)]
    if options.image_size:
        check_room_for_images(sum(len(files) for files in classes.values()), options.image_size)
    opened = []
    for files in classes.values():
        for path in files:
            try:
                with Image.open(path) as image:
                    image.load()
                    opened.append((path, image.copy()))
            except Image.DecompressionBombError as exc:
                raise ValueError(f"Image {path} is too large to read safely ({exc})") from None
            except (OSError, UnidentifiedImageError) as exc:
                raise ValueError(f"Cannot read image {path}: {exc}") from exc
    mode = "L" if all(image.mode in GRAY_MODES for _, image in opened) else "RGB"
    white = float_range(opened)
    arrays = []
    first_path, first_size = opened[0][0], opened[0][1].size
    for path, image in opened:
        image = to_8_bits(path, image, white).convert(mode)
        if options.image_size:
            height, width = options.image_size
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        elif image.size != first_size:
            raise ValueError(
                f"Image {path} is {image.size[0]}x{image.size[1]} but {first_path} is {first_size[0]}x{first_size[1]}; "
                "set data.image_size=[H, W] to resize every image."
            )
        array = np.asarray(image, dtype=np.uint8)
        arrays.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    labels = np.concatenate([np.full(len(files), index, dtype=np.int64) for index, files in enumerate(classes.values())])
    return RawData(np.stack(arrays), labels, list(classes), {"source": f"folder:{argument}", "mode": mode}, warnings=notes)
