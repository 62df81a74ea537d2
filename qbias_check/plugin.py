"""pytest plugin entry point (``pytest11``): the qbias gate.

Hooks, items and fixtures only; the logic lives in plain modules (``thresholds``, ``checks``,
``gate``, ``report``). Each limit in thresholds.toml becomes one test item with a readable id,
``thresholds.toml::MODEL::class[bald]::fnr_increase``, collected from a sorted list so every
pytest-xdist worker collects the same items. Check numbers travel to the controller in
``user_properties``; the controller alone prints the summary and writes the reports.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qbias_check.thresholds import GATE_MODES, ConfigError, Overrides, resolve

CHECK_PROPERTY = "qbias_check"
_RUN = pytest.StashKey["_PluginState"]()


@dataclass
class _PluginState:
    """What the plugin knows in one process: where the gate is, its run, the check records."""

    config_path: Path
    explicit: bool  # a --qbias-* option or the config's path on the command line asked for it
    overrides: Overrides
    cwd: Path
    cache_dir: Path | None
    report_dir: Path | None
    records: list[dict[str, Any]] = field(default_factory=list)
    _run: Any = None  # qbias_check.gate.GateRun, made on first use (heavy imports stay lazy)

    @property
    def run(self) -> Any:
        """The gate run; resolving it reads thresholds.toml and may raise ConfigError."""
        if self._run is None:
            from qbias_check.cache import Cache
            from qbias_check.gate import GateRun

            config = self.config_path if self.config_path.is_file() else None
            self._run = GateRun(
                resolve(config, self.overrides, cwd=self.cwd), Cache(self.cache_dir)
            )
        return self._run


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--qbias-*`` options and the ``qbias_config`` ini key."""
    group = parser.getgroup("qbias", "qbias-check: bias of quantized models")
    group.addoption(
        "--qbias-model",
        action="append",
        default=[],
        metavar="PATH|NAME=PATH",
        help="int8 model to check; NAME=PATH picks one of several models "
        "(default: 'quantized' in the config, else built by PTQ from the reference)",
    )
    group.addoption(
        "--qbias-reference",
        metavar="PATH",
        help="float reference model: .keras, .h5, SavedModel dir or float .tflite "
        "(default: 'reference' in the config)",
    )
    group.addoption(
        "--qbias-data",
        metavar="PATH",
        help="labelled eval set: .npz, a folder with index.csv, or synthetic:hair?n=...&seed=... "
        "(default: [dataset] path in the config)",
    )
    group.addoption(
        "--qbias-config",
        metavar="PATH",
        help="gate configuration (default: the qbias_config ini value, else thresholds.toml "
        "in the rootdir)",
    )
    group.addoption(
        "--qbias-gate",
        choices=GATE_MODES,
        help="estimate: fail when the estimate exceeds a limit; significant: when the whole "
        "interval does; assured: pass only when the whole interval lies below "
        "(default: statistics.gate in the config, else estimate)",
    )
    group.addoption(
        "--qbias-report",
        metavar="DIR",
        help="write <model>.json, .md and .html (with figures) into DIR (default: no files)",
    )
    group.addoption(
        "--qbias-cache-dir",
        metavar="DIR",
        help="where int8 builds and predictions are cached (default: .pytest_cache/d/qbias, "
        "or .qbias_cache without the cache plugin)",
    )
    group.addoption(
        "--qbias-bootstrap",
        type=int,
        metavar="N",
        help="paired bootstrap replicates (default: statistics.bootstrap in the config, else 1000)",
    )
    parser.addini(
        "qbias_config",
        "path of the qbias gate configuration (default: thresholds.toml)",
        default="thresholds.toml",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Find the gate. Asked for (a --qbias-* option, or ``pytest thresholds.toml``) it is
    resolved now, so bad values are a UsageError before any test runs; a thresholds.toml that
    pytest merely finds is read only when collected, so a repo's other tests never pay for (or
    trip over) the gate."""
    config.addinivalue_line("markers", "qbias: a bias check generated from thresholds.toml")
    opt = config.option
    config_path = (config.rootpath / (opt.qbias_config or config.getini("qbias_config"))).resolve()
    named = any(
        (config.invocation_params.dir / arg.split("::")[0]).resolve() == config_path
        for arg in config.args
    )
    explicit = bool(opt.qbias_model or opt.qbias_reference or opt.qbias_data or named)
    if opt.qbias_config and not config_path.is_file():
        raise pytest.UsageError(f"--qbias-config {opt.qbias_config}: no such file")
    if not explicit and not config_path.is_file():
        return  # no gate here: stay silent and cost nothing
    cache_dir = opt.qbias_cache_dir or (
        config.cache.mkdir("qbias") if getattr(config, "cache", None) else None
    )
    state = _PluginState(
        config_path=config_path,
        explicit=explicit,
        overrides=Overrides(
            models=tuple(opt.qbias_model),
            reference=opt.qbias_reference,
            data=opt.qbias_data,
            gate=opt.qbias_gate,
            bootstrap=opt.qbias_bootstrap,
        ),
        cwd=config.invocation_params.dir,
        cache_dir=Path(cache_dir) if cache_dir else None,
        report_dir=Path(opt.qbias_report).resolve() if opt.qbias_report else None,
    )
    if explicit:
        try:
            # Expanding the checks reads the eval set: limits that name classes or attributes
            # the data lacks are start-up errors too.
            state.run.checks()
        except (ConfigError, ValueError, OSError) as exc:
            raise pytest.UsageError(str(exc)) from exc
    config.stash[_RUN] = state
    config.pluginmanager.register(_Recorder(state), "qbias-recorder")


def pytest_report_header(config: pytest.Config) -> str | None:
    """One header line naming the gate's configuration and models."""
    state = config.stash.get(_RUN, None)
    if state is None or state._run is None:
        return None
    spec = state.run.spec
    models = ", ".join(m.name for m in spec.models)
    return f"qbias: {spec.source} (models: {models}; gate: {spec.statistics.gate})"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect the gate's thresholds.toml when pytest reaches it."""
    state = parent.config.stash.get(_RUN, None)
    if state is None or file_path.resolve() != state.config_path:
        return None
    return GateFile.from_parent(parent, path=file_path)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    """With a --qbias-* option, add the checks even where testpaths do not reach the config."""
    state = session.config.stash.get(_RUN, None)
    # pytest may build a GateFile while walking down to a testpath and then drop it, so look at
    # what was actually collected.
    if state is None or not state.explicit or any(isinstance(i, _GateItem) for i in items):
        return
    gate_file = GateFile.from_parent(session, path=state.config_path)
    for node in gate_file.collect():
        items.extend(_items(node))


