"""EDINET-Bench (SakanaAI/EDINET-Bench): upstream prompts, JSON answer parsing and metrics.

The prompt is the upstream one (``prompt/{task}.yaml``, copied below; Apache-2.0, SakanaAI)
followed by the report's sheets as upstream's ``predict.py`` joins them (``"{sheet}: {value}"``
per line; default sheets ``summary, bs, pl, cf``), with upstream's default system prompt
"You are a financial analyst.".

The answer is upstream's JSON object (``{"reasoning", "prob", "prediction"}``), found as upstream's
``extract_json_between_markers`` does (a fenced ```json block first, then any ``{...}``), but with
a real JSON scanner so that braces inside the reasoning do not cut the object short. A row whose
answer has no JSON object or no valid ``prediction`` is a *parse failure*: counted and reported
(``parse_failure_rate``, and why), never silently dropped. Metrics (scikit-learn's), as upstream's leaderboard
computes them, are over the parsed rows (binary tasks: accuracy, precision, recall, F1, MCC and
ROC-AUC from ``prob``; industry: accuracy and macro-F1); ``accuracy_all`` counts every parse
failure as wrong.
"""

from __future__ import annotations

import json
import re
import unicodedata

SYSTEM_PROMPT = "You are a financial analyst."
DEFAULT_SHEETS = ("summary", "bs", "pl", "cf")

PROMPTS = {
    "earnings_forecast": """Please predict whether the "親会社株主に帰属する当期純利益" (Net income attributable to owners of the parent) in the next fiscal year's securities report will increase compared to the current fiscal year, based on the information available in the current year's securities report.
- The input is extracted from a Japanese company's securities report.
- Some information may be missing and represented as "-" due to parsing errors.
- Some attributes are missing and the total does not equal the sum of the parts.
Respond in the following format:
JSON:
```json
{
  "reasoning": "string",
  "prob": float (between 0 and 1, probability that the profit will increase),
  "prediction": int (0: Decrease, 1: Increase)
}
```
The current year's extracted securities report is as follows:""",
    "fraud_detection": """Please analyze the following information extracted from a Japanese company's securities report for any signs of fraudulent activities.
Please note that some data may be missing and represented as "-" due to parsing errors.
The report has been verified by a certified public accountant, and the numerical values are consistent and correct from a calculation perspective. Therefore, please focus your analysis on non-numerical inconsistencies or logical red flags that could suggest fraud.
Respond in the following format:
JSON:
```json
{
  "reasoning": "string",
  "prob": float (between 0 and 1, probability that the report is fraudulent),
  "prediction": int (0: No fraud, 1: fraud)
}
```
The extracted securities report is as follows:""",
    "industry_prediction": """Based on the following financial report, classify the company into one of the Japanese industry categories.
You must classify the company into exactly one of these categories: ["食品", "電気・ガス・エネルギー資源", "建設・資材", "素材・化学", "医薬品", "自動車・輸送機", "鉄鋼・非鉄", "機械", "電機・精密", "情報通信・サービスその他", "運輸・物流", "商社・卸売", "小売", "銀行", "金融(除く銀行)", "不動産"]
- The input is extracted from a Japanese company's securities report.
- Some information may be missing due to parsing errors.
Respond in the following format:
JSON:
```json
{
  "reasoning": str (reasoning for the classification),
  "prediction": str (predicted industry category in Japanese)
}
```
The current year's extracted securities report is as follows:
""",
}
# Exactly upstream's strings: its fraud and earnings YAML files end without a newline, so there
# the first sheet follows "as follows:" directly (as upstream's predict.py sends it).

INDUSTRIES = (
    "食品", "電気・ガス・エネルギー資源", "建設・資材", "素材・化学", "医薬品", "自動車・輸送機", "鉄鋼・非鉄", "機械",
    "電機・精密", "情報通信・サービスその他", "運輸・物流", "商社・卸売", "小売", "銀行", "金融(除く銀行)", "不動産",
)
_INDUSTRY_KEY = {unicodedata.normalize("NFKC", x).replace(" ", ""): x for x in INDUSTRIES}


def prompt_text(task: str, row: dict, sheets=DEFAULT_SHEETS) -> str:
    """Upstream's prompt + the report sheets (predict.py: ``prompt + "\\n".join(f"{sheet}: {row[sheet]}")``)."""
    return PROMPTS[task] + "\n".join(f"{sheet}: {row[sheet]}" for sheet in sheets if sheet in row)


def messages(task: str, row: dict, sheets=DEFAULT_SHEETS, report_text: str | None = None) -> list[dict]:
    text = PROMPTS[task] + report_text if report_text is not None else prompt_text(task, row, sheets)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


