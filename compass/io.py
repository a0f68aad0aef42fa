"""File edges of every stage: JSONL with file:line errors, and outputs that appear only when whole.

A stage writes into a temporary sibling of its output and renames it into place at the end, so an
interrupted or failed stage never leaves a file or directory that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


class CompassError(Exception):
    """An error the user can act on; the CLI prints it as one line, without a traceback."""


class JsonlError(CompassError):
    def __init__(self, path, lineno: int, msg: str):
        super().__init__(f"{path}:{lineno}: {msg}")
        self.path, self.lineno = str(path), lineno


def iter_jsonl(path, *, required: Iterable[str] = (), on_error: str = "raise", errors: list | None = None) -> Iterator[dict]:
    """Rows of a JSONL file. A malformed line raises JsonlError naming file:line, or, with
    on_error='skip', is skipped and its JsonlError appended to `errors`."""
    required = tuple(required)
    path = Path(path)
    if not path.is_file():
        raise CompassError(f"{path}: file not found")
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"expected a JSON object, got {type(row).__name__}")
                missing = [k for k in required if k not in row]
                if missing:
                    raise ValueError(f"missing field(s) {', '.join(missing)}")
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                err = JsonlError(path, lineno, str(e))
                if on_error == "skip":
                    if errors is not None:
                        errors.append(err)
                    continue
                raise err from None
            yield row


def read_jsonl(path, **kw) -> list[dict]:
    return list(iter_jsonl(path, **kw))


def dumps(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


@contextlib.contextmanager
def atomic_output(path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    # mkstemp/mkdtemp create owner-only files; give the output the modes a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, (0o777 if tmp.is_dir() else 0o666) & ~umask)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    os.replace(tmp, path)


def write_jsonl(path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            n += 1
    return n


def write_json(path, obj) -> None:
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def read_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompassError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise CompassError(f"{path}:{e.lineno}: {e.msg}") from None


def require_dir(path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise CompassError(f"{what}: directory not found: {path}")
    return path
