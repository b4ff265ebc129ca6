"""Training of ONE replica, and its batched form over a leading replica (slot) axis.

``train_step(state, data, images, order) -> (state, loss)`` is pure and written for one
replica (``order`` is the epoch's permutation of its subset, drawn once per chunk); the
replica axis comes from ``jax.vmap`` (or ``lax.map``), steps from ``lax.scan``. The images
are shared by all replicas (``in_axes=None``); each replica has its own subset, labels, keys,
parameters, BatchNorm statistics and optimizer state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from labelsim.sim.augment import augment_batch
from labelsim.config import REPLICA_STRATEGIES, ConfigError, RecipeConfig
from labelsim.rundir.predictions import prediction_dtype

Pytree = Any


class ReplicaData(NamedTuple):
    """What a replica trains on; arrays of static shape so one program serves every replica."""

    subset: jnp.ndarray  # (N,) int32 dataset indices; the first n_train are used
    labels: jnp.ndarray  # (N,) int32 noisy labels aligned with ``subset``
    n_train: jnp.ndarray  # () int32 training-set size
    steps_per_epoch: jnp.ndarray  # () int32
    total_steps: jnp.ndarray  # () int32; 0 marks an idle slot
    data_key: jnp.ndarray  # (2,) uint32 batch-order key
    dropout_key: jnp.ndarray  # (2,) uint32
    augment_key: jnp.ndarray  # (2,) uint32
    lr_scale: jnp.ndarray  # () float32 multiplier of the recipe's learning rate


class TrainState(NamedTuple):
    """One replica's training state."""

    params: Pytree
    batch_stats: Pytree
    opt_state: Pytree
    step: jnp.ndarray  # () int32 steps taken
    diverged_step: jnp.ndarray  # () int32 step whose loss was NaN/Inf, -1 if none
    loss: jnp.ndarray  # () float32 loss of the last step taken


@dataclass(frozen=True)
class Normalizer:
    """z-score input normalization with the training set's per-channel mean and std (0-255 scale)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, images: np.ndarray) -> Normalizer:
        """Per-channel mean and std of uint8 images (N, H, W, C)."""
        flat = images.reshape(-1, images.shape[-1]).astype(np.float64)
        return cls(tuple(flat.mean(0).tolist()), tuple(flat.std(0).tolist()))

    def __call__(self, images: jnp.ndarray) -> jnp.ndarray:
        """uint8 -> normalized float32."""
        mean = jnp.asarray(self.mean, jnp.float32)
        std = jnp.asarray(self.std, jnp.float32)
        return (images.astype(jnp.float32) - mean) / std


def make_optimizer(recipe: RecipeConfig) -> optax.GradientTransformation:
    """RMSprop's scaling (Keras semantics: epsilon outside the root); the step size is applied
    per replica from its own epoch, so it is not part of the transformation."""
    return optax.scale_by_rms(decay=recipe.rmsprop_decay, eps=recipe.rmsprop_eps, eps_in_sqrt=False)


def learning_rate(recipe: RecipeConfig, epoch: jnp.ndarray) -> jnp.ndarray:
    """The step-decay rate at a replica's own (0-based) epoch."""
    lr = jnp.asarray(recipe.learning_rate, jnp.float32)
    for start, value in recipe.lr_decays:
        lr = jnp.where(epoch >= start, jnp.float32(value), lr)
    return lr


def l2_penalty(params: Pytree, coefficient: float) -> jnp.ndarray:
    """coefficient * sum of squared conv kernels (4-D leaves named "kernel"), as Keras's l2()."""
    total = jnp.float32(0.0)
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if leaf.ndim == 4 and getattr(path[-1], "key", None) == "kernel":
            total = total + jnp.sum(jnp.square(leaf.astype(jnp.float32)))
    return coefficient * total


def epoch_order(data: ReplicaData, epoch: jnp.ndarray) -> jnp.ndarray:
    """A replica's visiting order of its n_train positions in ``epoch``: a fresh permutation
    drawn from fold_in(data_key, epoch); padding positions sort last and are never used."""
    n = data.subset.shape[0]
    noise = jax.random.uniform(jax.random.fold_in(data.data_key, epoch), (n,))
    noise = jnp.where(jnp.arange(n) < data.n_train, noise, 2.0)
    return jnp.argsort(noise).astype(jnp.int32)


def batch_positions(data: ReplicaData, order: jnp.ndarray, step: jnp.ndarray, batch_size: int) -> jnp.ndarray:
    """Positions (into ``data.subset``) of the batch at ``step``, given its epoch's order."""
    offset = (step % data.steps_per_epoch) * batch_size
    return jax.lax.dynamic_slice(order, (offset,), (batch_size,))


