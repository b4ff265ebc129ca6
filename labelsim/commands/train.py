"""``python -m labelsim train --out DIR``: train a label-noise x volume sensitivity grid as one
batched computation. Every config field declared with a flag in ``labelsim.config`` becomes a
flag here; ``--set section.field=value`` sets any field. Flags override the preset; without
--preset, the dataset chooses it (``labelsim.config.default_config``)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import shlex
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelsim.config import (
    CONFIG_SECTIONS,
    PRESETS,
    REAL_DATA_DEFAULT_PRESET,
    SYNTHETIC_DEFAULT_PRESET,
    ConfigError,
    RunConfig,
    default_config,
    preset,
)
from labelsim.rundir import RUN_FILE, RunDirError, read_meta
from labelsim.rundir.reader import GROWABLE_FIELDS, NOISE_INPUT_FIELDS, differing_fields

SECTIONS = CONFIG_SECTIONS  # data, model, recipe, grid, exec
SPEED_ONLY_SECTION = "exec"  # its fields change speed, never results: flags for it keep a bare --resume bare
SET_EXAMPLE = "recipe.learning_rate=0.002"


@dataclasses.dataclass(frozen=True)
class ConfigField:
    """One field of one config section, with its resolved type."""

    section: str
    field: dataclasses.Field[Any]
    hint: Any

    @property
    def key(self) -> str:
        """``section.field``, as --set and error messages name it."""
        return f"{self.section}.{self.field.name}"

    @property
    def dest(self) -> str:
        """The argparse attribute of the field's flag."""
        return self.field.metadata["flag"].lstrip("-").replace("-", "_")


def section_classes() -> dict[str, type]:
    """Config section name -> its dataclass."""
    hints = typing.get_type_hints(RunConfig)
    return {name: hints[name] for name in SECTIONS}


@functools.cache
def config_fields() -> tuple[ConfigField, ...]:
    """Every field of every config section, in declaration order."""
    return tuple(
        ConfigField(section, f, typing.get_type_hints(klass)[f.name])
        for section, klass in section_classes().items()
        for f in dataclasses.fields(klass)
    )


def flagged_fields() -> tuple[ConfigField, ...]:
    """The fields that declare their own flag."""
    return tuple(cf for cf in config_fields() if "flag" in cf.field.metadata)


# ------------------------------------------------------------------ value parsers


NONE_WORD = "none"  # a list flag's value for "no items": --noise none, --sizes none


