"""`make bench`'s report: issue #9's targets computed from the run's figures, the field's rows, kept sections."""

from __future__ import annotations

from pathlib import Path

from tests.bench import load
from tests.bench.__main__ import (
    FLOOR,
    KG,
    MLFLOW,
    PYTHON,
    Header,
    Target,
    targets_section,
    write_report,
)


def target(name: str, rps: dict[int, list[float]], p50: float = 1.0) -> Target:
    t = Target(name, "http://127.0.0.1:1", ["/"], "{}", None)
    t.results = {c: [load.Result(r, p50, p50 * 2, 0) for r in values] for c, values in rps.items()}
    return t


def row(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(f"| {start}"))


def test_targets_are_ratios_of_medians_in_the_same_run() -> None:
    targets = [
        target(FLOOR, {1: [10_000], 8: [10_000, 12_000, 14_000]}),
        target(PYTHON, {1: [1_000], 8: [3_000, 3_200, 9_000]}, p50=0.8),
        target(MLFLOW, {8: [1_000, 1_100, 1_200]}),
        target(KG, {8: [100, 110, 120]}),
    ]
    lines = targets_section(targets, {"Python": [15.0, 18.0, 400.0], "R": []})
    assert row(lines, "Python standard service ≥ 0.25 x floor") == (
        "| Python standard service ≥ 0.25 x floor req/s at c=8 | 0.27 x | met |"
    )
    assert row(lines, "Python standard service p50") == "| Python standard service p50 ≤ 1 ms at c=1 | 0.80 ms | met |"
    assert row(lines, "Python standard service ≥ 3 x MLflow").endswith("| 2.91 x | not met |")
    assert row(lines, "Python standard service ≥ 30 x Kernel").endswith("| 29.09 x | not met |")
    assert row(lines, "R standard service").endswith("| not measured | - |")
    assert row(lines, "session create (Python)").endswith("| 18.00 ms | met |")
    assert row(lines, "session create (R)").endswith("| not measured | - |")


def test_report_lists_the_field_not_installed_and_keeps_hand_written_sections(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nold table\n\n## Memory growth (by hand)\n\n| a | b |\n")
    targets = [target(FLOOR, {1: [10_000]}), target(PYTHON, {1: [1_000]})]
    header = Header(3, 2, "The machine was shared.", [], [MLFLOW, KG], (0.5, 1.5))
    write_report(out, header, targets, {"Python": [10.0]}, {}, {}, ["MLflow scoring server: not installed (x)"])
    text = out.read_text()
    assert "old table" not in text
    assert f"| {MLFLOW} | - | not installed | - | - | - | - |" in text
    assert f"| {KG} | - | not installed | - | - | - | - |" in text
    assert "The machine was shared." in text
    assert "Load average (1 min) 0.5 before the run, 1.5 after." in text
    assert "| Python standard service | 1 | not measured | not measured |" in text
    assert "- MLflow scoring server: not installed (x)" in text
    assert text.endswith("## Memory growth (by hand)\n\n| a | b |\n")
    write_report(out, header, targets, {}, {}, {}, [])  # rewriting keeps the section once
    assert out.read_text().count("## Memory growth") == 1
