"""The content-addressed cache: hits, concurrent builders, killed writers, corrupt entries."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qbias_check.cache import (
    Cache,
    CacheWarning,
    cache_key,
    default_cache_dir,
    digest_array,
    digest_path,
)

KEY = {"what": "artifact", "model": "abc", "seed": 0}

# A helper process: waits for the go file, then asks for KEY with a slow build that records
# each call; prints the SHA-256 of the bytes it got back.
WORKER = textwrap.dedent(
    """
    import hashlib, os, sys, time
    from pathlib import Path
    from qbias_check.cache import Cache

    root, tag, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

    def build(tmp):
        with open(root / "calls.log", "a") as log:
            log.write(tag + "\\n")
        if mode == "die":
            tmp.write_bytes(b"partial")
            (root / "writing").touch()
            time.sleep(60)
        time.sleep(0.3)
        tmp.write_bytes(("built by " + tag).encode() * 1000)

    (root / f"ready-{tag}").touch()
    while not (root / "go").exists():
        time.sleep(0.01)
    path = Cache(root / "cache").get_or_build({"what": "artifact", "model": "abc"}, build)
    print(hashlib.sha256(path.read_bytes()).hexdigest())
    """
)


def start_workers(tmp_path: Path, tags: list[str], mode: str = "ok") -> list[subprocess.Popen[str]]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), tag, mode],
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in tags
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{t}").exists() for t in tags):
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.01)
    (tmp_path / "go").touch()
    return procs


def counting_build(payload: bytes, calls: list[int]) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        calls.append(1)
        tmp.write_bytes(payload)

    return build


def test_second_request_is_a_hit(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    calls: list[int] = []
    first = cache.get_or_build(KEY, counting_build(b"model bytes", calls), suffix=".tflite")
    second = cache.get_or_build(KEY, counting_build(b"other", calls), suffix=".tflite")
    assert first == second and first.suffix == ".tflite"
    assert first.read_bytes() == b"model bytes"
    assert len(calls) == 1
    record = json.loads(first.with_name(first.name + ".json").read_text())
    assert record["sha256"] == hashlib.sha256(b"model bytes").hexdigest()


def test_key_depends_on_content_not_order() -> None:
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    assert cache_key({"a": b"xy"}) != cache_key({"a": b"xz"})
    assert cache_key({"a": 1}) != cache_key({"a": "1"})
    with pytest.raises(TypeError, match=r"cache key part 'a\.b' has type object"):
        cache_key({"a": {"b": object()}})


def test_arrays_round_trip_without_pickle(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    scores = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    calls: list[int] = []

    def compute() -> np.ndarray:
        calls.append(1)
        return scores

    first = cache.get_or_compute_array(KEY, compute)
    second = cache.get_or_compute_array(KEY, compute)
    np.testing.assert_array_equal(first, scores)
    np.testing.assert_array_equal(second, scores)
    assert second.dtype == np.float32 and len(calls) == 1
    with pytest.raises(ValueError, match="pickle"):
        cache.get_or_compute_array({"x": 1}, lambda: np.array([{"a": 1}], dtype=object))
    assert len(list(tmp_path.rglob("*.npy"))) == 1  # the float entry only, no object array


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_bytes(b"X" + p.read_bytes()[1:]), "digest does not match"),
        (lambda p: p.write_bytes(p.read_bytes()[:5]), "size 5 bytes"),
        (lambda p: p.with_name(p.name + ".json").unlink(), "record is missing"),
        (lambda p: p.with_name(p.name + ".json").write_text("{"), "record is unreadable"),
    ],
)
def test_corrupt_entry_is_rebuilt_with_a_warning(
    tmp_path: Path, damage: Callable[[Path], object], reason: str
) -> None:
    cache = Cache(tmp_path)
    calls: list[int] = []
    path = cache.get_or_build(KEY, counting_build(b"good bytes!", calls))
    damage(path)
    with pytest.warns(CacheWarning, match=f"{path.name} is corrupt .*{reason}"):
        again = cache.get_or_build(KEY, counting_build(b"good bytes!", calls))
    assert again.read_bytes() == b"good bytes!"
    assert len(calls) == 2


def test_failed_or_empty_build_leaves_no_entry(tmp_path: Path) -> None:
    cache = Cache(tmp_path)

    def failing(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("converter crashed")

    with pytest.raises(RuntimeError, match="converter crashed"):
        cache.get_or_build(KEY, failing)
    with pytest.raises(RuntimeError, match="wrote nothing"):
        cache.get_or_build(KEY, lambda tmp: None)
    path = cache.entry_path(KEY)
    assert not path.exists()
    assert not list(path.parent.glob("*.tmp*"))


def test_four_processes_build_once_and_read_identical_bytes(tmp_path: Path) -> None:
    procs = start_workers(tmp_path, ["a", "b", "c", "d"])
    digests = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len((tmp_path / "calls.log").read_text().split()) == 1
    assert len(set(digests)) == 1 and len(digests[0]) == 64


def test_process_killed_mid_write_leaves_no_corrupt_entry(tmp_path: Path) -> None:
    (victim,) = start_workers(tmp_path, ["victim"], mode="die")
    deadline = time.monotonic() + 60
    while not (tmp_path / "writing").exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    cache = Cache(tmp_path / "cache")
    key = {"what": "artifact", "model": "abc"}
    path = cache.entry_path(key)
    assert not path.exists()
    assert list(path.parent.glob("*.tmp*"))  # the victim's partial temp file is still there
    calls: list[int] = []
    # The kernel released the dead process's lock, so this neither hangs nor reads "partial".
    assert cache.get_or_build(key, counting_build(b"complete", calls)).read_bytes() == b"complete"
    assert calls == [1]
    assert not list(path.parent.glob("*.tmp*"))


def test_default_dir_and_environment_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QBIAS_CACHE_DIR", raising=False)
    assert default_cache_dir() == Path(".qbias_cache")
    monkeypatch.setenv("QBIAS_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert Cache().root == tmp_path / "elsewhere"


def test_digests_of_arrays_and_directories(tmp_path: Path) -> None:
    a = np.arange(6, dtype=np.int64)
    assert digest_array(a.reshape(2, 3)) != digest_array(a.reshape(3, 2))
    assert digest_array(a) != digest_array(a.astype(np.int32))
    assert digest_array(a[::2]) == digest_array(np.ascontiguousarray(a[::2]))
    d = tmp_path / "model"
    (d / "variables").mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"graph")
    (d / "variables" / "v").write_bytes(b"weights")
    before = digest_path(d)
    (d / "variables" / "v").write_bytes(b"weightz")
    assert digest_path(d) != before
    (d / "variables" / "v").rename(d / "variables" / "w")
    assert digest_path(d) != before
