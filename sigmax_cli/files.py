"""Atomic file replacement, shared by every writer whose file someone else may read at any
moment: candle files and ``markets.json`` (``data download``), the kill-switch flag, the
Prometheus textfile (``health --prometheus``), incident reports (``panic``).

The pattern (POSIX ``rename(2)`` is atomic within one filesystem): write a temporary file in
the target's directory, flush and fsync it, set its mode, ``os.replace`` it over the target.
A reader sees the old file or the new one, never half of one; a failure leaves the old file
as it was and removes the temporary one.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from sigmax_cli.errors import ConfigError


def check_state_dir(home: Path) -> None:
    """Refuse a state directory (``--home`` / ``SIGMAX_HOME``) that exists but is no
    directory, before anything reads the kill switch or the ledger in it (a file there would
    otherwise surface as a confusing later error, such as an unreadable kill switch). A
    missing one is fine: it is created when first written.

    Raises:
        ConfigError: ``home`` is a file, a device, a pipe or a socket.
    """
    try:
        mode = Path(home).stat().st_mode
    except FileNotFoundError:
        return
    except NotADirectoryError:  # a parent is a file: /etc/hostname/sigmax
        raise ConfigError(f"the state directory {home} (--home / SIGMAX_HOME) is inside a file",
                          "point --home or SIGMAX_HOME at a directory (it is created when missing)") from None
    except OSError as exc:
        raise ConfigError(f"cannot look at the state directory {home} ({exc.strerror})",
                          "check --home / SIGMAX_HOME and its permissions") from None
    if not stat.S_ISDIR(mode):
        what = "a file" if stat.S_ISREG(mode) else "not a directory"
        raise ConfigError(f"the state directory {home} (--home / SIGMAX_HOME) is {what}, not a directory",
                          "point --home or SIGMAX_HOME at a directory (it is created when missing)")


def write_atomic(path: Path, data: str | bytes, *, mode: int | None = None, suffix: str = ".part") -> None:
    """Replace ``path`` by ``data`` (``str`` is written as UTF-8) atomically.

    Args:
        path: the target file; its directory must exist.
        data: the whole new content.
        mode: permission bits of the new file; ``None`` keeps ``mkstemp``'s 0600 (files that
            may hold private state: the kill switch, incident reports).
        suffix: of the temporary file ``.<name>.<random><suffix>``; a name that the target's
            readers ignore (node_exporter reads ``*.prom`` only).

    Raises:
        OSError: the file cannot be written (no space, no permission); the previous file is
            untouched and no temporary file is left. Callers turn this into their own sentence.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
