"""Subcommands that run the whole system (`funnel demo`): registered here, built from the packages."""


def register(sub) -> None:
    """Adds `funnel demo` once the API and dashboard exist (none yet)."""
