"""thresholds.toml parsing, validation and command-line precedence (pure, no pytest plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qbias_check.thresholds import ConfigError, Overrides, parse, resolve

FULL = """
[dataset]
path = "data/eval.npz"

[[model]]
name = "hair"
reference = "float.keras"
quantized = "int8.tflite"
calibration = { samples = 50, seed = 3 }

[statistics]
confidence = 0.9
bootstrap = 500
seed = 1
min_support = 20
gate = "significant"
intersections = [["male", "young"]]

[limits]
accuracy_drop = 0.02
cev = 0.1

[limits.per_class]
fnr_increase = 0.05

[limits.class.bald]
fnr_increase = 0.10

[limits.per_attribute]
fnr_gap_increase = 0.05
accuracy_gap_increase = 0.03

[limits.attribute.young]
fnr_gap_increase = 0.08
"""


def test_full_example_parses_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    spec = parse(FULL, source="t.toml", base=tmp_path)
    assert spec.dataset == str(tmp_path / "data" / "eval.npz")
    (model,) = spec.models
    assert model.reference == str(tmp_path / "float.keras")
    assert model.calibration.samples == 50 and model.calibration.seed == 3
    assert spec.statistics.gate == "significant"
    assert spec.statistics.intersections == (("male", "young"),)
    assert spec.limits.for_class("bald") == {"fnr_increase": 0.10}
    assert spec.limits.for_class("gray") == {"fnr_increase": 0.05}
    assert spec.limits.for_attribute("young")["fnr_gap_increase"] == 0.08
    assert spec.limits.for_attribute("male")["accuracy_gap_increase"] == 0.03


def test_synthetic_addresses_are_not_paths(tmp_path: Path) -> None:
    spec = parse('[dataset]\npath = "synthetic:hair?n=100"\n', source="t.toml", base=tmp_path)
    assert spec.dataset == "synthetic:hair?n=100"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[limits]\naccuracy_dorp = 0.1\n",
            "t.toml: limits.accuracy_dorp: unknown key; did you mean 'accuracy_drop'?",
        ),
        ("[limitz]\n", "t.toml: limitz: unknown key; did you mean 'limits'?"),
        ("[limits]\ncev = true\n", "t.toml: limits.cev: expected a number, got True"),
        (
            "[limits.per_class]\nfnr_increase = -1\n",
            "t.toml: limits.per_class.fnr_increase: expected a value >= 0.0, got -1",
        ),
        (
            "[statistics]\ngate = 'loose'\n",
            "t.toml: statistics.gate: expected one of ['estimate', 'significant', 'assured']",
        ),
        (
            "[statistics]\nconfidence = 1.5\n",
            "t.toml: statistics.confidence: expected a value between 0 and 1, got 1.5",
        ),
        (
            "[statistics]\nbootstrap = 10.5\n",
            "t.toml: statistics.bootstrap: expected an integer, got 10.5",
        ),
        (
            "[statistics]\nintersections = ['male']\n",
            "t.toml: statistics.intersections: expected a list of attribute-name lists",
        ),
        (
            "[[model]]\nname = 'a'\n",
            "t.toml: model[0].reference: missing; every [[model]] needs name and reference",
        ),
        (
            "[[model]]\nname='a'\nreference='r'\n[[model]]\nname='a'\nreference='r'\n",
            "t.toml: model: model names must be distinct",
        ),
        ("[limits\n", "t.toml: not valid TOML"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, source="t.toml", base=tmp_path)
    assert str(info.value).startswith(message)


def _files(tmp_path: Path) -> Path:
    for name in ("float.keras", "int8.tflite", "other.tflite", "eval.npz"):
        (tmp_path / name).write_bytes(b"x")
    config = tmp_path / "thresholds.toml"
    config.write_text(
        '[dataset]\npath = "eval.npz"\n'
        '[[model]]\nname = "a"\nreference = "float.keras"\n'
        '[[model]]\nname = "b"\nreference = "float.keras"\nquantized = "int8.tflite"\n'
    )
    return config


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    config = _files(tmp_path)
    spec = resolve(
        config, Overrides(models=("a=other.tflite",), gate="assured", bootstrap=7), cwd=tmp_path
    )
    assert spec.model("a").quantized == str(tmp_path / "other.tflite")
    assert spec.model("b").quantized == str(tmp_path / "int8.tflite")
    assert spec.statistics.gate == "assured" and spec.statistics.bootstrap == 7


def test_model_override_must_name_a_model_when_there_are_several(tmp_path: Path) -> None:
    config = _files(tmp_path)
    with pytest.raises(ConfigError, match="has several models"):
        resolve(config, Overrides(models=("other.tflite",)), cwd=tmp_path)
    with pytest.raises(ConfigError, match="'c' names no model"):
        resolve(config, Overrides(models=("c=other.tflite",)), cwd=tmp_path)


def test_options_alone_are_enough_and_use_the_default_limits(tmp_path: Path) -> None:
    _files(tmp_path)
    spec = resolve(
        None,
        Overrides(models=("int8.tflite",), reference="float.keras", data="eval.npz"),
        cwd=tmp_path,
    )
    (model,) = spec.models
    assert model.name == "int8" and model.reference == str(tmp_path / "float.keras")
    assert spec.limits.model["accuracy_drop"] == 0.02


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset.path: no such file or folder: .*nope.npz"):
        resolve(None, Overrides(reference="f.keras", data="nope.npz"), cwd=tmp_path)
    with pytest.raises(ConfigError, match="no eval set"):
        resolve(None, Overrides(reference="f.keras"), cwd=tmp_path)
