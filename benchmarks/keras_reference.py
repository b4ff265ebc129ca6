"""Keras reference: the study's CNN and recipe in Keras 3 (JAX backend), side by side with labelsim.

The study trained its CNN in Keras. This script trains the same network and recipe with Keras's
own layers, defaults and preprocessing layers, and labelsim's Flax/Optax re-implementation, on the
same real CIFAR-10 subsets and test set, clean and with the study's "shuffle" label noise, and
compares them: per-repeat overall and per-class test accuracy, per-epoch training loss, and the
difference of means (labelsim - Keras) with its 2-standard-error interval.

What each side uses:

- Keras: Conv2D 3x3 'same' -> ELU -> BatchNormalization (Keras defaults: momentum 0.99, epsilon
  1e-3), twice per block, MaxPooling2D, Dropout 0.2/0.3/0.4; Flatten, Dense softmax; Keras's
  default initializers (glorot_uniform kernels, zero biases); l2(1e-4) on conv kernels;
  RMSprop(rho 0.9, epsilon 1e-7 added outside the square root as in standalone Keras 2, which the
  study used; Keras 3 adds it inside); sparse categorical cross-entropy on the softmax output;
  RandomRotation(15 degrees), RandomTranslation(0.1, 0.1), RandomFlip("horizontal"), bilinear,
  fill "nearest". Its own per-channel z-score (statistics of all 50,000 training images), its own
  batch order (whole batches, as labelsim) and its own "shuffle" noise draw.
- labelsim: the ``paper`` preset's recipe with the same epochs, decays and subset size, trained
  by its slot trainer (the program ``run_grid`` runs: all repeats of a condition in one batched
  program), on labelsim's subsets; the Keras side trains repeat r on labelsim's subset of repeat r.

Scale. On the 2 CPU cores of the development machine, shared with other jobs (load average 8-12),
a training step of 64 images took about 0.85 s in labelsim and 1.2 s in Keras, plus per run about
45-60 s of compilation and 60 s to evaluate the 10,000 test images. The issue's example (5,000
images, 20 epochs, 3 repeats) would take 5-6 hours there, so the default is 1,600 images, 5 epochs
of 25 steps, decays at epochs 3 and 4 (exactly the study's 75/125 and 100/125 of training), 3
repeats: 2 sides x 2 conditions x 3 repeats took 48 minutes of wall time. It compares the early
training dynamics (where initializers, optimizer details and augmentation act most), not converged
accuracy; on a free machine, pass --train-size 5000 --epochs 20.

Result at that scale: with flax's default lecun_normal kernels labelsim was 7.9 points above Keras
clean and 5.6 points with 30% shuffle noise, beyond the 2-SE band (the Keras side with lecun_normal,
2 diagnostic repeats, came within it). labelsim's small_cnn now starts Glorot-uniform like the
study's Keras layers; rerun so, it is -2.0 points [-7.3, +3.3] clean and -1.5 [-3.2, +0.3] with
noise, within the band (results/keras_reference.json; the earlier figures in
results/keras_reference_before_init_fix.json).

    PYTHONPATH=. python benchmarks/keras_reference.py --data-dir /work/shared/data/cifar10
    PYTHONPATH=. python benchmarks/keras_reference.py --data-dir DIR --resume   # continue a killed run

Keras is an optional benchmark dependency (``pip install "keras>=3.3,<4"``); labelsim never imports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import RESULTS_DIR, print_table, save_json  # noqa: E402
from labelsim.config import RecipeConfig, ReplicaSpec, RunConfig, preset, steps_per_epoch, total_steps  # noqa: E402

RESULT_NAME = "keras_reference"
COMMAND = "PYTHONPATH=. python benchmarks/keras_reference.py"
DROPOUT_RATES = (0.2, 0.3, 0.4)
SIDES = ("labelsim", "keras")


def keras_module() -> Any:
    """Keras 3 on the JAX backend, or a SystemExit that says how to install it."""
    try:
        import keras
    except ImportError as missing:
        raise SystemExit('keras_reference needs Keras 3: pip install "keras>=3.3,<4"') from missing
    if keras.backend.backend() != "jax":
        backend = keras.backend.backend()
        raise SystemExit(f"keras_reference needs Keras's JAX backend, not {backend!r}: set KERAS_BACKEND=jax")
    return keras


def build_model(
    num_classes: int = 10, width: int = 32, weight_decay: float = 1e-4, recipe: RecipeConfig | None = None,
    kernel_initializer: str = "glorot_uniform",
) -> Any:
    """The study's CNN as a Keras Sequential, Keras defaults throughout (``kernel_initializer``:
    Keras's default, or "lecun_normal", flax's); with ``recipe`` (augmentation on), Keras's random
    rotation, translation and flip layers come first (active only in training)."""
    keras = keras_module()
    layers = keras.layers
    model = keras.Sequential(name="study_cnn")
    model.add(keras.Input((32, 32, 3)))
    if recipe is not None and recipe.augment:
        sampling = {"fill_mode": "nearest", "interpolation": "bilinear"}
        model.add(layers.RandomRotation(recipe.rotation_deg / 360.0, **sampling))
        model.add(layers.RandomTranslation(recipe.shift_frac, recipe.shift_frac, **sampling))
        if recipe.hflip:
            model.add(layers.RandomFlip("horizontal"))
    for block, rate in enumerate(DROPOUT_RATES):
        for _ in range(2):
            model.add(layers.Conv2D(width * 2**block, 3, padding="same", kernel_initializer=kernel_initializer,
                                    kernel_regularizer=keras.regularizers.l2(weight_decay)))
            model.add(layers.Activation("elu"))
            model.add(layers.BatchNormalization())
        model.add(layers.MaxPooling2D(2))
        model.add(layers.Dropout(rate))
    model.add(layers.Flatten())
    model.add(layers.Dense(num_classes, activation="softmax", kernel_initializer=kernel_initializer))
    return model


def study_rmsprop(learning_rate: Any, rho: float, epsilon: float) -> Any:
    """Keras's RMSprop with standalone Keras 2's update, p -= lr * g / (sqrt(v) + eps): the study's
    Keras; Keras 3 (like tf.keras) computes lr * g / sqrt(v + eps) instead."""
    keras = keras_module()
    ops = keras.ops

    class StudyRMSprop(keras.optimizers.RMSprop):
        def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
            velocity = self._velocities[self._get_variable_index(variable)]
            gradient = ops.cast(gradient, variable.dtype)
            average = ops.add(ops.multiply(self.rho, velocity), ops.multiply(1 - self.rho, ops.square(gradient)))
            self.assign(velocity, average)
            rate = ops.cast(learning_rate, variable.dtype)
            self.assign_sub(variable, ops.divide(ops.multiply(rate, gradient), ops.sqrt(velocity) + self.epsilon))

    return StudyRMSprop(learning_rate=learning_rate, rho=rho, epsilon=epsilon)


def step_decay(recipe: RecipeConfig, batches_per_epoch: int) -> Any:
    """The recipe's step-decay learning rate as a Keras schedule of the optimizer's step count."""
    keras = keras_module()
    ops = keras.ops

    class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step: Any) -> Any:
            epoch = ops.floor_divide(ops.cast(step, "int32"), batches_per_epoch)
            rate = ops.convert_to_tensor(recipe.learning_rate, "float32")
            for start, value in recipe.lr_decays:
                rate = ops.where(epoch >= start, ops.convert_to_tensor(value, "float32"), rate)
            return rate

        def get_config(self) -> dict[str, Any]:
            return {}

    return StepDecay()


def shuffle_noise(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """The study's protocol on a copy: round(rate * n) records, any class, get their labels permuted
    among themselves (a label may land on its own class)."""
    noisy = labels.copy()
    chosen = rng.choice(len(labels), size=int(round(rate * len(labels))), replace=False)
    noisy[chosen] = noisy[chosen][rng.permutation(len(chosen))]
    return noisy


def zscore(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 per-channel z-scores."""
    return ((images.astype(np.float32) - mean) / std).astype(np.float32)


