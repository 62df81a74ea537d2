"""Content-addressed on-disk cache for built artifacts and predictions, safe across processes.

An entry is a file named by the SHA-256 of its key parts plus a small JSON record that holds the
digest of the file's bytes. Writes go to a temporary file that ``os.replace`` moves into place; a
file lock per key makes concurrent builders (xdist workers, parallel CI jobs) build once while the
others wait and read. Every read checks the recorded digest: a truncated or corrupt entry is
rebuilt with a warning, never used. Arrays are stored with ``np.save`` (``allow_pickle=False``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from qbias_check.atomic import write_bytes

DEFAULT_DIR = ".qbias_cache"
ENV_DIR = "QBIAS_CACHE_DIR"
_CHUNK = 1 << 20

KEY_PART_TYPE = (
    "cache key part {name!r} has type {type}; "
    "expected str, int, float, bool, None, bytes, or a list/dict of those"
)
CORRUPT_ENTRY = "cache entry {path} is corrupt ({reason}); rebuilding it"
NOT_BUILT = "the build function for cache entry {path} wrote nothing to the path it was given"


class CacheWarning(UserWarning):
    """A cache entry was found corrupt or incomplete and is being rebuilt."""


def digest_bytes(data: bytes) -> str:
    """SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def digest_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def digest_path(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, or of a directory's relative names and file contents."""
    root = Path(path)
    if not root.is_dir():
        return digest_file(root)
    h = hashlib.sha256()
    # Sorted relative POSIX names make the digest independent of listing order and platform.
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(file.relative_to(root).as_posix().encode() + b"\0")
        h.update(digest_file(file).encode())
    return h.hexdigest()


def digest_array(x: np.ndarray) -> str:
    """SHA-256 hex digest of an array's dtype, shape and C-ordered bytes."""
    arr = np.ascontiguousarray(x)  # hashed in place, without a copy of the bytes
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.data)
    return h.hexdigest()


def _canonical(name: str, value: Any) -> Any:
    """Turn a key part into JSON-serializable data; bytes become their digest."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, bytes):
        return {"sha256": digest_bytes(value)}
    if isinstance(value, list | tuple):
        return [_canonical(name, v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _canonical(f"{name}.{k}", v) for k, v in value.items()}
    raise TypeError(KEY_PART_TYPE.format(name=name, type=type(value).__name__))


def _canonical_parts(key_parts: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _canonical(str(k), v) for k, v in key_parts.items()}


def cache_key(key_parts: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of the canonical JSON form of ``key_parts``."""
    text = json.dumps(
        _canonical_parts(key_parts), sort_keys=True, separators=(",", ":"), allow_nan=True
    )
    return digest_bytes(text.encode())


def default_cache_dir() -> Path:
    """``$QBIAS_CACHE_DIR`` when set, else ``.qbias_cache`` in the working directory."""
    return Path(os.environ.get(ENV_DIR) or DEFAULT_DIR)


class Cache:
    """A content-addressed cache rooted at ``root`` (default: :func:`default_cache_dir`)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, lock_timeout: float = -1):
        self.root = Path(root) if root is not None else default_cache_dir()
        # -1 waits forever: a waiting worker has nothing better to do than wait for the builder.
        self.lock_timeout = lock_timeout

    def entry_path(self, key_parts: Mapping[str, Any], suffix: str = "") -> Path:
        """Where the entry for ``key_parts`` lives (it may not exist yet)."""
        key = cache_key(key_parts)
        return self.root / key[:2] / f"{key}{suffix}"

    def get_or_build(
        self,
        key_parts: Mapping[str, Any],
        build: Callable[[Path], None],
        *,
        suffix: str = "",
    ) -> Path:
        """Return the verified entry for ``key_parts``, calling ``build(tmp_path)`` on a miss.

        ``build`` must write the entry's bytes to the path it is given; the cache moves that file
        into place atomically and records its digest.
        """
        path = self.entry_path(key_parts, suffix)
        if self._read_verified(path, warn=False) is not None:
            return path
        self._build_locked(path, key_parts, build)
        return path

    def get_bytes(
        self,
        key_parts: Mapping[str, Any],
        build: Callable[[Path], None],
        *,
        suffix: str = "",
    ) -> bytes:
        """Like :meth:`get_or_build`, but return the verified bytes (read once)."""
        path = self.entry_path(key_parts, suffix)
        data = self._read_verified(path, warn=False)
        if data is None:
            data = self._build_locked(path, key_parts, build)
        return data

    def get_or_compute_array(
        self, key_parts: Mapping[str, Any], compute: Callable[[], np.ndarray]
    ) -> np.ndarray:
        """Return the cached array for ``key_parts``, calling ``compute()`` on a miss."""

        def build(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(compute()), allow_pickle=False)

        data = self.get_bytes(key_parts, build, suffix=".npy")
        array: np.ndarray = np.load(io.BytesIO(data), allow_pickle=False)
        return array

    def _build_locked(
        self, path: Path, key_parts: Mapping[str, Any], build: Callable[[Path], None]
    ) -> bytes:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=self.lock_timeout):
            # Another process may have built it while this one waited for the lock.
            data = self._read_verified(path, warn=True)
            if data is not None:
                return data
            self._remove_stale_temps(path)
            fd, tmp_name = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix
            )
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                build(tmp)
                # mkstemp made an empty file, so empty means the build never wrote its output.
                data = tmp.read_bytes() if tmp.is_file() else b""
                if not data:
                    raise RuntimeError(NOT_BUILT.format(path=path))
                _fsync(tmp)
                # The data goes in first, the record second: a crash between them leaves an entry
                # without a matching record, which reads as corrupt and is rebuilt.
                os.replace(tmp, path)
                record = {
                    "sha256": digest_bytes(data),
                    "size": len(data),
                    "key": _canonical_parts(key_parts),
                }
                write_bytes(_record_path(path), json.dumps(record, sort_keys=True).encode())
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            return data

    @staticmethod
    def _remove_stale_temps(path: Path) -> None:
        # Only the lock holder writes temps for this key: any left over come from a killed builder.
        for stale in path.parent.glob(f".{path.name}.*.tmp*"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    @staticmethod
    def _read_verified(path: Path, *, warn: bool) -> bytes | None:
        """The entry's bytes if its recorded digest matches, else None (a warning when asked)."""
        if not path.exists():
            return None
        reason = None
        try:
            record = json.loads(_record_path(path).read_text())
            data = path.read_bytes()
            if record.get("size") != len(data):
                reason = f"size {len(data)} bytes, recorded {record.get('size')}"
            elif record.get("sha256") != digest_bytes(data):
                reason = "its SHA-256 digest does not match the recorded one"
        except FileNotFoundError:
            reason = "its digest record is missing"
        except (ValueError, AttributeError):
            reason = "its digest record is unreadable"
        if reason is None:
            return data
        if warn:
            warnings.warn(
                CORRUPT_ENTRY.format(path=path, reason=reason), CacheWarning, stacklevel=4
            )
        return None


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
