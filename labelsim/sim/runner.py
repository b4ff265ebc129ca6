"""Run a grid: validate, load the data to the device once, train every replica in slots of one
batched program (``labelsim.sim.slots``), evaluate each replica as it finishes, and write
results as they come (``labelsim.rundir``).

Slot scheduling: the batched program has S replica slots. When a replica finishes (or
diverges), it is evaluated and its slot starts the next pending grid point, with no
recompilation (shapes never change). Replicas are queued longest first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from labelsim import __version__, stops
from labelsim.config import ConfigError, ReplicaSpec, RunConfig, total_steps
from labelsim.models import standard_width
from labelsim.rundir import (
    CHECKPOINT_FILE,
    RunDirError,
    RunStore,
    claim,
    clear_stopped_creation,
    remove_partial_writes,
    specs_match,
)
from labelsim.rundir.store import grid_changes
from labelsim.rundir.predictions import PredictionWriter
from labelsim.sim import distributed, grid, noise
from labelsim.sim.checkpoint import read_checkpoint, write_checkpoint
from labelsim.sim.data import Dataset, load_dataset
from labelsim.sim.fingerprint import INPUTS_KEY, check_inputs, input_fingerprints
from labelsim.sim.human_labels import human_label_arrays
from labelsim.sim.prepare import grouping_inputs, prepare_replica
from labelsim.sim.slots import MAX_DEFAULT_SLOTS, ModelProgram, SlotTrainer, choose_run_slots, useful_slots
from labelsim.sim.validate import (
    check_room,
    estimate_result_bytes,
    validate_config,
    validate_output,
    validate_replicas,
    validate_resume,
)

MAX_PROBED_SIDE = 64  # image sides tried to name the smallest one a model takes


def now() -> str:
    """UTC time stamp, ISO 8601."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The source tree's commit, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    """Versions of the packages that shape the results."""
    return {
        "labelsim": __version__,
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
    }


def run_meta(config: RunConfig, dataset: Dataset, n_replicas: int) -> dict[str, Any]:
    """The initial run.json."""
    devices = jax.devices()
    return {
        "labelsim_version": __version__,
        "config": config.to_dict(),
        "preset": config.preset or None,  # the preset the config's values started from
        "dataset": {"name": dataset.name, "train_size": len(dataset.y_train), "test_size": len(dataset.y_test)},
        "classes": list(dataset.class_names),
        "test_class_counts": np.bincount(dataset.y_test, minlength=dataset.num_classes).tolist(),
        "train_class_counts": np.bincount(dataset.y_train, minlength=dataset.num_classes).tolist(),
        "replicas": n_replicas,
        "git_commit": git_commit(),
        "versions": versions(),
        "device": f"{devices[0].platform}: {devices[0].device_kind} x{len(devices)}",
        "seed": config.grid.seed,
        "keys": grid.KEY_DERIVATION,
        "started": now(),
        "finished": None,
        "status": "running",
        "sessions": [],
    }


def open_store(
    config: RunConfig, out: Path, resume: bool, specs: list[ReplicaSpec], dataset: Dataset,
    extra: dict[str, Any] | None = None, grow: bool = False,
) -> RunStore:
    """A fresh store, or (for --resume, whose config ``validate_resume`` has checked) the
    existing one, checked against this data, these noise inputs and replica table. With ``grow``
    (a grid), the specs may be a superset of the stored replicas: the new ones are appended."""
    fresh = run_meta(config, dataset, len(specs))
    inputs = input_fingerprints(fresh["config"], dataset, extra or {})
    if not resume:
        removed = clear_stopped_creation(out)
        if removed:
            print(
                f"note: removed {', '.join(removed)} from {out}: the start of a run that was stopped while it was "
                "being created, before any replica trained",
                file=sys.stderr,
            )
        return RunStore.create(out, fresh | {INPUTS_KEY: inputs}, specs, dataset.num_classes)
    store = RunStore.open(out)
    stored_inputs = store.meta.get(INPUTS_KEY)
    # A grown grid may add a noise input (a new noise model's); the stored ones must not change.
    check_inputs(out, stored_inputs, {k: v for k, v in inputs.items() if not stored_inputs or k in stored_inputs})
    store.meta.setdefault(INPUTS_KEY, inputs)  # runs from before inputs were fingerprinted
    store.meta.setdefault("train_class_counts", fresh["train_class_counts"])  # runs from before it was recorded
    for key in ("dataset", "classes", "test_class_counts", "train_class_counts"):
        if store.meta.get(key) != fresh[key]:
            raise RunDirError(
                f"{out} was trained on other data ({key}: stored {store.meta.get(key)!r}, now {fresh[key]!r}); "
                "resume it with the data it started on, or start a new --out"
            )
    if grow:
        new = _new_points(store, specs)
    elif len(store.rows) != len(specs) or not all(specs_match(r.spec, s) for r, s in zip(store.rows, specs)):
        raise RunDirError(
            f"{out} holds a different replica table than this config makes ({len(store.rows)} stored replicas, "
            f"{len(specs)} requested); resume with the same replicas, or start a new --out"
        )
    remove_partial_writes(out)
    if grow and new:
        if distributed.is_writer():
            print(f"extending {out}: {len(store.rows)} stored replicas kept, {len(new)} new to train", flush=True)
        # One flush records them: run.json, written last, makes them part of the run with the grown config.
        store.append(new)
        store.meta.update(config=fresh["config"], status="running", finished=None, **{INPUTS_KEY: inputs})
        store.flush()
    return store


def _new_points(store: RunStore, specs: list[ReplicaSpec]) -> list[ReplicaSpec]:
    """The specs whose grid points the store lacks; a RunDirError when the specs lack a stored replica."""
    dropped, new = grid_changes(store.rows, specs)
    if dropped:
        listed = ", ".join(f"replica {row.replica}" for row in dropped[:5]) + (", ..." if len(dropped) > 5 else "")
        raise RunDirError(
            f"{store.path} holds replicas this config does not make ({listed}); pass the full grid "
            "to grow it, or start a new --out"
        )
    return new


def noise_kwargs(config: RunConfig) -> dict[str, Any]:
    """Extra inputs some noise models need (a transition matrix, human labels)."""
    kwargs: dict[str, Any] = {}
    models = config.grid.noise_models
    if any(m == "matrix" for m in models):
        if not config.grid.noise_matrix:
            raise ConfigError("the 'matrix' noise model needs --noise-matrix FILE (a C x C row-stochastic matrix)")
        kwargs["matrix"] = noise.load_matrix(config.grid.noise_matrix)
    if any(noise.is_human_model(m) for m in models):
        kwargs["human"] = human_label_arrays(config.data.human_labels, models)
    return kwargs


def check_noise_inputs(config: RunConfig, specs: list[ReplicaSpec], dataset: Dataset, extra: dict[str, Any]) -> None:
    """Draw every replica's training subset and noisy labels once, before any file is written: an input
    that does not fit the data (a --noise-matrix for another number of classes, human labels of other
    images, a noise model made for other classes) fails now, not after the run folder exists."""
    matrix = extra.get("matrix")
    classes = dataset.num_classes
    if matrix is not None and matrix.shape != (classes, classes):
        raise ConfigError(
            f"--noise-matrix {config.grid.noise_matrix} is {matrix.shape[0]} x {matrix.shape[1]} but the "
            f"dataset {dataset.name} has {classes} classes; give a {classes} x {classes} matrix "
            "(row k: where class k's labels go)"
        )
    for spec in specs:
        keys = grid.replica_keys(config.grid.seed, spec)
        prepare_replica(spec, keys, dataset.y_train, classes, stratified=config.grid.stratified, noise_kwargs=extra)


def replica_parameters(config: RunConfig, program: ModelProgram, dataset: Dataset) -> int:
    """Parameters of one replica of a model on the dataset's images; a ConfigError that names the
    smallest image side the model takes when the images are too small for it."""
    shape = dataset.x_train.shape[1:]
    try:
        return program.param_count(shape)
    except (ArithmeticError, ValueError):
        pass
    side = next((n for n in range(max(shape[:2]) + 1, MAX_PROBED_SIDE + 1) if _fits(program, n, shape[-1])), None)
    if side is None:
        fix = "choose another --model"
    elif config.data.name == "synthetic":
        fix = f"give --synthetic-size {side} or more"
    elif config.data.name.startswith("folder:"):
        fix = f"give --image-size {side} or more"
    else:
        fix = f"choose another --model ({program.name} needs images of {side}x{side} pixels or more)"
    raise ConfigError(
        f"{shape[0]}x{shape[1]}-pixel images are too small for model {program.name} (its layers shrink them to "
        f"nothing); {fix}"
    )


def _fits(program: ModelProgram, side: int, channels: int) -> bool:
    """Whether the model takes images of this side."""
    try:
        program.param_count((side, side, channels))
    except (ArithmeticError, ValueError):
        return False
    return True


# Seconds the first chunk of each model's program took in this process (compiling it included): the
# estimate for the next compile of that model.
_FIRST_CHUNK_SECONDS: dict[str, float] = {}


class Progress:
    """What training of one model shows on stderr: a line while its batched program compiles (with about
    how long, when a compile of it was measured before: in this process, else ``previous``, the run's last
    session), then a bar over useful replica-steps with the finished replicas and utilization, all whole
    numbers. The bar starts once the first chunk (which compiles the program) is done, so its rate and ETA
    come from measured training steps, never from the compile time."""

    def __init__(self, model: str, total: int, enabled: bool, previous: float | None = None):
        self.model, self.total, self.enabled = model, total, enabled
        self.bar: tqdm | None = None
        self.done = 0
        self.first_chunk_seconds: float | None = None
        self.started = time.monotonic()
        if enabled:
            estimate = _FIRST_CHUNK_SECONDS.get(model, previous)
            about = "..." if estimate is None else f"(about {max(round(estimate), 1)} s)"
            print(f"compiling the batched program for {model} {about}", file=sys.stderr, flush=True)

    def update(self, useful: int, utilization: float, finished: int, total_replicas: int) -> None:
        """Advance by ``useful`` replica-steps; the first call ends the compile."""
        self.done += useful
        if self.first_chunk_seconds is None:
            self.first_chunk_seconds = _FIRST_CHUNK_SECONDS[self.model] = time.monotonic() - self.started
            if self.enabled:
                print(f"compiled in {self.first_chunk_seconds:.1f} s (the first chunk of steps included)",
                      file=sys.stderr, flush=True)  # fmt: skip
        if not self.enabled:
            return
        postfix = f"replicas {finished}/{total_replicas}, util {utilization:.0%}"
        if self.bar is None:
            self.bar = tqdm(total=self.total, initial=self.done, unit="step", mininterval=1.0, file=sys.stderr,
                            dynamic_ncols=True, postfix=postfix)  # fmt: skip
            return
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(useful)

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()


@dataclasses.dataclass
class RunStats:
    """Counters of computed vs useful replica-steps."""

    useful: int = 0
    computed: int = 0

    @property
    def utilization(self) -> float:
        """Useful / computed replica-steps."""
        return self.useful / self.computed if self.computed else 1.0


@dataclasses.dataclass
class GridRun:
    """What every step of a run shares: its config, data, store, noise inputs and counters."""

    config: RunConfig
    dataset: Dataset
    store: RunStore
    noise_inputs: dict[str, Any]
    stats: RunStats
    show_progress: bool = True
    on_chunk: Callable[[int], None] | None = None
    predictions: PredictionWriter | None = None  # opened at the first harvest

    def finished_count(self) -> int:
        """Replicas that finished or diverged."""
        return sum(row.status in ("finished", "diverged") for row in self.store.rows)


@dataclasses.dataclass(frozen=True)
class GridPlan:
    """What a run will train, every input checked, before anything is written."""

    out: Path  # where this process writes (process 0: the --out folder)
    dataset: Dataset
    specs: list[ReplicaSpec]
    programs: dict[str, ModelProgram]
    noise_inputs: dict[str, Any]


def plan_grid(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    replicas: list[ReplicaSpec] | None = None,
    dataset: Dataset | None = None,
    groupings: Mapping[str, np.ndarray] | None = None,
) -> GridPlan:
    """Check the config, the output folder and every replica against the data, and build the replica
    table; writes nothing (``--dry-run`` stops here). ``groupings``: per-record group ids of the training
    set by name, for replicas with per-group sizes or noise (``ReplicaSpec.grouping``)."""
    out = distributed.private_run_dir(out, resume)  # process 0 writes OUT; others a private copy
    validate_config(config)
    validate_output(out, resume)
    if resume:
        validate_resume(out, config)  # before the data loads: a mismatch fails at once
    dataset = dataset if dataset is not None else load_dataset(config.data)
    specs = replicas if replicas is not None else grid.build_replicas(config, len(dataset.y_train))
    validate_replicas(config, specs, dataset)
    programs = {
        name: ModelProgram.resolve(config, dataset, name, min(s.size for s in specs if s.model == name))
        for name in dict.fromkeys(spec.model for spec in specs)
    }
    slots = min(config.exec.slots or MAX_DEFAULT_SLOTS, len(specs))
    params = max(replica_parameters(config, p, dataset) for p in programs.values())
    checkpoint = slots * 4 * 4 * params  # params, two moments' worth, stats
    check_room(out, estimate_result_bytes(len(specs), dataset.num_classes, checkpoint))
    extra = noise_kwargs(config) | grouping_inputs(groupings)
    check_noise_inputs(config, specs, dataset, extra)
    return GridPlan(out, dataset, specs, programs, extra)


def describe_plan(config: RunConfig, plan: GridPlan) -> str:
    """What a run will train: the settings actually used and where they came from, then the replica table
    summary."""
    model = config.model
    standard = standard_width(model.name)
    width = f"width {model.width}" if model.width else f"width {standard} (standard)" if standard else "no width"
    models = f"models {', '.join(config.grid.models)}" if config.grid.models else f"model {model.name}, {width}"
    recipe = config.recipe
    decays = "".join(f" -> {rate:g} from epoch {epoch}" for epoch, rate in recipe.lr_decays)
    origin = f"preset {config.preset}; flags override it" if config.preset else "no preset recorded"
    data = plan.dataset
    lines = [
        f"training {models}; {recipe.epochs} epochs, batch {recipe.batch_size}, lr {recipe.learning_rate:g}{decays} "
        f"(from {origin})",
        f"data: {data.name}, {len(data.y_train)} training and {len(data.y_test)} test images, "
        f"{data.num_classes} classes",
        *grid.describe_replicas(plan.specs, config.recipe),
    ]
    return "\n".join(lines)


def run_grid(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    replicas: list[ReplicaSpec] | None = None,
    progress: bool = True,
    dataset: Dataset | None = None,
    on_chunk: Callable[[int], None] | None = None,
    groupings: Mapping[str, np.ndarray] | None = None,
    grow: bool | None = None,
) -> Path:
    """Train every replica of the grid (or the given custom replicas) and write the run directory. A grid
    (no custom replicas) first prints what it will train. ``groupings`` as for ``plan_grid``. A resumed grid
    may grow (new grid points are appended, the stored ones kept); custom replicas grow only with
    ``grow=True`` (e.g. more repeats of the same plans), else they must match the stored table."""
    plan = plan_grid(config, out, resume=resume, replicas=replicas, dataset=dataset, groupings=groupings)
    if replicas is None and distributed.is_writer():
        print(describe_plan(config, plan), flush=True)
    # Everything is checked: only now is the folder claimed (and created), and written.
    with claim(plan.out):  # one writer per folder, until training ends
        _train_into(config, plan.out, resume, plan.specs, plan.dataset, plan.programs, plan.noise_inputs, progress,
                    on_chunk, replicas is None if grow is None else grow)  # fmt: skip
    return plan.out


def _train_into(config: RunConfig, out: Path, resume: bool, specs: list[ReplicaSpec], dataset: Dataset,
                programs: dict[str, ModelProgram], extra: dict[str, Any], progress: bool,
                on_chunk: Callable[[int], None] | None, grow: bool) -> None:
    """Open (or create, or grow) the store and train every model's pending replicas into it."""
    store = open_store(config, out, resume, specs, dataset, extra, grow=grow)
    store.meta["sessions"].append({"started": now(), "device": store.meta.get("device")})
    store.meta["status"] = "running"
    ctx = GridRun(config, dataset, store, extra, RunStats(**store.meta.get("step_counts", {})), progress, on_chunk)
    for program in programs.values():
        _run_model(ctx, program)
    stats = ctx.stats
    store.meta.update(status="finished", finished=now(), utilization=stats.utilization, step_counts=vars(stats))
    store.flush()
    (out / CHECKPOINT_FILE).unlink(missing_ok=True)


