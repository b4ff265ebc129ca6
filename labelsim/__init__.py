"""labelsim: simulate how label quality and quantity drive per-class accuracy."""

__version__ = "0.1.0"
