"""Reading a dataset: a local file (list of dicts or a pyarrow table) or a Hub split (datasets.Dataset), behind
one small interface (`Rows`) so that sampling never converts rows it does not keep. Used by the training
sources (compass.data.sources) and the evaluation tasks (compass.eval.tasks).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable, Sequence

from compass.io import CompassError, iter_jsonl

# behind one small interface so that sampling never converts rows it does not keep.


class Rows:
    """kind: 'list' (list of dicts), 'arrow' (pyarrow.Table) or 'dataset' (datasets.Dataset)."""

    def __init__(self, data, kind: str = "list"):
        self.data, self.kind = data, kind

    def __len__(self) -> int:
        return len(self.data) if self.kind == "list" else self.data.num_rows

    def take(self, indices: Sequence[int]) -> list[dict]:
        if self.kind == "list":
            return [self.data[i] for i in indices]
        if self.kind == "dataset":
            return self.data.select(list(indices)).to_list()
        return self.data.take(list(indices)).to_pylist()

    def column(self, name: str) -> list:
        if self.kind == "list":
            return [r.get(name) for r in self.data]
        if self.kind == "dataset":
            return list(self.data.select_columns([name])[name])
        return self.data.column(name).to_pylist()


def _read_json(path: Path) -> list[dict]:
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    if not head.startswith(b"["):  # JSON lines under a .json name (AQuA-RAT's files)
        return list(iter_jsonl(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CompassError(f"{path}:{e.lineno}: {e.msg}") from None
    if not all(isinstance(r, dict) for r in data):
        raise CompassError(f"{path}: expected a JSON array of objects")
    return data


def _read_tsv(path: Path, columns: tuple) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = list(columns) or None
        for lineno, fields in enumerate(reader, 1):
            if not fields or not any(x.strip() for x in fields):
                continue
            if header is None:
                header = fields
                continue
            if len(fields) != len(header):
                raise CompassError(f"{path}:{lineno}: expected {len(header)} tab-separated fields ({', '.join(header)}), got {len(fields)}")
            rows.append(dict(zip(header, fields)))
    return rows


def _read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = []
        for row in reader:
            if None in row:  # more fields than the header
                raise CompassError(f"{path}:{reader.line_num}: more fields than the header has")
            rows.append(row)
        return rows


def _read_dir(path: Path) -> list[dict]:
    """One JSON object per file, recursively, in sorted path order (the original MATH release)."""
    rows = []
    for p in sorted(path.rglob("*.json")):
        try:
            row = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CompassError(f"{p}:{e.lineno}: {e.msg}") from None
        if not isinstance(row, dict):
            raise CompassError(f"{p}: expected a JSON object")
        rows.append(row)
    if not rows:
        raise CompassError(f"{path}: no .json files in this directory")
    return rows


def read_local(path, tsv_columns: tuple = ()) -> Rows:
    """A local dataset file or directory (.jsonl; .json, an array or JSON lines; .tsv, header-less with
    `tsv_columns`; .csv; .parquet; a directory of one-object .json files), errors naming the file and line."""
    path = Path(path)
    if path.is_dir():
        return Rows(_read_dir(path))
    if not path.is_file():
        raise CompassError(f"{path}: file not found")
    ext = path.suffix.lower()
    if ext == ".jsonl":
        return Rows(list(iter_jsonl(path)))
    if ext == ".json":
        return Rows(_read_json(path))
    if ext == ".tsv":
        return Rows(_read_tsv(path, tsv_columns))
    if ext == ".csv":
        return Rows(_read_csv(path))
    if ext == ".parquet":
        import pyarrow.parquet as pq

        try:
            return Rows(pq.read_table(path), "arrow")
        except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds
            raise CompassError(f"{path}: not a readable parquet file ({e})") from None
    raise CompassError(f"{path}: unsupported file type {ext or '(none)'} (use .jsonl, .json, .tsv, .csv, .parquet or a directory)")


def load_hub(hf_id: str, configs: Iterable, split: str):
    """`datasets.load_dataset(hf_id, config, split=split)` per config, concatenated."""
    import datasets

    try:
        parts = [datasets.load_dataset(hf_id, cfg, split=split) for cfg in configs]
    except Exception as e:  # noqa: BLE001 - network, auth, missing config or split
        raise CompassError(
            f"{hf_id}: could not load split {split!r} from the Hugging Face Hub ({type(e).__name__}: {e}); "
            "set `path` to a local copy of the dataset instead"
        ) from None
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
