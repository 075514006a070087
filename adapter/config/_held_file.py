"""Editing a configuration file in place: the write replaces exactly the file that was read.

The key commands (``keys rotate --write``, ``keys revoke --write``) read the configuration,
compute the edit, check it by loading the result, and only then write it. Between that read and
the write, the file may be replaced, re-linked or edited by someone else; writing then would
overwrite their change, or write through a symlink to a file nobody meant. :class:`HeldFile`
keeps the file it read open until the write and refuses (:class:`EditRefused`, which the
command reports as one line with exit 2) when the name no longer leads to it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from types import TracebackType

from adapter.config._files import KEYSTORE_LIMIT
from adapter.errors import ConfigError

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class EditRefused(ConfigError):
    """The configuration file was not edited; the message names the file and what to do."""


class HeldFile:
    """The configuration file held open from the read to the write, so that the write replaces
    exactly the file that was read.

    A configuration that is a symlink is resolved once, when it is opened: its target is edited
    and the link kept, as an operator who links a deployed file expects. The target's directory
    and the file itself (``O_NOFOLLOW``) stay open; :meth:`replace` writes a new file in that
    directory and renames it over the name only while that name, and the path as given, still
    lead to the device and inode that were read, unchanged in size and time. Otherwise it
    refuses and writes nothing. (No rename compares and swaps: what remains is the moment
    between the last check and the rename, and only someone who may write in that directory
    anyway could use it.)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.target = Path(os.path.realpath(path))
        self._directory = self._file = -1
        try:
            self._directory = os.open(self.target.parent, os.O_RDONLY | os.O_DIRECTORY)
            # Non-blocking: a FIFO put in its place is refused below instead of waited on.
            self._file = os.open(self.target.name, _READ_FLAGS, dir_fd=self._directory)
            self.status = os.fstat(self._file)
            if not stat.S_ISREG(self.status.st_mode):
                raise EditRefused(f"--config: {path} is not a regular file; edit it by hand")
            if not self._unchanged():
                raise self._moved()
            with os.fdopen(os.dup(self._file), "rb") as file:
                raw = file.read(KEYSTORE_LIMIT + 1)
            if len(raw) > KEYSTORE_LIMIT:
                raise EditRefused(f"--config: {path} is over 1 MiB; is it the configuration?")
            self.text = raw.decode("utf-8")  # as written: CRLF stays CRLF
        except UnicodeDecodeError:
            self.close()
            raise EditRefused(f"--config: {path} is not UTF-8 text; edit it by hand") from None
        except OSError as error:
            self.close()
            if error.errno == errno.ELOOP:  # a symlink put in its place since it was resolved
                raise self._moved() from None
            raise EditRefused(
                f"--config: {path} cannot be read ({error.strerror or error})"
            ) from None
        except BaseException:
            self.close()
            raise

    def replace(self, text: str) -> None:
        """Replace the file with ``text`` atomically (a watcher never reads half a file),
        keeping its owner and mode (it may hold secrets, and the app must still read it)."""
        temporary = f".{self.target.name}.{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            descriptor = os.open(temporary, flags, 0o600, dir_fd=self._directory)
        except OSError as error:
            raise self._not_changed(error) from None
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
                file.write(text)
                file.flush()
                status = self.status
                if (status.st_uid, status.st_gid) != (os.getuid(), os.getgid()):
                    os.fchown(file.fileno(), status.st_uid, status.st_gid)
                os.fchmod(file.fileno(), stat.S_IMODE(status.st_mode))
                os.fsync(file.fileno())
            if not self._unchanged():
                raise self._moved()
            os.replace(
                temporary, self.target.name, src_dir_fd=self._directory, dst_dir_fd=self._directory
            )
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=self._directory)
            if isinstance(error, OSError):
                raise self._not_changed(error) from None
            raise
        os.fsync(self._directory)  # the rename itself survives a crash

    def close(self) -> None:
        for descriptor in (self._file, self._directory):
            if descriptor >= 0:
                os.close(descriptor)
        self._directory = self._file = -1

    def __enter__(self) -> HeldFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _unchanged(self) -> bool:
        """Whether the name in the directory, and the path as given (through its symlink), still
        lead to the file read, and nobody wrote to it since."""
        was = self.status
        try:
            named = os.stat(self.target.name, dir_fd=self._directory, follow_symlinks=False)
            given = os.stat(self.path)
            held = os.fstat(self._file)
        except OSError:
            return False
        same = all((s.st_dev, s.st_ino) == (was.st_dev, was.st_ino) for s in (named, given))
        return same and (held.st_size, held.st_mtime_ns) == (was.st_size, was.st_mtime_ns)

    def _moved(self) -> EditRefused:
        return EditRefused(
            f"--config: {self.path} was replaced, re-linked or edited while the command ran; "
            "nothing was written: check the file, then run the command again"
        )

    def _not_changed(self, error: OSError) -> EditRefused:
        return EditRefused(
            f"--config: {self.target} was not changed ({error.strerror or error}); run the "
            "command as the file's owner, or make the change by hand"
        )