def per_class_accuracy(counts: np.ndarray) -> np.ndarray:
    """Recall of each true class from confusion counts (rows true, columns predicted)."""
    return np.diag(counts) / counts.sum(axis=1)


def train_keras(
    x_all: np.ndarray, y_clean: np.ndarray, subset: np.ndarray, test: tuple[np.ndarray, np.ndarray],
    recipe: RecipeConfig, rate: float, seed: int, kernel_initializer: str = "glorot_uniform",
) -> dict[str, Any]:
    """One Keras repeat on ``subset`` (normalized images ``x_all``); returns its results."""
    keras = keras_module()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    labels = y_clean[subset]
    noisy = shuffle_noise(labels, rate, rng) if rate > 0 else labels
    x_train = x_all[subset]
    batch = recipe.batch_size
    per_epoch = steps_per_epoch(len(subset), batch)

    class EpochBatches(keras.utils.PyDataset):
        """Whole batches of a fresh permutation each epoch (the remainder is left out, as in labelsim)."""

        def __init__(self) -> None:
            super().__init__()
            self.order = rng.permutation(len(subset))

        def __len__(self) -> int:
            return per_epoch

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            picked = self.order[index * batch : (index + 1) * batch]
            return x_train[picked], noisy[picked]

        def on_epoch_end(self) -> None:
            self.order = rng.permutation(len(subset))

    model = build_model(int(y_clean.max()) + 1, recipe=recipe, kernel_initializer=kernel_initializer)
    optimizer = study_rmsprop(step_decay(recipe, per_epoch), recipe.rmsprop_decay, recipe.rmsprop_eps)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    start = time.monotonic()
    history = model.fit(EpochBatches(), epochs=recipe.epochs, verbose=0)
    seconds = time.monotonic() - start
    x_test, y_test = test
    predicted = np.argmax(model.predict(x_test, batch_size=1000, verbose=0), axis=1)
    counts = np.zeros((model.output_shape[-1],) * 2, np.int64)
    np.add.at(counts, (y_test, predicted), 1)
    return {
        "accuracy": float(np.trace(counts) / counts.sum()),
        "per_class": per_class_accuracy(counts).tolist(),
        "epoch_loss": [float(v) for v in history.history["loss"]],
        "realized_noise": float(np.mean(noisy != labels)),
        "seconds": seconds,
    }


