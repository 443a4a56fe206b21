"""Files of an artifact on disk: hashes, atomic writes, and all-or-nothing output directories.

Layout of an ``--out`` directory::

    manifest.json      what this is, how it was made, how to feed it (preprocessing, labels)
    model.onnx | model.xml + model.bin | model.engine (+ model.onnx the engine was built from)
    report.json / report.md   when convert validated it
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import signal
import tempfile
from pathlib import Path

import vit_edge.artifact.publish as publish
from vit_edge.errors import OutputError, VitEdgeError

log = logging.getLogger("vit_edge")

MANIFEST = "manifest.json"
# Errors that mean "this location cannot take the output", as opposed to a bug elsewhere.
# EFBIG: a file-size limit (RLIMIT_FSIZE, or a filesystem's own maximum) was hit.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EROFS, errno.EPERM}


def disk_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (itself or a cause) when it means the output location cannot take more data.

    Libraries that write files (exporters, quantizers) often wrap it; callers re-raise it so the user hears
    "disk full" rather than "the exporter failed"."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def library_versions(*names: str) -> dict:
    """Installed versions of the libraries that made an artifact (read from metadata, no imports)."""
    from importlib.metadata import PackageNotFoundError, version

    import vit_edge

    out = {"vit-edge": vit_edge.__version__}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, data) -> None:
    """Write JSON atomically (temp file in the same directory, then rename)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_text(path, text: str) -> None:
    """Write a text file atomically: a reader sees the old file or the whole new one, never a part."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})",
                          hint="check that its folder exists and is writable, and that the disk has space") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def file_entries(directory) -> dict:
    """name -> sha256 and size of every file in an artifact directory (the manifest excluded)."""
    directory = Path(directory)
    entries = {}
    for p in sorted(directory.iterdir()):
        if p.is_file() and p.name != MANIFEST and not p.name.startswith("."):
            entries[p.name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return entries


class _Terminated(BaseException):
    """SIGTERM turned into an exception so that cleanup code runs (like KeyboardInterrupt for SIGINT)."""


_received_signal: int | None = None  # the SIGINT/SIGTERM received inside ``interrupts_as_exceptions``


def interrupted() -> bool:
    """Whether a Ctrl-C or SIGTERM arrived inside the current ``interrupts_as_exceptions`` block, even if
    some library caught the exception it raised."""
    return _received_signal is not None


@contextlib.contextmanager
def interrupts_as_exceptions():
    """Inside this block SIGINT and SIGTERM unwind the stack (running ``finally`` clauses) instead of
    killing us, and are remembered: an exporter that catches the KeyboardInterrupt (torch's has been seen
    to, under load, and then finish the export) cannot turn an interrupted convert into a finished one."""
    global _received_signal

    def handler(signum, frame):
        global _received_signal
        _received_signal = signum
        raise KeyboardInterrupt() if signum == signal.SIGINT else _Terminated()

    _received_signal = None
    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def atomic_output_dir(out, force: bool = False, replaceable=None):
    """Yield a temporary sibling directory; on success it becomes ``out`` in one rename.

    A failure, Ctrl-C or SIGTERM inside the block removes the temporary directory and leaves any
    existing ``out`` untouched, so a convert is all or nothing. Something that appears at ``out`` while
    the block runs is never replaced without ``force``; with it, ``replaceable(out)`` (when given) must
    accept what is there, at the start and again at the end. Temporaries of earlier runs that died
    (SIGKILL, OOM) are removed first, and the log says so.
    """
    out = Path(out)
    if out.exists() and not force:
        raise OutputError(f"{out} already exists", hint="pass --force to replace it, or choose another --out")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory", hint="choose another --out")
    if out.exists() and replaceable is not None:
        replaceable(out)
    parent = out.parent if str(out.parent) else Path(".")
    # Signals are caught from before the temporary folder exists, so no moment leaves it behind.
    with interrupts_as_exceptions():
        try:
            parent.mkdir(parents=True, exist_ok=True)
            stale = publish.sweep_stale(parent, out.name)
            tmp, owner = publish.claim_temp(parent, out.name)
        except OSError as exc:
            raise OutputError(f"cannot create {out} ({exc.strerror or exc})",
                              hint="choose a writable --out location") from None
        if stale:
            log.warning("removed %d stale temporary folder(s) of earlier runs writing %s that were killed before "
                        "they finished: %s", len(stale), out, ", ".join(stale))
        try:
            yield tmp
            if interrupted():  # the exception was swallowed on the way up: still publish nothing
                raise KeyboardInterrupt("interrupted")
            _publish(tmp, out, force, replaceable)
        except Exception as exc:
            publish.remove(tmp)
            full = None if isinstance(exc, VitEdgeError) else disk_error(exc)
            if full is not None:
                raise OutputError(f"cannot write {out} ({full.strerror or full})",
                                  hint="check free disk space, file-size limits and permissions") from None
            raise
        except BaseException as exc:
            publish.remove(tmp)
            if isinstance(exc, _Terminated):
                raise KeyboardInterrupt("terminated") from None
            raise
        finally:
            publish.release_temp(tmp, owner)


def _publish(tmp: Path, out: Path, force: bool, replaceable) -> None:
    """Rename ``tmp`` to ``out``. What is at ``out`` now is replaced only with ``force`` and only when
    ``replaceable`` accepts it: checked again here because it may have appeared or changed since the start."""
    try:
        publish.rename_new(tmp, out)
        return
    except FileExistsError:
        pass
    if not force:
        raise OutputError(f"{out} appeared while this run was writing (another convert or program created it); "
                          "it was left untouched and this result discarded",
                          hint="choose another --out, or pass --force to replace an earlier artifact")
    if not out.is_dir():
        raise OutputError(f"{out} appeared while this run was writing and is not a directory; it was left "
                          "untouched and this result discarded", hint="choose another --out")
    if replaceable is not None:
        replaceable(out)
    publish.replace(tmp, out)
