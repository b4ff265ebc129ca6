"""The batched trainer: a replica trained in a batch equals the same replica trained alone,
strategies agree, shapes never recompile, and the recipe's pieces do what they say."""

from __future__ import annotations

import dataclasses
import logging
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labelsim.config import ExecConfig, ModelConfig, RecipeConfig, ReplicaSpec, RunConfig
from labelsim.sim.data import make_synthetic
from labelsim.sim.grid import replica_keys
from labelsim.models import get_model
from labelsim.sim.prepare import prepare_replica
from labelsim.sim.slots import ModelProgram, SlotTrainer
from labelsim.sim.train import epoch_order, l2_penalty, learning_rate

DATA = make_synthetic(256, 64, 8, seed=3)


def tiny_config(strategy: str, steps_per_call: int = 2, conv: str = "xla", loop_group: int = 0) -> RunConfig:
    """A model and recipe small enough to compile and run in seconds on a CPU."""
    return RunConfig(
        model=ModelConfig(width=4, conv=conv),
        recipe=RecipeConfig(epochs=3, batch_size=32, lr_decays=((1, 5e-4),)),
        exec=ExecConfig(
            steps_per_call=steps_per_call, replica_strategy=strategy, eval_batch=64, loop_group=loop_group
        ),
    )


SPECS = [
    ReplicaSpec(0, "noise", 0, "shuffle", 0.0, 256, "small_cnn"),
    ReplicaSpec(1, "noise", 1, "shuffle", 0.4, 256, "small_cnn"),
    ReplicaSpec(2, "volume", 0, "shuffle", 0.0, 128, "small_cnn"),
]


def trained(config: RunConfig, specs: list[ReplicaSpec], calls: int) -> SlotTrainer:
    """A trainer holding ``specs`` in its slots after ``calls`` chunks."""
    trainer = SlotTrainer(config, DATA, ModelProgram.resolve(config, DATA, "small_cnn", 128), len(specs))
    for slot, spec in enumerate(specs):
        keys = replica_keys(0, spec)
        prepared = prepare_replica(spec, keys, DATA.y_train, DATA.num_classes)
        trainer.assign(slot, spec.replica, trainer.replica_data(spec, prepared, keys), trainer.init_one(keys.init))
    for _ in range(calls):
        trainer.advance()
    return trainer


@lru_cache(maxsize=None)
def batched(strategy: str, loop_group: int = 0) -> SlotTrainer:
    """The three SPECS trained together for 3 chunks of 2 steps (crossing an epoch of replica 2)."""
    return trained(tiny_config(strategy, loop_group=loop_group), SPECS, calls=3)


def slot_params(trainer: SlotTrainer, slot: int) -> list[np.ndarray]:
    """The parameters of one slot as numpy arrays."""
    return [np.asarray(x[slot]) for x in jax.tree.leaves(trainer.states.params)]


