"""The thesis's experiments (chapter 4): train float models, quantize, compare, repeat over seeds.

    from qbias_check.experiments import run
    folder = run("architectures", data="synthetic", budget="smoke", out=Path("results"))

Each experiment writes ``tables.md`` (the thesis's table layout, mean and 95 % t-interval over
seeds), ``results.json`` (every number, the configuration, seeds and data) and ``figures/``
into ``out/NAME``. Light on purpose: TensorFlow is imported only when an experiment runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qbias_check.experiments.config import BUDGETS, Budget, parse_data

__all__ = ["BUDGETS", "EXPERIMENTS", "Budget", "add_cli", "run"]

EXPERIMENTS: dict[str, str] = {
    "binary": "blond vs not blond, ResNet-18-style network, sub-groups M/F/Y/O/MY/MO/FY/FO "
    "(table 4.1)",
    "architectures": "MobileNetV2, V3Small and V3Small minimalistic on five hair colours "
    "under PTQ (table 4.2, figures 4.1-4.2, t-SNE of each model)",
    "hyperparameters": "V3Small baseline, L1 on the last layer, class weighting under PTQ "
    "(table 4.3, figures 4.3-4.4, t-SNE figures 4.5-4.7)",
    "postprocess": "PTQ vs PTQ + XGBoost corrector vs class-balanced corrector (table 4.4)",
    "qat": "PTQ vs QAT of the same V3Small minimalistic float model (table 4.5, figures 4.10-4.11)",
    "attributes": "accuracy, FNR and FPR differences by gender and age before and after int8 "
    "(figures 4.12-4.17)",
}
ALL = "all"
DEFAULT_OUT = Path("qbias-experiments")
UNKNOWN_EXPERIMENT = "unknown experiment {name!r}; known: {known}"
UNKNOWN_BUDGET = "unknown budget {name!r}; known: {known}"
BAD_SEEDS = "seeds must be a positive integer, got {seeds!r}"
EXIT_OK, EXIT_USAGE = 0, 2


def run(
    name: str,
    *,
    data: str = "synthetic",
    budget: str = "default",
    seeds: int | None = None,
    out: Path,
) -> Path:
    """Run one experiment; return the folder ``out/name`` that holds its results.

    ``data`` is ``"synthetic"`` or ``"celeba:PATH"``; ``seeds`` defaults to the budget's
    (seeds are 0 .. seeds-1). Unknown names, budgets or data specs raise ValueError.
    """
    if name not in EXPERIMENTS:
        raise ValueError(UNKNOWN_EXPERIMENT.format(name=name, known=", ".join(EXPERIMENTS)))
    if budget not in BUDGETS:
        raise ValueError(UNKNOWN_BUDGET.format(name=budget, known=", ".join(BUDGETS)))
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ValueError(BAD_SEEDS.format(seeds=seeds))
    spec = parse_data(data)
    chosen = BUDGETS[budget]
    from qbias_check.experiments import binary, multiclass
    from qbias_check.experiments.results import Context

    runners: dict[str, Callable[[Context], Path]] = {
        "binary": binary.binary,
        "architectures": multiclass.architectures,
        "hyperparameters": multiclass.hyperparameters,
        "postprocess": multiclass.postprocess,
        "qat": multiclass.qat,
        "attributes": multiclass.attributes,
    }
    ctx = Context(
        name=name,
        description=EXPERIMENTS[name],
        data=spec,
        budget=chosen,
        seeds=tuple(range(seeds if seeds is not None else chosen.seeds)),
        folder=Path(out) / name,
    )
    return runners[name](ctx)


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``experiment`` subcommand on an argparse subparsers object."""
    budgets = "; ".join(f"{b.name}: {b.description}" for b in BUDGETS.values())
    names = "\n".join(f"  {n:<16} {d}" for n, d in EXPERIMENTS.items())
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "experiment",
        help="reproduce the thesis's tables: train, quantize, compare over seeds",
        description="Train float models (tf_keras, SGD 0.01 with exponential decay, best "
        "epoch on validation), quantize them, compare float and int8 on the test split, and "
        "write Markdown tables in the thesis's layouts, a JSON file and figures to "
        "OUT/NAME. Experiments:\n" + names,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "name", metavar="NAME", choices=[*EXPERIMENTS, ALL], help="an experiment above, or 'all'"
    )
    parser.add_argument(
        "--data",
        default="synthetic",
        metavar="SPEC",
        help="'synthetic' or 'celeba:PATH' (a CelebA folder) (default: synthetic)",
    )
    parser.add_argument(
        "--budget",
        default="default",
        choices=list(BUDGETS),
        help=f"{budgets} (default: default)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="training seeds 0..N-1 (default: the budget's: "
        + ", ".join(f"{b.name} {b.seeds}" for b in BUDGETS.values())
        + ")",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"results go to DIR/NAME (default: {DEFAULT_OUT})",
    )
    parser.set_defaults(handler=_command)
    return parser


def _command(args: argparse.Namespace) -> int:
    """Run the experiment(s) named on the command line; print where the results are."""
    names = list(EXPERIMENTS) if args.name == ALL else [args.name]
    for name in names:
        folder = run(name, data=args.data, budget=args.budget, seeds=args.seeds, out=args.out)
        print(f"{name}: {folder / 'tables.md'}")
    return EXIT_OK