def make_train_step(
    model: nn.Module, recipe: RecipeConfig, normalize: Normalizer
) -> Callable[[TrainState, ReplicaData, jnp.ndarray, jnp.ndarray], tuple[TrainState, jnp.ndarray]]:
    """The pure one-replica train step ``(state, data, images, order) -> (state, loss)``; ``images`` is the shared uint8 training set and
    ``order`` the epoch order (``epoch_order``) of the step's epoch."""
    tx = make_optimizer(recipe)
    dtype = getattr(model, "dtype", jnp.float32)

    def train_step(
        state: TrainState, data: ReplicaData, images: jnp.ndarray, order: jnp.ndarray
    ) -> tuple[TrainState, jnp.ndarray]:
        step = state.step
        positions = batch_positions(data, order, step, recipe.batch_size)
        indices = data.subset[positions]
        labels = data.labels[positions]
        x = augment_batch(normalize(images[indices]), jax.random.fold_in(data.augment_key, step), recipe)
        dropout_key = jax.random.fold_in(data.dropout_key, step)

        def loss_fn(params: Pytree) -> tuple[jnp.ndarray, Pytree]:
            logits, mutated = model.apply(
                {"params": params, "batch_stats": state.batch_stats},
                x.astype(dtype),
                train=True,
                rngs={"dropout": dropout_key},
                mutable=["batch_stats"],
            )
            ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()
            loss = ce + l2_penalty(params, recipe.weight_decay)
            return loss, mutated.get("batch_stats", state.batch_stats)

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        scaled, opt_state = tx.update(grads, state.opt_state)
        lr = learning_rate(recipe, step // data.steps_per_epoch) * data.lr_scale
        params = jax.tree.map(lambda p, u: p - lr * u, state.params, scaled)

        active = (step < data.total_steps) & (state.diverged_step < 0)
        finite = jnp.isfinite(loss)
        take = active & finite
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(take, n, o), new, old)  # noqa: E731
        new_state = TrainState(
            params=keep(params, state.params),
            batch_stats=keep(batch_stats, state.batch_stats),
            opt_state=keep(opt_state, state.opt_state),
            step=jnp.where(take, step + 1, step),
            diverged_step=jnp.where(active & ~finite, step, state.diverged_step),
            loss=jnp.where(take, loss, state.loss),
        )
        return new_state, jnp.where(active, loss, jnp.nan)

    return train_step


def make_init(model: nn.Module, recipe: RecipeConfig, image_shape: tuple[int, ...]) -> Callable[[jnp.ndarray], TrainState]:
    """Jitted ``init(key) -> TrainState`` for one replica."""
    tx = make_optimizer(recipe)

    def init(key: jnp.ndarray) -> TrainState:
        params_key, dropout_key = jax.random.split(key)
        variables = model.init(
            {"params": params_key, "dropout": dropout_key}, jnp.zeros((1, *image_shape), jnp.float32), train=False
        )
        params = variables["params"]
        return TrainState(
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(params),
            step=jnp.int32(0),
            diverged_step=jnp.int32(-1),
            loss=jnp.float32(jnp.nan),
        )

    return jax.jit(init)


