"""The two eval-set file formats: one ``.npz`` file, and a folder of images with ``index.csv``.

``.npz`` holds ``x``, ``y``, ``classes`` and one ``attr_<name>`` per protected attribute, all as
plain arrays (group names as unicode strings), so ``np.load(allow_pickle=False)`` reads it. The
folder holds ``index.csv`` (columns ``file``, ``label``, then one column per attribute, labels
and groups as names), ``classes.txt`` (one class name per line, in index order) and the images.
"""

from __future__ import annotations

import zipfile
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from qbias_check.atomic import atomic_open
from qbias_check.datasets.evalset import (
    EvalSet,
    EvalSetError,
    ImageFolderInputs,
    LazyInputs,
    OnBadImage,
)

ATTR_PREFIX = "attr_"
INDEX_FILE = "index.csv"
CLASSES_FILE = "classes.txt"

NPZ_MISSING_KEY = (
    "{file}: missing array {key!r}; an eval-set .npz holds x, y, classes and attr_<name>"
)
NPZ_UNEXPECTED_KEY = (
    "{file}: unexpected array {key!r}; an eval-set .npz holds only x, y, classes and attr_<name>"
)
NPZ_UNREADABLE = "{file}: cannot read as .npz: {reason}"
NPZ_OBJECT_ARRAY = (
    "{file}: array {key!r} is a pickled object array; store names as unicode strings "
    "(np.array(names, dtype=str)) so it loads with allow_pickle=False"
)
NPZ_CLASSES = "{file}: 'classes' must be a 1-D array of class names (strings), got {what}"
MISSING_ATTRIBUTES = "{file}: missing attribute {what} {missing}; expected {expected}"
NO_INDEX = "{folder}: no index.csv; an eval-set folder holds index.csv (file, label, ...) + images"
UNKNOWN_LABEL = (
    "{file}, line {line}: label {label!r} is not a class name; expected one of {classes}"
)
EMPTY_FILE_NAME = "{file}, line {line}: column 'file' is empty; expected an image path"
NOT_UINT8_IMAGES = (
    "{source}: a folder eval set stores uint8 RGB images (n, height, width, 3), "
    "got {dtype} {shape}; save it as .npz instead"
)


