"""Find the loader for an eval-set path: built-in formats, registered loaders, entry points.

A repo plugs in its own format (a ``tf.data`` pipeline, a database, ...) by calling
:func:`register_loader` (e.g. in its ``conftest.py``), by declaring an entry point in the group
``qbias_check.loaders`` whose name is the suffix (``.tfrecord``) or scheme (``tfds:``), or by
naming a ``"module:function"`` as ``loader``. A loader is called as ``loader(path, **options)``
and returns an :class:`EvalSet`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from qbias_check.datasets.evalset import EvalSet, EvalSetError

Loader = Callable[..., EvalSet]

ENTRY_POINT_GROUP = "qbias_check.loaders"
NO_LOADER = (
    "{path}: no loader for this path; expected a .npz file, a folder with index.csv, "
    "a synthetic:hair?n=...&seed=... address, or a format registered with register_loader "
    "(registered: {known})"
)
NO_SUCH_PATH = "{path}: no such file or folder"
BAD_LOADER_NAME = "loader {name!r} must be a callable or 'module:function'"
ALREADY_REGISTERED = "a loader for {key!r} is already registered; pass replace=True to override"
BAD_KEY = (
    "register_loader needs one of suffix='.ext' or scheme='name' "
    "(got suffix={suffix!r}, scheme={scheme!r})"
)

# Two or more letters before the colon, so a Windows drive ("C:") is not taken for a scheme.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")

_suffixes: dict[str, Loader] = {}
_schemes: dict[str, Loader] = {}


def register_loader(
    loader: Loader,
    *,
    suffix: str | None = None,
    scheme: str | None = None,
    replace: bool = False,
) -> Loader:
    """Register ``loader`` for paths ending in ``suffix`` or starting with ``scheme:``."""
    if (suffix is None) == (scheme is None) or suffix == "" or scheme == "":
        raise ValueError(BAD_KEY.format(suffix=suffix, scheme=scheme))
    if suffix is not None:
        table, key = _suffixes, suffix.lower() if suffix.startswith(".") else f".{suffix.lower()}"
    else:
        table, key = _schemes, str(scheme).rstrip(":").lower()
    if key in table and not replace:
        raise ValueError(ALREADY_REGISTERED.format(key=key))
    table[key] = loader
    return loader


def load_eval_set(
    path: str | Path, *, loader: Loader | str | None = None, **options: Any
) -> EvalSet:
    """Load an eval set from ``path`` with the loader its suffix, scheme or ``loader`` selects.

    ``options`` go to the loader, e.g. ``attributes=("male",)`` (must be present), and for a
    folder ``size=64`` and ``on_bad_image="skip"``.
    """
    if loader is not None:
        return _resolve_named(loader)(path, **options)
    text = str(path)
    match = _SCHEME.match(text)
    if match and not Path(text).exists():
        found = _lookup(_schemes, match.group(1).lower(), f"{match.group(1).lower()}:")
        if found is None:
            raise EvalSetError(NO_LOADER.format(path=text, known=_known()))
        return found(text, **options)
    target = Path(text)
    if not target.exists():
        raise EvalSetError(NO_SUCH_PATH.format(path=text))
    if target.is_dir():
        from qbias_check.datasets.formats import read_folder

        return read_folder(target, **options)
    name = target.name.lower()
    # Longest suffix first, so ".tar.gz" wins over ".gz".
    for key in sorted(_suffixes, key=len, reverse=True):
        if name.endswith(key):
            return _suffixes[key](target, **options)
    for dot in range(len(name)):
        if name[dot] == "." and (found := _lookup(_suffixes, name[dot:], name[dot:])) is not None:
            return found(target, **options)
    raise EvalSetError(NO_LOADER.format(path=text, known=_known()))


def _lookup(table: dict[str, Loader], key: str, entry_name: str) -> Loader | None:
    if key in table:
        return table[key]
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name.lower() == entry_name:
            table[key] = entry.load()
            return table[key]
    return None


def _resolve_named(loader: Loader | str) -> Loader:
    if callable(loader):
        return loader
    module, _, attr = str(loader).partition(":")
    if not module or not attr:
        raise ValueError(BAD_LOADER_NAME.format(name=loader))
    found = getattr(importlib.import_module(module), attr)
    if not callable(found):
        raise ValueError(BAD_LOADER_NAME.format(name=loader))
    return found  # type: ignore[no-any-return]


def _known() -> str:
    keys = sorted(_suffixes) + sorted(f"{s}:" for s in _schemes)
    return ", ".join(keys) or "none"


def _load_synthetic(path: str | Path, **options: Any) -> EvalSet:
    from qbias_check.datasets.synthetic import from_address

    return from_address(str(path), **options)


def _load_npz(path: str | Path, **options: Any) -> EvalSet:
    from qbias_check.datasets.formats import read_npz

    return read_npz(path, **options)


register_loader(_load_npz, suffix=".npz")
register_loader(_load_synthetic, scheme="synthetic")
