"""The budget command's --design mix grid: space-filling points over the budget's region,
their replicas, the stored design run (trained once, resumed, reused) and its errors."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import qmc

from labelsim.analysis.budget import (
    DESIGN_DIR,
    DESIGN_FILE,
    BudgetError,
    BudgetProblem,
    RunContext,
    Tier,
    design_points,
    design_specs,
    load_context,
    load_design,
    run_problem,
    unit_design,
)
from labelsim.commands import budget as command
from labelsim.config import ReplicaSpec, RunConfig
from labelsim.rundir import RunStore
from labelsim.rundir.store import grid_point

sys.path.insert(0, str(Path(__file__).parent))
from fake_run import CLASSES, write_fake_run  # noqa: E402

TIERS = (Tier("crowd", 0.04, 0.20), Tier("expert", 0.15, 0.02))
ARGV = ["--budget", "40", "--tier", "crowd:0.04:0.20", "--tier", "expert:0.15:0.02", "--points", "4"]
TEST_PER_CLASS = 100


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> RunContext:
    """A fake finished run's context (fitted once for the module)."""
    path = tmp_path_factory.mktemp("parent") / "run"
    write_fake_run(path, repeats=2)
    return load_context(path)


@pytest.fixture
def context(parent: RunContext, tmp_path: Path) -> RunContext:
    """The parent's context in a fresh folder, so each test starts without a design."""
    return dataclasses.replace(parent, path=tmp_path / "run")


@pytest.fixture
def problem(parent: RunContext) -> BudgetProblem:
    return run_problem(parent, TIERS, 40.0)


def true_accuracy(spec: ReplicaSpec) -> np.ndarray:
    """The stand-in trainer's per-class accuracy: more labels help, wrong labels hurt."""
    sizes, noise = np.array(spec.class_sizes, float), np.array(spec.class_noise)
    return np.round(0.3 + 0.1 * np.log(sizes) - 0.5 * noise, 2)


class FakeTrainer:
    """Stands in for run_grid: writes a run of the given replicas through RunStore, finishing
    at most ``limit`` pending replicas per call (None: all of them)."""

    def __init__(self, limit: int | None = None) -> None:
        self.calls: list[tuple[Path, bool, list[ReplicaSpec]]] = []
        self.limit = limit

    def __call__(self, config: RunConfig, out: Path, *, resume: bool = False, replicas: list[ReplicaSpec] | None = None,
                 progress: bool = True, grow: bool = False) -> Path:  # fmt: skip
        assert isinstance(config, RunConfig) and replicas
        self.calls.append((Path(out), resume, replicas))
        meta = {"classes": list(CLASSES), "config": config.to_dict(), "status": "running"}
        store = RunStore.open(out) if resume else RunStore.create(out, meta, replicas, len(CLASSES))
        if resume:
            stored = {grid_point(row.spec) for row in store.rows}
            new = [spec for spec in replicas if grid_point(spec) not in stored]
            assert grow or not new, "the runner refuses a different replica table without grow"
            if new:
                store.append(new)
            replicas = [row.spec for row in store.rows]
        pending = store.pending()
        for i in pending[: self.limit]:
            right = np.rint(true_accuracy(replicas[i]) * TEST_PER_CLASS).astype(np.int64)
            store.counts[i] = np.diag(right) + np.diag(TEST_PER_CLASS - right)[:, np.roll(np.arange(len(right)), 1)]
            store.update(i, status="finished", accuracy=float(right.mean() / TEST_PER_CLASS))
        if self.limit is None or self.limit >= len(pending):
            store.meta["status"] = "finished"
        store.flush()
        return Path(out)


@pytest.fixture
def trainer(monkeypatch: pytest.MonkeyPatch, context: RunContext) -> FakeTrainer:
    fake = FakeTrainer()
    monkeypatch.setitem(sys.modules, "labelsim.sim.runner", types.SimpleNamespace(run_grid=fake))
    monkeypatch.setattr(command, "load_context", lambda path: dataclasses.replace(context, path=Path(path)))
    return fake


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


