"""File edges of every stage: JSONL with file:line errors, outputs that appear only when whole, and
the manifest that lets the next stage trust a directory output.

A stage writes into a temporary sibling of its output and renames it into place at the end, so an
interrupted or failed stage never leaves a file or directory that looks complete. A stage killed
before the rename leaves its temporary sibling behind; the next writer of the same output removes it.

Every directory output carries `compass-manifest.json`: each file's name, size, mtime and SHA-256.
The hashes are computed once, streaming, when the output is written (about 1.5 GB/s, some seconds
for an 8B model: small beside the stage that made it). A stage that reads a directory checks it
first (`require_dir`): sizes always (a stat per file), and the hash of any file whose mtime changed
since (rewritten, or copied without its times). A directory without a manifest is a user's own
(e.g. phase1.path) and is read as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
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
        raise CompassError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
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
            except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
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


# --- outputs ---------------------------------------------------------------------------------------

MANIFEST = "compass-manifest.json"


def _leftover_pattern(name: str) -> re.Pattern:
    # .NAME.XXXXXXXX.partial (tempfile's 8 random characters) or .NAME.partial (a multi-process write)
    return re.compile(rf"\.{re.escape(name)}\.(?:[a-z0-9_]{{8}}\.)?partial")


def remove_leftovers(path) -> list[Path]:
    """Remove the temporary siblings an earlier, killed writer of `path` left; says so on stderr."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = _leftover_pattern(path.name)
    found = sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))
    for p in found:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    if found:
        print(f"compass: removed {len(found)} leftover(s) of an interrupted earlier write of {path}: "
              f"{', '.join(p.name for p in found)}", file=sys.stderr)
    return found


def check_output_path(path, *, directory: bool | None = None) -> None:
    """Refuse an output path whose replacement would lose data: a directory that no compass stage
    wrote (no manifest; a file output would delete the whole tree), or, when the kind is known, a
    directory where a file goes or a file where a directory goes."""
    path = Path(path)
    if path.is_symlink() or not path.exists():
        return
    if path.is_dir():
        if directory is False:
            raise CompassError(f"{path}: is a directory; a file output does not replace it (give a file path)")
        if not (path / MANIFEST).is_file() and any(path.iterdir()):
            raise CompassError(f"{path}: is a directory no compass stage wrote (no {MANIFEST}); not replacing it "
                               "(remove it or give another output path)")
    elif directory:
        raise CompassError(f"{path}: is a file; a directory output does not replace it")


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _give_usual_modes(tmp: Path) -> None:
    """mkstemp/mkdtemp and some writers (safetensors: 0600) create owner-only files; give the output
    the modes a plain open()/mkdir() would under the umask, so a project group can read it."""
    umask = _umask()
    paths = [tmp] + (list(tmp.rglob("*")) if tmp.is_dir() else [])
    for p in paths:
        if p.is_symlink():
            continue
        if p.is_dir():
            os.chmod(p, 0o777 & ~umask)
        else:
            os.chmod(p, (0o666 | (p.stat().st_mode & 0o111)) & ~umask)


def publish(tmp, path, *, directory: bool) -> None:
    """Put a finished temporary output in place: usual modes, a manifest for a directory, then the rename."""
    tmp, path = Path(tmp), Path(path)
    if directory:
        write_manifest(tmp)
    _give_usual_modes(tmp)
    check_output_path(path, directory=directory)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it to `path` only if the block succeeds."""
    path = Path(path)
    check_output_path(path, directory=directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        publish(tmp, path, directory=directory)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno and not e.filename:  # a write that failed (disk full): name the output
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


@contextlib.contextmanager
def scratch_dir(path) -> Iterator[Path]:
    """A private working directory beside output `path` (sort spills and the like), removed when the
    block ends; one a killed run left is a leftover `remove_leftovers` (and so atomic_output) removes.
    Enter it after atomic_output(path), whose start would remove it."""
    path = Path(path)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
    except IsADirectoryError:
        raise CompassError(f"{path}: is a directory, not a JSON file") from None
    except UnicodeDecodeError as e:
        raise CompassError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise CompassError(f"{path}:{e.lineno}: {e.msg}") from None


# --- manifests of directory outputs -----------------------------------------------------------------


def file_sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink() and p.name != MANIFEST)


def write_manifest(directory) -> dict:
    directory = Path(directory)
    files = {}
    for p in _files(directory):
        st = p.stat()
        files[p.relative_to(directory).as_posix()] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(p)}
    manifest = {"format": "compass-manifest/1", "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


_hashed: dict = {}  # (path, size, mtime_ns) -> SHA-256: a file whose times changed is hashed once per process


def _sha256_of(p: Path, st) -> str:
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hashed:
        _hashed[key] = file_sha256(p)
    return _hashed[key]


def verify_manifest(directory) -> dict | None:
    """The directory's manifest once every file it lists is checked (None: the directory has none).
    A missing, resized or changed file raises one line naming it."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        return None
    damaged = f"a damaged output: delete {directory} and run the stage that writes it again"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise CompassError(f"{path}: unreadable manifest ({damaged})") from None
    for rel, rec in files.items():
        p = directory / rel
        try:
            fst = p.stat()
        except FileNotFoundError:
            raise CompassError(f"{p}: missing, listed in {MANIFEST} ({damaged})") from None
        if fst.st_size != rec["size"]:
            raise CompassError(f"{p}: {fst.st_size} bytes, {MANIFEST} says {rec['size']} ({damaged})")
        if fst.st_mtime_ns != rec["mtime_ns"] and _sha256_of(p, fst) != rec["sha256"]:
            raise CompassError(f"{p}: content differs from {MANIFEST} ({damaged})")
    return manifest


def damage(directory) -> str:
    """'whole' for a directory output that is whole as far as sizes tell (or has no manifest, or is not
    there yet), else the first damaged file: what the workflow compares at start-up (a stat per file)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return "whole"
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        return f"damaged: {path}: unreadable"
    for rel, rec in files.items():
        p = Path(directory) / rel
        size = p.stat().st_size if p.is_file() else None
        if size != rec["size"]:
            return f"damaged: {p}: " + ("missing" if size is None else f"{size} bytes, {MANIFEST} says {rec['size']}")
    return "whole"


def file_hashes(directory, names=None) -> dict[str, str]:
    """{relative path: SHA-256} of a directory's files (or of `names` among them): from its (checked)
    manifest, else hashed now (hidden files left out)."""
    directory = Path(directory)
    manifest = verify_manifest(directory)
    if manifest is not None:
        hashes = {rel: rec["sha256"] for rel, rec in manifest["files"].items()}
        return hashes if names is None else {n: hashes.get(n) for n in names}
    if names is None:
        names = [p.relative_to(directory).as_posix() for p in _files(directory)
                 if not any(part.startswith(".") for part in p.relative_to(directory).parts)]
    return {n: _sha256_of(directory / n, (directory / n).stat()) if (directory / n).is_file() else None for n in names}


def require_dir(path, what: str) -> Path:
    """An input directory, checked against its manifest when a compass stage wrote it."""
    path = Path(path)
    if not path.is_dir():
        raise CompassError(f"{what}: directory not found: {path}")
    verify_manifest(path)
    return path