def _floats(text: str) -> tuple[float, ...]:
    if text.strip().lower() == NONE_WORD:
        return ()
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _ints(text: str) -> tuple[int, ...]:
    if text.strip().lower() == NONE_WORD:
        return ()
    try:
        return tuple(int(float(v)) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _folder(text: str) -> Path:
    """--out's value: a folder path (an empty one would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give the run folder to write, e.g. --out runs/demo")
    return Path(text)


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _bool(text: str) -> bool:
    words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
    if text.strip().lower() not in words:
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return words[text.strip().lower()]


def _tuples(kinds: tuple[type, ...]) -> Callable[[str], tuple[tuple[Any, ...], ...]]:
    """A parser of comma-separated items whose parts are colon-separated, e.g. ``75:5e-4,100:3e-4``."""
    shape = ":".join(kind.__name__ for kind in kinds)

    def parse(text: str) -> tuple[tuple[Any, ...], ...]:
        items = [item.split(":") for item in text.split(",") if item.strip()]
        try:
            if any(len(parts) != len(kinds) for parts in items):
                raise ValueError
            return tuple(tuple(kind(part) for kind, part in zip(kinds, parts)) for parts in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {shape} items") from None

    return parse


def value_parser(hint: Any) -> Callable[[str], Any]:
    """The parser of a command-line value for a field of this type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return value_parser(next(arg for arg in args if arg is not type(None)))
    if origin is tuple:
        item = args[0]
        if typing.get_origin(item) is tuple:
            return _tuples(typing.get_args(item))
        return {float: _floats, int: _ints}.get(item, _names)
    return _bool if hint is bool else hint


# ------------------------------------------------------------------ the parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags: the run's own, then one group per config section."""
    parser.add_argument(
        "--preset",
        help=f"named starting config: {', '.join(sorted(PRESETS))}. Default: by --dataset: the synthetic set gets "
        f"{SYNTHETIC_DEFAULT_PRESET} (small_cnn width 16, 12 epochs, lr decay at epoch 8, a small grid); a real "
        f"dataset gets {REAL_DATA_DEFAULT_PRESET}'s model and recipe (the study's: small_cnn width 32, 125 epochs, "
        "lr decays at epochs 75 and 100) with the default grid (--noise 0,0.1,0.2,0.3, no --sizes, 2 repeats)",
    )
    parser.add_argument(
        "--out", required=True, type=_folder, help="run directory to write (must not hold a run, unless --resume)"
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="load the data, check everything and print what the grid would train, then stop: nothing is trained "
             "and no run folder is written",
    )  # fmt: skip
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the run in --out; finished replicas are kept. Flags for more --repeats, --noise levels, "
             "--sizes, --noise-model or --models than it has grow its grid: only the new points train",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", metavar="SECTION.FIELD=VALUE",
        help=f"set any config field, e.g. {SET_EXAMPLE} (repeatable; after the flags; lists comma-separated, "
             "pairs colon-joined: recipe.lr_decays=75:5e-4,100:3e-4)",
    )  # fmt: skip
    groups = {
        section: parser.add_argument_group(section, (klass.__doc__ or "").split(". ")[0].rstrip("."))
        for section, klass in section_classes().items()
    }
    for cf in flagged_fields():
        _add_flag(groups[cf.section], cf)
    groups[SPEED_ONLY_SECTION].add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_flag(group: argparse._ArgumentGroup, cf: ConfigField) -> None:
    """One field's flag: a switch for a boolean, else a value of the field's type."""
    meta = cf.field.metadata
    if cf.hint is bool:
        group.add_argument(meta["flag"], action="store_true", default=None, help=meta["help"])
        return
    group.add_argument(meta["flag"], type=value_parser(cf.hint), choices=meta.get("choices"), help=meta["help"])


# ------------------------------------------------------------------ flags -> config


def parse_set(text: str, fields: dict[str, ConfigField]) -> tuple[ConfigField, Any]:
    """One ``--set section.field=value``: the field and its parsed value, or a ConfigError."""
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot:
        raise ConfigError(f"--set {text!r}: write section.field=value, e.g. --set {SET_EXAMPLE}")
    if section not in SECTIONS:
        raise ConfigError(f"--set {text}: unknown config section {section!r}; choose one of: {', '.join(SECTIONS)}")
    if key.strip() not in fields:
        names = [cf.field.name for cf in fields.values() if cf.section == section]
        raise ConfigError(f"--set {text}: {section} has no field {name!r}; choose one of: {', '.join(names)}")
    cf = fields[key.strip()]
    try:
        return cf, value_parser(cf.hint)(raw.strip())
    except argparse.ArgumentTypeError as err:
        raise ConfigError(f"--set {text}: {err}") from None
    except ValueError:
        raise ConfigError(f"--set {text}: {raw.strip()!r} is not a valid {cf.field.type} for {cf.key}") from None


@dataclasses.dataclass(frozen=True)
class TypedChange:
    """One field the user changed: how it was typed (a flag or --set), the field and its value."""

    flag: str  # "--epochs", or "--set" for a --set entry
    field: ConfigField
    value: Any

    def __str__(self) -> str:
        """As typed: ``--epochs 4``, ``--no-augment`` or ``--set recipe.epochs=4``."""
        if self.flag == "--set":
            return f"--set {self.field.key}={_shown(self.value)}"
        return self.flag if self.field.hint is bool else f"{self.flag} {_shown(self.value)}"


