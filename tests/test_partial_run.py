"""Analysis of a run still in progress (finished replicas only, with a banner), of a run with
nothing finished (one clear error), and CSV tables a script can read: a header row always, and
the noise model names replicas.csv uses."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from fake_run import write_fake_run
from labelsim.analysis import analyze_run
from labelsim.commands import analyze, report
from labelsim.rundir import Replica, load_run

REPO = Path(__file__).resolve().parents[1]
N_BOOT = "20"

Where = Callable[[Replica], bool]

# Unfinished replicas that leave whole grid levels without data.
CASES: dict[str, tuple[dict, Where]] = {
    "noisy replicas pending": ({}, lambda r: r.noise_rate > 0),
    "largest size pending": ({}, lambda r: r.train_size == 2000),
    "early kill, smallest size only": ({}, lambda r: r.train_size != 500),
    "human noise pending": ({"noise_models": ("shuffle", "human-worse")},
                            lambda r: r.noise_model == "human-worse"),
    "cross grid pending": ({"cross": True}, lambda r: r.experiment == "cross"),
}


def _unfinished_run(path: Path, where: Where, **kwargs) -> Path:
    """A fake run whose replicas matching ``where`` are still running."""
    layout = path.parent / f"{path.name}-layout"
    write_fake_run(layout, **kwargs)
    running = tuple(r.replica for r in load_run(layout).replicas if where(r))
    assert running, "the case must leave some replicas unfinished"
    write_fake_run(path, running=running, **kwargs)
    return path


@pytest.fixture(scope="module", params=list(CASES))
def partial(request, tmp_path_factory) -> Path:
    kwargs, where = CASES[request.param]
    return _unfinished_run(tmp_path_factory.mktemp("partial") / "run", where, **kwargs)


@pytest.fixture(scope="module")
def early_kill(tmp_path_factory) -> Path:
    kwargs, where = CASES["early kill, smallest size only"]
    return _unfinished_run(tmp_path_factory.mktemp("early") / "run", where, **kwargs)


def _args(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def _counts(path: Path) -> tuple[int, int]:
    """(finished, total) replicas as replicas.csv records them."""
    with (path / "replicas.csv").open(newline="") as handle:
        statuses = [row["status"] for row in csv.DictReader(handle)]
    return statuses.count("finished"), len(statuses)


def _read(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_analyze_uses_the_finished_replicas_and_says_so_first(partial: Path, tmp_path: Path,
                                                               capsys) -> None:
    out = tmp_path / "tables"
    assert analyze.run(_args(analyze, [str(partial), "--out", str(out), "--n-boot", N_BOOT])) == 0
    text = capsys.readouterr().out
    finished, total = _counts(partial)
    assert 0 < finished < total
    assert text.splitlines()[0] == (
        f"{finished} of {total} replicas finished ({total - finished} pending or running); "
        "the tables below use the finished ones only")
    assert "no finished replica at" in text
    for name in ("per_class.csv", "overall.csv", "fits_noise.csv", "excluded.csv", "fits.json"):
        assert (out / name).is_file(), name
    _, excluded = _read(out / "excluded.csv")
    assert len(excluded) == total - finished
    _, overall = _read(out / "overall.csv")
    used = {int(i) for row in overall for i in row["replicas"].split()}
    assert used == {r.replica for r in load_run(partial).finished()}


def test_fits_without_enough_levels_are_named_so(early_kill: Path, tmp_path: Path,
                                                 capsys) -> None:
    out = tmp_path / "tables"
    assert analyze.run(_args(analyze, [str(early_kill), "--out", str(out),
                                       "--n-boot", N_BOOT])) == 0
    text = capsys.readouterr().out
    assert "noise fit: not enough levels to fit" in text
    assert "volume fit: not enough levels to fit" in text
    skipped = json.loads((out / "fits.json").read_text())["skipped"]
    assert set(skipped) == {"noise", "volume"}
    assert "1 training size (500)" in skipped["volume"]


def test_a_noise_model_without_finished_replicas_is_not_enough_data(tmp_path: Path,
                                                                    capsys) -> None:
    kwargs, where = CASES["human noise pending"]
    run = _unfinished_run(tmp_path / "run", where, **kwargs)
    assert analyze.run(_args(analyze, [str(run), "--out", str(tmp_path / "t"),
                                       "--n-boot", N_BOOT])) == 0
    text = capsys.readouterr().out
    assert "small_cnn with human-worse: not enough data" in text
    assert "small_cnn with shuffle: not enough data" not in text
    assert "human-worse vs shuffle (small_cnn): not enough data" in text


def test_report_shows_the_banner_on_the_terminal_and_atop_the_page(early_kill: Path,
                                                                   tmp_path: Path,
                                                                   capsys) -> None:
    page = tmp_path / "page.html"
    code = report.run(_args(report, [str(early_kill), "--out", str(page), "--n-boot", N_BOOT]))
    lines = capsys.readouterr().out.splitlines()
    finished, total = _counts(early_kill)
    banner = (f"{finished} of {total} replicas finished ({total - finished} pending or running); "
              "the tables below use the finished ones only")
    assert code == 0 and lines[0] == banner and page.is_file()
    html = page.read_text(encoding="utf-8")
    top = html.index(f"<p class='banner' id='banner'>{banner}</p>")
    assert html.index("</h1>") < top < html.index("<nav>")
    assert "not enough levels to fit" in html


def test_a_finished_run_has_no_banner(tmp_path: Path, capsys) -> None:
    write_fake_run(tmp_path / "run", diverged=(3,))
    assert analyze.run(_args(analyze, [str(tmp_path / "run"), "--out", str(tmp_path / "t"),
                                       "--n-boot", N_BOOT])) == 0
    text = capsys.readouterr().out
    assert text.startswith("run ") and "the tables below use the finished ones only" not in text


def _command(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labelsim", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_nothing_finished_is_one_line_that_says_to_wait_or_resume(command: str,
                                                                   tmp_path: Path) -> None:
    write_fake_run(tmp_path / "run", running=tuple(range(10)))
    assert _counts(tmp_path / "run") == (0, 10)
    done = _command(command, str(tmp_path / "run"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"python run_grid.py --resume --out {tmp_path / 'run'}" in lines[0]
    assert not (tmp_path / "run" / "analysis").exists()
    assert not (tmp_path / "run" / "report.html").exists()


def test_every_replica_diverged_is_one_line_that_does_not_offer_a_resume(tmp_path: Path) -> None:
    write_fake_run(tmp_path / "run", diverged=tuple(range(10)))
    done = _command("analyze", str(tmp_path / "run"))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr
    assert "every replica diverged" in lines[0] and "--resume" not in lines[0]


# ---------------------------------------------------------------- tables a script can read


def test_every_csv_has_its_header_even_without_rows(early_kill: Path, tmp_path: Path) -> None:
    out = tmp_path / "tables"
    assert analyze.run(_args(analyze, [str(early_kill), "--out", str(out),
                                       "--n-boot", N_BOOT])) == 0
    tables = analyze.table_files(analyze_run(early_kill, n_boot=int(N_BOOT)))
    written = sorted(p.name for p in out.glob("*.csv"))
    assert written == sorted(tables)
    empty = set()
    for name in written:
        header, rows = _read(out / name)
        assert header == list(tables[name].columns), name
        empty |= {name} if not rows else set()
    # the early kill leaves these without rows: no fit, no baseline, no noisy level
    assert {"fits_noise.csv", "fits_volume.csv", "sizes_needed.csv", "size_fractions.csv",
            "compare_realized.csv"} <= empty
    header, _ = _read(out / "fits_noise.csv")
    assert {"class", "slope", "slope_ci_lo", "slope_ci_hi", "r2", "linear_ok"} <= set(header)
    header, _ = _read(out / "sizes_needed.csv")
    assert {"class", "fraction", "of", "total", "total_lo", "total_hi", "where"} <= set(header)


@pytest.fixture(scope="module")
def complete(tmp_path_factory) -> Path:
    """A finished CIFAR-10-like run that fills every table: cross grid, human noise, a diverged
    replica, the reference study's sizes and noise level."""
    path = tmp_path_factory.mktemp("complete") / "run"
    write_fake_run(path, noise_levels=(0.0, 0.3), sizes=(5000, 20000, 50000), full_size=50000,
                   cross=True, noise_models=("shuffle", "human-worse"), dataset="cifar10",
                   diverged=(3,))
    return path