def fake_budget_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, FakeTrainer, list[str]]:
    """A fake run (2 repeats) whose trainings a FakeTrainer stands in for, and the budget command line
    of a crowd and an expert tier on it (add --simulate and the rest)."""
    run = tmp_path / "run"
    write_fake_run(run, repeats=2)
    fake = FakeTrainer()
    monkeypatch.setitem(sys.modules, "labelsim.sim.runner", types.SimpleNamespace(run_grid=fake))
    return run, fake, [str(run), "--budget", "40", "--tier", "crowd:0.01:0.20", "--tier", "expert:0.05:0.02"]


# ------------------------------------------------------------------ the points


def test_unit_design_is_a_latin_hypercube_with_low_discrepancy() -> None:
    n, dims = 24, 8
    unit = unit_design(dims, n, seed=5)
    assert unit.shape == (n, dims) and np.all((unit >= 0) & (unit < 1))
    for column in unit.T:  # one point in each 1/n stratum of every coordinate
        assert sorted(np.floor(column * n).astype(int)) == list(range(n))
    uniform = [qmc.discrepancy(np.random.default_rng(s).random((n, dims))) for s in range(20)]
    assert qmc.discrepancy(unit) < 0.8 * min(uniform)


def test_points_fill_the_region(problem: BudgetProblem) -> None:
    n = 16
    sizes, noise = design_points(problem, n, seed=3)
    floors, ceilings = problem.floors(), problem.ceilings()
    assert sizes.shape == noise.shape == (n, len(problem.classes)) and sizes.dtype == np.int64
    assert np.all((sizes >= floors) & (sizes <= ceilings))
    assert np.all((noise >= 0.02) & (noise <= 0.20))
    # log-uniform strata: every class has a point in its lowest and its highest 1/n of log-count
    step = (ceilings / floors) ** (1 / n)
    assert np.all(sizes.min(axis=0) <= floors * step + 1) and np.all(sizes.max(axis=0) >= ceilings / step - 1)
    assert np.all(noise.min(axis=0) <= 0.02 + 0.18 / n + 1e-4) and np.all(noise.max(axis=0) >= 0.20 - 0.18 / n - 1e-4)
    assert len({tuple(row) for row in sizes}) == n  # mixes, not copies


def test_points_are_reproducible_from_the_seed(problem: BudgetProblem) -> None:
    first, again, other = (design_points(problem, 8, seed) for seed in (0, 0, 1))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[1], other[1])


def test_design_specs_are_custom_replicas(problem: BudgetProblem) -> None:
    points = design_points(problem, 4, seed=0)
    specs = design_specs(points, 2, "small_cnn")
    assert [s.label for s in specs] == ["design 0", "design 0", "design 1", "design 1",
                                        "design 2", "design 2", "design 3", "design 3"]  # fmt: skip
    assert [s.replica for s in specs] == list(range(8)) and [s.repeat for s in specs[:2]] == [0, 1]
    for s in specs:
        i = int(s.label.split()[1])
        assert s.experiment == "custom" and s.model == "small_cnn" and s.noise_model == "shuffle"
        assert s.class_sizes == tuple(points[0][i]) and s.class_noise == pytest.approx(points[1][i])
        assert s.train_size == sum(s.class_sizes)
        assert s.noise_rate == pytest.approx(np.dot(s.class_sizes, s.class_noise) / s.train_size)
    with pytest.raises(BudgetError, match="at least 2 points"):
        design_points(problem, 1, seed=0)


# ------------------------------------------------------------------ the command


