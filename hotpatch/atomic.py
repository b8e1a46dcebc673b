"""Files written whole or not at all.

Every file hotpatch writes goes to a temp file beside the target (same folder, so the rename
cannot cross file systems; same suffix, so writers that read it, such as matplotlib or numpy,
pick the right format), is checked where there is something to check, flushed to the disk
(``fsync``), and is renamed into place only then; the folder is flushed after the rename (on
POSIX), so that the new name survives a crash too. An interrupted or failed write never leaves
a partial or unchecked file at the target, and an older file there stays as it was.

Every file the package and ``benchmarks/`` write goes through this module
(``tests/test_atomic.py`` checks the source for other ways of writing).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hotpatch.errors import HotpatchError, OutputError

log = logging.getLogger(__name__)

__all__ = ["Staged", "atomic_directory", "atomic_write", "check_directory", "check_writable", "failed_copy_path",
           "temp_path", "write_bytes", "write_npz", "write_text"]


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` if a file can be created there; else ``OutputError`` saying what is in the way.

    Checked before expensive work: the path is not a folder, its folder exists (and no part of
    it is a file), and the folder (or an existing file at ``path``) is writable.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{str(path)!r} is a directory; expected a file name such as {str(path / 'out.pt')!r}")
    parent = path.parent
    if not parent.is_dir():
        blocker = next((p for p in [parent, *parent.parents] if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise OutputError(f"cannot write {str(path)!r}: {str(blocker)!r} is a file, not a directory; "
                              "choose a path inside a directory")
        raise OutputError(f"cannot write {str(path)!r}: the directory {str(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        where = path if path.exists() else parent
        raise OutputError(f"cannot write {str(path)!r}: permission denied on {str(where)!r}; "
                          "choose a place you can write to")
    _probe(path)
    return path


def _probe(path: Path) -> None:
    """Create and remove the temp file :func:`atomic_write` would write: permissions say yes for
    root where the file system still says no (``/proc``, a read-only mount, a full disk)."""
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # a write of this process is under way there: the folder takes files
    except OSError as err:
        raise OutputError(f"cannot write {str(path)!r}: {err.strerror or err} (creating a file in "
                          f"{str(path.parent)!r} failed); choose a place you can write to") from err
    os.close(fd)
    os.unlink(tmp)
def check_directory(path: str | os.PathLike, replaceable: Callable[[Path], bool] | None = None) -> Path:
    """``path`` if :func:`atomic_directory` can write a folder there: no file in the way, a folder
    already there empty or ``replaceable(path)``, and its parent writable; else ``OutputError``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{str(path)!r} is a file; expected a directory name such as {str(path.with_suffix(''))!r}/")
    if path.is_dir() and any(path.iterdir()) and not (replaceable and replaceable(path)):
        raise OutputError(f"{str(path)!r} already holds other files; write to a new or empty directory")
    check_writable(path.parent / f".{path.name}.probe")  # the parent exists and can take the temp folder
    return path


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, replaceable: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temp folder beside ``path``: write the files there; it becomes ``path`` (replacing a
    folder that :func:`check_directory` accepts) when the block ends without an error. If the block
    raises, the temp folder is removed and ``path`` is left as it was."""
    path = check_directory(path, replaceable)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                _flush(file)
        _flush_folder(tmp)
        if path.exists():
            os.replace(path, old)  # a folder cannot be replaced in one rename: the old one steps aside
        os.replace(tmp, path)
        _flush_folder(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    except KeyboardInterrupt:
        raise
    except Exception as err:
        if old.exists() and not path.exists():
            os.replace(old, path)
        explained = _explained(err, path, None)
        if explained is err:
            raise
        raise explained from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def temp_path(path: str | os.PathLike) -> Path:
    """The temp file beside ``path`` that :func:`atomic_write` writes first (``.NAME.PID.tmp.SUFFIX``)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def failed_copy_path(path: str | os.PathLike) -> Path:
    """Where ``keep_failed`` keeps a file that failed its check: ``NAME.failed.SUFFIX`` beside ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.failed{path.suffix}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, keep_failed: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``path``: write and check the file there; it becomes ``path`` when
    the block ends without an error.

    If the block raises, nothing new is left at ``path`` and the temp file is removed, or, with
    ``keep_failed``, moved to :func:`failed_copy_path` and the error (a ``HotpatchError``) says
    where. An ``OSError`` of the block (a full disk) is raised as ``OutputError`` naming ``path``.
    """
    path = check_writable(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise OutputError(f"nothing was written for {str(path)!r} (the writer made no file)")
        _flush(tmp)
        os.replace(tmp, path)
        _flush_folder(path.parent)
    except KeyboardInterrupt:
        raise
    except Exception as err:
        kept = _keep(tmp, path) if keep_failed else None
        explained = _explained(err, path, kept)
        if explained is err:
            raise
        raise explained from err
    finally:
        tmp.unlink(missing_ok=True)


class Staged:
    """The outputs of one command, written to temp files and renamed into place together.

    ``path(target)`` checks ``target`` and gives the temp path to write it to; ``commit()``
    renames every temp file to its target once all are written; ``discard()`` removes them. As a
    context manager it commits when the block ends without an error and discards otherwise, so a
    failed output (an ``.mp4`` without ffmpeg) leaves none of the others behind. ``explained(err,
    tmp, target)`` is ``err`` naming the target instead of its temp file, and saying nothing was written.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []

    def path(self, target: str | os.PathLike) -> Path:
        target = check_writable(target)
        if any(t == target for _, t in self.pending):
            raise OutputError(f"{str(target)!r} is written twice by one command; give each output its own path")
        tmp = temp_path(target)
        self.pending.append((tmp, target))
        return tmp

    def commit(self) -> list[Path]:
        missing = [str(t) for tmp, t in self.pending if not tmp.is_file()]
        if missing:
            self.discard()
            raise OutputError(f"nothing was written for {', '.join(missing)} (the writer made no file); no output "
                              "of this command was kept")
        for tmp, _ in self.pending:
            _flush(tmp)
        for tmp, target in self.pending:
            os.replace(tmp, target)
        for folder in {target.parent for _, target in self.pending}:
            _flush_folder(folder)
        done = [t for _, t in self.pending]
        self.pending = []
        return done

    def discard(self) -> None:
        for tmp, _ in self.pending:
            tmp.unlink(missing_ok=True)
        self.pending = []

    def explained(self, err: Exception, tmp: Path, target: Path) -> Exception:
        """``err`` with ``tmp`` named as ``target`` and what was (not) written said."""
        text = str(err).replace(str(tmp), str(target)).replace(tmp.name, target.name)
        others = [str(t) for _, t in self.pending if t != target]
        also = f" (so none of this command's outputs was written{': ' + ', '.join(others) if others else ''})"
        cls = type(err) if isinstance(err, HotpatchError) else OutputError
        try:
            return cls(f"cannot write {target}: {text}{also}" if cls is OutputError else f"{text}{also}")
        except TypeError:  # an error class with another signature
            return OutputError(f"cannot write {target}: {text}{also}")

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_write`; returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_write`; returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """``numpy.savez`` of ``arrays`` to exactly ``path`` (no ``.npz`` added) through :func:`atomic_write`."""
    import numpy as np

    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def _flush(file: Path) -> None:
    """``fsync`` the written file: its bytes reach the disk before the rename makes it the target."""
    fd = os.open(file, os.O_RDWR | getattr(os, "O_BINARY", 0) if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flush_folder(folder: Path) -> None:
    """``fsync`` the folder after the rename (POSIX; Windows cannot open a folder for it)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the file itself is flushed
        log.debug("could not fsync the folder %s", folder)
    finally:
        os.close(fd)


def _keep(tmp: Path, path: Path) -> Path | None:
    if not tmp.is_file():
        return None
    kept = failed_copy_path(path)
    try:
        os.replace(tmp, kept)
    except OSError as err:
        log.warning("could not keep the failed file as %s: %s", kept, err)
        return None
    return kept


def _explained(err: Exception, path: Path, kept: Path | None) -> Exception:
    """``err`` with where things stand at ``path``: an OSError as ``OutputError``; the kept copy named."""
    if isinstance(err, OSError) and not isinstance(err, HotpatchError):
        reason = err.strerror or str(err)
        err = OutputError(f"cannot write {str(path)!r}: {reason}; check the path and free disk space")
    notes = []
    if kept is not None:
        notes.append(f"the file that failed is kept at {str(kept)!r}")
    if path.exists():
        notes.append(f"the file already at {str(path)!r} is an older one, left unchanged")
    else:
        notes.append(f"nothing was written to {str(path)!r}")
    if isinstance(err, HotpatchError):
        try:
            return type(err)(f"{err} ({'; '.join(notes)})")
        except TypeError:  # an error class with another signature: keep it as it is
            pass
    err.add_note("; ".join(notes))
    return err
