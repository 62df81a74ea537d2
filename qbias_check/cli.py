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


def _build(args: argparse.Namespace) -> int:
    """Write one int8 artifact of a float model (PTQ, QAT or selective quantization)."""
    from qbias_check.atomic import write_bytes
    from qbias_check.datasets import load_eval_set
    from qbias_check.mitigation.candidates import build

    data = load_eval_set(args.data)
    flatbuffer = build(
        args.reference,
        data,
        args.method,
        samples=args.samples,
        seed=args.seed,
        epochs=args.epochs,
        keep_float=args.keep_float,
    )
    write_bytes(Path(args.out), flatbuffer)
    print(f"wrote {args.out} ({len(flatbuffer)} bytes, {args.method} of {args.reference})")
    return EXIT_OK


def _mitigate(args: argparse.Namespace) -> int:
    """Build several candidates and print them side by side (thesis table 4.4)."""
    import json

    from tabulate import tabulate

    from qbias_check.atomic import write_text
    from qbias_check.datasets import load_eval_set
    from qbias_check.mitigation.candidates import mitigate, table

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    data = load_eval_set(args.data)
    out = Path(args.out)
    candidates = mitigate(
        args.reference,
        data,
        methods,
        out,
        seed=args.seed,
        epochs=args.epochs,
        keep_float=args.keep_float,
        per_class=args.per_class,
        bootstrap=args.bootstrap,
    )
    pct = round(candidates[0].comparison.confidence * 100) if candidates else 95
    print(
        f"{args.reference} on {data.source}: candidates built on one half, compared on the "
        f"other ({len(data) - len(data) // 2} examples); estimate [{pct} % interval]"
    )
    print(tabulate(table(candidates), headers=["", *[c.method for c in candidates]]))
    for c in candidates:
        extra = f" + corrector {c.corrector}" if c.corrector else ""
        print(f"{c.method}: {c.model}{extra}")
    results = {
        c.method: {
            "model": str(c.model),
            "corrector": str(c.corrector) if c.corrector else None,
            "size_bytes": c.size_bytes,
            **c.comparison.to_dict(),
        }
        for c in candidates
    }
    write_text(out / "mitigate.json", json.dumps(results, indent=2, sort_keys=True) + "\n")
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

    from qbias_check.mitigation.candidates import BUILD_METHODS, METHODS

    build = commands.add_parser(
        "build",
        help="write an int8 .tflite of a float model: ptq, qat or selective",
        description="ptq: full-integer post-training quantization calibrated on --samples "
        "examples of --data; qat: quantization-aware fine-tuning on --data for --epochs (tf_keras "
        "models); selective: PTQ that keeps the --keep-float layers the quantization debugger "
        "ranks worst in float.",
    )
    build.add_argument("--reference", required=True, metavar="PATH", help="the float model")
    build.add_argument("--method", choices=BUILD_METHODS, default="ptq", help="(default: ptq)")
    build.add_argument(
        "--data", required=True, metavar="PATH", help="calibration / fine-tuning set"
    )
    build.add_argument("--out", required=True, metavar="FILE.tflite", help="where to write it")
    build.add_argument(
        "--keep-float",
        type=int,
        default=2,
        metavar="K",
        help="selective: layers kept in float (default: 2)",
    )
    _build_options(build)
    build.set_defaults(handler=_build)

    mitigate = commands.add_parser(
        "mitigate",
        help="build several int8 candidates and compare them side by side",
        description="Splits --data in two halves: candidates are built on the first (calibration, "
        "QAT fine-tuning, corrector training) and compared with the float model on the second. "
        "Prints the layout of thesis table 4.4 and writes the models and mitigate.json to --out.",
    )
    mitigate.add_argument("--reference", required=True, metavar="PATH", help="the float model")
    mitigate.add_argument("--data", required=True, metavar="PATH", help="a labelled eval set")
    mitigate.add_argument(
        "--methods",
        default="ptq,corrector",
        metavar="LIST",
        help=f"comma-separated, from {', '.join(METHODS)} (default: ptq,corrector)",
    )
    mitigate.add_argument("--out", default="qbias-mitigate", help="(default: qbias-mitigate)")
    mitigate.add_argument(
        "--per-class",
        type=int,
        default=1000,
        help="corrector: balanced training examples per class (default: 1000, as the thesis)",
    )
    mitigate.add_argument("--bootstrap", type=int, default=1000, help="(default: 1000)")
    mitigate.add_argument(
        "--keep-float",
        type=_int_list,
        default=[2],
        metavar="K[,K...]",
        help="selective: layers kept in float; several values give one candidate each, "
        "e.g. 0,1,2 for the trade-off (default: 2)",
    )
    _build_options(mitigate)
    mitigate.set_defaults(handler=_mitigate)

    from qbias_check.experiments import add_cli as add_experiment_command

    add_experiment_command(commands)

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


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected integers such as 0,1,2; got {text!r}") from exc


def _build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--samples", type=int, default=100, help="PTQ calibration examples (default: 100)"
    )
    parser.add_argument(
        "--epochs", type=int, default=15, help="QAT fine-tuning epochs (default: 15)"
    )
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")


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
