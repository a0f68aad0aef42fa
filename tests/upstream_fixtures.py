"""Small files in upstream schemas for evaluation data that cannot be read from ../shared/data here:
chABSA (not public on GitHub), EDINET-Bench (on the Hugging Face Hub only) and ChartQA (its original
release's layout: ChartQA Dataset/test/test_human.json + png/, with charts drawn by compass.data.charts).
The loaders read them exactly as they read the real files (compass/eval/tasks.py); the production
rehearsal evaluates on them.

    python -m tests.upstream_fixtures OUT_DIR     # OUT_DIR/chABSA-dataset/, OUT_DIR/edinet/{task}.jsonl, OUT_DIR/chartqa/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EDINET_TASKS = ("fraud_detection", "earnings_forecast", "industry_prediction")

CHABSA_REPORT = {
    "header": {"document_id": "E00001", "document_name": "有価証券報告書"},
    "sentences": [
        {"sentence_id": 0, "sentence": "売上高は増加しました。",
         "opinions": [{"target": "売上高", "category": "sales#amount", "polarity": "positive", "from": 0, "to": 3}]},
        {"sentence_id": 1, "sentence": "営業利益は減少し、費用は横ばいでした。",
         "opinions": [{"target": "営業利益", "category": "profit#amount", "polarity": "negative", "from": 0, "to": 4},
                      {"target": "費用", "category": "cost#amount", "polarity": "neutral", "from": 9, "to": 11}]},
        {"sentence_id": 2, "sentence": "当社の概要。", "opinions": []},
    ],
}


def edinet_rows(task: str, n: int = 4) -> list[dict]:
    """Rows in EDINET-Bench's columns (the Hub dataset card's features)."""
    rows = []
    for i in range(n):
        row = {
            "meta": json.dumps({"会社名": f"テスト{i}株式会社", "EDINETコード": f"E{i:05d}"}, ensure_ascii=False),
            "summary": json.dumps({"売上高": {"Prior1Year": "100", "CurrentYear": str(100 + i)}}, ensure_ascii=False),
            "bs": json.dumps({"現金及び預金": {"CurrentYear": "10"}}, ensure_ascii=False),
            "pl": json.dumps({"営業利益": {"CurrentYear": "5"}}, ensure_ascii=False),
            "cf": json.dumps({"当期利益": {"CurrentYear": "3"}}, ensure_ascii=False),
            "text": "事業の状況 " * 20, "edinet_code": f"E{i:05d}", "doc_id": f"S100{i:04d}",
        }
        if task == "fraud_detection":
            row.update(label=i % 2, explanation="", ammended_doc_id="", file_path="")
        elif task == "earnings_forecast":
            row.update(label=(i + 1) % 2, naive_prediction=1, previous_year_file_path="", current_year_file_path="")
        else:
            row.update(industry=["銀行", "小売", "機械", "不動産"][i % 4], file_path="")
        rows.append(row)
    return rows



def write_rehearsal_data(out_dir, n: int = 8) -> None:
    out = Path(out_dir)
    chabsa = out / "chABSA-dataset"
    chabsa.mkdir(parents=True, exist_ok=True)
    for i in range(max(1, n // 4)):
        report = dict(CHABSA_REPORT, header={"document_id": f"E{i:05d}", "document_name": "有価証券報告書"})
        (chabsa / f"e{i:05d}_ann.json").write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")
    (out / "edinet").mkdir(parents=True, exist_ok=True)
    for task in EDINET_TASKS:
        rows = edinet_rows(task, n)
        (out / "edinet" / f"{task}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    write_chartqa_release(out / "chartqa", "test", max(2, n // 2))


def write_chartqa_release(out_dir, split: str = "test", n: int = 4) -> Path:
    """ChartQA's original layout, {out_dir}/ChartQA Dataset/{split}/{split}_human.json ([{imgname, query, label}])
    and png/{imgname}: charts drawn by compass.data.charts with their questions; the JSON file's path."""
    from compass.data import charts

    d = Path(out_dir) / "ChartQA Dataset" / split
    (d / "png").mkdir(parents=True, exist_ok=True)
    rows, _ = charts.generate(n, 0, seed=7, langs=("en",), kinds=("bar", "line", "pie"))
    items = []
    for k, r in enumerate(rows):
        name = f"{7000 + k}.png"
        (d / "png" / name).write_bytes(charts.render_png(r["chart"], 384))
        items.append({"imgname": name, "query": r["problem"], "label": r["answer"]})
    (d / f"{split}_human.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return d / f"{split}_human.json"


if __name__ == "__main__":
    write_rehearsal_data(sys.argv[1])
