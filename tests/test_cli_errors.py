"""No traceback reaches a user: every command's failure is one line on stderr that says what to do
next, with its own exit status (2 bad input, 1 an OS error or a fault, 130 Ctrl-C, 143 SIGTERM);
``--debug`` shows the traceback instead. SIGTERM stops training as Ctrl-C does, resumably; the
budget command names the flag the user typed and refuses numbers it cannot plan with."""

from __future__ import annotations

import csv
import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import run_grid
from labelsim.__main__ import Terminated
from labelsim.__main__ import main as labelsim_main
from labelsim.sim import runner

sys.path.insert(0, str(Path(__file__).parent))
from fake_run import write_fake_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
TIER = ["--tier", "crowd:0.01:0.20"]

Failure = Callable[[Path], BaseException]


def only_line(err: str) -> str:
    """stderr's one line; fails on a traceback or on any other line."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def failing_runner(monkeypatch: pytest.MonkeyPatch, failure: Failure, *, started: bool) -> None:
    """Replace the trainer by one that raises ``failure(out)``, after writing out/run.json when
    ``started`` (a run that got as far as its first files)."""

    def fail(config: Any, out: Path, **_: Any) -> None:
        if started:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "run.json").write_text("{}")
        raise failure(Path(out))

    monkeypatch.setattr(runner, "run_grid", fail)


def no_space(out: Path) -> OSError:
    """The error of a write to a full disk."""
    return OSError(errno.ENOSPC, "No space left on device", str(out / "confusion.npz"))


ENTRIES = {
    "run_grid.py": run_grid.main,
    "python -m labelsim train": lambda argv: labelsim_main(["train", *argv]),
}
RESUME = "Continue with: --out {out} --resume"
TRAIN_FAILURES = {
    "Ctrl-C before any file": (lambda out: KeyboardInterrupt(), False, 130, "interrupted; run the same command again"),
    "Ctrl-C while training": (lambda out: KeyboardInterrupt(), True, 130,
                              f"interrupted; finished replicas are saved. {RESUME}"),
    "SIGTERM before any file": (lambda out: Terminated(), False, 143, "stopped by SIGTERM; run the same command again"),
    "SIGTERM while training": (lambda out: Terminated(), True, 143,
                               f"stopped by SIGTERM; finished replicas are saved. {RESUME}"),
    "disk full": (no_space, True, 1,
                  "error: No space left on device ({out}/confusion.npz); free some disk space, then continue with: "
                  "--out {out} --resume"),
    "no permission": (lambda out: PermissionError(errno.EACCES, "Permission denied", str(out)), False, 1,
                      "error: Permission denied ({out}); give yourself access to it or choose another place, then run "
                      "the same command again"),
    "a fault": (lambda out: RuntimeError("boom\nsecond line"), False, 1,
                "error: unexpected RuntimeError: boom; run the same command again, and if it fails again, rerun with "
                "--debug and report the traceback"),
}  # fmt: skip


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("case", TRAIN_FAILURES)
def test_a_training_failure_is_one_line_with_the_next_step_and_its_status(
    entry: str, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    failure, started, status, expected = TRAIN_FAILURES[case]
    failing_runner(monkeypatch, failure, started=started)
    out = tmp_path / "run"
    assert ENTRIES[entry](["--out", str(out), "--no-progress"]) == status
    captured = capsys.readouterr()
    assert only_line(captured.err) == expected.format(out=out) and captured.out == ""


@pytest.mark.parametrize("resume", [False, True])
def test_an_interrupt_recommends_resume_only_for_a_run_this_command_started_or_resumes(
    resume: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    write_fake_run(out)  # a run.json this (fresh) command did not write: it was stopped before its checks
    failing_runner(monkeypatch, lambda out: KeyboardInterrupt(), started=False)
    argv = ["--out", str(out), "--no-progress"] + (["--resume"] if resume else [])
    assert run_grid.main(argv) == 130
    resumable = f"interrupted; finished replicas are saved. {RESUME}".format(out=out)
    assert only_line(capsys.readouterr().err) == (resumable if resume else "interrupted; run the same command again")


def test_the_printed_commands_are_shell_quoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "it's a run; $HOME"
    monkeypatch.setattr(runner, "run_grid", lambda config, out, **_: Path(out))
    assert run_grid.main(["--out", str(out), "--no-progress"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("next: "))
    analyze, report = line.removeprefix("next: ").split("   |   ")
    assert shlex.split(analyze) == ["python", "-m", "labelsim", "analyze", str(out)]
    assert shlex.split(report) == ["python", "-m", "labelsim", "report", str(out)]
    failing_runner(monkeypatch, lambda out: KeyboardInterrupt(), started=True)
    assert run_grid.main(["--out", str(out), "--no-progress"]) == 130
    then = only_line(capsys.readouterr().err).split("Continue with: ")[1]
    assert shlex.split(then) == ["--out", str(out), "--resume"]


def test_a_closed_output_pipe_ends_a_command_quietly(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_fake_run(run)
    reader, writer = os.pipe()
    os.close(reader)  # as `| head -1` once it has its line: every write meets a closed pipe
    try:
        done = subprocess.run([sys.executable, "-m", "labelsim", "analyze", str(run), "--n-boot", "2"],
                              cwd=REPO, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT_S,
                              check=False)  # fmt: skip
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (141, "")


def test_check_of_a_file_says_it_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    file = tmp_path / "run.json"
    file.write_text("{}")
    assert labelsim_main(["check", str(file)]) == 2
    assert only_line(capsys.readouterr().err).startswith(f"error: {file} is a file, not a folder; give the run")


def test_resume_with_flags_names_only_the_flags_typed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    write_fake_run(out)  # started with epochs 6, width 16, batch size 64 on 2000 synthetic images
    before = (out / "run.json").read_bytes()
    argv = ["train", "--out", str(out), "--resume", "--no-progress"]
    assert labelsim_main([*argv, "--epochs", "4", "--width", "16", "--batch-size", "64"]) == 2
    line = only_line(capsys.readouterr().err)
    assert "other settings: --epochs 4 (the run has recipe.epochs 6); resume it with just --resume --out" in line
    assert "--width" not in line and "synthetic" not in line and "noise" not in line
    assert labelsim_main([*argv, "--width", "16"]) == 2  # agrees with the run; the demo preset does not
    line = only_line(capsys.readouterr().err)
    assert "your flags agree with the run" in line and f"just --resume --out {out}" in line
    assert (out / "run.json").read_bytes() == before


def test_a_bad_flag_value_or_stored_file_is_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert labelsim_main(["train", "--out", str(tmp_path / "run"), "--set", "recipe.nope=1"]) == 2
    assert only_line(capsys.readouterr().err).startswith("error: --set recipe.nope=1: recipe has no field 'nope'")
    (tmp_path / "run.json").write_text("{not json")
    assert labelsim_main(["check", str(tmp_path)]) == 2
    assert "run.json is unreadable" in only_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "key,value,fault",
    [
        ("classes", 5, "fault: run.json's classes is 5, not a list of class names"),
        ("test_class_counts", ["x"] * 10, "fault: run.json's test_class_counts is ['x', "),
    ],
)
def test_check_reports_a_stored_value_of_the_wrong_type_as_a_fault(
    key: str, value: Any, fault: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_fake_run(tmp_path)
    meta = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps(meta | {key: value}))
    assert labelsim_main(["check", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.err == "" and fault in captured.out and "FAULTY" in captured.out


@pytest.mark.parametrize("raised", [Terminated, KeyboardInterrupt, OSError, RuntimeError])
def test_debug_raises_instead(raised: type[BaseException], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing_runner(monkeypatch, lambda out: raised(), started=True)
    out = str(tmp_path / "run")
    with pytest.raises(raised):
        labelsim_main(["--debug", "train", "--out", out])
    with pytest.raises(raised):
        run_grid.main(["--debug", "--out", out])


def test_debug_shows_the_traceback_of_a_real_command(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    quiet = subprocess.run([sys.executable, "-m", "labelsim", "check", str(missing)],
                           cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)  # fmt: skip
    assert quiet.returncode == 2
    assert only_line(quiet.stderr).startswith(f"error: {missing}")
    loud = subprocess.run([sys.executable, "-m", "labelsim", "--debug", "check", str(missing)],
                          cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)  # fmt: skip
    assert loud.returncode == 1
    assert loud.stderr.startswith("Traceback") and "RunDirError" in loud.stderr


def test_a_sigterm_stops_the_command_and_its_handler_is_put_back_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def escaped(*_: Any) -> None:
        pytest.fail("SIGTERM reached the test's own handler: the command installed none")

    def signalled(config: Any, out: Path, **_: Any) -> None:
        signal.raise_signal(signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        pytest.fail("SIGTERM did not stop the command")

    monkeypatch.setattr(runner, "run_grid", signalled)
    previous = signal.signal(signal.SIGTERM, escaped)
    try:
        assert labelsim_main(["train", "--out", str(tmp_path / "run")]) == 143
        assert signal.getsignal(signal.SIGTERM) is escaped  # put back once the command ends
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert only_line(capsys.readouterr().err) == "stopped by SIGTERM; run the same command again"


# ------------------------------------------------------------------ a real SIGTERM


# 5 replicas, 2 at a time: the three on 256 images take 240 steps each, so the run is still
# training (for seconds on a CPU) when the first two have finished.
FLAGS = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--synthetic-size", "8",
    "--width", "4", "--epochs", "30", "--batch-size", "32", "--noise", "0,0.2,0.4", "--sizes", "32,64",
    "--steps-per-call", "1", "--repeats", "1", "--slots", "2", "--no-progress",
]  # fmt: skip


def read_rows(out: Path) -> list[dict[str, str]]:
    """replicas.csv now ([] before it exists)."""
    try:
        with (out / "replicas.csv").open(newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


# ``python -m labelsim`` with Ctrl-C raising KeyboardInterrupt, as in a terminal, even when the test
# process ignores SIGINT (a child inherits that).
LABELSIM_WITH_CTRL_C = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('labelsim', run_name='__main__', alter_sys=True)"
)


@pytest.mark.parametrize(
    "signum,status,stopped_by", [(signal.SIGTERM, 143, "stopped by SIGTERM"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_stops_training_with_one_line_and_its_status_and_the_run_resumes(
    signum: int, status: int, stopped_by: str, tmp_path: Path
) -> None:
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    env = os.environ | {"JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-c", LABELSIM_WITH_CTRL_C, "train", *FLAGS, "--out", str(out)]
    with log.open("w") as err:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if any(row["status"] == "finished" for row in read_rows(out)):
            break
        time.sleep(0.01)
    proc.send_signal(signum)
    assert proc.wait(timeout=TIMEOUT_S) == status, log.read_text()
    assert only_line(log.read_text()) == f"{stopped_by}; finished replicas are saved. {RESUME.format(out=out)}"
    stopped = read_rows(out)
    finished = {row["replica"]: row["accuracy"] for row in stopped if row["status"] == "finished"}
    assert 1 <= len(finished) < len(stopped)

    assert labelsim_main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    rows = read_rows(out)
    assert all(row["status"] == "finished" for row in rows)
    assert {row["replica"]: row["accuracy"] for row in rows if row["replica"] in finished} == finished
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert labelsim_main(["check", str(out)]) == 0


def test_ctrl_c_while_the_program_compiles_ends_with_its_status_not_a_crash(tmp_path: Path) -> None:
    """Interrupted while XLA compiles (its threads still running), the interpreter's teardown can crash
    (a segmentation fault after the message, in about half of the tries on a CPU); the process ends
    with 130 at once instead."""
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    flags = [*FLAGS[: FLAGS.index("--slots")], "--no-progress"]  # slots chosen by measuring memory
    command = [sys.executable, "-c", LABELSIM_WITH_CTRL_C, "train", *flags, "--out", str(out)]
    with log.open("w") as stderr:
        proc = subprocess.Popen(command, cwd=REPO, env=os.environ | {"JAX_PLATFORMS": "cpu"},
                                stdout=subprocess.DEVNULL, stderr=stderr)  # fmt: skip
    deadline = time.monotonic() + TIMEOUT_S
    while proc.poll() is None and not (out / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # the run folder exists; the slot program is being built and compiled
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=TIMEOUT_S) == 130, log.read_text()
    expected = f"interrupted; finished replicas are saved. {RESUME.format(out=out)}"
    err = log.read_text()  # the line that reports the measured slots, then the message
    assert "Traceback" not in err and err.splitlines()[-1] == expected
    assert labelsim_main(["check", str(out)]) == 0


# ------------------------------------------------------------------ budget


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake finished run to plan budgets on."""
    path = tmp_path_factory.mktemp("budget") / "run"
    write_fake_run(path)
    return path