def typed_changes(args: argparse.Namespace) -> list[TypedChange]:
    """Every field the flags and --set entries change, as typed, in the order they apply."""
    changes = []
    for cf in flagged_fields():
        value = getattr(args, cf.dest)
        if value is not None:
            value = (not cf.field.default) if cf.hint is bool else value
            changes.append(TypedChange(cf.field.metadata["flag"], cf, value))
    fields = {cf.key: cf for cf in config_fields()}
    return changes + [TypedChange("--set", *parse_set(text, fields)) for text in args.set or ()]


def requested_changes(args: argparse.Namespace) -> list[tuple[ConfigField, Any]]:
    """Every field the flags and --set entries change, in the order they apply."""
    return [(change.field, change.value) for change in typed_changes(args)]


def _shown(value: Any) -> str:
    """A value as it is typed on the command line (lists comma-separated, pairs colon-joined)."""
    if isinstance(value, tuple):
        return ",".join(":".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in value)
    return str(value)


def check_typed_values(args: argparse.Namespace) -> None:
    """Values the user typed that the config's own checks allow only as defaults: a width of 0 stands for the
    model's standard width in presets; typed, it would train that width but record 0."""
    for change in typed_changes(args):
        if change.field.key == "model.width" and change.value < 1:
            raise ConfigError(f"{change}: give 1 or more filters (small_cnn's standard: 32)")


def check_resume_flags(args: argparse.Namespace, config: RunConfig) -> None:
    """--resume with flags that change results (no --preset): a ConfigError naming only the typed flags
    whose values differ from the run's stored config, or, when they agree with it but the preset they
    apply to does not, one that says to resume with the stored config. Typed flags that grow the grid
    (``growing_changes``) may differ: the run checks them against its stored replicas."""
    if not args.resume or args.preset is not None or not (args.out / RUN_FILE).is_file():
        return
    # The last change of a field is the one that applies.
    typed = {c.field.key: c for c in typed_changes(args) if c.field.section != SPEED_ONLY_SECTION}
    if not typed:
        return
    stored = stored_config(args.out)
    grown = {c.field.key for c in growing_changes(args, stored)}
    changed = [
        f"{change} (the run has {change.field.key} {_shown(stored_value)})"
        for key, change in typed.items()
        if key not in grown
        and (stored_value := getattr(getattr(stored, change.field.section), change.field.field.name)) != change.value
    ]
    bare = f"--resume --out {shlex.quote(str(args.out))}"
    if changed:
        raise ConfigError(
            f"--resume: {args.out} was started with other settings: {'; '.join(changed)}; resume it with just "
            f"{bare} (its stored config), or start a new --out"
        )
    differences = differing_fields(stored.to_dict(), config.to_dict())
    if any(not key.startswith(f"{SPEED_ONLY_SECTION}.") and key not in grown for key in differences):
        raise ConfigError(
            f"--resume: your flags agree with the run in {args.out}, but the rest of the {config.preset} preset they "
            f"apply to does not; resume it with just {bare} (its stored config; speed flags and flags that grow "
            "its grid may be added)"
        )


def growing_changes(args: argparse.Namespace, stored: RunConfig) -> list[TypedChange]:
    """The typed changes that may grow a resumed run's grid: its extent (``GROWABLE_FIELDS``), and a noise
    input (--noise-matrix, --human-labels) the run was started without."""
    def grows(change: TypedChange) -> bool:
        if change.field.key in GROWABLE_FIELDS:
            return True
        stored_value = getattr(getattr(stored, change.field.section), change.field.field.name)
        return change.field.key in NOISE_INPUT_FIELDS and not stored_value

    return [change for change in typed_changes(args) if grows(change)]


