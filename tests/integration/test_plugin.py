"""The gate end to end with pytester: a tiny model repo (conftest.model_repo), real TensorFlow
and LiteRT. Each test writes a thresholds.toml and runs pytest on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qbias_check import compare
from qbias_check.cache import Cache
from qbias_check.evaluate import predict_cached

pytestmark = pytest.mark.slow
# Rare combinations (bald women, young gray-haired people) fall below min_support = 5 in the
# 400-example eval set: their gap checks skip.
THIN = 4


@pytest.fixture
def repo(pytester: pytest.Pytester, model_repo: Path) -> pytest.Pytester:
    """A pytester directory holding the model repo's files and a shared prediction cache."""
    for name in ("float.keras", "int8.tflite", "eval.npz"):
        shutil.copy(model_repo / name, pytester.path / name)
    return pytester


CONFIG = """
[dataset]
path = "eval.npz"

[[model]]
name = "tiny"
reference = "float.keras"
quantized = "int8.tflite"

[statistics]
bootstrap = 200
min_support = {min_support}

[limits]
cie_fraction = {cie}
fnr_max_min_increase = 1.0

[limits.per_class]
fnr_increase = 1.0

[limits.per_attribute]
fnr_gap_increase = 1.0
accuracy_gap_increase = 1.0
"""


def write_config(
    p: pytest.Pytester, *, cie: float = 1.0, min_support: int = 5, extra: str = ""
) -> None:
    p.makefile(".toml", thresholds=CONFIG.format(cie=cie, min_support=min_support) + extra)


def run(p: pytest.Pytester, model_repo: Path, *args: str) -> pytest.RunResult:
    cache = model_repo / "cache"
    return p.runpytest("thresholds.toml", f"--qbias-cache-dir={cache}", *args)


def test_items_have_readable_ids(repo: pytest.Pytester, model_repo: Path) -> None:
    write_config(repo)
    result = run(repo, model_repo, "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "thresholds.toml::tiny::evaluate",
            "thresholds.toml::tiny::cie_fraction",
            "thresholds.toml::tiny::class?bald?::fnr_increase",
            "thresholds.toml::tiny::male::accuracy_gap_increase",
            "thresholds.toml::tiny::male?blond?::fnr_gap_increase",
            "thresholds.toml::tiny::young?gray?::fnr_gap_increase",
        ]
    )
    # 1 evaluate + 2 model + 5 classes + 2 attributes x (5 classes + 1 accuracy)
    result.stdout.fnmatch_lines(["20 tests collected*"])


