"""Where a run's rows go: stdout, or a file that appears whole under its name or not at all.

A file target is written to a temporary file beside it (same directory, so
the rename stays on one file system) and renamed over the target at the end:
a reader of ``out.csv`` sees yesterday's file or today's, never half of one.
A run that stops early (Ctrl-C, SIGTERM, a rejected key, a full disk) keeps
the rows it wrote as ``out.csv.partial`` and leaves ``out.csv`` alone. A
target that is not a regular file (``/dev/stdout``, a FIFO, a device) is
written straight to: there is nothing to rename over.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from smsroute.cli.common import EXIT_USAGE, CommandError
from smsroute.cli.writer import OutputError

__all__ = ["Destination", "same_file"]


def same_file(a: str, b: str) -> bool:
    """Return True when two paths name one file (links and spellings included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.abspath(a) == os.path.abspath(b)


def _default_mode() -> int:
    # mkstemp creates files 0600; a new output should get what open() would
    # give it. The umask can only be read by setting it: done before any
    # thread of the run starts.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class Destination:
    """An output of a run: ``open()`` it, write to ``stream``, then ``finish()`` it once."""

    def __init__(self, path: str | None, *, bom: bool = False) -> None:
        self.path = None if path in (None, "-") else path
        self.name = "stdout" if self.path is None else self.path
        self.partial: str | None = None
        """Where the rows of an incomplete run were kept, once finished; None if nowhere."""
        self._bom = bom
        self._tmp: str | None = None
        self._mode = 0o644
        self._stream: TextIO | None = None

    @property
    def stream(self) -> TextIO:
        """Return the text stream to write to (stdout or the file)."""
        if self._stream is None:
            raise RuntimeError("Destination.open() was not called")
        return self._stream

    @property
    def to_stdout(self) -> bool:
        """Return True when the rows go to stdout."""
        return self.path is None

    def open(self) -> TextIO:
        """Create the temporary file beside the target (or use stdout); return the stream."""
        if self.path is None:
            self._stream = sys.stdout
            if self._bom:
                self._stream.write("\ufeff")
            return self._stream
        target = Path(self.path)
        encoding = "utf-8-sig" if self._bom else "utf-8"
        try:
            try:
                st: os.stat_result | None = target.stat()
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(21, "it is a directory")
            if st is not None and not stat.S_ISREG(st.st_mode):
                self._stream = open(target, "w", encoding=encoding, newline="")  # noqa: SIM115
                return self._stream
            self._mode = stat.S_IMODE(st.st_mode) if st is not None else _default_mode()
            fd, self._tmp = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
            )
            self._stream = os.fdopen(fd, "w", encoding=encoding, newline="")
        except OSError as exc:
            raise CommandError(
                f"cannot write {self.name}: {exc.strerror or exc}", EXIT_USAGE
            ) from None
        return self._stream

    def finish(self, *, complete: bool, keep: bool) -> None:
        """Rename a complete output over its target, or keep an incomplete one as ``.partial``.

        ``keep`` says whether an incomplete output holds anything worth keeping.
        Raises OutputError when the last writes fail (the rows are then kept
        as ``.partial``, as for any incomplete run).
        """
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if self._tmp is None:  # stdout, or a device or FIFO written straight to
            try:
                stream.flush()
            except OSError as exc:
                if stream is sys.stdout:
                    _silence_stdout()
                else:
                    with contextlib.suppress(OSError):
                        stream.close()  # closes the file even though its last flush fails
                raise OutputError(self.name, exc) from None
            if stream is not sys.stdout:
                with contextlib.suppress(OSError):
                    stream.close()
            return
        if complete:
            try:
                stream.flush()
                os.fsync(stream.fileno())  # the data is on disk before the name points at it
                stream.close()
                os.chmod(self._tmp, self._mode)
                os.replace(self._tmp, self.name)
            except OSError as exc:
                self._keep_partial(stream, keep=True)
                raise OutputError(self.name, exc) from None
            self._tmp = None
            return
        self._keep_partial(stream, keep=keep)

    def _keep_partial(self, stream: TextIO, *, keep: bool) -> None:
        tmp, self._tmp = self._tmp, None
        assert tmp is not None
        with contextlib.suppress(OSError):  # a full disk may refuse the last buffer
            stream.close()
        try:
            if keep:
                partial = self.name + ".partial"
                os.chmod(tmp, self._mode)
                os.replace(tmp, partial)
                self.partial = partial
            else:
                os.unlink(tmp)
        except OSError:
            # Leave the temporary file rather than lose rows; say where it is.
            self.partial = tmp

    def abandon(self) -> None:
        """Remove the temporary file of a run that failed before writing anything."""
        stream, self._stream = self._stream, None
        if stream is not None and self._tmp is not None:
            self._keep_partial(stream, keep=False)


def _silence_stdout() -> None:
    # A write to stdout failed (a full disk): point fd 1 at /dev/null so that
    # the interpreter's last flush at exit does not print "Exception ignored".
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