def train_labelsim(config: RunConfig, dataset: Any, specs: list[ReplicaSpec]) -> list[dict[str, Any]]:
    """All ``specs`` in one slot program of labelsim (the one run_grid runs), keeping each step's loss."""
    import jax.numpy as jnp

    from labelsim.sim import grid
    from labelsim.sim.prepare import prepare_replica
    from labelsim.sim.slots import ModelProgram, SlotTrainer

    program = ModelProgram.resolve(config, dataset, config.model.name, min(s.size for s in specs))
    trainer = SlotTrainer(config, dataset, program, len(specs))
    noise = []
    for slot, spec in enumerate(specs):
        keys = grid.replica_keys(config.grid.seed, spec)
        prepared = prepare_replica(spec, keys, dataset.y_train, dataset.num_classes)
        trainer.assign(slot, slot, trainer.replica_data(spec, prepared, keys), trainer.init_one(jnp.asarray(keys.init)))
        noise.append(prepared.realized_noise)
    steps = total_steps(specs[0].size, config.recipe)
    start, losses = time.monotonic(), []
    while trainer.progress()[0].min() < steps:
        losses.append(np.asarray(trainer.advance()))
    seconds = time.monotonic() - start
    per_step = np.concatenate(losses, axis=1)[:, :steps]
    if np.isnan(per_step).any():
        raise SystemExit("a labelsim replica diverged (NaN loss); lower the learning rate or check the data")
    epoch_loss = per_step.reshape(len(specs), config.recipe.epochs, -1).mean(axis=2)
    results = []
    for slot in range(len(specs)):
        counts = trainer.evaluate_slot(slot)
        results.append({
            "accuracy": float(np.trace(counts) / counts.sum()),
            "per_class": per_class_accuracy(counts).tolist(),
            "epoch_loss": epoch_loss[slot].tolist(),
            "realized_noise": noise[slot],
            "seconds": seconds / len(specs),
        })
    return results


def labelsim_setup(args: argparse.Namespace) -> tuple[RunConfig, list[ReplicaSpec], list[float]]:
    """labelsim's config (the ``paper`` recipe scaled to ``--epochs``, decays at the same fractions)
    and its replicas: each noise level x repeat on a subset of ``--train-size``."""
    base = preset("paper")
    scale = args.epochs / base.recipe.epochs
    decays = tuple((round(start * scale), value) for start, value in base.recipe.lr_decays)
    config = dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, data_dir=args.data_dir),
        recipe=dataclasses.replace(base.recipe, epochs=args.epochs, lr_decays=decays),
        grid=dataclasses.replace(
            base.grid, noise_levels=(0.0, args.noise), sizes=(args.train_size,), repeats=args.repeats, seed=args.seed
        ),
    )
    rates = [0.0, args.noise]
    specs = [
        ReplicaSpec(replica=i * args.repeats + r, experiment="cross", repeat=r, noise_model="shuffle",
                    noise_rate=rate, train_size=args.train_size, model="small_cnn")
        for i, rate in enumerate(rates)
        for r in range(args.repeats)
    ]
    return config, specs, rates


def difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean of a - mean of b with its standard error and the 2-SE interval (Welch, unpooled)."""
    diff = float(a.mean() - b.mean())
    se = float(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    return {"diff": diff, "se": se, "lo": diff - 2 * se, "hi": diff + 2 * se, "beyond_2se": bool(abs(diff) > 2 * se)}


def compare(runs: dict[str, dict[str, list[dict[str, Any]]]], classes: list[str]) -> dict[str, Any]:
    """Per condition: each side's mean accuracy and per-class means, and labelsim - Keras with 2-SE intervals."""
    out = {}
    for condition, sides in runs.items():
        acc = {side: np.array([r["accuracy"] for r in sides[side]]) for side in SIDES}
        per_class = {side: np.array([r["per_class"] for r in sides[side]]) for side in SIDES}
        out[condition] = {
            "mean": {side: float(acc[side].mean()) for side in SIDES},
            "sd": {side: float(acc[side].std(ddof=1)) for side in SIDES},
            "overall": difference(acc["labelsim"], acc["keras"]),
            "per_class": {
                name: {**difference(per_class["labelsim"][:, k], per_class["keras"][:, k]),
                       **{side: float(per_class[side][:, k].mean()) for side in SIDES}}
                for k, name in enumerate(classes)
            },
        }
    return out


