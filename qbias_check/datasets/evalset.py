"""The labelled evaluation set the gate reads: inputs, labels, class names, protected attributes.

Inputs are either an in-memory array or a lazy object that loads batches on demand (an image
folder, or whatever a repo plugs in), so a large set never has to fit in memory; labels and
attributes are always in memory because every metric needs all of them at once.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

OnBadImage = Literal["error", "skip"]

EMPTY = "{source}: the eval set is empty (no examples)"
LENGTH_MISMATCH = "{source}: x has {nx} examples but y has {ny}; they must match"
NOT_INTEGER_LABELS = "{source}: y must hold integer class indices, got dtype {dtype}"
LABEL_OUT_OF_RANGE = (
    "{source}: y[{index}] = {value} is not a class index; expected 0..{last} for {count} classes"
)
NO_CLASSES = "{source}: classes is empty; expected one name per class"
DUPLICATE_CLASSES = "{source}: class names must be unique, {name!r} appears more than once"
ATTRIBUTE_LENGTH = (
    "{source}: attribute {name!r} has {count} values, expected {expected} (one per example)"
)
ATTRIBUTE_NOT_STRINGS = (
    "{source}: attribute {name!r} must hold group names (strings), got dtype {dtype}"
)
ATTRIBUTE_ONE_GROUP = (
    "{source}: attribute {name!r} has only one group ({group!r}); "
    "a protected attribute needs at least two"
)
ATTRIBUTE_NAME = "{source}: attribute name {name!r} must be a non-empty string without spaces"
BAD_BATCH_SIZE = "batch_size must be a positive integer, got {batch_size!r}"
BAD_FRACTIONS = "fractions must be positive and sum to 1, got {fractions!r}"
NO_SUBSET = "{source}: inputs of type {kind} cannot be subset (they have no subset() method)"


class EvalSetError(ValueError):
    """An eval set is malformed; the message names the file, row or column and what was expected."""


class EmptyEvalSetError(EvalSetError):
    """The eval set has no examples."""


class ImageDecodeError(EvalSetError):
    """An image file cannot be read or decoded."""


@runtime_checkable
class LazyInputs(Protocol):
    """Inputs that are loaded in batches instead of held in memory (e.g. an image folder)."""

    def __len__(self) -> int: ...

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield the inputs in order, ``batch_size`` at a time (the last batch may be shorter)."""
        ...

    @property
    def content_hash(self) -> str:
        """A hex digest that changes whenever any input changes."""
        ...

    def subset(self, indices: np.ndarray) -> LazyInputs:
        """Return the inputs at ``indices`` (in that order)."""
        ...


Inputs = np.ndarray | LazyInputs