def test_k_selects_a_class(repo: pytest.Pytester, model_repo: Path) -> None:
    write_config(repo)
    result = run(repo, model_repo, "-k", "bald", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*class?bald?::fnr_increase", "*male?bald?::fnr_gap_increase"])
    assert "blond" not in result.stdout.str()


def test_tightening_a_limit_turns_a_pass_into_a_failure_with_a_table(
    repo: pytest.Pytester, model_repo: Path
) -> None:
    write_config(repo, cie=1.0)
    run(repo, model_repo).assert_outcomes(passed=16, skipped=THIN)
    write_config(repo, cie=0.0)
    result = run(repo, model_repo)
    result.assert_outcomes(passed=15, failed=1, skipped=THIN)
    result.stdout.fnmatch_lines(
        [
            "*tiny::cie_fraction: change +0.*, limit 0.0000; gate 'estimate' fails when*",
            "*metric*float*int8*change*limit*95 % interval*",
            "*cie_fraction*",
            "next step:*",
            "*qbias-check summary*",
            "tiny: accuracy 0.* float -> 0.* int8 on n = 400*",
            "*FNR Max-Min increase*",
            "worst classes (FNR increase):*",
        ]
    )


def test_thin_support_skips_with_the_reason(repo: pytest.Pytester, model_repo: Path) -> None:
    write_config(repo, min_support=10_000)
    result = run(repo, model_repo, "-rs")
    result.assert_outcomes(passed=1, skipped=19)
    result.stdout.fnmatch_lines(["*insufficient support (n=* < 10000)*"])


@pytest.mark.parametrize("args", [[], ["-n", "0"], ["-n", "2"], ["-p", "no:xdist"]])
def test_outcomes_are_the_same_with_and_without_xdist(
    repo: pytest.Pytester, model_repo: Path, args: list[str]
) -> None:
    write_config(repo, cie=0.0)
    run(repo, model_repo, *args).assert_outcomes(passed=15, failed=1, skipped=THIN)


def test_report_files_hold_the_numbers_of_compare(repo: pytest.Pytester, model_repo: Path) -> None:
    write_config(repo)
    out = repo.path / "reports"
    run(repo, model_repo, f"--qbias-report={out}").assert_outcomes(passed=16, skipped=THIN)
    data = json.loads((out / "tiny.json").read_text())
    assert (out / "tiny.md").read_text().startswith("## qbias-check: tiny")
    assert "data:image/png;base64," in (out / "tiny.html").read_text()
    outcomes = [c["outcome"] for c in data["checks"]]
    assert outcomes.count("passed") == 15 and outcomes.count("skipped") == THIN

    from qbias_check.datasets import load_eval_set

    evalset = load_eval_set(repo.path / "eval.npz")
    cache = Cache(model_repo / "cache")
    expected = compare(
        evalset.y,
        predict_cached(repo.path / "float.keras", evalset, cache),
        predict_cached(repo.path / "int8.tflite", evalset, cache),
        classes=evalset.classes,
        attributes=evalset.attributes,
        bootstrap=200,
    ).to_dict()
    assert data["summary"] == expected["summary"]
    assert data["per_class"] == expected["per_class"]


def test_model_option_works_without_a_config(repo: pytest.Pytester, model_repo: Path) -> None:
    result = repo.runpytest(
        "--qbias-model=int8.tflite",
        "--qbias-reference=float.keras",
        "--qbias-data=eval.npz",
        f"--qbias-cache-dir={model_repo / 'cache'}",
        "--qbias-bootstrap=50",
        "--collect-only",
        "-q",
    )
    result.stdout.fnmatch_lines(["thresholds.toml::int8::accuracy_drop", "*tests collected*"])


def test_plugin_is_silent_without_a_gate(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "qbias:" not in result.stdout.str()
    assert "qbias-check summary" not in result.stdout.str()


def test_every_option_is_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    for option in (
        "--qbias-model",
        "--qbias-reference",
        "--qbias-data",
        "--qbias-config",
        "--qbias-gate",
        "--qbias-report",
        "--qbias-cache-dir",
        "--qbias-bootstrap",
        "qbias_config",
    ):
        result.stdout.fnmatch_lines([f"*{option}*"])


def test_a_model_that_does_not_load_is_one_error(repo: pytest.Pytester, model_repo: Path) -> None:
    write_config(repo)
    (repo.path / "int8.tflite").write_bytes(b"TFL3 truncated")
    result = run(repo, model_repo)
    result.assert_outcomes(errors=1, skipped=19)


@pytest.mark.parametrize(
    ("extra", "config_text", "message"),
    [
        (
            "",
            "[limits]\nfnr_max_min_increse = 0.1\n",
            "*limits.fnr_max_min_increse: unknown key; did you mean 'fnr_max_min_increase'?*",
        ),
        ("", "[limits]\ncev = 'high'\n", "*limits.cev: expected a number, got 'high'*"),
        ("", "[limits]\ncev = -0.1\n", "*limits.cev: expected a value >= 0.0, got -0.1*"),
        (
            "",
            "[statistics]\ngate = 'strict'\n",
            "*statistics.gate: expected one of ?'estimate', 'significant', 'assured'?, got*",
        ),
        ("--qbias-model=other=int8.tflite", "", "*'other' names no model*"),
        ("--qbias-gate=strict", "", "*argument --qbias-gate: invalid choice: 'strict'*"),
    ],
)
def test_bad_configuration_is_a_usage_error(
    repo: pytest.Pytester, model_repo: Path, extra: str, config_text: str, message: str
) -> None:
    base = '[dataset]\npath = "eval.npz"\n[[model]]\nname = "tiny"\nreference = "float.keras"\n'
    repo.makefile(".toml", thresholds=base + config_text)
    result = run(repo, model_repo, *([extra] if extra else []))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_missing_files_and_unknown_classes_are_named(
    repo: pytest.Pytester, model_repo: Path
) -> None:
    repo.makefile(
        ".toml",
        thresholds='[dataset]\npath = "nope.npz"\n'
        '[[model]]\nname = "tiny"\nreference = "float.keras"\n',
    )
    result = run(repo, model_repo)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*dataset.path: no such file or folder: *nope.npz*"])

    write_config(repo, extra="[limits.class.baldd]\nfnr_increase = 0.1\n")
    result = run(repo, model_repo)
    result.stderr.fnmatch_lines(
        ["*limits.class.baldd: the eval set has no class 'baldd'; it has bald, black*"]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_a_broken_config_that_pytest_only_finds_is_a_collection_error(
    repo: pytest.Pytester, model_repo: Path
) -> None:
    repo.makefile(".toml", thresholds="[limitz]\n")
    repo.makepyfile("def test_other():\n    pass\n")
    result = repo.runpytest(".", f"--qbias-cache-dir={model_repo / 'cache'}")
    result.stdout.fnmatch_lines(["*thresholds.toml: limitz: unknown key; did you mean 'limits'?*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED
    # the same repo's other tests run when the gate is not collected
    repo.runpytest(
        "test_a_broken_config_that_pytest_only_finds_is_a_collection_error.py"
    ).assert_outcomes(passed=1)


def test_without_quantized_the_int8_model_is_built_by_ptq_and_cached(
    repo: pytest.Pytester, model_repo: Path, tmp_path: Path
) -> None:
    repo.makefile(
        ".toml",
        thresholds='[dataset]\npath = "eval.npz"\n'
        '[[model]]\nname = "tiny"\nreference = "float.keras"\n'
        "calibration = { samples = 20, seed = 1 }\n"
        "[statistics]\nbootstrap = 20\n[limits]\ncie_fraction = 1.0\n",
    )
    cache = tmp_path / "cache"
    args = ["thresholds.toml", f"--qbias-cache-dir={cache}", f"--qbias-report={tmp_path}"]
    repo.runpytest(*args).assert_outcomes(passed=2)
    built = json.loads((tmp_path / "tiny.json").read_text())
    assert built["quantized_built_by_ptq"] is True
    assert Path(built["quantized"]).is_relative_to(cache) and built["quantized"].endswith(".tflite")
    mtime = Path(built["quantized"]).stat().st_mtime_ns
    repo.runpytest(*args).assert_outcomes(passed=2)
    assert Path(built["quantized"]).stat().st_mtime_ns == mtime  # a cache hit: not rebuilt


def test_summary_goes_to_github_and_numbers_to_junit(
    repo: pytest.Pytester, model_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(repo, cie=0.0)
    summary = repo.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run(repo, model_repo, "--junitxml=junit.xml").assert_outcomes(passed=15, failed=1, skipped=THIN)
    text = summary.read_text()
    assert text.startswith("## qbias-check: tiny") and "tiny::cie_fraction" in text
    junit = (repo.path / "junit.xml").read_text()
    assert '<property name="qbias_check"' in junit and "cie_fraction" in junit


def test_fixtures_give_python_tests_the_comparison(repo: pytest.Pytester, model_repo: Path) -> None:
    write_config(repo)
    repo.makepyfile(
        test_more="""
        def test_numbers(qbias_comparison, qbias_eval_set, qbias_quantized_model):
            assert len(qbias_eval_set) == qbias_comparison.n == 400
            assert qbias_quantized_model.name == "int8.tflite"
            low, high = qbias_comparison.interval("class[black].fnr_increase")
            assert low <= qbias_comparison.estimate("class[black].fnr_increase") <= high
        """
    )
    result = repo.runpytest("test_more.py", f"--qbias-cache-dir={model_repo / 'cache'}")
    result.assert_outcomes(passed=1)


def test_fixtures_skip_without_a_gate(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_it(qbias_comparison):\n    pass\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no qbias gate here*"])


def test_model_option_runs_the_gate_where_testpaths_do_not_reach(
    repo: pytest.Pytester, model_repo: Path
) -> None:
    write_config(repo)
    repo.makeini("[pytest]\ntestpaths = tests\n")
    (repo.path / "tests").mkdir()
    (repo.path / "tests" / "test_unit.py").write_text("def test_unit():\n    pass\n")
    cache = f"--qbias-cache-dir={model_repo / 'cache'}"
    repo.runpytest(cache).assert_outcomes(passed=1)  # the gate is not collected: silent
    result = repo.runpytest(cache, "--qbias-model=int8.tflite")
    result.assert_outcomes(passed=17, skipped=THIN)  # the unit test and the gate's 16
