"""The CelebA reader on small CelebA-format trees written here (never real CelebA data)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qbias_check.datasets import EmptyEvalSetError, EvalSetError, ImageDecodeError, save_npz
from qbias_check.datasets import celeba as cb
from qbias_check.datasets.formats import read_npz

# The real header: 40 names, Gray_Hair 18th, Male 21st, Young last.
_HEADER = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses "
    "Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache "
    "Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
)
NAMES = _HEADER.split()
HAIR = ("Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
# Hair label per row: an index into HAIR, None (no hair label) or a pair (two labels).
PATTERN: list[int | tuple[int, int] | None] = [0, 1, 2, 3, 4, None, 1, (1, 3)] * 10  # 80 rows


def row_values(i: int) -> dict[str, int]:
    hair = PATTERN[i]
    labels = set(hair) if isinstance(hair, tuple) else ({hair} if hair is not None else set())
    values = {name: -1 for name in NAMES}
    for k in labels:
        values[HAIR[k]] = 1
    values["Male"] = 1 if i % 2 else -1
    values["Young"] = 1 if i % 3 else -1
    values["Smiling"] = 1
    return values


def write_tree(
    root: Path,
    *,
    rows: int = 40,
    newline: str = "\r\n",
    images: range | list[int] | None = None,
    size: tuple[int, int] = (18, 22),
    names: list[str] = NAMES,
    partition: bool = True,
) -> Path:
    """A CelebA tree in the exact layout of the original files, with tiny JPEGs."""
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    lines = [str(rows), " ".join(names) + " "]
    for i in range(rows):
        values = row_values(i)
        lines.append(f"{i + 1:06d}.jpg" + "".join(f" {values[n]:2d}" for n in names))
    (root / "list_attr_celeba.txt").write_bytes((newline.join(lines) + newline).encode())
    if partition:
        bounds = (rows * 0.6, rows * 0.8)
        parts = [
            f"{i + 1:06d}.jpg {0 if i < bounds[0] else 1 if i < bounds[1] else 2}"
            for i in range(rows)
        ]
        (root / "list_eval_partition.txt").write_bytes((newline.join(parts) + newline).encode())
    for i in images if images is not None else range(rows):
        colour = (i * 6 % 256, 100, 200 - i)
        Image.new("RGB", size, colour).save(root / "img_align_celeba" / f"{i + 1:06d}.jpg")
    return root


def expected_hair_rows(rows: int = 40) -> list[int]:
    return [i for i in range(rows) if isinstance(PATTERN[i], int)]


def test_hair_task_keeps_rows_with_exactly_one_hair_label(tmp_path: Path) -> None:
    es = cb.load(write_tree(tmp_path), size=8)
    keep = expected_hair_rows()
    assert es.classes == ("bald", "black", "blond", "brown", "gray")
    assert es.y.tolist() == [PATTERN[i] for i in keep]
    assert es.attributes["male"].tolist() == ["male" if i % 2 else "female" for i in keep]
    assert es.attributes["young"].tolist() == ["young" if i % 3 else "old" for i in keep]
    assert es.inputs().shape == (len(keep), 8, 8, 3)
    assert es.inputs().dtype == np.uint8
    # Each image keeps its own colour after JPEG and resizing (row 0 is red 0, row 6 red 36).
    assert abs(int(es.inputs()[0, 4, 4, 0]) - 0) <= 3
    assert abs(int(es.inputs()[5, 4, 4, 0]) - 36) <= 3
    assert es.info == {
        "attribute_rows": 40,
        "task_rows": 30,
        "skipped_missing_image": 0,
        "skipped_undecodable": 0,
    }


def test_blond_task_uses_every_row(tmp_path: Path) -> None:
    es = cb.load(write_tree(tmp_path), task="blond", size=8)
    assert es.classes == ("not_blond", "blond")
    assert es.y.tolist() == [int(PATTERN[i] == 2) for i in range(40)]
    assert len(es) == 40


def test_lf_line_endings_and_half_size_images_give_the_same_labels(tmp_path: Path) -> None:
    crlf = cb.load(write_tree(tmp_path / "crlf"), size=8)
    lf = cb.load(write_tree(tmp_path / "lf", newline="\n", size=(89, 109)), size=8)
    assert lf.y.tolist() == crlf.y.tolist()
    assert lf.attributes["male"].tolist() == crlf.attributes["male"].tolist()
    assert lf.inputs().shape == crlf.inputs().shape


def test_missing_images_are_skipped_and_counted(tmp_path: Path) -> None:
    present = [i for i in range(40) if i % 4 != 1]
    es = cb.load(write_tree(tmp_path, images=present), size=8)
    keep = [i for i in expected_hair_rows() if i in present]
    assert es.y.tolist() == [PATTERN[i] for i in keep]
    assert es.info["skipped_missing_image"] == 30 - len(keep)


def test_random_split_is_60_20_20_seeded_and_stable_under_missing_images(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "full", rows=80)
    parts = {s: cb.load(root, split=s, size=8, seed=1) for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [36, 12, 12]
    colours = {s: sorted(p.inputs()[:, 4, 4, 0].tolist()) for s, p in parts.items()}
    everything = sorted(cb.load(root, size=8).inputs()[:, 4, 4, 0].tolist())
    assert sorted(c for part in colours.values() for c in part) == everything
    again = cb.load(root, split="test", size=8, seed=1)
    assert again.content_hash == parts["test"].content_hash
    assert cb.load(root, split="test", size=8, seed=2).content_hash != again.content_hash
    # With some images gone, the remaining test images are the same ones as before.
    partial = write_tree(tmp_path / "partial", rows=80, images=[i for i in range(80) if i % 4])
    test_partial = cb.load(partial, split="test", size=8, seed=1)
    assert set(test_partial.inputs()[:, 4, 4, 0].tolist()) <= set(colours["test"])


def test_official_partition(tmp_path: Path) -> None:
    root = write_tree(tmp_path)
    test = cb.load(root, split="test", partition="official", size=8)
    assert test.y.tolist() == [PATTERN[i] for i in expected_hair_rows() if i >= 32]
    val = cb.load(root, split="val", partition="official", task="blond", size=8)
    assert len(val) == 8
    assert val.info["skipped_no_partition"] == 0


def test_official_partition_needs_the_file(tmp_path: Path) -> None:
    root = write_tree(tmp_path, rows=80, partition=False)
    assert len(cb.load(root, split="test", size=8)) == 12  # random split needs no file
    with pytest.raises(EvalSetError, match=re.escape("partition='official' needs")):
        cb.load(root, split="test", partition="official")


def test_official_layout_with_anno_and_img_folders(tmp_path: Path) -> None:
    flat = write_tree(tmp_path / "flat")
    nested = tmp_path / "nested"
    (nested / "Anno").mkdir(parents=True)
    (nested / "Img").mkdir()
    (flat / "list_attr_celeba.txt").rename(nested / "Anno" / "list_attr_celeba.txt")
    (flat / "img_align_celeba").rename(nested / "Img" / "img_align_celeba")
    assert len(cb.load(nested, size=8)) == 30


def test_missing_attribute_columns(tmp_path: Path) -> None:
    names = [n for n in NAMES if n not in ("Gray_Hair", "Young")]
    root = write_tree(tmp_path, names=names)
    message = cb.MISSING_COLUMNS.format(
        file=root / "list_attr_celeba.txt",
        missing="Gray_Hair, Young",
        expected=", ".join(cb.REQUIRED_COLUMNS),
    )
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        cb.load(root)


def test_bad_value_names_line_and_column(tmp_path: Path) -> None:
    root = write_tree(tmp_path)
    path = root / "list_attr_celeba.txt"
    lines = path.read_bytes().split(b"\r\n")
    lines[4] = lines[4][:-2] + b" 0"  # the last column, Young, of the third image
    path.write_bytes(b"\r\n".join(lines))
    message = cb.BAD_VALUE.format(file=path, line=5, column="Young", value="0")
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        cb.load(root)


def test_short_row_and_missing_files(tmp_path: Path) -> None:
    root = write_tree(tmp_path)
    path = root / "list_attr_celeba.txt"
    path.write_bytes(path.read_bytes() + b"000041.jpg 1 -1\r\n")
    message = cb.BAD_ROW.format(file=path, line=43, count=40, found=3)
    with pytest.raises(EvalSetError, match=f"^{re.escape(message)}$"):
        cb.load(root)
    with pytest.raises(EvalSetError, match=re.escape("no list_attr_celeba.txt")):
        cb.load(tmp_path / "elsewhere")


def test_undecodable_image_is_an_error_or_skipped(tmp_path: Path) -> None:
    root = write_tree(tmp_path)
    (root / "img_align_celeba" / "000002.jpg").write_bytes(b"\xff\xd8 truncated")
    attr = root / "list_attr_celeba.txt"
    with pytest.raises(ImageDecodeError, match=re.escape(f"{attr}, line 4: cannot read")):
        cb.load(root, size=8)
    es = cb.load(root, size=8, on_bad_image="skip")
    assert len(es) == 29
    assert es.info["skipped_undecodable"] == 1
    lazy = cb.load(root, size=8, on_bad_image="skip", lazy=True)
    assert lazy.is_lazy
    assert np.array_equal(lazy.inputs(), es.inputs())


def test_no_images_at_all(tmp_path: Path) -> None:
    root = write_tree(tmp_path, images=[])
    with pytest.raises(EmptyEvalSetError, match=re.escape("none of the 30 hair rows")):
        cb.load(root)


def test_split_with_one_group_only_is_refused(tmp_path: Path) -> None:
    root = write_tree(tmp_path, images=[i for i in range(40) if i % 2])  # men only
    with pytest.raises(EvalSetError, match=re.escape("attribute 'male' has only one group")):
        cb.load(root, size=8)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match=re.escape("task must be one of hair, blond")):
        cb.load("x", task="hat")  # type: ignore[arg-type]


def test_writes_an_npz_for_the_gate(tmp_path: Path) -> None:
    es = cb.load(write_tree(tmp_path / "tree", rows=80), split="test", size=8)
    back = read_npz(save_npz(es, tmp_path / "test.npz"), attributes=("male", "young"))
    assert back.content_hash == es.content_hash


def test_the_data_celeba_command_writes_the_eval_set_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qbias_check.cli import main
    from qbias_check.datasets import load_eval_set

    root = write_tree(tmp_path / "celeba", rows=80, images=range(70))
    out = tmp_path / "hair.npz"
    args = ["data", "celeba", str(root), "--task=hair", "--size=16", "--split=all", f"--out={out}"]
    assert main(args) == 0
    evalset = load_eval_set(out)
    assert evalset.classes == ("bald", "black", "blond", "brown", "gray")
    assert evalset.x.shape[1:] == (16, 16, 3) and set(evalset.attributes) == {"male", "young"}
    assert "notes:" in capsys.readouterr().out  # the rows without an image were counted
