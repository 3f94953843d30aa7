"""User-facing errors: anything a user can fix by changing input or setup.

The CLI prints these as one line (``error: ...``) and exits with status 2;
anything else is a bug and keeps its traceback.
"""


class FunnelError(Exception):
    """An error caused by input, configuration or environment, with a message a user can act on."""


class InputError(FunnelError):
    """Bad input data: the message names the file, line or field and what was expected."""


class MissingDependencyError(FunnelError):
    """An optional dependency is missing; the message says which pip command fixes it."""

    def __init__(self, module: str, pip_name: str | None = None, purpose: str = ""):
        pip_name = pip_name or module
        why = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"python package '{module}' is not installed{why}: run `pip install {pip_name}`")
