"""stoic: remove, transfer and edit facial expressions in photos."""
__version__ = "0.1.0"