def apply_overrides(config: RunConfig, args: argparse.Namespace) -> RunConfig:
    """A new config with every flag and --set entry the user gave."""
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for cf, value in requested_changes(args):
        sections[cf.section][cf.field.name] = value
    changed = {name: dataclasses.replace(getattr(config, name), **sections[name]) for name in SECTIONS}
    return dataclasses.replace(config, **changed)


def typed_dataset(args: argparse.Namespace) -> str:
    """The dataset the flags name (--dataset or --set data.name=...), else the default, the synthetic set."""
    names = [value for cf, value in requested_changes(args) if cf.key == "data.name"]
    return names[-1] if names else RunConfig().data.name


def starting_config(args: argparse.Namespace) -> RunConfig:
    """The config the flags apply to: --preset, else the default for the dataset they name."""
    return preset(args.preset) if args.preset is not None else default_config(typed_dataset(args))


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The config to run: for a --resume whose only flags change speed or grow the grid (no --preset), the
    stored one plus those flags; else the preset (or the dataset's default) plus flags."""
    if args.resume and args.preset is None and (args.out / RUN_FILE).exists():
        stored = stored_config(args.out)
        grown = {c.field.key for c in growing_changes(args, stored)}
        if all(cf.section == SPEED_ONLY_SECTION or cf.key in grown for cf, _ in requested_changes(args)):
            return apply_overrides(stored, args)
    return apply_overrides(starting_config(args), args)


def stored_config(out: Path) -> RunConfig:
    """The config a run directory was started with, and the preset it recorded; a RunDirError when run.json
    is damaged."""
    try:
        meta = read_meta(out)
        return dataclasses.replace(RunConfig.from_dict(meta["config"]), preset=str(meta.get("preset") or ""))
    except RunDirError:
        raise
    except (ConfigError, TypeError, AttributeError) as err:
        raise RunDirError(f"{out / 'run.json'} holds a damaged config ({err}); start a new --out") from None


# ------------------------------------------------------------------ running


def run(args: argparse.Namespace) -> int:
    """Train the grid and print where the results are. A bad config or run directory raises
    ConfigError, Ctrl-C KeyboardInterrupt: ``python -m labelsim`` turns them into one line
    (with ``next_step``) and an exit status."""
    args.run_existed = (args.out / RUN_FILE).is_file()  # before anything: ``next_step`` tells it from a new run
    # jax is imported here, not at the top: every labelsim command builds its parser from this
    # module, and only training needs jax.
    from labelsim.sim.distributed import initialize_from_env

    initialize_from_env()  # several hosts: LABELSIM_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID
    check_typed_values(args)
    config = resolve_config(args)
    check_resume_flags(args, config)
    from labelsim.sim import runner

    if args.dry_run:
        plan = runner.plan_grid(config, args.out, resume=args.resume)
        print(runner.describe_plan(config, plan))
        print(f"dry run: nothing trained, {args.out} not written; run the same command without --dry-run to train")
        return 0
    out = runner.run_grid(config, args.out, resume=args.resume, progress=not args.no_progress)
    quoted = shlex.quote(str(out))
    print(f"done: {out}/run.json, replicas.csv, confusion.npz, test_predictions.npy")
    print(f"next: python -m labelsim analyze {quoted}   |   python -m labelsim report {quoted}")
    return 0


def next_step(args: argparse.Namespace, err: BaseException) -> str | None:
    """What to do after an interrupt or an OS error: resume the run once it has a run.json and is
    this command's (it was asked to resume it, or the run.json was not there when it began; finished
    replicas are written as they finish); None (start again) before."""
    if not os.path.isfile(args.out / RUN_FILE):
        return None
    if not args.resume and getattr(args, "run_existed", True):  # a run this command did not start
        return None
    saved = "finished replicas are saved. Continue" if isinstance(err, KeyboardInterrupt) else "continue"
    return f"{saved} with: --out {shlex.quote(str(args.out))} --resume"