def _run_model(ctx: GridRun, program: ModelProgram) -> None:
    """Train the pending replicas of one model in slots."""
    store, config = ctx.store, ctx.config
    pending = [i for i in store.pending() if store.rows[i].model == program.name]
    if not pending:
        return
    # Longest first, so short replicas fill the tail of the run (fewer idle slots).
    queue = sorted(pending, key=lambda i: -total_steps(store.rows[i].size, config.recipe))
    # Slots come from ALL of the model's replicas, not the pending ones, and a resumed run
    # reuses the slot count it recorded (free memory may differ now): it then compiles the same
    # program as the uninterrupted run (same results, bit for bit) and its checkpoint's slots
    # fit. A grown grid keeps its models' slot counts too; a model it adds chooses its own.
    # An explicit --slots still wins.
    sizes = [row.size for row in store.rows if row.model == program.name]
    recorded = store.meta.setdefault("slots_per_model", {})
    slots = recorded.get(program.name) if config.exec.slots == 0 else None
    slots = slots or choose_run_slots(config, ctx.dataset, program, useful_slots(sizes, config))
    recorded[program.name] = slots
    trainer = SlotTrainer(config, ctx.dataset, program, slots)
    execution = store.meta.setdefault("execution", {})
    previous = execution.get(program.name, {}).get("first_chunk_seconds")
    execution[program.name] = trainer.execution_info()
    restored = _restore(ctx, trainer)
    queue = [i for i in queue if i not in restored]
    total = sum(total_steps(store.rows[i].size, config.recipe) for i in pending)
    bar = Progress(program.name, total, ctx.show_progress, previous)
    last_checkpoint = time.monotonic()
    try:
        _fill_slots(ctx, trainer, queue)
        while any(owner is not None for owner in trainer.owner):
            useful = _advance(ctx, trainer)
            stops.check()  # a Ctrl-C or SIGTERM dropped on the way (in a gc callback) stops here
            _fill_slots(ctx, trainer, queue)
            bar.update(useful, ctx.stats.utilization, ctx.finished_count(), len(store.rows))
            execution[program.name]["first_chunk_seconds"] = round(bar.first_chunk_seconds, 1)
            store.meta.update(utilization=ctx.stats.utilization, step_counts=vars(ctx.stats))
            if time.monotonic() - last_checkpoint >= config.exec.checkpoint_seconds:
                store.flush()
                write_checkpoint(trainer, store.path)
                last_checkpoint = time.monotonic()
            if ctx.on_chunk is not None:
                ctx.on_chunk(ctx.stats.computed)
    finally:
        bar.close()
    store.flush()


