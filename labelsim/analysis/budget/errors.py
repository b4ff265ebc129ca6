"""The budget optimizer's error: a question that cannot be answered as asked."""

from __future__ import annotations

from labelsim.config import ConfigError


class BudgetError(ConfigError):
    """A budget question that cannot be answered as asked; the message says what to change."""