def _items(node: pytest.Item | pytest.Collector) -> Iterator[pytest.Item]:
    if isinstance(node, pytest.Item):
        yield node
        return
    for child in node.collect():
        yield from _items(child)


class GateFile(pytest.File):
    """thresholds.toml: one collector per model."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        state = self.config.stash[_RUN]
        try:
            checks = state.run.checks()
        except (ConfigError, ValueError, OSError) as exc:  # shown as the message, no traceback
            raise self.CollectError(str(exc)) from exc
        for model in state.run.spec.models:
            yield ModelNode.from_parent(
                self, name=model.name, checks=[c for c in checks if c.model == model.name]
            )


class ModelNode(pytest.Collector):
    """One model: its evaluation item first, then a node per scope holding the checks."""

    def __init__(self, *, checks: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checks = checks

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        yield EvaluateItem.from_parent(self, name="evaluate", model=self.name)
        scopes: dict[str, list[Any]] = {}
        for check in self.checks:
            scopes.setdefault(check.scope, []).append(check)
        for scope, checks in scopes.items():
            if scope:
                yield ScopeNode.from_parent(self, name=scope, checks=checks)
            else:
                for check in checks:
                    yield CheckItem.from_parent(self, name=check.metric, check=check)


class ScopeNode(pytest.Collector):
    """A class (``class[bald]``), an attribute x class (``male[blond]``) or an attribute."""

    def __init__(self, *, checks: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checks = checks

    def collect(self) -> Iterator[pytest.Item]:
        for check in self.checks:
            yield CheckItem.from_parent(self, name=check.metric, check=check)


class _GateError(Exception):
    """A failure whose message is the whole story: shown without a traceback."""


class _GateItem(pytest.Item):
    """An item of the gate: a failure shows its own message, located at the item's id."""

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, _GateError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.nodeid


