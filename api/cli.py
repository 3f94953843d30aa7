"""Subcommands of api: registered by its cli.py."""


def register(sub) -> None:
    """Adds this package's subcommands (none yet)."""