def table_rows(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per condition and class (overall first): both means and the difference's 2-SE interval, in points."""
    rows = []
    for condition, result in comparison.items():
        items = [("overall", {**result["overall"], **result["mean"]})] + list(result["per_class"].items())
        for name, d in items:
            rows.append({
                "condition": condition, "class": name,
                "labelsim %": round(100 * d["labelsim"], 2), "keras %": round(100 * d["keras"], 2),
                "diff pts": round(100 * d["diff"], 2),
                "2se lo": round(100 * d["lo"], 2), "2se hi": round(100 * d["hi"], 2),
                "beyond": "yes" if d["beyond_2se"] else "",
            })
    return rows


def save_chart(runs: dict[str, dict[str, list[dict[str, Any]]]], path: Path) -> Path:
    """Per-epoch training loss (mean of the repeats, band = min to max) of both sides, one panel per condition."""
    import altair as alt
    import pandas as pd

    records = []
    for condition, sides in runs.items():
        for side, repeats in sides.items():
            curves = np.array([r["epoch_loss"] for r in repeats])
            for epoch in range(curves.shape[1]):
                column = curves[:, epoch]
                records.append({"condition": condition, "side": side, "epoch": epoch + 1,
                                "loss": column.mean(), "low": column.min(), "high": column.max()})
    frame = pd.DataFrame(records)
    x = alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1))
    base = alt.Chart(frame).encode(x=x, color=alt.Color("side:N", title=None))
    y = alt.Y("low:Q", title="training loss (cross-entropy + L2)", scale=alt.Scale(zero=False))
    band = base.mark_area(opacity=0.2).encode(y=y, y2="high:Q")
    line = base.mark_line(point=True).encode(y="loss:Q")
    chart = (band + line).properties(width=320, height=220).facet(column=alt.Column("condition:N", title=None))
    title = "Training loss per epoch: labelsim vs Keras reference"
    chart = chart.resolve_scale(y="independent").properties(title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    chart.save(str(path), scale_factor=2)
    return path


def result_name(kernel_init: str) -> str:
    """The results' file stem: keras_reference, suffixed with a non-default Keras initializer."""
    return RESULT_NAME if kernel_init == "glorot_uniform" else f"{RESULT_NAME}_{kernel_init}"


def load_previous(name: str, resume: bool) -> dict[str, Any]:
    """The record a killed benchmark saved (``--resume``), else an empty one."""
    path = RESULTS_DIR / f"{name}.json"
    if not resume or not path.is_file():
        return {}
    return json.loads(path.read_text())


def normalized(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Training and test images as per-channel z-scores of all the training images (labelsim's statistics)."""
    flat = dataset.x_train.reshape(-1, dataset.x_train.shape[-1]).astype(np.float64)
    mean, std = flat.mean(0).astype(np.float32), flat.std(0).astype(np.float32)
    return zscore(dataset.x_train, mean, std), zscore(dataset.x_test, mean, std)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="local CIFAR-10 copy (.npz folder or the python archive)")
    parser.add_argument("--train-size", type=int, default=1600, help="training images per repeat (default 1600)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs; decays keep the study's fractions (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per side and condition (default 3; at least 2)")
    parser.add_argument("--noise", type=float, default=0.3, help="shuffle-noise rate of the noisy condition (0.3)")
    parser.add_argument("--seed", type=int, default=0, help="labelsim's grid seed; Keras repeat r uses seed + r")
    parser.add_argument("--kernel-init", default="glorot_uniform", choices=("glorot_uniform", "lecun_normal"),
                        help="Keras side's kernel initializer: glorot_uniform (Keras's default, the study's; default) "
                        "or lecun_normal (flax's default); the latter saves as keras_reference_lecun_normal.json")
    parser.add_argument("--resume", action="store_true", help="keep the parts a killed run saved and train the rest")
    args = parser.parse_args(argv)
    if args.repeats < 2:
        parser.error(f"--repeats {args.repeats}: the interval needs at least 2 repeats per side; give 2 or more")
    if not 0.0 < args.noise <= 1.0:
        parser.error(f"--noise {args.noise}: give a rate in (0, 1], e.g. 0.3")
    return args


def main(argv: list[str] | None = None) -> None:
    """Train both sides (clean and noisy), save after each part, then compare, print and chart."""
    flags = sys.argv[1:] if argv is None else argv
    args = parse_args(flags)
    keras_version = keras_module().__version__
    from labelsim.sim.data import load_dataset

    config, specs, rates = labelsim_setup(args)
    dataset = load_dataset(config.data)
    x_all, x_test = normalized(dataset)
    name = result_name(args.kernel_init)
    previous = load_previous(name, args.resume)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = previous.get("runs", {})
    record = {
        "scale": {"train_size": args.train_size, "epochs": args.epochs, "repeats": args.repeats, "noise": args.noise,
                  "lr_decays": config.recipe.lr_decays, "batch_size": config.recipe.batch_size, "seed": args.seed,
                  "keras_kernel_init": args.kernel_init},
        "classes": list(dataset.class_names),
        "keras_version": keras_version,
        "command": " ".join([COMMAND, *(flag for flag in flags if flag != "--resume")]),
        "runs": runs,
    }
    earlier, started = previous.get("wall_seconds", 0.0), time.monotonic()  # a resumed run adds its earlier sessions

    def save(status: str, **extra: Any) -> Path:
        wall = round(earlier + time.monotonic() - started, 1)
        return save_json(name, {"status": status, **record, "wall_seconds": wall, **extra})

    for rate in rates:
        condition = "clean" if rate == 0 else f"shuffle {rate:.0%}"
        sides = runs.setdefault(condition, {})
        group = [s for s in specs if s.noise_rate == rate]
        if len(sides.get("labelsim", [])) < args.repeats:
            print(f"labelsim, {condition}: {args.repeats} repeats in one slot program", flush=True)
            sides["labelsim"] = train_labelsim(config, dataset, group)
            save("partial")
        keras_runs = sides.setdefault("keras", [])
        for spec in group[len(keras_runs):]:
            print(f"keras, {condition}: repeat {spec.repeat}", flush=True)
            subset = _labelsim_subset(config, dataset, spec)
            test, seed = (x_test, dataset.y_test), args.seed + spec.repeat
            result = train_keras(x_all, dataset.y_train, subset, test, config.recipe, rate, seed, args.kernel_init)
            keras_runs.append(result)
            save("partial")
    comparison = compare(runs, record["classes"])
    chart = save_chart(runs, RESULTS_DIR / f"{name}_loss.png")
    train_seconds = {side: round(sum(r["seconds"] for c in runs.values() for r in c[side]), 1) for side in SIDES}
    path = save("finished", comparison=comparison, chart=str(chart.relative_to(RESULTS_DIR.parents[1])),
                train_seconds_per_side=train_seconds)
    columns = ["condition", "class", "labelsim %", "keras %", "diff pts", "2se lo", "2se hi", "beyond"]
    print_table(table_rows(comparison), columns)
    print(f"saved {path} and {chart}")


def _labelsim_subset(config: RunConfig, dataset: Any, spec: ReplicaSpec) -> np.ndarray:
    """The dataset indices labelsim's replica ``spec`` trains on (its subset stream only)."""
    from labelsim.sim import grid
    from labelsim.sim.prepare import choose_subset

    keys = grid.replica_keys(config.grid.seed, spec)
    rng = grid.numpy_rng(keys.subset)
    return choose_subset(spec, dataset.y_train, dataset.num_classes, rng, config.grid.stratified)


if __name__ == "__main__":
    main()
