"""Image folders, one folder per class -> PNG splits in the same layout.

Input: image files (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.gif``, ``.webp``, ``.tif``,
``.tiff``) under the input folder; an image's class is the name of the folder holding it
(``raw/cat/001.jpg`` is a ``cat``). Each image is decoded with Pillow, as grayscale if its mode is
a gray one and as RGB otherwise. The dataset's size is its most common width x height. An image of
another size, one that does not decode, a file that is not an image and an image outside a class
folder are quarantined with their reason.

Output, per split: ``<split>/<class>/<sha256 prefix>.png`` (what torchvision's ``ImageFolder``
reads), every image in one mode (RGB if any image is in colour, else grayscale), and
``<split>/index.csv`` with a header and one row per image: ``file`` (its path inside the split),
``label`` and ``sha256`` (of the PNG file). The manifest hashes the index files, so the dataset
version covers every image's bytes.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .baselines import compute_baseline
from .cleaning import Example, RawRow, WrittenSplits
from .data_schema import SchemaError
from .tasks import MalformedRecord

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
INDEX_FILE = "index.csv"
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
# Past this many values per image a per-pixel drift baseline is too large to be useful: none is written.
MAX_BASELINE_VALUES = 1024
MAX_SIDE = 4096  # the prediction API's limit per side
DEFAULT_MAX_DECODED_BYTES = 1_048_576  # the API's default


class ImageData:
    """Reads, checks, parses and writes one image dataset (see the module docstring)."""

    def __init__(self, input_dir: Path) -> None:
        self.input_dir = input_dir
        self.paths = sorted(p for p in input_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [p for p in self.paths if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise SchemaError(
                f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {input_dir}; "
                "put each class's images in a folder named after the class"
            )
        self.size, self.mode = dataset_shape(images)

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    def rows(self) -> Iterator[RawRow]:
        for path in self.paths:
            relative = path.relative_to(self.input_dir).as_posix()
            yield RawRow({"file": relative}, relative, path)

    def parse(self, path: Path) -> Example:
        """One image's canonical key (a hash of its pixels) and class, or why it is not usable."""
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise MalformedRecord("not_an_image", f"{path.suffix or 'no suffix'} is not an image file suffix")
        if path.parent == self.input_dir:
            raise MalformedRecord("no_class_folder", "an image's class is the name of its folder")
        image = _decoded(path)
        if image.size != self.size:
            width, height = image.size
            raise MalformedRecord("wrong_size", f"{width}x{height}, expected {self.size[0]}x{self.size[1]}")
        # The key hashes the pixels in the image's own mode: independent of every other image.
        pixels = hashlib.sha256(f"{image.mode} {image.size}\n".encode() + image.tobytes()).hexdigest()
        return Example(pixels, path, path.parent.name)

    def write(self, splits: Mapping[str, list[Example]], output_dir: Path) -> WrittenSplits:
        """The PNG files and index of each split, the image input schema and, for small images, a
        per-pixel baseline of the train split."""
        files, train_pixels = {}, []
        for name, examples in splits.items():
            index = []
            for example in examples:
                relative = f"{example.label}/{example.key[:16]}.png"
                pixels, sha256 = self._write_png(example.value, output_dir / name / relative)
                index.append([relative, str(example.label), sha256])
                if name == "train":
                    train_pixels.append([float(v) for v in pixels])
            _write_index(output_dir / name / INDEX_FILE, index)
            files[f"{name}/{INDEX_FILE}"] = len(examples)
        return WrittenSplits(
            files=files,
            input_schema=self._input_schema(),
            baseline=self._baseline(train_pixels),
            description={"width": self.size[0], "height": self.size[1], "channels": self.channels},
        )

    def _write_png(self, source: Path, target: Path) -> tuple[bytes, str]:
        """Write ``source`` as a PNG in the dataset's mode; returns its pixels and the file's sha256."""
        image = _decoded(source).convert(self.mode)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, format="PNG")
        return image.tobytes(), hashlib.sha256(target.read_bytes()).hexdigest()

    def _input_schema(self) -> dict[str, Any]:
        width, height = self.size
        values = width * height * self.channels
        return {
            "kind": "image",
            "height": height,
            "width": width,
            "channels": self.channels,
            "max_value": 255,
            "max_decoded_bytes": max(DEFAULT_MAX_DECODED_BYTES, values),
        }

    def _baseline(self, train_pixels: Sequence[Sequence[float]]) -> dict[str, Any] | None:
        if not train_pixels or len(train_pixels[0]) > MAX_BASELINE_VALUES:
            return None
        names = [f"pixel_{index}" for index in range(len(train_pixels[0]))]
        return compute_baseline(train_pixels, feature_names=names)


def dataset_shape(images: Sequence[Path]) -> tuple[tuple[int, int], str]:
    """The most common size among the images (read from their headers) and the mode to write:
    RGB if any image is in colour, else grayscale (``L``)."""
    image_module = pillow()
    sizes: Counter[tuple[int, int]] = Counter()
    colour = False
    for path in images:
        try:
            with image_module.open(path) as image:
                sizes[image.size] += 1
                colour = colour or image.mode not in GRAY_MODES
        except (OSError, ValueError, image_module.DecompressionBombError):
            continue  # quarantined when parsed
    if not sizes:
        raise SchemaError(f"none of the {len(images)} image files decodes (e.g. {images[0].name})")
    # Most frequent; a tie goes to the larger size, so the choice never depends on file order.
    size = max(sizes, key=lambda s: (sizes[s], s))
    if max(size) > MAX_SIDE:
        raise SchemaError(
            f"the images are {size[0]}x{size[1]}; the prediction API takes at most {MAX_SIDE} a side"
        )
    return size, "RGB" if colour else "L"


def pillow() -> Any:
    """Pillow's ``Image`` module (imported here: only image data needs it)."""
    try:
        from PIL import Image  # noqa: PLC0415
    except ImportError:
        raise SchemaError("--format images needs Pillow in the processing image") from None
    return Image


def _decoded(path: Path) -> Any:
    """The image at ``path``, decoded, as grayscale or RGB."""
    image_module = pillow()
    try:
        with image_module.open(path) as image:
            image.load()
            return image.convert("L" if image.mode in GRAY_MODES else "RGB")
    except (OSError, ValueError, image_module.DecompressionBombError) as exc:
        raise MalformedRecord(
            "unreadable_image", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        ) from None


def _write_index(path: Path, rows: Sequence[Sequence[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file", "label", "sha256"])
        writer.writerows(rows)
