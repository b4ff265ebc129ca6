"""Subcommands of ``python -m labelsim``; each module has ``add_arguments`` and ``run``."""