def read_npz(path: str | Path, *, attributes: Sequence[str] | None = None) -> EvalSet:
    """Read an eval set from ``.npz``; ``attributes`` names attributes that must be present."""
    file = str(path)
    try:
        archive = np.load(file, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise EvalSetError(NPZ_UNREADABLE.format(file=file, reason=exc)) from exc
    with archive:
        keys = list(archive.files)
        for key in ("x", "y", "classes"):
            if key not in keys:
                raise EvalSetError(NPZ_MISSING_KEY.format(file=file, key=key))
        for key in keys:
            if key not in ("x", "y", "classes") and not key.startswith(ATTR_PREFIX):
                raise EvalSetError(NPZ_UNEXPECTED_KEY.format(file=file, key=key))
        arrays = {key: _npz_array(archive, key, file) for key in keys}
    classes = arrays.pop("classes")
    if classes.ndim != 1 or classes.dtype.kind != "U":
        what = f"dtype {classes.dtype} shape {classes.shape}"
        raise EvalSetError(NPZ_CLASSES.format(file=file, what=what))
    attrs = {k[len(ATTR_PREFIX) :]: v for k, v in arrays.items() if k.startswith(ATTR_PREFIX)}
    _require_attributes(file, attrs, attributes, what="array(s)", prefix=ATTR_PREFIX)
    return EvalSet(
        x=arrays["x"],
        y=arrays["y"],
        classes=tuple(classes.tolist()),
        attributes=attrs,
        source=file,
    )


def save_npz(evalset: EvalSet, path: str | Path, *, compress: bool = True) -> Path:
    """Write ``evalset`` as ``.npz`` (atomically; a lazy set is loaded batch by batch)."""
    arrays: dict[str, np.ndarray] = {
        "x": evalset.inputs(),
        "y": evalset.y,
        "classes": np.asarray(evalset.classes, dtype=str),
    }
    for name, values in evalset.attributes.items():
        arrays[ATTR_PREFIX + name] = np.asarray(values, dtype=str)
    target = Path(path)
    with atomic_open(target) as handle:
        if compress:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
        else:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
    return target


def read_folder(
    path: str | Path,
    *,
    size: int | tuple[int, int] | None = None,
    on_bad_image: OnBadImage = "error",
    attributes: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
) -> EvalSet:
    """Read a folder eval set; images load lazily, batch by batch, resized to ``size``.

    Class order comes from ``classes``, else ``classes.txt``, else the sorted labels. Images
    that cannot be decoded raise, or with ``on_bad_image="skip"`` drop their row and are counted
    in ``info["skipped_undecodable"]``.
    """
    import pandas as pd

    folder = Path(path)
    index = folder / INDEX_FILE
    if not index.is_file():
        raise EvalSetError(NO_INDEX.format(folder=folder))
    file = str(index)
    # Every cell is a name: no type guessing, and "NA" or "" stay the strings they are.
    table = pd.read_csv(index, dtype=str, keep_default_na=False)
    columns = [str(c) for c in table.columns]
    for required in ("file", "label"):
        if required not in columns:
            raise EvalSetError(
                f"{file}: missing column {required!r}; expected columns file, label, "
                "then one per attribute"
            )
    attr_columns = [c for c in columns if c not in ("file", "label")]
    _require_attributes(file, attr_columns, attributes, what="column(s)")
    names = _class_names(folder, table["label"].tolist(), classes)
    position = {name: i for i, name in enumerate(names)}
    labels = table["label"].tolist()
    files = table["file"].tolist()
    y = np.empty(len(table), dtype=np.int64)
    for i, (label, image) in enumerate(zip(labels, files, strict=True)):
        line = i + 2  # line 1 is the header
        if label not in position:
            raise EvalSetError(
                UNKNOWN_LABEL.format(file=file, line=line, label=label, classes=list(names))
            )
        if not image:
            raise EvalSetError(EMPTY_FILE_NAME.format(file=file, line=line))
        y[i] = position[label]
    where = [f"{file}, line {i + 2}" for i in range(len(files))]
    inputs, kept, problems = ImageFolderInputs.scan(
        folder, files, size=size, on_bad_image=on_bad_image, where=where
    )
    info = {"skipped_undecodable": len(problems)} if problems else {}
    return EvalSet(
        x=inputs,
        y=y[kept],
        classes=names,
        attributes={c: table[c].to_numpy(dtype=str)[kept] for c in attr_columns},
        source=str(folder),
        info=info,
    )


def save_folder(evalset: EvalSet, path: str | Path, *, batch_size: int = 256) -> Path:
    """Write ``evalset`` as a folder: PNG images (lossless), ``index.csv`` and ``classes.txt``."""
    import pandas as pd
    from PIL import Image

    folder = Path(path)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    if not isinstance(evalset.x, LazyInputs):
        x = evalset.x
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise EvalSetError(
                NOT_UINT8_IMAGES.format(source=evalset.source, dtype=x.dtype, shape=x.shape)
            )
    width = max(6, len(str(len(evalset))))
    files: list[str] = []
    for batch in evalset.batches(batch_size):
        for image in batch:
            name = f"images/{len(files):0{width}d}.png"
            Image.fromarray(np.asarray(image, dtype=np.uint8), mode="RGB").save(folder / name)
            files.append(name)
    table = pd.DataFrame({"file": files, "label": [evalset.classes[i] for i in evalset.y]})
    for name, values in evalset.attributes.items():
        table[name] = values
    with atomic_open(folder / INDEX_FILE) as handle:
        handle.write(table.to_csv(index=False, lineterminator="\n").encode())
    with atomic_open(folder / CLASSES_FILE) as handle:
        handle.write("".join(f"{c}\n" for c in evalset.classes).encode())
    return folder


def _class_names(
    folder: Path, labels: Sequence[str], classes: Sequence[str] | None
) -> tuple[str, ...]:
    if classes is not None:
        return tuple(classes)
    listed = folder / CLASSES_FILE
    if listed.is_file():
        return tuple(line for line in listed.read_text(encoding="utf-8").splitlines() if line)
    return tuple(sorted(set(labels)))


def _require_attributes(
    file: str,
    present: Collection[str],
    required: Sequence[str] | None,
    *,
    what: str,
    prefix: str = "",
) -> None:
    missing = [name for name in required or () if name not in present]
    if missing:
        raise EvalSetError(
            MISSING_ATTRIBUTES.format(
                file=file,
                what=what,
                missing=", ".join(prefix + m for m in missing),
                expected=", ".join(prefix + r for r in required or ()),
            )
        )


def _npz_array(archive: np.lib.npyio.NpzFile, key: str, file: str) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except ValueError as exc:
        raise EvalSetError(NPZ_OBJECT_ARRAY.format(file=file, key=key)) from exc
