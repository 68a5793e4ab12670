"""stoic's command line: `app` and its commands, one module per family (faces, editing,
training, evaluation) on the apps of stoic_cli.cli.app. Every image command follows the batch
conventions of stoic_cli.batch."""
from __future__ import annotations

# Imported for their commands, in the order --help lists them.
from stoic_cli.cli import editing, faces, evaluation, training  # noqa: F401  # isort: skip
from stoic_cli.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