def _advance(ctx: GridRun, trainer: SlotTrainer) -> int:
    """One chunk of every slot: record steps and time, harvest finished replicas; returns the
    useful replica-steps it took."""
    before, _ = trainer.progress()
    start = time.monotonic()
    trainer.advance()
    steps, diverged = trainer.progress()
    elapsed = time.monotonic() - start
    useful = int((steps - before).sum())
    ctx.stats.useful += useful
    ctx.stats.computed += trainer.slots * trainer.steps
    busy = [owner for owner in trainer.owner if owner is not None]
    for s, owner in enumerate(trainer.owner):
        if owner is not None:
            row = ctx.store.rows[owner]
            ctx.store.update(owner, steps=int(steps[s]), seconds=row.seconds + elapsed / len(busy))
    _harvest(ctx, trainer, steps, diverged)
    return useful


def _restore(ctx: GridRun, trainer: SlotTrainer) -> set[int]:
    """Put the checkpointed, unfinished replicas back into their slots; returns their indices."""
    saved = read_checkpoint(trainer, ctx.store.path, ctx.store.rows)
    for slot, (index, state) in saved.items():
        trainer.assign(slot, index, _start_replica(ctx, trainer, index)[0], state)
    if saved:
        listed = ", ".join(f"replica {i} at step {int(state.step)}" for i, state in sorted(saved.values(), key=lambda x: x[0]))
        print(f"resuming from {CHECKPOINT_FILE}: {listed}", file=sys.stderr)
    return {index for index, _ in saved.values()}