@pytest.mark.parametrize(
    "extra,start",
    [
        (["--budget", "1e308"], "--budget 1e+308 would buy over 1e+09 labels"),
        (["--budget", "nan"], "--budget nan: give a positive amount"),
        (["--budget", "-5"], "--budget -5: give a positive amount"),
        (["--budget", "40", "--max-budget", "-1"], "--max-budget -1 is the right end of the cost curves"),
        (["--budget", "40", "--max-budget", "30"], "--max-budget 30 is the right end of the cost curves"),
        (["--budget", "40", "--max-budget", "inf"], "--max-budget inf is the right end of the cost curves"),
        (["--budget", "40", "--max-budget", "1e308"], "--max-budget 1e+308 would buy over 1e+09 labels"),
        (["--budget", "40", "--points", "100000000"], "--points 100000000: give 2 to 1000"),
        (["--budget", "40", "--points", "1"], "--points 1: give 2 to 1000"),
        (["--budget", "40", "--step", "1000000000000000"], "--step 1000000000000000 is more labels than"),
        (["--budget", "40", "--class-price", "cat=1e-300"], "--class-price makes a label of class cat"),
        (["--budget", "40", "--extrapolate", "inf"], "--extrapolate inf: give a multiple of 1 or more"),
        (["--budget", "40", "--weights", "cat=nan"], "--weights value nan is not allowed"),
    ],
)
def test_budget_refuses_numbers_it_cannot_plan_with_naming_the_flag(
    extra: list[str], start: str, budget_run: Path, capsys: pytest.CaptureFixture
) -> None:
    assert labelsim_main(["budget", str(budget_run), *TIER, "--no-save", *extra]) == 2
    line = only_line(capsys.readouterr().err)
    assert line.startswith(f"error: {start}") and "give " in line, line


