"""``thresholds.toml`` -> a validated, frozen :class:`GateSpec`.

The precedence is command line > thresholds.toml > defaults, resolved in :func:`resolve` (one
pure function, no pytest). Every error names the file, the key and what was expected.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

GATE_MODES = ("estimate", "significant", "assured")

MODEL_LIMITS = (
    "accuracy_drop",
    "cie_fraction",
    "fnr_max_min_increase",
    "fpr_max_min_increase",
    "fnr_variance_increase",
    "fpr_variance_increase",
    "cev",
)
CLASS_LIMITS = ("fnr_increase", "fpr_increase")
ATTRIBUTE_CLASS_LIMITS = ("fnr_gap_increase", "fpr_gap_increase")
ATTRIBUTE_LIMITS = ("accuracy_gap_increase",)

# Used when there is no thresholds.toml, and for [limits] sections the file leaves out entirely.
DEFAULT_LIMITS: dict[str, dict[str, float]] = {
    "model": {"accuracy_drop": 0.02, "fnr_max_min_increase": 0.05, "fpr_max_min_increase": 0.03},
    "per_class": {"fnr_increase": 0.05},
    "per_attribute": {"fnr_gap_increase": 0.05},
}


_ADDRESS = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")


class ConfigError(ValueError):
    """A thresholds.toml or command-line value is wrong; the message says where and why."""


@dataclass(frozen=True)
class Statistics:
    """How numbers are estimated and judged."""

    confidence: float = 0.95
    bootstrap: int = 1000
    seed: int = 0
    min_support: int = 30
    gate: str = "estimate"
    intersections: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Calibration:
    """The representative set for a PTQ build (thesis 3.4.4: 100 images)."""

    samples: int = 100
    seed: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """One model under the gate: its float reference and its int8 (None: build by PTQ)."""

    name: str
    reference: str
    quantized: str | None = None
    calibration: Calibration = field(default_factory=Calibration)
    corrector: str | None = None  # an XGBoost corrector (JSON/UBJ) applied to the int8 outputs


@dataclass(frozen=True)
class Limits:
    """Limits as fractions; ``classes`` and ``attributes`` override the per-class/attribute ones."""

    model: Mapping[str, float] = field(default_factory=dict)
    per_class: Mapping[str, float] = field(default_factory=dict)
    classes: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    per_attribute: Mapping[str, float] = field(default_factory=dict)
    attributes: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def for_class(self, name: str) -> dict[str, float]:
        """The per-class limits of one class, with its own overrides applied."""
        return {**self.per_class, **self.classes.get(name, {})}

    def for_attribute(self, name: str) -> dict[str, float]:
        """The per-attribute limits of one attribute, with its own overrides applied."""
        return {**self.per_attribute, **self.attributes.get(name, {})}


@dataclass(frozen=True)
class GateSpec:
    """Everything a gate run needs to know, resolved and validated; picklable."""

    source: str
    dataset: str
    models: tuple[ModelSpec, ...]
    statistics: Statistics
    limits: Limits

    def model(self, name: str) -> ModelSpec:
        """The model called ``name``."""
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(name)


@dataclass(frozen=True)
class Overrides:
    """Command-line values that replace what thresholds.toml says (None: not given)."""

    models: tuple[str, ...] = ()  # PATH for the only model, or NAME=PATH
    reference: str | None = None
    data: str | None = None
    gate: str | None = None
    bootstrap: int | None = None


class _Reader:
    """Walks one parsed TOML document, naming the file and key in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {problem}")

    def table(self, data: Any, key: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, f"expected a table, got {type(data).__name__}")
        return data

    def only(self, data: dict[str, Any], key: str, allowed: Sequence[str]) -> None:
        for name in data:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = (
                    f"; did you mean {close[0]!r}?"
                    if close
                    else f"; expected one of {sorted(allowed)}"
                )
                raise self.fail(f"{key}.{name}" if key else name, f"unknown key{hint}")

    def number(self, value: Any, key: str, *, integer: bool = False, low: float = 0.0) -> Any:
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind):
            expected = "an integer" if integer else "a number"
            raise self.fail(key, f"expected {expected}, got {value!r}")
        if value < low:
            raise self.fail(key, f"expected a value >= {low}, got {value!r}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def limits(self, data: Any, key: str, allowed: Sequence[str]) -> dict[str, float]:
        table = self.table(data, key)
        self.only(table, key, allowed)
        return {name: float(self.number(v, f"{key}.{name}")) for name, v in table.items()}


def _is_address(value: str) -> bool:
    """``synthetic:hair?n=2000`` and other loader schemes (two or more letters, then a colon)."""
    return _ADDRESS.match(value) is not None and not Path(value).exists()


def _path(base: Path, value: str) -> str:
    """Resolve a path relative to ``base``; a loader address stays as it is."""
    return value if _is_address(value) else str((base / value).resolve())


def parse(text: str, *, source: str, base: Path) -> GateSpec:
    """Parse and validate the text of a thresholds.toml; paths are resolved against ``base``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    r = _Reader(source)
    r.only(doc, "", ["dataset", "model", "statistics", "limits"])

    dataset = r.table(doc.get("dataset", {}), "dataset")
    r.only(dataset, "dataset", ["path"])
    data_path = _path(base, r.string(dataset["path"], "dataset.path")) if "path" in dataset else ""

    models = []
    raw_models = doc.get("model", [])
    if not isinstance(raw_models, list):
        raise r.fail("model", "expected [[model]] tables")
    for i, raw in enumerate(raw_models):
        key = f"model[{i}]"
        entry = r.table(raw, key)
        r.only(entry, key, ["name", "reference", "quantized", "calibration", "corrector"])
        for required in ("name", "reference"):
            if required not in entry:
                raise r.fail(
                    f"{key}.{required}", "missing; every [[model]] needs name and reference"
                )
        calibration = r.table(entry.get("calibration", {}), f"{key}.calibration")
        r.only(calibration, f"{key}.calibration", ["samples", "seed"])
        models.append(
            ModelSpec(
                name=r.string(entry["name"], f"{key}.name"),
                reference=_path(base, r.string(entry["reference"], f"{key}.reference")),
                quantized=_path(base, r.string(entry["quantized"], f"{key}.quantized"))
                if "quantized" in entry
                else None,
                corrector=_path(base, r.string(entry["corrector"], f"{key}.corrector"))
                if "corrector" in entry
                else None,
                calibration=Calibration(
                    samples=r.number(
                        calibration.get("samples", 100),
                        f"{key}.calibration.samples",
                        integer=True,
                        low=1,
                    ),
                    seed=r.number(
                        calibration.get("seed", 0), f"{key}.calibration.seed", integer=True
                    ),
                ),
            )
        )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise r.fail("model", f"model names must be distinct, got {names}")

    return GateSpec(
        source=source,
        dataset=data_path,
        models=tuple(models),
        statistics=_statistics(r, doc.get("statistics", {})),
        limits=_limits(r, doc["limits"]) if "limits" in doc else _default_limits(),
    )


def _statistics(r: _Reader, raw: Any) -> Statistics:
    table = r.table(raw, "statistics")
    r.only(
        table,
        "statistics",
        ["confidence", "bootstrap", "seed", "min_support", "gate", "intersections"],
    )
    confidence = float(r.number(table.get("confidence", 0.95), "statistics.confidence"))
    if not 0 < confidence < 1:
        raise r.fail("statistics.confidence", f"expected a value between 0 and 1, got {confidence}")
    gate = table.get("gate", "estimate")
    if gate not in GATE_MODES:
        raise r.fail("statistics.gate", f"expected one of {list(GATE_MODES)}, got {gate!r}")
    combos = table.get("intersections", [])
    if not isinstance(combos, list) or not all(
        isinstance(c, list) and len(c) >= 2 and all(isinstance(n, str) for n in c) for c in combos
    ):
        raise r.fail(
            "statistics.intersections",
            f'expected a list of attribute-name lists such as [["male", "young"]], got {combos!r}',
        )
    return Statistics(
        confidence=confidence,
        bootstrap=r.number(table.get("bootstrap", 1000), "statistics.bootstrap", integer=True),
        seed=r.number(table.get("seed", 0), "statistics.seed", integer=True),
        min_support=r.number(table.get("min_support", 30), "statistics.min_support", integer=True),
        gate=gate,
        intersections=tuple(tuple(c) for c in combos),
    )


def _limits(r: _Reader, raw: Any) -> Limits:
    table = r.table(raw, "limits")
    sections = ["per_class", "class", "per_attribute", "attribute"]
    r.only(table, "limits", [*MODEL_LIMITS, *sections])
    model = {k: v for k, v in table.items() if k not in sections}
    attribute_keys = [*ATTRIBUTE_CLASS_LIMITS, *ATTRIBUTE_LIMITS]
    return Limits(
        model=r.limits(model, "limits", MODEL_LIMITS),
        per_class=r.limits(table.get("per_class", {}), "limits.per_class", CLASS_LIMITS),
        classes={
            name: r.limits(v, f"limits.class.{name}", CLASS_LIMITS)
            for name, v in r.table(table.get("class", {}), "limits.class").items()
        },
        per_attribute=r.limits(
            table.get("per_attribute", {}), "limits.per_attribute", attribute_keys
        ),
        attributes={
            name: r.limits(v, f"limits.attribute.{name}", attribute_keys)
            for name, v in r.table(table.get("attribute", {}), "limits.attribute").items()
        },
    )


def _default_limits() -> Limits:
    return Limits(
        model=dict(DEFAULT_LIMITS["model"]),
        per_class=dict(DEFAULT_LIMITS["per_class"]),
        per_attribute=dict(DEFAULT_LIMITS["per_attribute"]),
    )


def load(path: Path) -> GateSpec:
    """Read and validate a thresholds.toml file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the gate configuration: {exc.strerror}") from exc
    return parse(text, source=str(path), base=path.parent.resolve())


def resolve(config: Path | None, overrides: Overrides, *, cwd: Path) -> GateSpec:
    """Combine thresholds.toml (if any) with command-line overrides into the final GateSpec.

    Command-line paths are relative to ``cwd``. Without a config file, ``--qbias-model``,
    ``--qbias-reference`` and ``--qbias-data`` are enough, with :data:`DEFAULT_LIMITS`.
    """
    spec = (
        load(config)
        if config is not None
        else GateSpec("command line", "", (), Statistics(), _default_limits())
    )
    models = list(spec.models)
    for value in overrides.models:
        models = _override_quantized(models, value, cwd, spec.source)
    if overrides.reference is not None:
        if len(models) > 1:
            raise ConfigError(
                f"--qbias-reference: {spec.source} has several models; edit it instead"
            )
        reference = _path(cwd, overrides.reference)
        models = (
            [replace(models[0], reference=reference)]
            if models
            else [ModelSpec(name=Path(reference).stem, reference=reference)]
        )
    dataset = _path(cwd, overrides.data) if overrides.data is not None else spec.dataset
    statistics = spec.statistics
    if overrides.gate is not None:
        if overrides.gate not in GATE_MODES:
            raise ConfigError(
                f"--qbias-gate: expected one of {list(GATE_MODES)}, got {overrides.gate!r}"
            )
        statistics = replace(statistics, gate=overrides.gate)
    if overrides.bootstrap is not None:
        if overrides.bootstrap < 0:
            raise ConfigError(
                f"--qbias-bootstrap: expected a number >= 0, got {overrides.bootstrap}"
            )
        statistics = replace(statistics, bootstrap=overrides.bootstrap)
    if not models:
        raise ConfigError(
            f"{spec.source}: no model to check; add a [[model]] or pass --qbias-reference"
        )
    for model in models:
        if not model.reference:
            raise ConfigError(f"model {model.name!r}: no float reference; pass --qbias-reference")
    if not dataset:
        raise ConfigError(f"{spec.source}: no eval set; add [dataset] path or pass --qbias-data")
    resolved = replace(spec, models=tuple(models), dataset=dataset, statistics=statistics)
    _check_files(resolved)
    return resolved


def _check_files(spec: GateSpec) -> None:
    """Fail at start-up, not in the middle of a run, when a named file is missing."""
    wanted = [("dataset.path", spec.dataset)]
    for model in spec.models:
        wanted.append((f"model {model.name!r} reference", model.reference))
        if model.quantized is not None:
            wanted.append((f"model {model.name!r} quantized", model.quantized))
        if model.corrector is not None:
            wanted.append((f"model {model.name!r} corrector", model.corrector))
    for what, path in wanted:
        if not _is_address(path) and not Path(path).exists():
            raise ConfigError(f"{spec.source}: {what}: no such file or folder: {path}")


def _override_quantized(
    models: list[ModelSpec], value: str, cwd: Path, source: str
) -> list[ModelSpec]:
    name, sep, path = value.partition("=")
    names = [m.name for m in models]
    if sep and name in names:
        return [replace(m, quantized=_path(cwd, path)) if m.name == name else m for m in models]
    if sep and not Path(_path(cwd, value)).exists():
        raise ConfigError(
            f"--qbias-model {value}: {name!r} names no model in {source}; known: {names}"
        )
    quantized = _path(cwd, value)
    if len(models) > 1:
        raise ConfigError(
            f"--qbias-model {value}: {source} has several models "
            f"({', '.join(names)}); use NAME=PATH"
        )
    if not models:
        return [ModelSpec(name=Path(quantized).stem, reference="", quantized=quantized)]
    return [replace(models[0], quantized=quantized)]
