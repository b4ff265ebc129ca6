"""Frozen configuration: data, model, recipe and grid, with the named presets.

Every hyperparameter lives here with its unit. Configs are never mutated after they are
built: overrides make a new object with ``dataclasses.replace``. A field declared with
``option`` carries its command-line flag and help; ``labelsim train`` builds its flags from them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A configuration that cannot run; the message says what to change."""


def option(default: Any, flag: str, help_text: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with its default and the command-line flag (with help) that sets it.

    A boolean field's flag takes no value and sets the opposite of the default.
    """
    metadata: dict[str, Any] = {"flag": flag, "help": help_text}
    if choices is not None:
        metadata["choices"] = choices
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to load and from where."""

    name: str = option(
        "synthetic",
        "--dataset",
        "'synthetic' (embedded), 'cifar10', folder:PATH (your images in class folders), npz:PATH (your arrays), "
        "or another TFDS image dataset name",
    )
    data_dir: str | None = option(
        None, "--data-dir", "local CIFAR-10 copy (.npz folder, cifar-10-python.tar.gz or its folder) or a TFDS data_dir"
    )
    # folder:PATH datasets only:
    image_size: int = option(
        32, "--image-size", "folder: datasets: side in pixels every image is resized to (default 32; 0 keeps their own)"
    )
    test_fraction: float = option(
        0.2, "--test-fraction", "folder: datasets without train/ and test/: share of each class held out (default 0.2)"
    )
    split_seed: int = option(
        0, "--split-seed", "folder: datasets without train/ and test/: seed of the held-out draw (default 0)"
    )
    # Synthetic data only (ignored for real datasets):
    synthetic_train: int = option(2000, "--synthetic-train", "training images of the synthetic dataset")
    synthetic_test: int = option(1000, "--synthetic-test", "test images of the synthetic dataset")
    synthetic_size: int = option(16, "--synthetic-size", "image side of the synthetic dataset, pixels")
    synthetic_seed: int = 0
    human_labels: str | None = option(None, "--human-labels", "CIFAR-10N labels.npz, for the human-* noise models")


OWN_DATA_KINDS = ("folder", "npz")  # --dataset KIND:PATH, a user's own data


def own_data_source(name: str) -> tuple[str, str] | None:
    """(kind, path) of a ``--dataset folder:PATH`` or ``npz:PATH``; None for other dataset names."""
    kind, sep, path = name.partition(":")
    if not sep or kind not in OWN_DATA_KINDS:
        return None
    if not path.strip():
        raise ConfigError(f"--dataset {name!r} names no path; give --dataset {kind}:PATH")
    return kind, path


def check_data_config(data: DataConfig) -> None:
    """Checks of the data options that need no files: the own-data path and the folder settings."""
    if not data.name:
        raise ConfigError("--dataset is empty; give synthetic, cifar10, folder:PATH, npz:PATH or a TFDS name")
    source = own_data_source(data.name)
    if source is None or source[0] != "folder":
        return
    if data.image_size != 0 and data.image_size < 4:
        raise ConfigError(
            f"--image-size {data.image_size} is too small; give 4 pixels or more (0 keeps the images' own size)"
        )
    if not 0.0 < data.test_fraction < 1.0:
        raise ConfigError(f"--test-fraction {data.test_fraction} is outside (0, 1); give a fraction such as 0.2")
    if data.split_seed < 0:
        raise ConfigError(f"--split-seed {data.split_seed} is negative; give 0 or more")


@dataclass(frozen=True)
class ModelConfig:
    """Which model to train."""

    name: str = option("small_cnn", "--model", "model name (default small_cnn, the study's)")
    # base filters; 0 = the model's standard width (small_cnn: 32, then 64, 128)
    width: int = option(0, "--width", "first-layer filters of small_cnn (the study: 32)")
    # small_cnn's convolutions: "xla" (lax.conv; under vmap a grouped convolution) or
    # "patches" (image patches x matrix; under vmap a batched matmul). Same results.
    conv: str = option(
        "xla", "--conv", "small_cnn convolutions: lax.conv or patches x matrix (same results)", ("xla", "patches")
    )


@dataclass(frozen=True)
class RecipeConfig:
    """The training recipe. Defaults follow the widely used Keras CIFAR-10 recipe of the
    study's CNN (RMSprop, step decays, L2 1e-4, light augmentation)."""

    epochs: int = option(125, "--epochs", "epochs per replica (each replica counts its own epochs)")
    batch_size: int = option(64, "--batch-size", "images per step per replica")
    learning_rate: float = 1e-3  # RMSprop step size before the first decay
    # (epoch, learning rate) pairs: from that epoch (0-based) on, that rate. The Keras recipe
    # switches to 5e-4 after epoch 75 and 3e-4 after epoch 100 (1-based: 76 and 101).
    lr_decays: tuple[tuple[int, float], ...] = ((75, 5e-4), (100, 3e-4))
    rmsprop_decay: float = 0.9  # Keras RMSprop rho
    rmsprop_eps: float = 1e-7  # Keras RMSprop epsilon, added outside the square root
    weight_decay: float = 1e-4  # L2 penalty coefficient on conv kernels (Keras l2(1e-4))
    augment: bool = option(True, "--no-augment", "turn the on-device augmentation off")
    rotation_deg: float = 15.0  # max rotation, degrees (Keras rotation_range=15)
    shift_frac: float = 0.1  # max width/height shift, fraction of the side
    hflip: bool = True
    # "auto": bfloat16 compute on GPU/TPU, float32 on CPU (bf16 convs on CPU are ~100x slower)
    compute_dtype: str = "auto"


@dataclass(frozen=True)
class GridConfig:
    """The sensitivity grid: noise levels x repeats, sizes x repeats, and optionally the cross."""

    noise_levels: tuple[float, ...] = option(  # fraction of training labels
        (0.0, 0.1, 0.2, 0.3),
        "--noise",
        "comma-separated label-noise rates in [0, 1] of the noise grid (on the full training set), e.g. 0,0.1,0.3; "
        "'none': no noise grid, only the --sizes points",
    )
    sizes: tuple[int, ...] = option(  # () = no volume grid
        (),
        "--sizes",
        "comma-separated training-set sizes of the volume grid (clean labels), e.g. 5000,10000; "
        "'none': no volume grid, only the --noise points",
    )
    repeats: int = option(2, "--repeats", "repeats per grid point (different init, batch order, noise draw)")
    cross: bool = option(False, "--cross", "also train every noise level x size pair")
    noise_models: tuple[str, ...] = option(
        ("shuffle",), "--noise-model", "comma-separated noise models (default shuffle, the study's)"
    )
    noise_matrix: str | None = option(
        None, "--noise-matrix", "C x C transition matrix file (.npy/.csv/.json) for --noise-model matrix"
    )
    # extra model axis; () = just ModelConfig.name
    models: tuple[str, ...] = option((), "--models", "comma-separated models: a model axis of the grid")
    stratified: bool = option(False, "--stratified", "volume subsets keep class proportions")
    seed: int = option(0, "--seed", "base seed; every replica key is folded from it and its grid coordinates")


REPLICA_STRATEGIES = ("vmap", "map", "loop")  # how the replica axis runs; "auto" picks per backend


@dataclass(frozen=True)
class ExecConfig:
    """How the batched computation runs; changes speed, never results (beyond float rounding)."""

    slots: int = option(  # 0 = all replicas (bounded by device memory)
        0, "--slots", "concurrent replicas in the batched program (0: as many as help, within free memory, up to 64)"
    )
    steps_per_call: int = option(0, "--steps-per-call", "train steps per jitted call (0: backend default)")
    unroll: int = 0  # lax.scan unroll; 0 = per backend default (full unroll on CPU)
    # "vmap": one batched program (grouped convolutions; fastest on GPU); "map": lax.map over
    # replicas inside one program; "loop": replicas take turns through one one-replica
    # program. On CPU, XLA's grouped-conv backward and rolled loops are several times slower
    # than one replica's program (benchmarks/throughput.py), so "auto" = loop on CPU, else vmap.
    replica_strategy: str = option("auto", "--strategy", "replica axis: vmap (one batched program), map, loop or auto")
    # "loop": replicas per program call, independent computations that XLA:CPU runs side by
    # side on its cores; 0 = default (1). Groups of 2-4 speed up full-size CNNs on CPU.
    loop_group: int = option(
        0, "--loop-group", '"loop": replicas per program call (0: default, 1; 2-4 speed up full-size CNNs on CPU)'
    )
    checkpoint_seconds: float = option(60.0, "--checkpoint-seconds", "minimum seconds between checkpoints")
    eval_batch: int = 1000  # test images per evaluation step
    # With slots = 0, the slots may fill this fraction of each device's free memory (measured
    # when the run starts; host RAM on CPU). The rest is headroom for XLA and the host.
    memory_fraction: float = option(
        0.8, "--memory-fraction", "with --slots 0: the slots may fill this fraction of free device memory (default 0.8)"
    )


CONFIG_SECTIONS = ("data", "model", "recipe", "grid", "exec")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; recorded whole in run.json."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    exec: ExecConfig = field(default_factory=ExecConfig)
    # The preset the values started from: where they came from, not what they are (two configs with
    # the same values train the same replicas). run.json records it beside the config, not in it.
    preset: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The values as a JSON-ready dict (tuples become lists), without ``preset``."""
        values = {name: dataclasses.asdict(getattr(self, name)) for name in CONFIG_SECTIONS}
        return json.loads(json.dumps(values))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Inverse of ``to_dict``; unknown keys are an error."""
        parts = {
            "data": DataConfig,
            "model": ModelConfig,
            "recipe": RecipeConfig,
            "grid": GridConfig,
            "exec": ExecConfig,
        }
        kwargs = {}
        for key, value in d.items():
            if key not in parts:
                raise ConfigError(f"unknown config section {key!r}")
            kwargs[key] = _dataclass_from_dict(parts[key], value)
        return cls(**kwargs)


def _to_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    return value


def _dataclass_from_dict(klass: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(klass)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown {klass.__name__} field(s): {sorted(unknown)}")
    return klass(**{k: _to_tuple(v) for k, v in d.items()})


@dataclass(frozen=True)
class ReplicaSpec:
    """One grid point x repeat: what a single replica trains on.

    ``class_sizes`` / ``class_noise`` (one entry per class) override ``train_size`` /
    ``noise_rate`` for per-class experiments such as budget plans. ``group_sizes`` /
    ``group_noise`` do the same per group of any grouping of the training records: ``grouping``
    names it, and the run gets its per-record group ids as an input (``labelsim.sim.prepare``).
    The grouping ``LABELS`` is the records' own classes: per-class fields are its special case.
    """

    LABELS: ClassVar[str] = "labels"

    replica: int
    experiment: str  # "noise", "volume", "cross" or "custom"
    repeat: int
    noise_model: str
    noise_rate: float
    train_size: int
    model: str
    class_sizes: tuple[int, ...] | None = None
    class_noise: tuple[float, ...] | None = None
    label: str = ""  # free text for custom replicas (e.g. a budget strategy name)
    lr_scale: float = 1.0  # multiplies the recipe's learning rate for this replica only
    grouping: str = ""  # the grouping group_sizes / group_noise follow
    group_sizes: tuple[int, ...] | None = None
    group_noise: tuple[float, ...] | None = None

    @property
    def size(self) -> int:
        """Training records of this replica: its class or group sizes summed when given, else train_size."""
        sizes = self.per_group_sizes
        return sum(sizes) if sizes is not None else self.train_size

    @property
    def per_group(self) -> str:
        """The grouping this replica's per-group sizes or noise follow (``LABELS`` for per-class
        fields); '' when it has neither."""
        if self.class_sizes is not None or self.class_noise is not None:
            return self.LABELS
        if self.group_sizes is not None or self.group_noise is not None:
            return self.grouping
        return ""

    @property
    def per_group_sizes(self) -> tuple[int, ...] | None:
        """Training records per group (per class for per-class fields), or None."""
        return self.class_sizes if self.class_sizes is not None else self.group_sizes

    @property
    def per_group_noise(self) -> tuple[float, ...] | None:
        """Noise rate per group (per class for per-class fields), or None."""
        return self.class_noise if self.class_noise is not None else self.group_noise


PRESETS: dict[str, dict[str, Any]] = {}


def _preset(name: str, **sections: dict[str, Any]) -> None:
    PRESETS[name] = sections


# demo: seconds on a laptop CPU, on the embedded synthetic data (16x16 px).
_preset(
    "demo",
    data=dict(name="synthetic", synthetic_train=2000, synthetic_test=1000, synthetic_size=16),
    model=dict(name="small_cnn", width=16),
    recipe=dict(epochs=12, batch_size=64, lr_decays=((8, 5e-4),), augment=True),
    grid=dict(noise_levels=(0.0, 0.2, 0.4), sizes=(500, 1000, 1500), repeats=2),
)
_PAPER_RECIPE = dict(epochs=125, batch_size=64)
_PAPER_DATA = dict(name="cifar10")
_preset(
    "paper-noise",
    data=_PAPER_DATA,
    recipe=_PAPER_RECIPE,
    grid=dict(noise_levels=(0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30), sizes=(), repeats=5),
)
_preset(
    "paper-volume",
    data=_PAPER_DATA,
    recipe=_PAPER_RECIPE,
    grid=dict(noise_levels=(0.0,), sizes=(5000, 10000, 20000, 30000, 40000, 50000), repeats=5),
)
_preset(
    "paper",
    data=_PAPER_DATA,
    recipe=_PAPER_RECIPE,
    grid=dict(
        noise_levels=(0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30),
        sizes=(5000, 10000, 20000, 30000, 40000, 50000),
        repeats=5,
    ),
)
# The study's model table: each model on clean CIFAR-10 at batch 64. The study trained the
# ResNets and GoogLeNet for 25 epochs (its CNN and LeNet for 125: run those two with
# --models small_cnn,lenet --epochs 125). Add --noise to compare the models' per-class
# sensitivity ("is it the model or the data?").
_preset(
    "paper-models",
    data=_PAPER_DATA,
    recipe=dict(epochs=25, batch_size=64),
    grid=dict(
        noise_levels=(0.0,),
        sizes=(),
        repeats=1,
        models=("small_cnn", "lenet", "resnet18", "resnet18_noskip", "googlenet"),
    ),
)


def preset(name: str) -> RunConfig:
    """The named preset as a RunConfig."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    base = RunConfig().to_dict()
    for section, values in PRESETS[name].items():
        base[section].update(json.loads(json.dumps(values)))
    return dataclasses.replace(RunConfig.from_dict(base), preset=name)


SYNTHETIC_DEFAULT_PRESET = "demo"
REAL_DATA_DEFAULT_PRESET = "paper"
REAL_DATA_DEFAULT_SECTIONS = ("model", "recipe")


def default_config(dataset: str) -> RunConfig:
    """The config a run without --preset starts from, chosen by its dataset: the demo preset on the
    synthetic set; on a real dataset (cifar10, folder:, npz:, a TFDS name) the study's model and recipe
    (the paper preset's) with the default grid, so that a real run never trains the demo's small model
    and short schedule unasked."""
    if dataset == "synthetic":
        return preset(SYNTHETIC_DEFAULT_PRESET)
    study = preset(REAL_DATA_DEFAULT_PRESET)
    sections = {name: getattr(study, name) for name in REAL_DATA_DEFAULT_SECTIONS}
    return dataclasses.replace(RunConfig(), **sections, preset=REAL_DATA_DEFAULT_PRESET)


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    """Steps of one epoch: the last, partial batch is dropped, as ``drop_remainder`` does."""
    return max(1, train_size // batch_size)


def total_steps(train_size: int, recipe: RecipeConfig) -> int:
    """All steps a replica of this training-set size takes over its epochs."""
    return recipe.epochs * steps_per_epoch(train_size, recipe.batch_size)


def check_rate(rate: float, what: str = "noise rate") -> float:
    """A rate in [0, 1] or a ConfigError that says so."""
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise ConfigError(f"{what} {rate!r} is outside [0, 1]; give a fraction such as 0.2")
    return float(rate)
