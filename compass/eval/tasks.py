"""Evaluation tasks: what each one is, where its data comes from, and its normalised row schema.

Every task is read once (from a local path or a Hugging Face dataset id, per ``eval.data.{task}``)
and written as one JSONL file in the task kind's row schema (`compass eval-data`,
compass/eval/eval_data.py); `compass evaluate` reads only that file.

Kinds and their row schemas:

* ``math`` (demo, gsm8k, mgsm_ja, math500): ``{id, source, lang, problem, answer, solution}``
  (compass.data.sources' schema); generation with the reasoning system prompt, graded by
  compass.answers on the ``\\boxed{}`` answer inside ``<Answer>``. The image tasks (charts, chartqa,
  mathvista; ``Task.images``) are math tasks whose rows also carry ``images`` (compass.images), written
  under ``images/{task}/`` beside the task's JSONL; charts is generated from ``data.charts`` (its
  held-out split), chartqa is graded with ChartQA's relaxed accuracy (a number within 5 %).
* ``mc`` (cma_basics, cpa_audit, fp2, security_sales_1): ``{id, question, context,
  choices: {id: [...], text: [...]}, answer}`` (the Japanese financial harness's dataset features);
  ``chabsa``: ``{id, sentence, target, polarity}``. Scored by log-likelihood of the choices with
  lm-evaluation-harness (compass.eval.fin_harness).
* ``edinet`` (fraud_detection, earnings_forecast, industry_prediction): ``{id, edinet_code,
  doc_id, label, meta, summary, bs, pl, cf, text}`` (EDINET-Bench's columns; ``label`` is the
  0/1 label or, for industry_prediction, the industry name); generation with the upstream prompt,
  JSON answer parsed (compass.eval.edinet).

Local formats: the harness's ``data.json`` (``{"data": [...]}``) and ``CPA_AUDIT.xlsx``; chABSA's
release directory (one JSON per report, ``sentences[].opinions[]``) or a file of flat rows; and,
for any task, a ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file in the upstream columns (or
already in the row schema above). Hub: ``datasets.load_dataset(hf_id, hf_config, split=split)``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from compass.io import CompassError


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # math | mc | edinet
    hf_id: str | None  # default Hugging Face dataset id (None: a local path is required)
    hf_config: str | None
    split: str
    primary: str  # metric shown first in the report
    lang: str = "ja"
    source: str | None = None  # compass.data.sources loader of a math task
    about: str = ""
    images: bool = False  # rows carry images (compass.images); evaluated also with blank ones (variant blank_image)
    tolerance: float = 0.0  # relative tolerance of a numeric answer (ChartQA's relaxed accuracy: 0.05)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("demo", "math", None, None, "test", "accuracy", "mixed", about="held-out split of the project's synthetic problems"),
        Task("gsm8k", "math", "openai/gsm8k", "main", "test", "accuracy", "en", "gsm8k", "GSM8K test (1,319)"),
        Task("mgsm_ja", "math", "juletxara/mgsm", "ja", "test", "accuracy", "ja", "mgsm_ja", "MGSM Japanese (250)"),
        Task("math500", "math", "HuggingFaceH4/MATH-500", None, "test", "accuracy", "en", "math500", "MATH-500 (500)"),
        Task("chabsa", "mc", None, None, "test", "macro_f1", about="chABSA target sentiment, positive/negative (macro-F1)"),
        Task("cma_basics", "mc", None, None, "test", "accuracy", about="securities analyst basics (38)"),
        Task("cpa_audit", "mc", None, None, "test", "accuracy", about="CPA short-answer audit exam (398 usable rows)"),
        Task("fp2", "mc", None, None, "test", "accuracy", about="financial planner grade 2 (475)"),
        Task("security_sales_1", "mc", None, None, "test", "accuracy", about="securities sales rep grade 1 (57)"),
        Task("fraud_detection", "edinet", "SakanaAI/EDINET-Bench", "fraud_detection", "test", "mcc", about="EDINET-Bench accounting fraud (224)"),
        Task("earnings_forecast", "edinet", "SakanaAI/EDINET-Bench", "earnings_forecast", "test", "mcc", about="EDINET-Bench earnings up/down (451)"),
        Task("industry_prediction", "edinet", "SakanaAI/EDINET-Bench", "industry_prediction", "train", "accuracy", about="EDINET-Bench industry, 16 classes (496; train is its only split)"),
        Task("charts", "math", None, None, "test", "accuracy", "mixed", "charts", "held-out split of the project's synthetic charts and tables", images=True),
        Task("chartqa", "math", "HuggingFaceM4/ChartQA", None, "test", "accuracy", "en", "chartqa", "ChartQA test (2,500; relaxed accuracy)", images=True, tolerance=0.05),
        Task("mathvista", "math", "AI4Math/MathVista", None, "testmini", "accuracy", "en", "mathvista", "MathVista testmini (1,000)", images=True),
    )
}
IMAGE_TASKS = tuple(name for name, t in TASKS.items() if t.images)

GENERATION_KINDS = ("math", "edinet")
EDINET_SHEETS = ("meta", "summary", "bs", "pl", "cf", "text")


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise CompassError(f"unknown evaluation task {name!r} (known: {', '.join(TASKS)})")
    return TASKS[name]


# ---------------------------------------------------------------------------------------------
# Reading


def read_xlsx(path, sheet: int = 0) -> list[dict]:
    """Rows of one worksheet of an .xlsx file (openpyxl) as dicts keyed by the first row; numbered
    headers ("1.0") become "1", empty rows are left out."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (OSError, KeyError, zipfile.BadZipFile, InvalidFileException) as e:
        raise CompassError(f"{path}: not a readable .xlsx file ({e})") from None
    try:
        table = list(workbook.worksheets[sheet].iter_rows(values_only=True))
    finally:
        workbook.close()
    if not table:
        return []
    header = [None if v is None else _header_name(v) for v in table[0]]
    return [{h: v for h, v in zip(header, row) if h is not None} for row in table[1:] if any(v is not None for v in row)]


