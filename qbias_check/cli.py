"""The ``qbias-check`` command: the gate and the thesis toolbox without pytest.

Thin by design: parse the arguments, call the module that does the work, print, return a status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from qbias_check.thresholds import GATE_MODES, ConfigError, Overrides, resolve

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _report(args: argparse.Namespace) -> int:
    """Compare one int8 model with its float reference; exit 1 when a limit fails."""
    import json

    from qbias_check.atomic import write_text
    from qbias_check.cache import Cache
    from qbias_check.gate import GateRun
    from qbias_check.report import check_record, checks_table, failed, markdown

    overrides = Overrides(
        models=(args.quantized,) if args.quantized else (),
        reference=args.reference,
        data=args.data,
        gate=args.gate,
        bootstrap=args.bootstrap,
    )
    spec = resolve(Path(args.config) if args.config else None, overrides, cwd=Path.cwd())
    run = GateRun(spec, Cache(args.cache_dir))
    checks = run.checks()
    status = EXIT_OK
    for model in spec.models:
        evaluation = run.evaluation(model.name)
        records = [check_record(c, run.judge(c)) for c in checks if c.model == model.name]
        print(f"== {model.name}: {evaluation.reference} vs {evaluation.quantized}")
        print(f"data: {spec.dataset}")
        print(evaluation.comparison.to_text(), end="\n\n")
        print(checks_table(records), end="\n\n")
        data = run.report(model.name, records)
        if args.json:
            write_text(Path(args.json), json.dumps(data, indent=2, sort_keys=True) + "\n")
        if args.markdown:
            write_text(Path(args.markdown), markdown(model.name, data))
        if failed(records):
            status = EXIT_FAILED
    return status


def _data_celeba(args: argparse.Namespace) -> int:
    """Read a CelebA tree into the eval-set format."""
    from qbias_check.datasets import save_npz
    from qbias_check.datasets.celeba import load

    evalset = load(args.root, task=args.task, size=args.size, split=args.split, seed=args.seed)
    path = save_npz(evalset, args.out)
    print(f"wrote {path}: {evalset!r}")
    if evalset.info:
        print("notes: " + ", ".join(f"{k}={v}" for k, v in sorted(evalset.info.items())))
    return EXIT_OK


def _data_synthetic(args: argparse.Namespace) -> int:
    """Write a synthetic CelebA-like set in the eval-set format."""
    from qbias_check.datasets import save_npz
    from qbias_check.datasets.synthetic import make_blond, make_hair

    make = make_hair if args.task == "hair" else make_blond
    evalset = make(args.n, seed=args.seed, size=args.size)
    path = save_npz(evalset, args.out)
    print(f"wrote {path}: {evalset!r}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``qbias-check`` command."""
    parser = argparse.ArgumentParser(
        prog="qbias-check",
        description="Compare an int8 model with its float reference, per class and per group.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    report = commands.add_parser(
        "report",
        help="print the bias report of an int8 model; exit 1 when a limit fails",
        description="Compare an int8 model with its float reference on a labelled eval set and "
        "judge the limits of --config (default limits without one). Exit status: 0 all limits "
        "hold, 1 a limit failed, 2 bad input.",
    )
    report.add_argument("--config", metavar="TOML", help="thresholds.toml (default: none)")
    report.add_argument("--reference", metavar="PATH", help="float model (default: from --config)")
    report.add_argument(
        "--quantized",
        metavar="PATH",
        help="int8 .tflite (default: from --config, else built by PTQ and cached)",
    )
    report.add_argument("--data", metavar="PATH", help="eval set (default: from --config)")
    report.add_argument("--gate", choices=GATE_MODES, help="gate mode (default: estimate)")
    report.add_argument("--bootstrap", type=int, metavar="N", help="replicates (default: 1000)")
    report.add_argument("--json", metavar="OUT", help="write the JSON report here")
    report.add_argument("--markdown", metavar="OUT", help="write the Markdown report here")
    report.add_argument(
        "--cache-dir", metavar="DIR", help="cache of builds and predictions (default: .qbias_cache)"
    )
    report.set_defaults(handler=_report)

    data = commands.add_parser("data", help="write eval sets in the .npz eval-set format")
    sources = data.add_subparsers(dest="source", metavar="SOURCE", required=True)
    celeba = sources.add_parser("celeba", help="read a CelebA tree (list_attr_celeba.txt, images)")
    celeba.add_argument("root", help="the CelebA folder")
    celeba.add_argument("--task", choices=("hair", "blond"), default="hair", help="(default: hair)")
    celeba.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
    celeba.add_argument(
        "--split", choices=("all", "train", "val", "test"), default="test", help="(default: test)"
    )
    celeba.add_argument(
        "--seed", type=int, default=0, help="random 60/20/20 split seed (default: 0)"
    )
    celeba.add_argument("--out", required=True, help="the .npz file to write")
    celeba.set_defaults(handler=_data_celeba)
    synthetic = sources.add_parser("synthetic", help="the synthetic CelebA-like hair-colour set")
    synthetic.add_argument(
        "--task", choices=("hair", "blond"), default="hair", help="(default: hair)"
    )
    synthetic.add_argument("--n", type=int, default=2000, help="examples (default: 2000)")
    synthetic.add_argument("--size", type=int, default=64, help="image side (default: 64)")
    synthetic.add_argument("--seed", type=int, default=0, help="(default: 0)")
    synthetic.add_argument("--out", required=True, help="the .npz file to write")
    synthetic.set_defaults(handler=_data_synthetic)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``qbias-check`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handler(args)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"qbias-check: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