@dataclass(frozen=True, eq=False)
class EvalSet:
    """Inputs ``x``, integer labels ``y``, class names and protected attributes (group names).

    ``x`` is an array with examples on the first axis or a :class:`LazyInputs`; ``attributes``
    maps a name such as ``"male"`` to one group name per example (``"female"``/``"male"``).
    ``source`` says where the set came from; ``info`` carries loader notes (e.g. skipped rows)
    and, like ``source``, is not part of the content hash.
    """

    x: Inputs
    y: np.ndarray
    classes: tuple[str, ...]
    attributes: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: str = "<memory>"
    info: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = self.source
        x = self.x
        if not isinstance(x, LazyInputs):
            x = np.asarray(x)
            if x.ndim == 0:
                raise EvalSetError(f"{src}: x must have the examples on its first axis")
            if x.dtype.kind not in "biuf":
                raise EvalSetError(f"{src}: x must be a numeric array, got dtype {x.dtype}")
            x = _read_only(x)
        y = np.asarray(self.y)
        if y.ndim != 1:
            raise EvalSetError(f"{src}: y must be one label per example (1-D), got shape {y.shape}")
        if y.size and not np.issubdtype(y.dtype, np.integer):
            raise EvalSetError(NOT_INTEGER_LABELS.format(source=src, dtype=y.dtype))
        y = _read_only(y.astype(np.int64, copy=False))
        classes = tuple(str(c) for c in self.classes)
        if not classes:
            raise EvalSetError(NO_CLASSES.format(source=src))
        seen: set[str] = set()
        for name in classes:
            if name in seen:
                raise EvalSetError(DUPLICATE_CLASSES.format(source=src, name=name))
            seen.add(name)
        if len(x) != len(y):
            raise EvalSetError(LENGTH_MISMATCH.format(source=src, nx=len(x), ny=len(y)))
        if len(y) == 0:
            raise EmptyEvalSetError(EMPTY.format(source=src))
        bad = np.flatnonzero((y < 0) | (y >= len(classes)))
        if bad.size:
            i = int(bad[0])
            raise EvalSetError(
                LABEL_OUT_OF_RANGE.format(
                    source=src, index=i, value=int(y[i]), last=len(classes) - 1, count=len(classes)
                )
            )
        attributes = {
            name: _group_names(name, values, len(y), src)
            for name, values in self.attributes.items()
        }
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "info", dict(self.info))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        attrs = ", ".join(f"{k}={sorted(set(v.tolist()))}" for k, v in self.attributes.items())
        head = f"EvalSet({len(self)} examples, classes={list(self.classes)}"
        return f"{head}, {attrs}, source={self.source!r})"

    @property
    def is_lazy(self) -> bool:
        """True when the inputs are loaded in batches rather than held in memory."""
        return isinstance(self.x, LazyInputs)

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 over inputs, labels, class names and attributes (computed once)."""
        h = hashlib.sha256()
        if isinstance(self.x, LazyInputs):
            _update(h, b"lazy", self.x.content_hash.encode())
        else:
            x = np.ascontiguousarray(self.x)
            _update(h, b"x", x.dtype.str.encode(), json.dumps(x.shape).encode())
            h.update(x.data.cast("B"))
        _update(h, b"y", self.y.astype("<i8").tobytes())
        _update(h, b"classes", json.dumps(self.classes).encode())
        for name in sorted(self.attributes):
            values = self.attributes[name]
            _update(h, b"attr", name.encode(), json.dumps(values.tolist()).encode())
        return h.hexdigest()

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield the inputs in order, ``batch_size`` examples at a time."""
        _check_batch_size(batch_size)
        if isinstance(self.x, LazyInputs):
            yield from self.x.batches(batch_size)
            return
        for start in range(0, len(self), batch_size):
            yield self.x[start : start + batch_size]

    def inputs(self) -> np.ndarray:
        """Return all inputs as one array (loads a lazy set completely)."""
        if isinstance(self.x, LazyInputs):
            return np.concatenate(list(self.x.batches(1024)), axis=0)
        return self.x

    def subset(self, indices: Sequence[int] | np.ndarray, *, source: str | None = None) -> EvalSet:
        """Return the examples at ``indices`` (in that order) as a new eval set."""
        idx = np.asarray(indices, dtype=np.int64)
        if isinstance(self.x, LazyInputs):
            if not hasattr(self.x, "subset"):
                raise EvalSetError(NO_SUBSET.format(source=self.source, kind=type(self.x).__name__))
            x: Inputs = self.x.subset(idx)
        else:
            x = self.x[idx]
        return EvalSet(
            x=x,
            y=self.y[idx],
            classes=self.classes,
            attributes={k: v[idx] for k, v in self.attributes.items()},
            source=source or f"{self.source}[subset of {len(idx)}]",
            info=self.info,
        )


def split(
    evalset: EvalSet,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    *,
    seed: int = 0,
) -> tuple[EvalSet, ...]:
    """Split at random into parts of the given fractions (the thesis uses 60/20/20)."""
    parts = split_indices(len(evalset), fractions, seed=seed)
    return tuple(
        evalset.subset(idx, source=f"{evalset.source}[part {i + 1}/{len(parts)}, seed={seed}]")
        for i, idx in enumerate(parts)
    )