def _header_name(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _read_rows(path: Path) -> list[dict]:
    """A local file of rows: .jsonl, .json (array, JSON lines or the harness's {"data": [...]}),
    .csv, .parquet or .xlsx."""
    from compass.data.readers import read_local

    if not path.exists():
        raise CompassError(f"{path}: file not found")
    if path.suffix.lower() == ".xlsx":
        return read_xlsx(path)
    if path.suffix.lower() == ".json" and path.is_file():
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            obj = None  # JSON lines under a .json name: read below
        if isinstance(obj, list):
            return obj
        if isinstance(obj, dict):
            if isinstance(obj.get("data"), list):  # the harness's data.json
                return obj["data"]
            if isinstance(obj.get("sentences"), list):  # one chABSA report
                return [obj]
            raise CompassError(f"{path}: a JSON object without a 'data' list (expected the harness's data.json)")
    table = read_local(path)
    return table.take(range(len(table)))


def _read_hub(hf_id: str, hf_config, split: str) -> list[dict]:
    from compass.data.readers import load_hub

    ds = load_hub(hf_id, (hf_config,), split)
    return ds.to_list()


def _chabsa_dir(path: Path) -> list[dict]:
    files = sorted(path.rglob("*.json"))
    if not files:
        raise CompassError(f"{path}: no chABSA .json files in this directory")
    rows = []
    for f in files:
        try:
            rows.append(json.loads(f.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise CompassError(f"{f}:{e.lineno}: {e.msg}") from None
    return rows


# ---------------------------------------------------------------------------------------------
# Normalisers: upstream rows -> the kind's row schema.


def _choices(raw) -> dict:
    """Harness choices as {"id": [...], "text": [...]} from a list of {id, text} or a dict of lists."""
    if isinstance(raw, dict) and "id" in raw and "text" in raw:
        ids, texts = list(raw["id"]), list(raw["text"])
    elif isinstance(raw, list):
        ids = [c["id"] if isinstance(c, dict) else i for i, c in enumerate(raw)]
        texts = [c["text"] if isinstance(c, dict) else c for c in raw]
    else:
        raise ValueError(f"choices must be a list or {{id, text}}, got {type(raw).__name__}")
    return {"id": [int(i) for i in ids], "text": [str(t) for t in texts]}


def _nan_to_empty(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    s = str(v)
    return "" if s == "nan" else s


def normalize_mc(task: str, raw_rows: list[dict]) -> list[dict]:
    """The harness's multiple-choice rows (cma_basics, fp2, security_sales_1, cpa_audit)."""
    out = []
    if raw_rows and "a_no" in raw_rows[0]:  # CPA_AUDIT.xlsx, as the harness's cpa_audit loader reads it
        for raw in raw_rows:
            question = _nan_to_empty(raw.get("question"))
            if not question or raw.get("abnormal_flg") in (1, 1.0, "1"):
                continue
            contexts = [f"{k}: {_nan_to_empty(raw.get(k))}" for k in "アイウエオカ" if _nan_to_empty(raw.get(k))]
            texts = [_nan_to_empty(raw.get(str(j + 1))) for j in range(6)]
            while texts and not texts[-1]:  # 38 questions have five options: no empty sixth choice
                texts.pop()
            i = len(out)
            out.append({
                "id": i, "question": question, "context": "\n".join(contexts),
                "choices": {"id": list(range(len(texts))), "text": texts},
                "answer": int(float(raw["a_no"])) - 1,
            })
        return out
    for n, raw in enumerate(raw_rows):
        try:
            choices = _choices(raw["choices"])
            answer = int(raw["answer"])
        except (KeyError, ValueError, TypeError) as e:
            raise CompassError(f"{task}: row {n}: not a harness multiple-choice row ({type(e).__name__}: {e}); "
                               "expected question, context, choices, answer") from None
        if answer not in choices["id"]:
            raise CompassError(f"{task}: row {n}: answer {answer} is not one of the choice ids {choices['id']}")
        out.append({
            "id": raw.get("id", n), "question": str(raw.get("question") or ""), "context": _nan_to_empty(raw.get("context")),
            "choices": choices, "answer": answer,
        })
    return out


def normalize_chabsa(raw_rows: list[dict]) -> list[dict]:
    """Flat {sentence, target, polarity} rows from chABSA reports (``sentences[].opinions[]``, the
    harness's order: report, sentence, opinion) or from rows already flat."""
    out = []
    for raw in raw_rows:
        if "sentences" in raw:
            for s in raw["sentences"] or []:
                for op in s.get("opinions") or []:
                    out.append({"id": len(out), "sentence": s["sentence"], "target": op["target"], "polarity": op["polarity"]})
        elif {"sentence", "target", "polarity"} <= set(raw):
            out.append({"id": raw.get("id", len(out)), "sentence": raw["sentence"], "target": raw["target"], "polarity": raw["polarity"]})
        else:
            raise CompassError(f"chabsa: row {len(out)}: expected a chABSA report (sentences) or sentence/target/polarity, got {sorted(raw)[:8]}")
    return out


def normalize_edinet(task: str, raw_rows: list[dict]) -> list[dict]:
    label_field = "industry" if task == "industry_prediction" else "label"
    out = []
    for n, raw in enumerate(raw_rows):
        if label_field not in raw and "label" not in raw:
            raise CompassError(f"{task}: row {n}: no {label_field!r} column (EDINET-Bench columns: meta, summary, bs, pl, cf, text, {label_field}, edinet_code, doc_id)")
        label = raw.get(label_field, raw.get("label"))
        if task != "industry_prediction":
            label = int(label)
        row = {"id": f"{task}-{n:05d}", "edinet_code": raw.get("edinet_code"), "doc_id": raw.get("doc_id"), "label": label}
        for sheet in EDINET_SHEETS:
            if sheet in raw and raw[sheet] is not None:
                row[sheet] = raw[sheet]
        out.append(row)
    return out


def task_spec(task: str, cfg: dict) -> dict:
    """The config a task's data comes from: data.charts for the synthetic charts, else eval.data.{task}."""
    if task == "charts":
        return (cfg.get("data") or {}).get("charts") or {}
    return ((cfg.get("eval") or {}).get("data") or {}).get(task) or {}


def load_task(name: str, spec: dict | None = None, seed: int = 42) -> list[dict]:
    """Rows of one evaluation task in its kind's schema, from ``spec`` = ``eval.data.{name}``
    ({path, hf_id, hf_config, split}; unset keys fall back to the task's defaults)."""
    task = get_task(name)
    spec = dict(spec or {})
    path = spec.get("path")
    if name == "charts":  # spec: data.charts (task_spec)
        from compass.data.prompts import chart_rows

        if not spec:
            raise CompassError("charts: its rows are generated from the data.charts settings (none given)")
        return chart_rows(spec, seed, limit=0)[1]  # the test split only: no training chart drawn
    if name == "demo":
        if not path:
            raise CompassError("demo: its data is written by the prompts stage (results/RUN/data/test/demo.jsonl)")
        from compass.io import read_jsonl

        return read_jsonl(path, required=("id", "problem", "answer"))
    hf_id = spec.get("hf_id") or task.hf_id
    hf_config = spec.get("hf_config") if spec.get("hf_id") else (spec.get("hf_config") or task.hf_config)
    split = spec.get("split") or task.split
    if task.kind == "math":
        from compass.data.sources import load_source

        src = {"name": task.source, "path": path, "split": split, "limit": None}
        if not path:
            src.update(hf_id=hf_id, hf_config=hf_config)
        rows = load_source(src, seed)
        bad = [r["id"] for r in rows if not str(r["answer"]).strip()]
        if bad:
            raise CompassError(f"{name}: {len(bad)} row(s) without a gold answer (e.g. {bad[0]})")
        return rows
    if not path and not hf_id:
        raise CompassError(
            f"eval.data.{name}: give a local `path` (the upstream files; see docs/evaluation.md) or a Hugging Face `hf_id`"
        )
    if path:
        p = Path(path)
        raw = _chabsa_dir(p) if (name == "chabsa" and p.is_dir()) else _read_rows(p)
    else:
        raw = _read_hub(hf_id, hf_config, split)
    if not raw:
        raise CompassError(f"{name}: no rows in {path or hf_id}")
    if task.kind == "edinet":
        return normalize_edinet(name, raw)
    if name == "chabsa":
        return normalize_chabsa(raw)
    return normalize_mc(name, raw)
