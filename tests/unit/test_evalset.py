"""EvalSet validation and hashing, the .npz and folder formats, loaders and splits."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qbias_check.datasets import (
    EmptyEvalSetError,
    EvalSet,
    EvalSetError,
    ImageDecodeError,
    ImageFolderInputs,
    LazyInputs,
    load_eval_set,
    read_folder,
    read_npz,
    register_loader,
    save_folder,
    save_npz,
    split,
)
from qbias_check.datasets import evalset as ev
from qbias_check.datasets import formats as fm
from qbias_check.datasets import registry as rg


def small(n: int = 12, *, source: str = "<memory>") -> EvalSet:
    rng = np.random.default_rng(0)
    return EvalSet(
        x=rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8),
        y=np.arange(n) % 3,
        classes=("bald", "black", "blond"),
        attributes={
            "male": np.array(["female", "male"] * (n // 2)),
            "young": np.array(["old", "young", "young"] * (n // 3)),
        },
        source=source,
    )


def same(a: EvalSet, b: EvalSet) -> None:
    assert np.array_equal(a.inputs(), b.inputs())
    assert a.inputs().dtype == b.inputs().dtype
    assert np.array_equal(a.y, b.y)
    assert a.classes == b.classes
    assert a.attributes.keys() == b.attributes.keys()
    for name in a.attributes:
        assert a.attributes[name].tolist() == b.attributes[name].tolist()


def write_folder(root: Path, rows: list[str], *, header: str = "file,label,male") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, colour in (("a.png", 10), ("b.png", 200), ("c.png", 90)):
        Image.new("RGB", (5, 4), (colour, 0, 0)).save(root / name)
    (root / "index.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


# --- construction ------------------------------------------------------------------------


def test_valid_set_has_length_names_and_read_only_arrays() -> None:
    es = small()
    assert len(es) == 12
    assert es.classes == ("bald", "black", "blond")
    assert es.y.dtype == np.int64
    assert not es.is_lazy
    with pytest.raises(ValueError):
        es.y[0] = 1
    assert "12 examples" in repr(es)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"y": np.zeros(11, dtype=int)},
            ev.LENGTH_MISMATCH.format(source="s", nx=12, ny=11),
        ),
        (
            {"y": np.array([0] * 11 + [3])},
            ev.LABEL_OUT_OF_RANGE.format(source="s", index=11, value=3, last=2, count=3),
        ),
        (
            {"y": np.array([-1] + [0] * 11)},
            ev.LABEL_OUT_OF_RANGE.format(source="s", index=0, value=-1, last=2, count=3),
        ),
        ({"y": np.zeros(12) + 0.5}, ev.NOT_INTEGER_LABELS.format(source="s", dtype="float64")),
        ({"classes": ()}, ev.NO_CLASSES.format(source="s")),
        ({"classes": ("a", "b", "a")}, ev.DUPLICATE_CLASSES.format(source="s", name="a")),
        (
            {"attributes": {"male": np.array(["female", "male"] * 5)}},
            ev.ATTRIBUTE_LENGTH.format(source="s", name="male", count=10, expected=12),
        ),
        (
            {"attributes": {"male": np.array(["male"] * 12)}},
            ev.ATTRIBUTE_ONE_GROUP.format(source="s", name="male", group="male"),
        ),
        (
            {"attributes": {"male": np.arange(12) % 2}},
            ev.ATTRIBUTE_NOT_STRINGS.format(source="s", name="male", dtype="int64"),
        ),
        (
            {"attributes": {"is male": np.array(["f", "m"] * 6)}},
            ev.ATTRIBUTE_NAME.format(source="s", name="is male"),
        ),
    ],
)
def test_bad_construction_names_the_problem(change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "x": np.zeros((12, 2)),
        "y": np.arange(12) % 3,
        "classes": ("a", "b", "c"),
        "source": "s",
    }
    fields.update(change)
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        EvalSet(**fields)  # type: ignore[arg-type]


def test_empty_set_is_its_own_error() -> None:
    with pytest.raises(EmptyEvalSetError, match=re.escape(ev.EMPTY.format(source="s"))):
        EvalSet(x=np.zeros((0, 3)), y=np.zeros(0, dtype=int), classes=("a",), source="s")


def test_object_group_names_are_accepted_as_strings() -> None:
    es = EvalSet(
        x=np.zeros((4, 1)),
        y=np.zeros(4, dtype=int),
        classes=("a",),
        attributes={"male": np.array(["f", "m", "f", "m"], dtype=object)},
    )
    assert es.attributes["male"].dtype.kind == "U"


# --- hash and batches --------------------------------------------------------------------


def test_content_hash_is_cached_and_follows_every_field() -> None:
    es = small()
    assert es.content_hash == es.content_hash == small(source="elsewhere").content_hash
    assert "content_hash" in es.__dict__  # computed once
    x = es.inputs().copy()
    x[0, 0, 0, 0] ^= 1
    variants = [
        EvalSet(x=x, y=es.y, classes=es.classes, attributes=es.attributes),
        EvalSet(x=x.astype(np.int16), y=es.y, classes=es.classes, attributes=es.attributes),
        EvalSet(x=es.x, y=es.y[::-1].copy(), classes=es.classes, attributes=es.attributes),
        EvalSet(x=es.x, y=es.y, classes=("bald", "black", "gray"), attributes=es.attributes),
        EvalSet(x=es.x, y=es.y, classes=es.classes, attributes={"male": es.attributes["male"]}),
    ]
    hashes = {v.content_hash for v in variants} | {es.content_hash}
    assert len(hashes) == len(variants) + 1


def test_batches_cover_the_set_in_order() -> None:
    es = small()
    parts = list(es.batches(5))
    assert [len(p) for p in parts] == [5, 5, 2]
    assert np.array_equal(np.concatenate(parts), es.inputs())
    with pytest.raises(ValueError, match=re.escape(ev.BAD_BATCH_SIZE.format(batch_size=0))):
        list(es.batches(0))


# --- .npz --------------------------------------------------------------------------------


def test_npz_round_trip_is_exact_and_needs_no_pickle(tmp_path: Path) -> None:
    es = small()
    path = save_npz(es, tmp_path / "eval.npz")
    with np.load(path, allow_pickle=False) as raw:
        assert sorted(raw.files) == ["attr_male", "attr_young", "classes", "x", "y"]
        assert raw["attr_male"].dtype.kind == "U"
        assert raw["classes"].dtype.kind == "U"
    back = read_npz(path, attributes=("male",))
    same(es, back)
    assert back.content_hash == es.content_hash
    assert back.source == str(path)
    save_npz(es, tmp_path / "plain.npz", compress=False)
    assert read_npz(tmp_path / "plain.npz").content_hash == es.content_hash


def test_npz_float_inputs_round_trip(tmp_path: Path) -> None:
    es = small()
    floats = EvalSet(
        x=es.inputs().astype(np.float32) / 255, y=es.y, classes=es.classes, attributes=es.attributes
    )
    same(floats, read_npz(save_npz(floats, tmp_path / "f.npz")))


def _npz(path: Path, **arrays: object) -> str:
    base: dict[str, object] = {
        "x": np.zeros((4, 2)),
        "y": np.array([0, 1, 0, 1]),
        "classes": np.array(["a", "b"]),
        "attr_male": np.array(["f", "m", "f", "m"]),
    }
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})  # type: ignore[arg-type]
    return str(path)


def test_npz_missing_key(tmp_path: Path) -> None:
    file = _npz(tmp_path / "e.npz", y=None)
    message = fm.NPZ_MISSING_KEY.format(file=file, key="y")
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        read_npz(file)


def test_npz_unexpected_key(tmp_path: Path) -> None:
    file = _npz(tmp_path / "e.npz", male=np.array(["f", "m", "f", "m"]))
    message = fm.NPZ_UNEXPECTED_KEY.format(file=file, key="male")
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        read_npz(file)


def test_npz_object_array_is_refused(tmp_path: Path) -> None:
    file = _npz(tmp_path / "e.npz", attr_male=np.array(["f", "m", "f", "m"], dtype=object))
    message = fm.NPZ_OBJECT_ARRAY.format(file=file, key="attr_male")
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        read_npz(file)


def test_npz_missing_required_attribute(tmp_path: Path) -> None:
    file = _npz(tmp_path / "e.npz")
    message = fm.MISSING_ATTRIBUTES.format(
        file=file, what="array(s)", missing="attr_young", expected="attr_male, attr_young"
    )
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        read_npz(file, attributes=("male", "young"))


def test_npz_length_mismatch_names_the_file(tmp_path: Path) -> None:
    file = _npz(tmp_path / "e.npz", x=np.zeros((5, 2)))
    message = ev.LENGTH_MISMATCH.format(source=file, nx=5, ny=4)
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        read_npz(file)


def test_npz_attribute_with_one_group(tmp_path: Path) -> None:
    file = _npz(tmp_path / "e.npz", attr_male=np.array(["m"] * 4))
    message = ev.ATTRIBUTE_ONE_GROUP.format(source=file, name="male", group="m")
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        read_npz(file)


def test_npz_that_is_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "e.npz").write_text("hello")
    with pytest.raises(EvalSetError, match=re.escape(f"{tmp_path / 'e.npz'}: cannot read")):
        read_npz(tmp_path / "e.npz")


# --- folder ------------------------------------------------------------------------------


def test_folder_round_trip_is_exact_and_lazy(tmp_path: Path) -> None:
    es = small()
    save_folder(es, tmp_path / "set")
    back = read_folder(tmp_path / "set", attributes=("male", "young"))
    assert back.is_lazy
    assert isinstance(back.x, ImageFolderInputs)
    assert isinstance(back.x, LazyInputs)
    assert back.x.shape == (12, 6, 5, 3)
    same(es, back)
    assert [len(b) for b in back.batches(5)] == [5, 5, 2]
    # The hash of a folder comes from file bytes: stable across reads, but not that of .npz.
    assert back.content_hash == read_folder(tmp_path / "set").content_hash
    same(es, read_npz(save_npz(back, tmp_path / "from_folder.npz")))


def test_folder_keeps_awkward_group_names(tmp_path: Path) -> None:
    es = EvalSet(
        x=np.zeros((4, 2, 2, 3), dtype=np.uint8),
        y=np.array([0, 1, 1, 0]),
        classes=("no, really", "NA"),
        attributes={"group": np.array(["", "NA", '"q"', "1"])},
    )
    same(es, read_folder(save_folder(es, tmp_path / "f")))


def test_folder_resizes_and_subsets_without_reading_again(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f", ["a.png,x,f", "b.png,y,m", "c.png,x,m"])
    es = read_folder(root, size=(3, 2))
    assert es.classes == ("x", "y")  # no classes.txt: sorted labels
    assert es.inputs().shape == (3, 3, 2, 3)
    part = es.subset([2, 0])
    assert part.y.tolist() == [0, 0]
    assert part.inputs()[0, 0, 0, 0] == 90
    assert part.content_hash != es.content_hash


def test_folder_unknown_label(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f", ["a.png,x,f", "b.png,z,m"])
    (root / "classes.txt").write_text("x\ny\n")
    message = fm.UNKNOWN_LABEL.format(
        file=root / "index.csv", line=3, label="z", classes=["x", "y"]
    )
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        read_folder(root)


def test_folder_missing_attribute_column(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f", ["a.png,x,f", "b.png,y,m"])
    message = fm.MISSING_ATTRIBUTES.format(
        file=root / "index.csv", what="column(s)", missing="young", expected="male, young"
    )
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        read_folder(root, attributes=("male", "young"))


def test_folder_missing_label_column(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f", ["a.png,f"], header="file,male")
    with pytest.raises(EvalSetError, match=re.escape("missing column 'label'")):
        read_folder(root)


def test_folder_without_index(tmp_path: Path) -> None:
    message = fm.NO_INDEX.format(folder=tmp_path)
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        read_folder(tmp_path)


def test_folder_bad_image_is_an_error_or_skipped_and_counted(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f", ["a.png,x,f", "bad.png,y,m", "b.png,y,f", "c.png,x,m"])
    (root / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match=re.escape(f"{root / 'index.csv'}, line 3: cannot")):
        read_folder(root)
    es = read_folder(root, on_bad_image="skip")
    assert len(es) == 3
    assert es.info == {"skipped_undecodable": 1}
    assert es.attributes["male"].tolist() == ["f", "f", "m"]


def test_folder_missing_image_file(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f", ["a.png,x,f", "gone.png,y,m"])
    with pytest.raises(ImageDecodeError, match=re.escape("line 3: cannot read or decode image")):
        read_folder(root)


def test_folder_with_only_bad_images_is_empty(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f", ["bad.png,x,f", "bad.png,y,m"])
    (root / "bad.png").write_bytes(b"")
    with pytest.raises(EmptyEvalSetError, match=re.escape(ev.EMPTY.format(source=root))):
        read_folder(root, on_bad_image="skip")


def test_folder_images_of_different_sizes_need_a_size(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f", ["a.png,x,f", "d.png,y,m"])
    Image.new("RGB", (7, 7)).save(root / "d.png")
    with pytest.raises(EvalSetError, match=re.escape("is 7x7 (HxW) but earlier images are 4x5")):
        read_folder(root)
    assert read_folder(root, size=7).inputs().shape == (2, 7, 7, 3)


def test_save_folder_refuses_non_images(tmp_path: Path) -> None:
    es = EvalSet(x=np.zeros((2, 3)), y=np.array([0, 1]), classes=("a", "b"), source="s")
    message = fm.NOT_UINT8_IMAGES.format(source="s", dtype="float64", shape=(2, 3))
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        save_folder(es, tmp_path / "f")


# --- loaders -----------------------------------------------------------------------------


def test_load_eval_set_picks_the_format(tmp_path: Path) -> None:
    es = small()
    save_npz(es, tmp_path / "e.NPZ")
    save_folder(es, tmp_path / "folder")
    same(es, load_eval_set(tmp_path / "e.NPZ"))
    same(es, load_eval_set(str(tmp_path / "folder"), attributes=("male",)))


def test_load_eval_set_unknown_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "e.parquet").write_text("")
    with pytest.raises(EvalSetError, match=re.escape(f"{tmp_path / 'e.parquet'}: no loader")):
        load_eval_set(tmp_path / "e.parquet")
    message = rg.NO_SUCH_PATH.format(path=tmp_path / "nope.npz")
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        load_eval_set(tmp_path / "nope.npz")
    with pytest.raises(EvalSetError, match=re.escape("nosuch:x: no loader")):
        load_eval_set("nosuch:x")


def test_registered_suffix_and_scheme_loaders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rg, "_suffixes", dict(rg._suffixes))
    monkeypatch.setattr(rg, "_schemes", dict(rg._schemes))
    calls: list[tuple[str, dict[str, object]]] = []

    def loader(path: str | Path, **options: object) -> EvalSet:
        calls.append((str(path), options))
        return small(source=str(path))

    register_loader(loader, suffix=".tar.gz")
    register_loader(loader, scheme="tfds")
    (tmp_path / "d.tar.gz").write_text("")
    assert load_eval_set(tmp_path / "d.tar.gz", batch=4).source == str(tmp_path / "d.tar.gz")
    assert len(load_eval_set("tfds:celeb_a/test")) == 12
    assert calls == [(str(tmp_path / "d.tar.gz"), {"batch": 4}), ("tfds:celeb_a/test", {})]
    with pytest.raises(ValueError, match=re.escape(rg.ALREADY_REGISTERED.format(key="tfds"))):
        register_loader(loader, scheme="tfds")
    register_loader(loader, scheme="tfds", replace=True)
    with pytest.raises(ValueError, match="needs one of suffix"):
        register_loader(loader)


def test_loader_named_as_module_function() -> None:
    es = load_eval_set("ignored", loader="tests.unit.test_evalset:_named_loader")
    assert es.source == "named:ignored"
    with pytest.raises(ValueError, match=re.escape(rg.BAD_LOADER_NAME.format(name="nocolon"))):
        load_eval_set("x", loader="nocolon")


def _named_loader(path: str) -> EvalSet:
    return small(source=f"named:{path}")


def test_synthetic_address_is_a_built_in_scheme() -> None:
    es = load_eval_set("synthetic:hair?n=20&seed=3&size=16")
    assert len(es) == 20
    assert es.inputs().shape == (20, 16, 16, 3)
    assert es.source == "synthetic:hair?n=20&seed=3&size=16"


# --- splits ------------------------------------------------------------------------------


def test_split_is_a_seeded_partition() -> None:
    es = small(30)
    parts = split(es, seed=1)
    assert [len(p) for p in parts] == [18, 6, 6]
    idx = ev.split_indices(30, (0.6, 0.2, 0.2), seed=1)
    assert sorted(np.concatenate(idx).tolist()) == list(range(30))
    assert [p.y.tolist() for p in parts] == [p.y.tolist() for p in split(es, seed=1)]
    assert [p.y.tolist() for p in parts] != [p.y.tolist() for p in split(es, seed=2)]
    assert np.array_equal(parts[2].inputs(), es.inputs()[idx[2]])
    with pytest.raises(ValueError, match=re.escape("fractions must be positive and sum to 1")):
        split(es, (0.5, 0.4))
