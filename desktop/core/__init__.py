"""Plain-Python core of Based. Nothing in this package may import Qt."""
