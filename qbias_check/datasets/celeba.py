"""Read a CelebA tree into the thesis's eval sets: five hair colours, or blond vs not blond.

Expected files (``celeba-facts.md``): ``list_attr_celeba.txt`` (image count, then the attribute
names, then one row of -1/1 per image; CRLF or LF), optionally ``list_eval_partition.txt``, and
``img_align_celeba/``. Real trees are often partial or re-encoded: rows whose image is missing
are skipped and counted in ``EvalSet.info``, and every image is resized to ``size``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from qbias_check.datasets.evalset import (
    EmptyEvalSetError,
    EvalSet,
    EvalSetError,
    ImageDecodeError,
    ImageFolderInputs,
    Inputs,
    OnBadImage,
    decode_image,
    split_indices,
)

Task = Literal["hair", "blond"]
Split = Literal["all", "train", "val", "test"]
Partition = Literal["random", "official"]

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
HAIR_CLASSES = ("bald", "black", "blond", "brown", "gray")
HAIR_COLUMNS = ("Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
BLOND_CLASSES = ("not_blond", "blond")
REQUIRED_COLUMNS = (*HAIR_COLUMNS, "Male", "Young")
SPLITS = {"train": 0, "val": 1, "test": 2}
RANDOM_FRACTIONS = (0.6, 0.2, 0.2)

NO_ATTR_FILE = "{root}: no {file} (looked in {places}); is this a CelebA tree?"
NO_IMAGE_DIR = "{root}: no {dir}/ folder with the images (looked in {places})"
NO_PARTITION_FILE = "{root}: partition='official' needs {file} (looked in {places})"
SHORT_FILE = "{file}: expected a line with the image count and a line of attribute names"
BAD_COUNT_LINE = "{file}, line 1: expected the number of images, got {text!r}"
MISSING_COLUMNS = "{file}, line 2: missing attribute column(s) {missing}; expected {expected}"
BAD_ROW = "{file}, line {line}: expected a file name and {count} values, got {found} fields"
BAD_VALUE = "{file}, line {line}, column {column}: expected -1 or 1, got {value!r}"
BAD_PARTITION_ROW = "{file}, line {line}: expected '<file name> <0|1|2>', got {text!r}"
NO_IMAGES = "{root}: none of the {rows} {task} rows ({split}) has an image in {dir}"
BAD_OPTION = "{name} must be one of {choices}, got {value!r}"


@dataclass(frozen=True)
class AttributeTable:
    """The rows of ``list_attr_celeba.txt``: file names, attribute names, values -1/1."""

    files: tuple[str, ...]
    names: tuple[str, ...]
    values: np.ndarray  # int8 (rows, attributes)
    lines: tuple[int, ...]  # line number of each row in the file, for messages

    def column(self, name: str) -> np.ndarray:
        """The values of one attribute as booleans (1 -> True)."""
        return np.asarray(self.values[:, self.names.index(name)] == 1)


def read_attributes(path: str | Path) -> AttributeTable:
    """Parse ``list_attr_celeba.txt``: names from its header, CRLF or LF, -1/1 values."""
    file = str(path)
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if len(lines) < 2:
        raise EvalSetError(SHORT_FILE.format(file=file))
    if not lines[0].strip().isdigit():
        raise EvalSetError(BAD_COUNT_LINE.format(file=file, text=lines[0]))
    names = tuple(lines[1].split())
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise EvalSetError(
            MISSING_COLUMNS.format(
                file=file, missing=", ".join(missing), expected=", ".join(REQUIRED_COLUMNS)
            )
        )
    files: list[str] = []
    rows: list[list[str]] = []
    numbers: list[int] = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue  # a blank line at the end is common
        if len(fields) != len(names) + 1:
            raise EvalSetError(
                BAD_ROW.format(file=file, line=number, count=len(names), found=len(fields))
            )
        files.append(fields[0])
        rows.append(fields[1:])
        numbers.append(number)
        for column, value in zip(names, fields[1:], strict=True):
            if value not in ("1", "-1"):
                raise EvalSetError(
                    BAD_VALUE.format(file=file, line=number, column=column, value=value)
                )
    values = np.array(rows, dtype=np.int8).reshape(len(rows), len(names))
    return AttributeTable(files=tuple(files), names=names, values=values, lines=tuple(numbers))


def read_partition(path: str | Path) -> dict[str, int]:
    """Parse ``list_eval_partition.txt``: file name -> 0 train, 1 validation, 2 test."""
    file = str(path)
    parts: dict[str, int] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise EvalSetError(BAD_PARTITION_ROW.format(file=file, line=number, text=line))
        parts[fields[0]] = int(fields[1])
    return parts


def load(
    root: str | Path,
    *,
    task: Task = "hair",
    size: int | tuple[int, int] = 64,
    split: Split = "all",
    seed: int = 0,
    partition: Partition = "random",
    on_bad_image: OnBadImage = "error",
    lazy: bool = False,
) -> EvalSet:
    """Build the hair (five classes) or blond (two classes) eval set from a CelebA tree.

    ``partition="random"`` splits the task's rows 60/20/20 with ``seed`` (the thesis);
    ``"official"`` uses ``list_eval_partition.txt``. The split is decided on the rows of the
    attribute file, before missing images are skipped, so a partial tree keeps each image in
    the same part. ``lazy=True`` keeps only file names and decodes images batch by batch.
    """
    _choose("task", task, ("hair", "blond"))
    _choose("split", split, ("all", *SPLITS))
    _choose("partition", partition, ("random", "official"))
    _choose("on_bad_image", on_bad_image, ("error", "skip"))
    base = Path(root)
    attr_file = _find(base, ATTR_FILE, NO_ATTR_FILE, _ANNOTATION_PLACES)
    image_dir = _find(base, IMAGE_DIR, NO_IMAGE_DIR, _IMAGE_PLACES)
    table = read_attributes(attr_file)

    if task == "hair":
        hair = np.stack([table.column(c) for c in HAIR_COLUMNS], axis=1)
        rows = np.flatnonzero(hair.sum(axis=1) == 1)  # exactly one hair label, as the thesis
        y_all = hair[rows].argmax(axis=1)
        classes: tuple[str, ...] = HAIR_CLASSES
    else:
        rows = np.arange(len(table.files))
        y_all = table.column("Blond_Hair").astype(np.int64)
        classes = BLOND_CLASSES
    info = {"attribute_rows": len(table.files), "task_rows": len(rows)}

    keep = np.ones(len(rows), dtype=bool)
    if split != "all":
        if partition == "random":
            part = np.empty(len(rows), dtype=np.int64)
            for k, idx in enumerate(split_indices(len(rows), RANDOM_FRACTIONS, seed=seed)):
                part[idx] = k
        else:
            parts = read_partition(
                _find(base, PARTITION_FILE, NO_PARTITION_FILE, _ANNOTATION_PLACES)
            )
            part = np.array([parts.get(table.files[r], -1) for r in rows], dtype=np.int64)
            info["skipped_no_partition"] = int((part < 0).sum())
        keep &= part == SPLITS[split]

    present = set(os.listdir(image_dir))
    has_image = np.array([table.files[r] in present for r in rows], dtype=bool)
    info["skipped_missing_image"] = int((keep & ~has_image).sum())
    keep &= has_image
    chosen = np.flatnonzero(keep)
    if chosen.size == 0:
        raise EmptyEvalSetError(
            NO_IMAGES.format(root=base, rows=len(rows), task=task, split=split, dir=image_dir)
        )

    files = [table.files[rows[i]] for i in chosen]
    lines = [f"{attr_file}, line {table.lines[rows[i]]}" for i in chosen]
    x, kept, problems = _images(image_dir, files, lines, size, on_bad_image, lazy)
    info["skipped_undecodable"] = len(problems)
    picked = rows[chosen[kept]]
    return EvalSet(
        x=x,
        y=np.asarray(y_all[chosen[kept]], dtype=np.int64),
        classes=classes,
        attributes={
            "male": np.where(table.column("Male")[picked], "male", "female"),
            "young": np.where(table.column("Young")[picked], "young", "old"),
        },
        source=(
            f"celeba:{base} task={task} split={split} partition={partition} seed={seed} size={size}"
        ),
        info=info,
    )


def _images(
    image_dir: Path,
    files: Sequence[str],
    where: Sequence[str],
    size: int | tuple[int, int],
    on_bad_image: OnBadImage,
    lazy: bool,
) -> tuple[Inputs, np.ndarray, list[str]]:
    if lazy:
        return ImageFolderInputs.scan(
            image_dir, files, size=size, on_bad_image=on_bad_image, where=where
        )
    target = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    x = np.empty((len(files), target[0], target[1], 3), dtype=np.uint8)
    kept: list[int] = []
    problems: list[str] = []
    for i, name in enumerate(files):
        path = image_dir / name
        try:
            x[len(kept)] = decode_image(path.read_bytes(), size=target)
        except (OSError, ValueError) as exc:
            message = f"{where[i]}: cannot read or decode image {str(path)!r}: {exc}"
            if on_bad_image == "error":
                raise ImageDecodeError(message) from exc
            problems.append(message)
            continue
        kept.append(i)
    return x[: len(kept)], np.asarray(kept, dtype=np.int64), problems


# The official download nests files under Anno/, Eval/ and Img/; Kaggle's zip nests the image
# folder in a folder of the same name (checked first, since the outer one then holds no images).
_ANNOTATION_PLACES = ("", "Anno", "Eval")
_IMAGE_PLACES = (IMAGE_DIR, "Img", "")


def _find(root: Path, name: str, message: str, subfolders: Sequence[str]) -> Path:
    places = [root / sub if sub else root for sub in subfolders]
    for place in places:
        candidate = place / name
        if candidate.exists():
            return candidate
    raise EvalSetError(
        message.format(
            root=root,
            file=name,
            dir=name,
            places=", ".join(str(p) for p in places),
        )
    )


def _choose(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(BAD_OPTION.format(name=name, choices=", ".join(choices), value=value))