def test_declared_columns_are_the_columns_the_rows_fill(complete: Path) -> None:
    tables = analyze.table_files(analyze_run(complete, n_boot=int(N_BOOT)))
    assert len(tables) == 23
    for name, table in tables.items():
        assert table.rows, f"{name} has no rows in a complete run"
        filled = {key for row in table.rows for key in row}
        assert filled == set(table.columns), name
        assert len(set(table.columns)) == len(table.columns), name


@pytest.mark.parametrize("running", [False, True])
def test_noise_model_names_agree_with_replicas_csv(complete: Path, tmp_path: Path,
                                                   running: bool) -> None:
    run = complete
    if running:
        run = _unfinished_run(tmp_path / "run", lambda r: r.noise_model == "human-worse",
                              noise_models=("shuffle", "human-worse"))
    out = tmp_path / "tables"
    assert analyze.run(_args(analyze, [str(run), "--out", str(out), "--n-boot", N_BOOT])) == 0
    recorded = {r.replica: r.noise_model for r in load_run(run).replicas}
    _, overall = _read(out / "overall.csv")
    assert any(float(row["noise_rate"]) == 0 for row in overall)
    for row in overall:  # each point under the name its replicas carry
        assert {recorded[int(i)] for i in row["replicas"].split()} == {row["noise_model"]}
    for path in out.glob("*.csv"):
        header, rows = _read(path)
        if "noise_model" in header:
            assert {row["noise_model"] for row in rows} <= set(recorded.values()), path.name