def _start_replica(ctx: GridRun, trainer: SlotTrainer, index: int) -> tuple[Any, grid.ReplicaKeys]:
    """Prepare a replica's data on the host and record its realized noise; returns its slot
    data and keys."""
    spec = ctx.store.rows[index].spec
    keys = grid.replica_keys(ctx.config.grid.seed, spec)
    prepared = prepare_replica(
        spec, keys, ctx.dataset.y_train, ctx.dataset.num_classes,
        stratified=ctx.config.grid.stratified, noise_kwargs=ctx.noise_inputs,
    )  # fmt: skip
    ctx.store.transitions[index] = prepared.transitions
    ctx.store.update(
        index,
        realized_noise=prepared.realized_noise,
        status="running",
        total_steps=total_steps(len(prepared.subset), ctx.config.recipe),
    )
    return trainer.replica_data(spec, prepared, keys), keys


def _fill_slots(ctx: GridRun, trainer: SlotTrainer, queue: list[int]) -> None:
    """Start queued replicas in the free slots."""
    for slot in range(trainer.slots):
        if trainer.owner[slot] is None and queue:
            index = queue.pop(0)
            data, keys = _start_replica(ctx, trainer, index)
            trainer.assign(slot, index, data, trainer.init_one(jnp.asarray(keys.init)))