def chunk_epochs(steps: int, shortest_epoch: int) -> int:
    """How many epochs a chunk of ``steps`` steps can touch for a replica of at least
    ``shortest_epoch`` steps per epoch: 2 while a chunk fits in an epoch, more for tiny
    replicas (one step per epoch: every step its own epoch)."""
    return -(-(steps - 1) // max(shortest_epoch, 1)) + 1


def make_chunk(
    train_step: Callable, steps: int, unroll: int | bool, strategy: str, group: int = 1, epochs: int = 2
) -> Callable[[TrainState, ReplicaData, jnp.ndarray], tuple[TrainState, jnp.ndarray]]:
    """Jitted ``chunk(states, data, images) -> (states, losses (R, steps))``: ``steps`` train
    steps of every replica in one call; the states' buffers are donated. ``group`` is how many
    replicas one program of the "loop" strategy trains (see ``_python_loop``).

    The epoch orders a chunk needs are drawn once per chunk instead of once per step: ``epochs``
    of them, from the replica's current epoch on, so a chunk must not touch more epochs of any
    replica than that (``chunk_epochs``; the default 2 holds while ``steps`` <= its steps per
    epoch). A step's order is the same whatever the chunk length, so only float rounding
    differs between chunkings.
    """

    def one_replica(state: TrainState, data: ReplicaData, images: jnp.ndarray) -> tuple[TrainState, jnp.ndarray]:
        first = state.step // data.steps_per_epoch
        orders = jnp.stack([epoch_order(data, first + k) for k in range(epochs)])

        def body(s: TrainState, _: None) -> tuple[TrainState, jnp.ndarray]:
            order = orders[jnp.clip(s.step // data.steps_per_epoch - first, 0, epochs - 1)]
            return train_step(s, data, images, order)

        return jax.lax.scan(body, state, None, length=steps, unroll=unroll)

    if strategy == "vmap":
        batched = jax.vmap(one_replica, in_axes=(0, 0, None))
    elif strategy == "map":

        def batched(states: TrainState, data: ReplicaData, images: jnp.ndarray) -> tuple[TrainState, jnp.ndarray]:
            return jax.lax.map(lambda sd: one_replica(sd[0], sd[1], images), (states, data))

    elif strategy == "loop":
        return _python_loop(one_replica, group)
    else:
        raise ConfigError(f"unknown replica strategy {strategy!r}; choose one of: {', '.join(REPLICA_STRATEGIES)}")
    return jax.jit(batched, donate_argnums=0)


def _python_loop(one_replica: Callable, group: int) -> Callable:
    """Replicas take turns from Python through one program that trains ``group`` of them.

    The replicas of a group are independent computations in one program, which XLA:CPU runs
    side by side on its cores; for the study's full-size CNN a group keeps more of the CPU busy
    than one replica's convolutions do alone (benchmarks/results/throughput_cpu.json). Replicas
    get the same results as alone, up to float rounding. On CPU this beats both
    batched forms: XLA's grouped-convolution backward and its rolled loops (``lax.map``) are
    several times slower there than one replica's plain program. Only slots with steps left
    run; a last group with fewer than ``group`` of them runs one replica at a time, so at most
    two programs are compiled.
    """

    def run_group(states: TrainState, data: ReplicaData, images: jnp.ndarray, slots: jnp.ndarray):
        outs = [
            one_replica(jax.tree.map(lambda x: x[i], states), jax.tree.map(lambda x: x[i], data), images)  # noqa: B023
            for i in slots
        ]
        trained = jax.tree.map(lambda *xs: jnp.stack(xs), *(state for state, _ in outs))
        states = jax.tree.map(lambda x, t: x.at[slots].set(t), states, trained)
        return states, jnp.stack([loss for _, loss in outs])

    run_group = jax.jit(run_group, donate_argnums=0)

    def looped(states: TrainState, data: ReplicaData, images: jnp.ndarray) -> tuple[TrainState, jnp.ndarray]:
        busy = (np.asarray(states.step) < np.asarray(data.total_steps)) & (np.asarray(states.diverged_step) < 0)
        slots = np.flatnonzero(busy).astype(np.int32)
        whole = len(slots) - len(slots) % group
        batches = [slots[i : i + group] for i in range(0, whole, group)] + [slots[i : i + 1] for i in range(whole, len(slots))]
        losses: dict[int, jnp.ndarray] = {}
        for batch in batches:
            states, loss = run_group(states, data, images, jnp.asarray(batch))
            losses.update((int(slot), loss[j]) for j, slot in enumerate(batch))
        steps = next(iter(losses.values())).shape[0] if losses else 1
        idle = jnp.full((steps,), jnp.nan, jnp.float32)
        return states, jnp.stack([losses.get(i, idle) for i in range(len(busy))])

    return looped


def make_confusion(model: nn.Module, normalize: Normalizer, num_classes: int) -> Callable:
    """Jitted ``confusion(params, batch_stats, x, y) -> (counts, predicted)`` for one batch: (C, C) int32
    counts, where labels of -1 (padding) count nowhere (rows are true classes, columns predictions), and
    the predicted class of every record (int8; int16 beyond 127 classes)."""
    dtype = getattr(model, "dtype", jnp.float32)
    predicted_dtype = prediction_dtype(num_classes)

    def confusion(
        params: Pytree, batch_stats: Pytree, x: jnp.ndarray, y: jnp.ndarray
    ) -> tuple[jnp.ndarray, jnp.ndarray]:
        logits = model.apply({"params": params, "batch_stats": batch_stats}, normalize(x).astype(dtype), train=False)
        classes = jnp.argmax(logits, -1)
        predicted = jax.nn.one_hot(classes, num_classes, dtype=jnp.float32)
        truth = jax.nn.one_hot(y, num_classes, dtype=jnp.float32)  # -1 -> all zeros
        return jnp.round(truth.T @ predicted).astype(jnp.int32), classes.astype(predicted_dtype)

    return jax.jit(confusion)


def evaluate(
    confusion: Callable, params: Pytree, batch_stats: Pytree, x_test: jnp.ndarray, y_test: jnp.ndarray, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """(confusion-matrix counts (C, C), predicted class per record (M,)) of one replica over the
    (device-resident, padded) test set; the predictions include the padding records."""
    total, predicted = None, []
    for start in range(0, x_test.shape[0], batch):
        counts, classes = confusion(params, batch_stats, x_test[start : start + batch], y_test[start : start + batch])
        total = counts if total is None else total + counts
        predicted.append(classes)
    return np.asarray(total, np.int64), np.concatenate([np.asarray(p) for p in predicted])
