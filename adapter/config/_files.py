"""Reading the files that hold secrets: regular files only, bounded, and checked for exposure.

A keystore, a password file or a configuration with a secret written in it is what lets
someone act as this client, so a file that other users can read or change earns a warning that
names the file and the ``chmod``/``chown`` that fixes it (once per file and problem, since the
reloader reads the same files every few seconds). The path comes from configuration, which may
point anywhere: a FIFO would block a reload forever and ``/dev/zero`` never ends, so only a
regular file (a symlink to one is fine: Kubernetes mounts secrets that way) is opened, and never
more than a bound is read. Warnings name files and modes, never contents.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

log = logging.getLogger(__name__)

KEYSTORE_LIMIT = 1 << 20  # keystores, PEM and JWK files, certificates, the configuration
SECRET_LIMIT = 64 << 10  # secret and password files

# Non-blocking: should the path become a FIFO between the check and the open, opening it
# still returns at once and the fstat check refuses it. The others exist on some systems only.
_OPEN_FLAGS = os.O_RDONLY
for _flag in ("O_NONBLOCK", "O_NOCTTY", "O_CLOEXEC", "O_BINARY"):
    _OPEN_FLAGS |= getattr(os, _flag, 0)

_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
_READ_BY_OTHERS = 0o044
_WRITE_BY_OTHERS = 0o022
_CHECKS_OWNERSHIP = os.name == "posix"  # elsewhere the mode bits and owners are made up

_warned: set[tuple[str, tuple[str, ...]]] = set()
_warned_lock = threading.Lock()


class FileRefused(Exception):
    """Why a file was not read, for the caller to put in its own one-line message.

    ``reason`` fits in parentheses ("Permission denied", "a FIFO, not a regular file"); ``fix``
    says what to do. ``missing`` marks a file that does not exist, which callers word with
    their own hint about relative paths; ``bad_name`` a path that cannot be printed as it is
    (callers show its ``repr``).
    """

    def __init__(
        self, reason: str, fix: str, *, missing: bool = False, bad_name: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix
        self.missing = missing
        self.bad_name = bad_name


def read_private_file(path: Path, *, what: str, limit: int, shown: str | None = None) -> bytes:
    """The bytes of a file that holds secrets (``what``: "keystore", "password" ...), at most
    ``limit`` of them; warns once if others can read or change it. ``shown`` names the file in
    the warning when the path itself should not be (it may come from an environment variable).

    Raises :class:`FileRefused` before reading anything that is not a regular file or is larger
    than ``limit``.
    """
    data, status = read_regular_file(path, what=what, limit=limit)
    warn_if_exposed(path, status, what=what, holds_secret=True, shown=shown)
    return data


def read_regular_file(path: Path, *, what: str, limit: int) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file ``path`` (at most ``limit``) and its status, or
    :class:`FileRefused`. The type is checked before opening, and again on the open file."""
    try:
        check_regular_file(os.stat(path), what=what, limit=limit)
        descriptor = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise FileRefused("not found", "check the path", missing=True) from None
    except OSError as exc:
        raise FileRefused(exc.strerror or type(exc).__name__, "check the file") from None
    except ValueError:  # NUL, or a name that cannot be encoded for the file system
        raise FileRefused("not a usable file name", "fix the path", bad_name=True) from None
    try:
        status = os.fstat(descriptor)
        check_regular_file(status, what=what, limit=limit)  # swapped since the stat
        data = _read_at_most(descriptor, limit + 1)  # it may have grown since, too
    except OSError as exc:
        raise FileRefused(exc.strerror or type(exc).__name__, "check the file") from None
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise FileRefused(_too_large(what, limit), "check that this is the right file")
    return data, status


def check_regular_file(status: os.stat_result, *, what: str, limit: int) -> None:
    """Refuse (:class:`FileRefused`) anything but a regular file of at most ``limit`` bytes."""
    for test, kind in _NOT_REGULAR:
        if test(status.st_mode):
            raise FileRefused(f"{kind}, not a regular file", f"point it at the {what} file itself")
    if not stat.S_ISREG(status.st_mode):
        raise FileRefused("not a regular file", f"point it at the {what} file itself")
    if status.st_size > limit:
        raise FileRefused(
            f"{status.st_size} bytes, {_too_large(what, limit)}",
            "check that this is the right file",
        )


def _too_large(what: str, limit: int) -> str:
    size = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit >> 10} KiB"
    return f"over the {size} limit for a {what} file"


def _read_at_most(descriptor: int, count: int) -> bytes:
    chunks: list[bytes] = []
    remaining = count
    while remaining > 0:
        chunk = os.read(descriptor, min(remaining, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def warn_if_exposed(
    path: Path,
    status: os.stat_result,
    *,
    what: str,
    holds_secret: bool,
    shown: str | None = None,
    why: str = "",
) -> None:
    """Log one warning (logger ``adapter``) if other users can read or change the file.

    A file that ``holds_secret`` must be private to this user (or root); any other file warns
    only when others can write it, for they could change where keys come from. Each file and
    set of problems warns once per process. ``why`` is said after the problems, if given.
    """
    if not _CHECKS_OWNERSHIP:
        return
    problems = exposure(status, holds_secret=holds_secret)
    if not problems:
        return
    name = shown if shown is not None else str(path)
    with _warned_lock:
        if (name, problems) in _warned:
            return
        _warned.add((name, problems))
    import shlex  # only with the warning

    quoted = shlex.quote(name)
    fix = f"chmod 600 {quoted}"
    if status.st_uid not in (0, os.geteuid()):
        fix = f"chown {os.geteuid()} {quoted} && {fix}"
    log.warning(
        "%s: the %s file is %s (mode %04o)%s; run %s",  # no content, ever
        name,
        what,
        " and ".join(problems),
        stat.S_IMODE(status.st_mode),
        f": {why}" if why else "",
        fix,
    )


def exposure(status: os.stat_result, *, holds_secret: bool) -> tuple[str, ...]:
    """What is wrong with who may use the file: empty when nothing is."""
    mode = stat.S_IMODE(status.st_mode)
    problems = []
    if holds_secret and mode & _READ_BY_OTHERS:
        problems.append("readable by other users")
    if mode & _WRITE_BY_OTHERS:
        problems.append("writable by other users")
    if holds_secret and status.st_uid not in (0, os.geteuid()):
        problems.append(f"owned by uid {status.st_uid}, not by this user or root")
    return tuple(problems)