def _harvest(ctx: GridRun, trainer: SlotTrainer, steps: np.ndarray, diverged: np.ndarray) -> None:
    """Evaluate and record every replica that finished or diverged (its confusion counts and its
    predicted class per test record); free its slot. The predictions are written just before the
    counts, so a replica the table calls finished always has both on disk."""
    store, changed = ctx.store, False
    if ctx.predictions is None:
        dataset = ctx.dataset
        ctx.predictions = PredictionWriter.open(store.path, len(store.rows), len(dataset.y_test), dataset.num_classes)
    for slot, index in enumerate(trainer.owner):
        if index is None:
            continue
        if diverged[slot] >= 0:
            ctx.predictions.clear(index)
            store.update(index, status="diverged", diverged_step=int(diverged[slot]), steps=int(steps[slot]))
            print(
                f"warning: replica {index} diverged (NaN/Inf loss at step {int(diverged[slot])}); "
                "it is marked 'diverged' and left out of the analysis, the rest of the grid goes on",
                file=sys.stderr,
            )
        elif steps[slot] >= store.rows[index].total_steps:
            counts, predicted = trainer.evaluate_slot_with_predictions(slot)
            ctx.predictions.set(index, predicted)
            store.counts[index] = counts
            store.update(index, status="finished", accuracy=float(np.trace(counts) / counts.sum()))
        else:
            continue
        trainer.release(slot)
        changed = True
    if changed:
        ctx.predictions.write()
        store.flush()
