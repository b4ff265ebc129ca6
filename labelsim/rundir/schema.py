"""The names and version of the run folder's layout, and its one error."""

from __future__ import annotations

import zipfile
import zlib

from labelsim.config import ConfigError

# Version of the files' layout. Raise it when a reader of this version would misread a newer
# run; a run without the key was written before versions were recorded (version 1).
SCHEMA_VERSION = 1
SCHEMA_KEY = "schema_version"

RUN_FILE, TABLE_FILE, CONFUSION_FILE = "run.json", "replicas.csv", "confusion.npz"
CHECKPOINT_FILE = "checkpoint.npz"
RESULT_FILES = (RUN_FILE, TABLE_FILE, CONFUSION_FILE, CHECKPOINT_FILE)
TEMP_SUFFIX = ".tmp"  # of a file being written; renamed over its target when complete
# What a damaged or truncated .npz raises when it is opened or one of its arrays is read.
NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)

COLUMNS = (
    "replica", "experiment", "model", "noise_model", "noise_rate", "train_size", "repeat",
    "realized_noise", "accuracy", "status", "steps", "total_steps", "diverged_step", "seconds",
    "class_sizes", "class_noise", "label", "lr_scale", "grouping", "group_sizes", "group_noise",
)  # fmt: skip
# Columns a table must have to be read; the others default (older runs lack some).
REQUIRED_COLUMNS = COLUMNS[:7] + ("accuracy", "status")
FINAL_STATUSES = ("finished", "diverged")


class RunDirError(ConfigError):
    """A run directory that cannot be used as asked; the message says what to do."""
