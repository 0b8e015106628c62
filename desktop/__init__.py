"""Based: a base language model next to its instruct twin, side by side."""

__version__ = "0.1.0"