# --- parsing ------------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _objects(text: str):
    """JSON objects in `text`, in order: each '{' position tried with a real JSON decoder."""
    dec = json.JSONDecoder()
    i = text.find("{")
    while i != -1:
        for candidate in (text, None):
            try:
                obj, end = dec.raw_decode(text if candidate is not None else _CTRL_RE.sub(" ", text), i)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                yield obj
            break
        i = text.find("{", i + 1)


def extract_json(output: str | None) -> dict | None:
    """The first JSON object of a fenced ```json block, else the first JSON object anywhere."""
    if not output:
        return None
    for block in _FENCE_RE.findall(output):
        for obj in _objects(block):
            return obj
    for obj in _objects(output):
        return obj
    return None


def parse_answer(task: str, output: str | None) -> dict:
    """{prediction, prob, reasoning, error}: error is None when the prediction is usable, else
    no_json | missing_prediction | invalid_prediction; an unusable prob (missing, not a number, out
    of [0, 1]) is None with prob_error set, and does not fail the row."""
    obj = extract_json(output)
    out = {"prediction": None, "prob": None, "reasoning": None, "error": None, "prob_error": None}
    if obj is None:
        out["error"] = "no_json"
        return out
    reasoning = obj.get("reasoning")
    out["reasoning"] = reasoning if isinstance(reasoning, str) else None
    if "prediction" not in obj or obj["prediction"] is None:
        out["error"] = "missing_prediction"
        return out
    pred = obj["prediction"]
    if task == "industry_prediction":
        key = unicodedata.normalize("NFKC", str(pred)).strip().strip("\"'「」").replace(" ", "")
        if key in _INDUSTRY_KEY:
            out["prediction"] = _INDUSTRY_KEY[key]
        else:
            out["error"] = "invalid_prediction"
        return out
    try:
        value = float(pred) if not isinstance(pred, bool) else float(int(pred))
    except (TypeError, ValueError):
        value = None
    if value not in (0.0, 1.0):
        out["error"] = "invalid_prediction"
    else:
        out["prediction"] = int(value)
    prob = obj.get("prob")
    try:
        p = float(prob) if prob is not None and not isinstance(prob, bool) else None
    except (TypeError, ValueError):
        p = None
    if p is None:
        out["prob_error"] = "missing_prob" if prob is None else "invalid_prob"
    elif not 0.0 <= p <= 1.0 or p != p:
        out["prob_error"] = "invalid_prob"
    else:
        out["prob"] = p
    return out


def score(task: str, rows: list[dict], outputs: list[str]) -> tuple[list[dict], dict]:
    graded = []
    for row, text in zip(rows, outputs):
        parsed = parse_answer(task, text)
        graded.append({
            "id": row["id"], "edinet_code": row.get("edinet_code"), "doc_id": row.get("doc_id"), "label": row["label"],
            "output": text, **parsed,
            "correct": parsed["error"] is None and parsed["prediction"] == row["label"],
        })
    n = len(graded)
    ok = [g for g in graded if g["error"] is None]
    errors: dict[str, int] = {}
    for g in graded:
        if g["error"]:
            errors[g["error"]] = errors.get(g["error"], 0) + 1
    summary: dict = {
        "kind": "edinet", "n": n, "n_parsed": len(ok),
        "parse_failure_rate": (n - len(ok)) / n if n else 0.0,
        "parse_failures": dict(sorted(errors.items())),
        "accuracy_all": sum(g["correct"] for g in graded) / n if n else 0.0,
    }
    gold = [g["label"] for g in ok]
    pred = [g["prediction"] for g in ok]
    if not ok:  # nothing parsed: the metrics are undefined, not 0
        keys = ("accuracy", "macro_f1") if task == "industry_prediction" else ("accuracy", "precision", "recall", "f1", "mcc", "roc_auc")
        summary.update({k: None for k in keys})
        return graded, summary
    from sklearn import metrics

    summary["accuracy"] = float(metrics.accuracy_score(gold, pred))
    if task == "industry_prediction":
        summary["macro_f1"] = float(metrics.f1_score(gold, pred, average="macro", zero_division=0))
        return graded, summary
    with_prob = [g for g in ok if g["prob"] is not None]
    prob_gold = [g["label"] for g in with_prob]
    summary.update(
        precision=float(metrics.precision_score(gold, pred, zero_division=0)),
        recall=float(metrics.recall_score(gold, pred, zero_division=0)),
        f1=float(metrics.f1_score(gold, pred, zero_division=0)),
        mcc=float(metrics.matthews_corrcoef(gold, pred)),
        # undefined (None) unless the rows with a probability hold both classes
        roc_auc=float(metrics.roc_auc_score(prob_gold, [g["prob"] for g in with_prob])) if len(set(prob_gold)) == 2 else None,
    )
    summary["n_with_prob"] = len(with_prob)
    summary["label_balance"] = sum(g["label"] for g in graded) / n if n else 0.0
    return graded, summary
