"""Run one labelsim command in-process as ``python -m labelsim`` would, and read its one-line error."""

from __future__ import annotations

import argparse
import importlib

import pytest

from labelsim.__main__ import add_debug_flag, run_guarded


def cli(command: str, argv: list[str]) -> int:
    """Run ``labelsim COMMAND ARGV`` through the same guard as the entry point; its exit status."""
    module = importlib.import_module(f"labelsim.commands.{command}")
    parser = argparse.ArgumentParser()
    add_debug_flag(parser)
    module.add_arguments(parser)
    parser.set_defaults(_module=module)
    return run_guarded(lambda: parser.parse_args(argv))


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """stderr's single line, which must be an ``error: ...`` line."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err
