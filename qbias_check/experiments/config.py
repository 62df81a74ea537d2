"""Budgets (how big a run is) and data specs (which data it uses). Pure Python, no TensorFlow."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Task = Literal["hair", "blond"]

BAD_DATA = (
    "unknown data spec {spec!r}: expected 'synthetic' or 'celeba:PATH' "
    "(a CelebA folder with list_attr_celeba.txt and img_align_celeba/)"
)
NO_CELEBA = "data spec {spec!r}: {path} is not a folder"


@dataclass(frozen=True)
class Budget:
    """How much one run trains: data size, image size, network widths, epochs, seeds.

    ``n`` is the number of examples drawn (synthetic) or the most taken from CelebA, before the
    60/20/20 split; the thesis's fixed numbers (batch 256, 20 epochs, 15 QAT epochs, 100
    calibration images, a 5,000-example and a 1,000-per-class corrector, 1,000 t-SNE
    examples) apply at ``full``.
    """

    name: str
    description: str
    size: int
    n: int
    epochs: int
    qat_epochs: int
    batch_size: int
    seeds: int
    alpha_v2: float
    alpha_v3: float
    resnet_width: int
    calibration: int = 100
    corrector_samples: int = 5000
    corrector_per_class: int = 1000
    corrector_rounds: int = 60
    tsne_points: int = 1000

    def to_dict(self) -> dict[str, Any]:
        """The budget as a JSON-ready dict."""
        return asdict(self)


BUDGETS: dict[str, Budget] = {
    b.name: b
    for b in (
        Budget(
            name="smoke",
            description="end to end in minutes on 2 cores: 32 px, 600 images, 2 epochs, 1 seed",
            size=32,
            n=600,
            epochs=2,
            qat_epochs=1,
            batch_size=16,
            seeds=1,
            alpha_v2=0.35,
            alpha_v3=0.35,
            resnet_width=8,
            calibration=50,
            corrector_samples=300,
            corrector_per_class=40,
            corrector_rounds=10,
            tsne_points=200,
        ),
        Budget(
            name="default",
            description="within about an hour on 2 cores for one experiment: 64 px, "
            "10,000 images, 8 epochs (QAT 3), 3 seeds",
            size=64,
            n=10_000,
            epochs=8,
            qat_epochs=3,
            batch_size=64,
            seeds=3,
            alpha_v2=0.5,
            alpha_v3=1.0,
            resnet_width=16,
            corrector_samples=2000,
            corrector_per_class=300,
        ),
        Budget(
            name="full",
            description="the thesis's recipe for bigger machines: 128 px, 60,000 images, "
            "20 epochs (QAT 15), batch 256, 5 seeds, full-width networks",
            size=128,
            n=60_000,
            epochs=20,
            qat_epochs=15,
            batch_size=256,
            seeds=5,
            alpha_v2=1.0,
            alpha_v3=1.0,
            resnet_width=64,
        ),
    )
}


@dataclass(frozen=True)
class DataSpec:
    """Where the images come from: the synthetic generator or a CelebA folder."""

    kind: Literal["synthetic", "celeba"]
    root: Path | None = None

    @property
    def label(self) -> str:
        """How results name the data."""
        return "synthetic" if self.root is None else f"celeba:{self.root}"


def parse_data(spec: str) -> DataSpec:
    """``"synthetic"`` or ``"celeba:PATH"`` -> :class:`DataSpec`; ValueError otherwise."""
    if spec == "synthetic":
        return DataSpec("synthetic")
    kind, sep, path = spec.partition(":")
    if kind != "celeba" or not sep or not path:
        raise ValueError(BAD_DATA.format(spec=spec))
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(NO_CELEBA.format(spec=spec, path=root))
    return DataSpec("celeba", root)
