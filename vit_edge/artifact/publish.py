"""Publishing an output folder without losing anything: who owns a temporary folder, which temporaries are
stale, a final rename that never replaces what appeared meanwhile, and which folders ``--force`` may replace.

The temporary folder ``.OUT.tmp-XXXX`` has an owner lock beside it, ``.OUT.tmp-XXXX.lock``: created
(and ``flock``-ed) before the folder and removed after it, holding the owner's pid and host. The kernel
drops a flock when its process dies however it dies (SIGKILL, the OOM killer), so a lock that can be
taken means nobody owns the folder any more; pids alone would be guessed (they are reused).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

LOCK_SUFFIX = ".lock"
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2  # renameat2(2) flags, linux/fs.h
_AT_FDCWD = -100
_RENAMEAT2_SYSCALL = {"x86_64": 316, "aarch64": 276}  # for a libc without the wrapper (glibc < 2.28)
# renameat2 answers these when this kernel or filesystem cannot do what the flag asks: fall back.
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}
_libc = None


def _renameat2(src, dst, flags: int) -> bool:
    """renameat2(src, dst, flags): True when done, False when this system cannot do it (not Linux, an old
    kernel or libc, a filesystem without the flag); an OSError for a real refusal (EEXIST, ENOENT, ...)."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    args = (ctypes.c_int(_AT_FDCWD), os.fsencode(str(src)), ctypes.c_int(_AT_FDCWD), os.fsencode(str(dst)),
            ctypes.c_uint(flags))
    wrapper = getattr(_libc, "renameat2", None)
    if wrapper is not None:
        rc = wrapper(*args)
    elif platform.machine() in _RENAMEAT2_SYSCALL:
        rc = _libc.syscall(ctypes.c_long(_RENAMEAT2_SYSCALL[platform.machine()]), *args)
    else:
        return False
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def rename_new(src, dst) -> None:
    """Rename ``src`` to ``dst``; FileExistsError when something is at ``dst`` -- never replaced.

    Atomic with renameat2(RENAME_NOREPLACE). Elsewhere a check, then rename(2), which itself refuses a
    file or a non-empty folder at ``dst``: only an empty folder created between the two could be replaced."""
    try:
        if _renameat2(src, dst, RENAME_NOREPLACE):
            return
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst)) from None
        raise


def replace(src, dst) -> None:
    """Put folder ``src`` where ``dst`` is (``--force``), removing what was there.

    With renameat2(RENAME_EXCHANGE) the two swap in one step, so no moment leaves ``dst`` missing, and
    the previous ``dst`` ends at ``src``'s name (a kill before it is removed leaves a stale temporary,
    which the next run sweeps). Elsewhere ``dst`` is moved aside first and restored if the move fails."""
    if _renameat2(src, dst, RENAME_EXCHANGE):
        remove(src)
        return
    aside = Path(dst).parent / f".{Path(dst).name}.old-{os.getpid()}-{int(time.time())}"
    os.rename(dst, aside)
    try:
        os.rename(src, dst)
    except BaseException:
        os.rename(aside, dst)
        raise
    remove(aside)


def remove(path) -> None:
    """Remove a folder, file or symlink (a symlink itself, never what it points to); quietly."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        with contextlib.suppress(OSError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- the temporary folder's owner


def _flock(fd: int) -> bool | None:
    """Take an exclusive flock without waiting: True taken, False held by a live process, None when this
    filesystem has no flock (then pids are all there is)."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.EBADF):
            return None
        raise


def _same_file(fd: int, path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a sweeper may have removed it meanwhile)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def claim_temp(parent: Path, name: str) -> tuple[Path, int]:
    """Make ``parent/.NAME.tmp-XXXX`` for this process, its owner lock first; returns (folder, lock fd).

    mkdir (not mkdtemp) gives the folder the mode an ordinary folder gets, so the published ``--out`` is
    one; the lock file's random name is what makes the folder's name unique."""
    for _ in range(100):
        fd, lock = tempfile.mkstemp(dir=parent, prefix=f".{name}.tmp-", suffix=LOCK_SUFFIX)
        try:
            if _flock(fd) is False or not _same_file(fd, lock):  # a sweeper took it for stale: another name
                os.close(fd)
                continue
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            folder = Path(lock[: -len(LOCK_SUFFIX)])
            os.mkdir(folder)
            return folder, fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)
            raise
    raise OSError(errno.EAGAIN, "could not claim a temporary folder", str(parent))


def release_temp(folder: Path, fd: int) -> None:
    """Drop the owner lock (after the folder is published or removed)."""
    lock = f"{folder}{LOCK_SUFFIX}"
    if _same_file(fd, lock):
        with contextlib.suppress(OSError):
            os.unlink(lock)
    os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _dead_owner(lock: str) -> tuple[int, str] | None:
    """(an fd holding the lock, the dead owner's pid) when no live process owns ``lock``; else None."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return None
    try:
        text = os.read(fd, 200).decode(errors="replace").split()
        pid, host = (text + ["?", "?"])[:2]
        taken = _flock(fd)
        if taken is None:  # no flock here: a pid on this host that is gone is dead; another host's, unknown
            taken = host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))
        if taken and _same_file(fd, lock):
            return fd, pid
    except OSError:
        pass
    os.close(fd)
    return None


def sweep_stale(parent: Path, name: str) -> list[str]:
    """Remove the temporary folders of earlier runs writing ``parent/NAME`` that died (SIGKILL, OOM, power)
    without cleaning up; return a description of each one removed. Live runs' folders are left alone."""
    prefix = f".{name}.tmp-"
    try:
        names = {entry.name for entry in os.scandir(parent) if entry.name.startswith(prefix)}
    except OSError:
        return []
    removed = []
    for entry in sorted(names):
        path = parent / entry
        if entry.endswith(LOCK_SUFFIX):
            owner = _dead_owner(str(path))
            if owner is None:
                continue
            fd, pid = owner
            folder = parent / entry[: -len(LOCK_SUFFIX)]
            if os.path.lexists(folder):
                remove(folder)
                removed.append(f"{folder.name} (process {pid}, no longer running)")
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)
        elif entry + LOCK_SUFFIX not in names and path.is_dir() and not path.is_symlink():
            # No lock: an owner makes its lock before the folder and removes it after, so this folder is no
            # live run's (an older vit-edge made it, or its lock was deleted). Looked again: a lock that
            # appeared since the listing belongs to a run that is alive.
            if not os.path.lexists(f"{path}{LOCK_SUFFIX}"):
                remove(path)
                removed.append(f"{entry} (no owner)")
    return removed


# ---------------------------------------------------------------- what --force may replace


def input_conflict(out, inputs) -> str | None:
    """How ``out`` overlaps one of this run's inputs (``(flag, path)`` pairs), or None: it is the input,
    holds it, or lies inside an input folder. Paths are resolved, so symlinks cannot hide an overlap."""
    target = Path(out).resolve()
    for flag, value in inputs:
        path = Path(value).resolve()
        if target == path:
            return f"is the {flag} input {value}"
        if target in path.parents:
            return f"holds the {flag} input {value}"
        if path in target.parents:
            return f"is inside the {flag} input {value}"
    return None