@pytest.mark.parametrize(
    "tier,problem",
    [
        ("crowd:nan:0.2", "price nan; give a positive price"),
        ("crowd:inf:0.2", "price inf; give a positive price"),
        ("crowd:1e-300:0.2", "price 1e-300 per label, outside [1e-06, 1e+09]; fix its --tier"),
        ("crowd:1e20:0.2", "price 1e+20 per label, outside [1e-06, 1e+09]; fix its --tier"),
        ("crowd:0.01:nan", "noise rate nan, outside [0, 1); give"),
        ("crowd:0.01:-inf", "noise rate -inf, outside [0, 1); give"),
    ],
)
def test_budget_refuses_a_tier_with_nan_inf_or_unplannable_numbers(
    tier: str, problem: str, budget_run: Path, capsys: pytest.CaptureFixture
) -> None:
    assert labelsim_main(["budget", str(budget_run), "--tier", tier, "--budget", "40", "--no-save"]) == 2
    assert only_line(capsys.readouterr().err).startswith(f"error: tier 'crowd' has {problem}")


def test_a_budget_the_planner_can_take_is_still_answered(budget_run: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["budget", str(budget_run), *TIER, "--no-save", "--json", "--budget", "40", "--max-budget", "80"]
    assert labelsim_main([*argv, "--points", "3"]) == 0
    curve = json.loads(capsys.readouterr().out)["curves"][0]["points"]
    assert max(p["budget"] for p in curve) == 80.0 and len(curve) >= 3


BUDGET_STOPS = {
    "Ctrl-C in --simulate": (["--simulate"], lambda out: KeyboardInterrupt(), True, 130,
                             "interrupted; run the same command again with --resume to continue the simulated run in "
                             "{run}/budget_sim"),
    "SIGTERM in --simulate --resume": (["--simulate", "--resume"], lambda out: Terminated(), True, 143,
                                       "stopped by SIGTERM; run the same command again to continue the simulated "
                                       "run in {run}/budget_sim"),
    "disk full in --simulate": (["--simulate"], no_space, True, 1,
                                "error: No space left on device ({run}/budget_sim/confusion.npz); free some disk "
                                "space, then run the same command again with --resume to continue the simulated run "
                                "in {run}/budget_sim"),
    "Ctrl-C before --simulate wrote": (["--simulate"], lambda out: KeyboardInterrupt(), False, 130,
                                       "interrupted; run the same command again"),
    "SIGTERM in the rounds": (["--simulate", "--rounds", "1"], lambda out: Terminated(), True, 143,
                              "stopped by SIGTERM; run the same command again to continue the rounds in "
                              "{run}/budget_loop (finished rounds are kept)"),
    "Ctrl-C in the design": (["--design", "2"], lambda out: KeyboardInterrupt(), True, 130,
                             "interrupted; run the same command again to continue the design run in "
                             "{run}/budget_design"),
}  # fmt: skip


@pytest.mark.parametrize("case", BUDGET_STOPS)
def test_an_interrupted_budget_says_how_to_continue_what_it_trained(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    extra, failure, started, status, expected = BUDGET_STOPS[case]
    run = tmp_path / "run"
    write_fake_run(run)
    if "--resume" in extra:
        write_fake_run(run / "budget_sim")  # the run an earlier session left
    failing_runner(monkeypatch, failure, started=started)
    argv = ["budget", str(run), *TIER, "--budget", "40", "--points", "2", "--no-save", *extra]
    assert labelsim_main(argv) == status
    err = capsys.readouterr().err
    # --simulate lists the plans it is about to train before training them; then the one error line.
    listing = [line for line in err.splitlines() if line.startswith(("training ", "  "))]
    assert not listing or err.startswith(listing[0])
    assert only_line("\n".join(line for line in err.splitlines() if line not in listing)) == expected.format(run=run)


@pytest.mark.parametrize("signum, status, stopped_by", [(signal.SIGINT, 130, "interrupted"),
                                                        (signal.SIGTERM, 143, "stopped by SIGTERM")])
def test_a_signal_dropped_on_the_way_still_stops_training_at_the_next_chunk(
    signum: int, status: int, stopped_by: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """Python drops a signal handler's exception raised inside a garbage-collection callback (jax has
    one): the first chunk's handler call is swallowed here as there, and training stops after it all
    the same, with the signal's status and line."""
    out, original, calls = tmp_path / "run", runner._advance, []

    def advance_dropping_the_signal(ctx: Any, trainer: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            try:
                signal.getsignal(signum)(signum, None)
            except KeyboardInterrupt:
                pass  # "Exception ignored in: <function _xla_gc_callback ...>"
        return original(ctx, trainer)

    monkeypatch.setattr(runner, "_advance", advance_dropping_the_signal)
    assert labelsim_main(["train", *FLAGS, "--out", str(out)]) == status
    assert len(calls) == 1  # stopped after the chunk that met the signal, not at the end
    assert only_line(capsys.readouterr().err).startswith(f"{stopped_by}; ")
    assert labelsim_main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
