"""The benchmark's report (benchmarks/run.py): SPEC §12 targets on median figures, skipped
when their rows or workload did not run, and the tables and targets as Markdown.

Pure functions on hand-written figures: nothing is measured here (speed is measured by the
benchmark only).
"""

# ruff: noqa: RUF001 - the targets are named with the multiplication sign, as run.py prints them

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def run() -> Iterator[Any]:
    sys.path.insert(0, str(BENCH))
    try:
        import run as module

        yield module
    finally:
        sys.path.remove(str(BENCH))


def _by_name(targets: list[Any]) -> dict[str, Any]:
    return {t.name: t for t in targets}


def test_small_calls_target_is_spec_ratio_1_8_of_the_floor(run: Any) -> None:
    med = {"floor": {"small_calls_s": 1000.0}, "dataserve": {"small_calls_s": 1790.0}}
    t = _by_name(run.check_targets(med, None))["small JSON calls/s ≥ 1.8× floor"]
    assert t.status == "FAIL"
    assert t.value == pytest.approx(1.79)
    med["dataserve"]["small_calls_s"] = 1800.0
    assert _by_name(run.check_targets(med, None))[t.name].status == "PASS"


def test_8_threads_target_is_4x_the_floor(run: Any) -> None:
    med = {"floor": {"threads8_calls_s": 1000.0}, "dataserve": {"threads8_calls_s": 3500.0}}
    t = _by_name(run.check_targets(med, None))["8 threads calls/s ≥ 4× floor"]
    assert (t.status, t.value) == ("FAIL", pytest.approx(3.5))


def test_target_whose_row_did_not_run_is_skipped_and_says_which(run: Any) -> None:
    med = {"floor": {"small_calls_s": 1.0}, "dataserve": {"small_calls_s": 2.0}}
    targets = _by_name(run.check_targets(med, None))
    t = targets["async: 64 concurrent ≥ sync 8 threads"]
    assert t.status == "SKIP"
    assert t.skipped == "row dataserve-async not in this run"
    u = targets["unix: small calls/s ≥ 0.7× mp-manager (unix)"]
    assert u.status == "SKIP"
    assert "dataserve-unix" in u.skipped
    assert "multiprocessing manager (unix)" in u.skipped


def test_async_targets_are_checked_when_the_async_row_ran(run: Any) -> None:
    med = {
        "dataserve": {"threads8_calls_s": 8000.0, "mb1_MBps": 1000.0, "mb64_MBps": 400.0},
        "dataserve-async": {"threads8_calls_s": 9000.0, "mb1_MBps": 850.0, "mb64_MBps": 390.0},
    }
    targets = _by_name(run.check_targets(med, None))
    assert targets["async: 64 concurrent ≥ sync 8 threads"].status == "PASS"
    assert targets["async: 1 MB echo within 10 % of sync"].status == "FAIL"  # 0.85
    assert targets["async: 64 MB echo within 10 % of sync"].status == "PASS"  # 0.975


def test_row_that_failed_gives_n_a_not_skip(run: Any) -> None:
    med: dict[str, dict[str, float]] = {"floor": {"small_calls_s": 1.0}, "dataserve": {}}
    t = _by_name(run.check_targets(med, None))["small JSON calls/s ≥ 1.8× floor"]
    assert (t.status, t.skipped) == ("n/a", None)


def test_stream_targets_skipped_unless_the_workload_ran_then_bound_100_mb(run: Any) -> None:
    name = "file streamed: server peak ≤ 100 MB"
    med = {"dataserve": {"small_calls_s": 1.0}}
    t = _by_name(run.check_targets(med, None))[name]
    assert t.status == "SKIP"
    assert "file-streaming workload" in t.skipped
    med["dataserve"]["stream_server_peak_MB"] = 101.0
    assert _by_name(run.check_targets(med, None))[name].status == "FAIL"
    med["dataserve"]["stream_server_peak_MB"] = 3.0
    assert _by_name(run.check_targets(med, None))[name].status == "PASS"


def test_import_target_reads_the_import_measurement(run: Any) -> None:
    med = {"dataserve": {"small_calls_s": 1.0}}
    name = "import dataserve ≤ 1.2× import msgspec, urllib3"
    assert _by_name(run.check_targets(med, {"import_ratio": 1.3}))[name].status == "FAIL"
    assert _by_name(run.check_targets(med, {"import_ratio": 1.1}))[name].status == "PASS"
    assert _by_name(run.check_targets(med, None))[name].status == "n/a"


def test_median_figures_take_the_median_of_three_runs(run: Any) -> None:
    runs = [{"floor": {"figures": {"small_calls_s": v}, "errors": {}}} for v in (3.0, 1.0, 2.0)]
    assert run.median_figures(runs, ["floor"]) == {"floor": {"small_calls_s": 2.0}}


def test_markdown_targets_are_a_table_with_one_line_per_target(run: Any) -> None:
    med = {"floor": {"small_calls_s": 1000.0}, "dataserve": {"small_calls_s": 2000.0}}
    targets = run.check_targets(med, None)
    text = run.format_targets(targets, 3, markdown=True)
    lines = text.splitlines()
    assert lines[2:4] == ["| target | measured | |", "|---|---:|---|"]
    rows = lines[4:]
    assert len(rows) == len(run.TARGETS)
    assert "| small JSON calls/s ≥ 1.8× floor | 2.00× | PASS |" in rows
    assert any(r.endswith("| SKIP (row dataserve-async not in this run) |") for r in rows)


def test_stream_table_shows_peaks_without_a_ratio_to_the_floor(run: Any) -> None:
    med = {
        "floor": {"stream_up_MBps": 200.0, "stream_client_peak_MB": 2.0},
        "dataserve": {"stream_up_MBps": 400.0, "stream_client_peak_MB": 0.5},
    }
    table = run.format_table(med, ["floor", "dataserve"], run.STREAM_FIGURES)
    row = next(line for line in table.splitlines() if line.startswith("| dataserve |"))
    assert "400 (2.00×)" in row
    assert "| 0.50 MB |" in row


def test_combine_stream_reports_the_larger_direction_per_side(run: Any) -> None:
    def way(mbps: float, client: float, server: float) -> dict[str, float]:
        return {"MBps": mbps, "client_peak_above_MB": client, "server_peak_above_MB": server}

    slices = [{"bytes": 512 << 20, "up": way(300.0, 1.0, 4.0), "down": way(200.0, 3.0, 2.0)}]
    out = run.combine_stream(slices)
    assert out["stream_MiB"] == 512
    assert (out["stream_up_MBps"], out["stream_down_MBps"]) == (300.0, 200.0)
    assert (out["stream_client_peak_MB"], out["stream_server_peak_MB"]) == (3.0, 4.0)