def test_design_trains_once_then_is_reused(trainer: FakeTrainer, context: RunContext, capsys) -> None:
    argv = [str(context.path), *ARGV, "--design", "8", "--design-seed", "2", "--no-save"]
    assert run_command(argv) == 0
    out, resume, specs = trainer.calls[0]
    assert out == context.path / DESIGN_DIR and not resume and len(specs) == 8
    assert "Design: trained 8 replicas (8 points x 1 repeat, 8 finished)" in capsys.readouterr().out
    record = json.loads((out / DESIGN_FILE).read_text())
    assert (record["n"], record["seed"], record["repeats"]) == (8, 2, 1)
    assert record["parent"]["started"] == context.meta["started"]
    assert record["parent"]["classes"] == list(CLASSES) and record["region"]["noise"] == [0.02, 0.2]
    assert record["region"]["floors"] == [50] * 10 and record["region"]["ceilings"] == [200] * 10

    assert run_command(argv) == 0
    assert len(trainer.calls) == 1  # no retraining
    assert "Design: reused 8 replicas" in capsys.readouterr().out

    rows = load_design(context.path)  # the parent run, or the design folder itself
    assert len(rows) == len(load_design(out)) == 8
    for (sizes, noise, acc), spec in zip(rows, specs):
        np.testing.assert_array_equal(sizes, spec.class_sizes)
        np.testing.assert_allclose(noise, spec.class_noise)
        np.testing.assert_allclose(acc, true_accuracy(spec), atol=1e-9)


def test_partly_trained_design_is_resumed(trainer: FakeTrainer, context: RunContext, capsys) -> None:
    argv = [str(context.path), *ARGV, "--design", "6", "--design-repeats", "2", "--json", "--no-save"]
    trainer.limit = 5
    assert run_command(argv) == 0
    assert len(load_design(context.path)) == 5
    trainer.limit = None
    assert run_command(argv) == 0
    assert [(resume, len(specs)) for _, resume, specs in trainer.calls] == [(False, 12), (True, 12)]
    assert "Design: resumed and finished 12 replicas" in capsys.readouterr().err  # --json: notes on stderr
    assert len(load_design(context.path)) == 12


def other_run(context: RunContext, design_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Train a design for the context, then aim another run at the same design folder."""
    assert run_command([str(context.path), *ARGV, "--design", "4", "--no-save"]) == 0
    meta = {**context.meta, "started": "2025-02-02T00:00:00"}
    monkeypatch.setattr(command, "load_context", lambda path: dataclasses.replace(context, path=Path(path), meta=meta))
    return [str(context.path.parent / "other"), *ARGV, "--design", "4", "--design-out", str(design_dir)]


@pytest.mark.parametrize(
    "case,message",
    [
        ("one", "a design needs at least 2 points; give --design 2 or more"),
        ("zero", "a design needs at least 2 points"),
        ("repeats", "--design-repeats 0 must be at least 1"),
        ("other N", "holds a design of 4 points, not 6: pass --design 4 --design-seed 0 to reuse it"),
        ("other seed", "holds a design with another seed"),
        ("other tiers", "holds a design with another region"),
        ("other run", "holds a design of another run"),
        ("not a design", "holds a run that is not a budget design"),
    ],
)
def test_design_errors_exit_2_with_one_line(
    trainer: FakeTrainer, context: RunContext, monkeypatch: pytest.MonkeyPatch, capsys, case: str, message: str
) -> None:
    run_dir, design_dir = str(context.path), context.path / DESIGN_DIR
    argv = {
        "one": [run_dir, *ARGV, "--design", "1"],
        "zero": [run_dir, *ARGV, "--design", "0"],
        "repeats": [run_dir, *ARGV, "--design", "4", "--design-repeats", "0"],
    }.get(case)
    if argv is None and case == "other run":
        argv = other_run(context, design_dir, monkeypatch)
    elif argv is None and case == "not a design":
        write_fake_run(design_dir, sizes=(2000,), noise_levels=(0.0,))
        argv = [run_dir, *ARGV, "--design", "4"]
    elif argv is None:
        assert run_command([run_dir, *ARGV, "--design", "4", "--no-save"]) == 0
        changed = {"other N": ["--design", "6"], "other seed": ["--design", "4", "--design-seed", "1"],
                   "other tiers": ["--design", "4", "--tier", "cheap:0.02:0.4"]}[case]  # fmt: skip
        argv = [run_dir, *ARGV, *changed]
    calls = len(trainer.calls)
    capsys.readouterr()
    assert run_command(argv + ["--no-save"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert "Traceback" not in err and len(trainer.calls) == calls  # nothing trained
