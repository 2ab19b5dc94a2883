"""Outputs written whole or not at all.

Every file emkit writes (model files, label tables, plots, reports, selection tables) is first
written to a temporary file in the destination's folder and then moved over the destination
with :func:`os.replace`, which is atomic on POSIX and Windows: an interrupted or failed write
leaves the previous file untouched and no partial file behind.  :class:`Outputs` does the same
for a group of files (the outputs of one ``emkit fit``): all are written to temporary files
first and moved into place only once every one is complete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading


def _current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _check_destination(path):
    """Refuse destinations that can never be replaced by a file, before anything is written."""
    if os.path.isdir(path):
        raise ValueError(f"cannot write {path}: it is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    probe = parent
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe) if os.path.dirname(probe) != probe else ""
    if probe and not os.path.isdir(probe):
        raise ValueError(f"cannot write {path}: {probe} is a file, not a folder")
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {path}: folder {parent} does not exist")


def _temporary_path(path):
    """A new empty temporary file next to ``path`` (same folder, same extension)."""
    folder, base = os.path.split(os.path.abspath(path))
    ext = os.path.splitext(base)[1]
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=folder)
    except OSError as exc:
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:  # mkstemp makes the file private; give it the mode a plain open() would have
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o666 & ~_UMASK
        os.chmod(tmp, mode)
    except OSError:
        pass
    return tmp


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C while files are moved into place, so a group of outputs is never half-replaced."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Outputs:
    """A group of output files that appear together or not at all.

    ``path = outputs.path(final)`` gives a temporary file to write ``final`` into;
    :meth:`commit` moves every temporary file into place (returns the destinations that
    already existed, i.e. were overwritten); :meth:`discard` removes them.  Used as a context
    manager, it commits on success and discards on any exception (including Ctrl-C).

    Examples
    --------
    >>> with Outputs() as out:                                  # doctest: +SKIP
    ...     np.savez(out.path("model.npz"), ...)
    ...     fig.savefig(out.path("plot.png"))
    >>> out.overwritten                                         # doctest: +SKIP
    """

    def __init__(self):
        self._pending = []
        self.overwritten = []
        self.written = []

    def path(self, final):
        """A temporary path to write ``final`` into (checked: ``final`` must be replaceable)."""
        final = os.fspath(final)
        _check_destination(final)
        with _sigint_deferred():  # a Ctrl-C between creating and recording it would leave the file behind
            tmp = _temporary_path(final)
            self._pending.append((tmp, final))
        return tmp

    def commit(self):
        with _sigint_deferred():
            for tmp, final in self._pending:
                existed = os.path.lexists(final)
                try:
                    os.replace(tmp, final)
                except OSError as exc:
                    raise ValueError(f"cannot write {final}: {exc.strerror or exc}") from None
                if existed:
                    self.overwritten.append(final)
                self.written.append(final)
            self._pending = []
        return self.overwritten

    def discard(self):
        for tmp, _ in self._pending:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        self._pending = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.commit()
            finally:
                self.discard()
        else:
            self.discard()
        return False


@contextlib.contextmanager
def atomic_path(path, outputs=None):
    """Context manager yielding a temporary path to write ``path`` into.

    With ``outputs`` (an :class:`Outputs`) the file joins that group and is moved into place
    when the group commits; otherwise it is moved into place as soon as the block succeeds.
    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    if outputs is not None:
        yield outputs.path(path)
        return
    with Outputs() as group:
        yield group.path(path)