class EvaluateItem(_GateItem):
    """Loads and runs both models of one gate model on the eval set (an error here is the
    model's one error; its checks then skip)."""

    def __init__(self, *, model: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    def setup(self) -> None:
        state = self.config.stash[_RUN]
        try:
            state.run.evaluation(self.model)
        except Exception as exc:
            raise _GateError(f"{self.model}: {type(exc).__name__}: {exc}") from exc

    def runtest(self) -> None:
        pass


class CheckItem(_GateItem):
    """One limit of thresholds.toml: passes, fails with a table, or skips with the reason."""

    def __init__(self, *, check: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.add_marker("qbias")

    def runtest(self) -> None:
        __tracebackhide__ = True
        from qbias_check.checks import FAILED, SKIPPED
        from qbias_check.report import check_record, failure_table

        state = self.config.stash[_RUN]
        try:
            evaluation = state.run.evaluation(self.check.model)
        except Exception as exc:
            pytest.skip(f"model {self.check.model} was not evaluated: {exc}")
        verdict = state.run.judge(self.check)
        self.user_properties.append((CHECK_PROPERTY, json.dumps(check_record(self.check, verdict))))
        if verdict.outcome == SKIPPED:
            pytest.skip(verdict.reason)
        if verdict.outcome == FAILED:
            text = failure_table(
                self.check, verdict, evaluation.comparison, state.run.spec.statistics.gate
            )
            if state.report_dir is not None:
                text += f"\nreport: {state.report_dir / (self.check.model + '.html')}"
            raise _GateError(text)


class _Recorder:
    """Gathers check records from test reports: on the controller under xdist, in-process
    otherwise. Registered as a plugin object because ``pytest_runtest_logreport`` gets no config."""

    def __init__(self, state: _PluginState) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == CHECK_PROPERTY:
                self.state.records.append(json.loads(str(value)))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print a summary per model and write the reports (controller only)."""
    state = config.stash.get(_RUN, None)
    if state is None or hasattr(config, "workerinput") or not state.records:
        return
    from qbias_check.report import markdown, summary_text, write_reports

    terminalreporter.section("qbias-check summary")
    for model in sorted({r["model"] for r in state.records}):
        try:
            data = state.run.report(model, state.records)
        except Exception as exc:
            terminalreporter.line(f"{model}: not evaluated ({exc})")
            continue
        terminalreporter.line(summary_text(model, data))
        if state.report_dir is not None:
            for path in write_reports(state.report_dir, model, data):
                terminalreporter.line(f"report written: {path}")
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as f:
                f.write(markdown(model, data))
        terminalreporter.line("")


@pytest.fixture(scope="session")
def qbias_gate(pytestconfig: pytest.Config) -> Any:
    """The gate run of this session (``qbias_check.gate.GateRun``), for tests that want more
    than thresholds.toml can say. Skips when no gate is configured.

    Example::

        def test_bald_recall(qbias_gate):
            comparison = qbias_gate.evaluation("hair-v3small").comparison
            assert comparison.per_class.loc["bald", "fnr_int8"] < 0.3
    """
    state = pytestconfig.stash.get(_RUN, None)
    if state is None:
        pytest.skip(
            "no qbias gate here: add thresholds.toml or pass --qbias-model, --qbias-reference "
            "and --qbias-data"
        )
    return state.run


def _only_model(run: Any) -> str:
    names = [m.name for m in run.spec.models]
    if len(names) != 1:
        raise pytest.UsageError(
            f"the qbias gate has several models ({', '.join(names)}); use the qbias_gate fixture: "
            "qbias_gate.evaluation(NAME)"
        )
    return str(names[0])


@pytest.fixture(scope="session")
def qbias_eval_set(qbias_gate: Any) -> Any:
    """The gate's eval set (``qbias_check.EvalSet``: x, y, classes, attributes).

    Example::

        def test_enough_bald_examples(qbias_eval_set):
            assert (qbias_eval_set.y == qbias_eval_set.classes.index("bald")).sum() >= 30
    """
    return qbias_gate.evalset


@pytest.fixture(scope="session")
def qbias_comparison(qbias_gate: Any) -> Any:
    """The ``Comparison`` of the gate's only model (float vs int8, with intervals).

    Example::

        def test_gray_does_not_lose_recall(qbias_comparison):
            low, high = qbias_comparison.interval("class[gray].fnr_increase")
            assert high < 0.10
    """
    return qbias_gate.evaluation(_only_model(qbias_gate)).comparison


@pytest.fixture(scope="session")
def qbias_reference_model(qbias_gate: Any) -> Path:
    """Path of the gate's only float reference model.

    Example::

        def test_reference_is_keras(qbias_reference_model):
            assert qbias_reference_model.suffix in {".keras", ".h5"}
    """
    return Path(qbias_gate.spec.model(_only_model(qbias_gate)).reference)


@pytest.fixture(scope="session")
def qbias_quantized_model(qbias_gate: Any) -> Path:
    """Path of the gate's only int8 model: the configured file, or the cached PTQ build.

    Example::

        def test_int8_is_small(qbias_quantized_model):
            assert qbias_quantized_model.stat().st_size < 2_000_000
    """
    return Path(qbias_gate.evaluation(_only_model(qbias_gate)).quantized)