@pytest.mark.parametrize("index", range(len(SPECS)))
def test_batched_replica_equals_replica_trained_alone(index: int) -> None:
    together = batched("vmap")
    alone = trained(tiny_config("vmap"), [SPECS[index]], calls=3)
    assert int(together.states.step[index]) == int(alone.states.step[0]) == 6
    for a, b in zip(slot_params(together, index), slot_params(alone, 0)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_replicas_differ_from_each_other() -> None:
    together = batched("vmap")
    first, second = slot_params(together, 0), slot_params(together, 1)
    assert max(float(np.abs(a - b).max()) for a, b in zip(first, second)) > 1e-3


@pytest.mark.parametrize("strategy, loop_group", [("map", 0), ("loop", 1), ("loop", 2), ("loop", 3)])
def test_replica_strategies_agree_with_vmap(strategy: str, loop_group: int) -> None:
    # Loop groups of 2 over 3 slots: a pair, then the odd slot alone; a group of 3: all at once.
    by_vmap, other = batched("vmap"), batched(strategy, loop_group)
    for slot in range(len(SPECS)):
        assert int(other.states.step[slot]) == int(by_vmap.states.step[slot]) == 6
        for a, b in zip(slot_params(by_vmap, slot), slot_params(other, slot)):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_loop_groups_compile_at_most_two_programs_and_skip_finished_slots(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles():
        trainer = trained(tiny_config("loop", loop_group=2), SPECS, calls=1)
        _finish_short_slot(trainer)
    group_programs = [r for r in caplog.records if r.getMessage().startswith("Compiling jit(run_group)")]
    assert len(group_programs) == 2  # the pair, and the odd slot alone


def _finish_short_slot(trainer: SlotTrainer) -> None:
    """Train until the 128-image slot is done; the two others go on, the done one stays put."""
    losses = trainer.advance()
    assert losses.shape == (3, 2) and np.isfinite(losses).all()
    for _ in range(4):
        trainer.advance()
    steps, _ = trainer.progress()
    assert steps.tolist() == [12, 12, 12]  # slot 2 (128 images) has taken all of its 12 steps
    losses = trainer.advance()  # slots 0 and 1 (256 images, 24 steps) go on; slot 2 is done
    steps, _ = trainer.progress()
    assert steps.tolist() == [14, 14, 12]
    assert np.isnan(losses[2]).all() and np.isfinite(losses[:2]).all()


def test_patch_convolutions_train_like_xla_convolutions() -> None:
    by_patches = trained(tiny_config("vmap", conv="patches"), SPECS, calls=3)
    for slot in range(len(SPECS)):
        for a, b in zip(slot_params(by_patches, slot), slot_params(batched("vmap"), slot)):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_chunk_length_does_not_change_results() -> None:
    one_step = trained(tiny_config("vmap", steps_per_call=1), SPECS[:1], calls=6)
    for a, b in zip(slot_params(one_step, 0), slot_params(batched("vmap"), 0)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_a_chunk_longer_than_a_tiny_replicas_epoch_draws_every_epochs_order() -> None:
    """32 images in batches of 32: one step per epoch, so a 4-step chunk touches all three epochs of
    the replica. It draws an order for each (the run's smallest replica sets how many) and trains as one
    step per call does; drawing two, the third epoch would reuse the second's order, and the training
    would differ."""
    spec = ReplicaSpec(0, "volume", 0, "shuffle", 0.0, 32, "small_cnn")

    def train(steps_per_call: int, calls: int, epochs: int | None = None) -> SlotTrainer:
        config = tiny_config("vmap", steps_per_call=steps_per_call)
        program = ModelProgram.resolve(config, DATA, "small_cnn", 32)
        if epochs is not None:
            program = dataclasses.replace(program, epochs=epochs)
        trainer = SlotTrainer(config, DATA, program, 1)
        keys = replica_keys(0, spec)
        prepared = prepare_replica(spec, keys, DATA.y_train, DATA.num_classes)
        trainer.assign(0, 0, trainer.replica_data(spec, prepared, keys), trainer.init_one(keys.init))
        for _ in range(calls):
            trainer.advance()
        assert int(trainer.states.step[0]) == 3  # 3 epochs of 1 step, then the slot stays put
        return trainer

    assert ModelProgram.resolve(tiny_config("vmap", steps_per_call=4), DATA, "small_cnn", 32).epochs == 4
    assert ModelProgram.resolve(tiny_config("vmap", steps_per_call=4), DATA, "small_cnn", 64).epochs == 3
    assert ModelProgram.resolve(tiny_config("vmap", steps_per_call=4), DATA, "small_cnn", 128).epochs == 2
    # a long (accelerator-sized) chunk over one-step epochs is cut so it holds at most 8 epoch orders
    long = ModelProgram.resolve(tiny_config("vmap", steps_per_call=50), DATA, "small_cnn", 32)
    assert (long.steps, long.epochs) == (8, 8)
    assert ModelProgram.resolve(tiny_config("vmap", steps_per_call=50), DATA, "small_cnn", 256).steps == 50
    one_step, chunked = train(1, 3), train(4, 1)
    for a, b in zip(slot_params(one_step, 0), slot_params(chunked, 0)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    too_few = train(4, 1, epochs=2)
    assert max(float(np.abs(a - b).max()) for a, b in zip(slot_params(one_step, 0), slot_params(too_few, 0))) > 1e-3


def test_second_call_and_new_replica_do_not_recompile() -> None:
    trainer = trained(tiny_config("vmap"), SPECS[:2], calls=2)
    assert trainer.chunk._cache_size() == 1
    spec = SPECS[2]
    keys = replica_keys(0, spec)
    prepared = prepare_replica(spec, keys, DATA.y_train, DATA.num_classes)
    trainer.assign(1, 2, trainer.replica_data(spec, prepared, keys), trainer.init_one(keys.init))
    trainer.advance()
    assert trainer.chunk._cache_size() == 1


def test_finished_and_idle_slots_do_not_move() -> None:
    trainer = trained(tiny_config("vmap"), SPECS[2:], calls=3)  # 128 images: 4 steps per epoch x 3 = 12
    before = slot_params(trainer, 0)
    for _ in range(5):
        trainer.advance()
    assert int(trainer.states.step[0]) == 12
    after = slot_params(trainer, 0)
    for _ in range(2):
        trainer.advance()
    assert int(trainer.states.step[0]) == 12
    for a, b in zip(after, slot_params(trainer, 0)):
        np.testing.assert_array_equal(a, b)
    assert any(float(np.abs(a - b).max()) > 0 for a, b in zip(before, after))


def test_huge_learning_rate_diverges_only_its_replica() -> None:
    wild = ReplicaSpec(1, "noise", 1, "shuffle", 0.0, 256, "small_cnn", lr_scale=1e35)
    trainer = trained(tiny_config("vmap"), [SPECS[0], wild], calls=3)
    steps, diverged = trainer.progress()
    assert diverged[1] >= 0 and steps[1] == diverged[1]
    assert diverged[0] == -1 and steps[0] == 6
    assert all(np.isfinite(p).all() for p in slot_params(trainer, 0))


def test_epoch_order_is_a_permutation_of_the_valid_positions() -> None:
    trainer = batched("vmap")
    data = jax.tree.map(lambda x: x[2], trainer.data)  # the 128-image replica
    order = np.asarray(epoch_order(data, jnp.int32(0)))
    assert sorted(order[:128].tolist()) == list(range(128))
    other = np.asarray(epoch_order(data, jnp.int32(1)))
    assert not np.array_equal(order[:128], other[:128])


def test_learning_rate_follows_the_replicas_own_epoch() -> None:
    recipe = RecipeConfig()  # 1e-3, then 5e-4 from epoch 75, 3e-4 from epoch 100 (0-based)
    rates = [float(learning_rate(recipe, jnp.int32(e))) for e in (0, 74, 75, 99, 100, 124)]
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 5e-4, 5e-4, 3e-4, 3e-4])


def test_l2_penalty_counts_conv_kernels_only() -> None:
    params = {
        "Conv_0": {"kernel": jnp.ones((3, 3, 1, 2)), "bias": jnp.ones((2,))},
        "Dense_0": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones((2,))},
    }
    assert float(l2_penalty(params, 1e-4)) == pytest.approx(1e-4 * 18)


def test_study_cnn_has_the_published_parameter_counts() -> None:
    model = get_model("small_cnn", 10)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
    count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))  # noqa: E731
    assert count(shapes["params"]) == 308_394
    assert count(shapes["batch_stats"]) == 896
    assert count(shapes) == 309_290