def split_indices(n: int, fractions: Sequence[float], *, seed: int = 0) -> list[np.ndarray]:
    """Return sorted index arrays that partition ``range(n)`` at random in the given fractions."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or f.size == 0 or np.any(f <= 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(BAD_FRACTIONS.format(fractions=tuple(fractions)))
    order = np.random.default_rng(seed).permutation(n)
    # Rounding the cumulative sum (not each part) makes the parts add up to n exactly.
    bounds = np.round(np.cumsum(f) * n).astype(np.int64)
    bounds[-1] = n
    starts = np.concatenate([[0], bounds[:-1]])
    return [np.sort(order[a:b]) for a, b in zip(starts, bounds, strict=True)]


class ImageFolderInputs:
    """Image files under ``root``, decoded to RGB uint8 and resized to ``size`` batch by batch.

    Build it with :meth:`scan`, which reads every file once to check that it decodes and to hash
    its bytes; afterwards only the per-file digests stay in memory.
    """

    def __init__(
        self,
        root: Path,
        files: Sequence[str],
        digests: Sequence[bytes],
        size: tuple[int, int],
    ) -> None:
        self.root = Path(root)
        self.files = tuple(files)
        self.digests = tuple(digests)
        self.size = size

    @classmethod
    def scan(
        cls,
        root: str | Path,
        files: Sequence[str],
        *,
        size: int | tuple[int, int] | None,
        on_bad_image: OnBadImage = "error",
        where: Sequence[str] | None = None,
    ) -> tuple[ImageFolderInputs, np.ndarray, list[str]]:
        """Check and hash every file; return the inputs, the kept positions and the problems.

        ``size`` is (height, width) or one number for a square; ``None`` keeps the size of the
        images, which must then all agree. ``where`` names each file's row in messages.
        """
        root = Path(root)
        target = _size_tuple(size)
        kept: list[int] = []
        digests: list[bytes] = []
        problems: list[str] = []
        for i, name in enumerate(files):
            label = where[i] if where is not None else str(root / name)
            try:
                data = (root / name).read_bytes()
                image = decode_image(data, size=None)
            except (OSError, ValueError) as exc:
                message = f"{label}: cannot read or decode image {str(root / name)!r}: {exc}"
                if on_bad_image == "error":
                    raise ImageDecodeError(message) from exc
                problems.append(message)
                continue
            if target is None:
                target = (image.shape[0], image.shape[1])
            elif size is None and image.shape[:2] != target:
                raise EvalSetError(
                    f"{label}: image {str(root / name)!r} is {image.shape[0]}x{image.shape[1]} "
                    f"(HxW) but earlier images are {target[0]}x{target[1]}; pass a size to resize"
                )
            kept.append(i)
            digests.append(hashlib.sha256(data).digest())
        inputs = cls(root, [files[i] for i in kept], digests, target or (0, 0))
        return inputs, np.asarray(kept, dtype=np.int64), problems

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"ImageFolderInputs({str(self.root)!r}, {len(self)} images, size={self.size})"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(examples, height, width, 3), as an array of these inputs would have."""
        return (len(self), self.size[0], self.size[1], 3)

    @property
    def dtype(self) -> np.dtype[np.uint8]:
        """Always uint8 RGB."""
        return np.dtype(np.uint8)

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 over the target size and the bytes of every file, in order."""
        h = hashlib.sha256()
        _update(h, b"images", json.dumps(list(self.size)).encode())
        for digest in self.digests:
            h.update(digest)
        return h.hexdigest()

    def load(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Decode the images at ``indices`` into an array (n, height, width, 3) of uint8."""
        out = np.empty((len(indices), self.size[0], self.size[1], 3), dtype=np.uint8)
        for j, i in enumerate(indices):
            out[j] = decode_image((self.root / self.files[int(i)]).read_bytes(), size=self.size)
        return out

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield the decoded images in order, ``batch_size`` at a time."""
        _check_batch_size(batch_size)
        for start in range(0, len(self), batch_size):
            yield self.load(range(start, min(start + batch_size, len(self))))

    def subset(self, indices: np.ndarray) -> ImageFolderInputs:
        """Return the images at ``indices`` (no file is read again)."""
        return ImageFolderInputs(
            self.root,
            [self.files[int(i)] for i in indices],
            [self.digests[int(i)] for i in indices],
            self.size,
        )


def decode_image(data: bytes, *, size: tuple[int, int] | None) -> np.ndarray:
    """Decode image bytes to RGB uint8 (height, width, 3), resized to ``size`` if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        # PIL reports truncated or corrupt files through several exception types.
        raise ImageDecodeError(str(exc) or type(exc).__name__) from exc
    if size is not None and (rgb.height, rgb.width) != size:
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _size_tuple(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return (h, w)


def _group_names(name: Any, values: Any, expected: int, source: str) -> np.ndarray:
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise EvalSetError(ATTRIBUTE_NAME.format(source=source, name=name))
    arr = np.asarray(values)
    if arr.dtype == object and all(isinstance(v, str) for v in arr.ravel().tolist()):
        arr = arr.astype(str)
    if arr.dtype.kind != "U":
        raise EvalSetError(ATTRIBUTE_NOT_STRINGS.format(source=source, name=name, dtype=arr.dtype))
    if arr.ndim != 1 or arr.shape[0] != expected:
        count = arr.shape[0] if arr.ndim == 1 else arr.size
        raise EvalSetError(
            ATTRIBUTE_LENGTH.format(source=source, name=name, count=count, expected=expected)
        )
    groups = np.unique(arr)
    if groups.size < 2:
        raise EvalSetError(
            ATTRIBUTE_ONE_GROUP.format(source=source, name=name, group=str(groups[0]))
        )
    return _read_only(arr)


def _read_only(arr: np.ndarray) -> np.ndarray:
    # A read-only view keeps the cached content hash honest without copying the caller's data.
    view = arr.view()
    view.setflags(write=False)
    return view


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(BAD_BATCH_SIZE.format(batch_size=batch_size))


def _update(h: Any, *parts: bytes) -> None:
    # Length prefixes keep different field splits from hashing to the same bytes.
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
