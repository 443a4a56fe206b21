"""Typed errors. The CLI prints each as one line and exits with its ``exit_code``.

Exit codes follow the contract the CLI documents: 2 for usage or input errors, 1 for a failed parity
check. Library callers catch :class:`VitEdgeError` (or a subclass) and can read ``expected``/``got``.
"""

from __future__ import annotations


class VitEdgeError(Exception):
    """Base class: a problem the user can fix, described in one line plus an optional hint."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None, expected=None, got=None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.expected = expected
        self.got = got

    def one_line(self) -> str:
        text = self.message
        sides = [f"{name} {value}" for name, value in (("expected", self.expected), ("got", self.got))
                 if value is not None]
        if sides:
            text += f" ({', '.join(sides)})"
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())  # guarantee a single line


class ModelSpecError(VitEdgeError):
    """The MODEL argument does not name a model we can load."""


class CheckpointError(VitEdgeError):
    """A checkpoint is missing, corrupt, unsafe, or does not fit the architecture."""


class DataError(VitEdgeError):
    """A data or calibration source is missing, empty, or undecodable."""


class OutputError(VitEdgeError):
    """The output location exists, cannot be created, or cannot be written."""


class ArtifactError(VitEdgeError):
    """An artifact is missing, corrupt, or incompatible with this machine."""


class InputError(VitEdgeError):
    """Input fed to a runtime has the wrong shape, dtype or values."""


class ExportError(VitEdgeError):
    """The exporter or a conversion step failed."""


class BackendUnavailable(VitEdgeError):
    """An optional backend (onnxruntime, openvino, tensorrt, torch...) is not installed."""


class ParityError(VitEdgeError):
    """A converted model disagrees with its reference beyond the tolerance."""

    exit_code = 1


def require(module: str, extra: str):
    """Import an optional dependency or raise a one-line BackendUnavailable naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(
            f"{module} is not installed ({exc})", hint=f"install it with: pip install 'vit-edge[{extra}]'"
        ) from None


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``str(exc)`` (libraries raise multi-line texts), truncated to ``limit``;
    the exception's type name when its message is empty, so a one-line error never comes out blank."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


def flags_apply(names) -> str:
    """``"--checkpoint applies"`` / ``"--checkpoint, --labels apply"`` for option names as Python spells them
    (``labels_file`` is ``--labels``): how an error names the flags that do not fit."""
    flags = ["--" + n.removesuffix("_file").replace("_", "-") for n in names]
    return f"{', '.join(flags)} {'applies' if len(flags) == 1 else 'apply'}"
