"""`compass grade`: model predictions graded against gold answers, a thin edge over compass.answers.

    compass grade --predictions IN.jsonl --out OUT.jsonl

Each row is copied with `correct`, `extracted` (the answer read from the output) and
`extracted_form` (the rule that read it); the summary gives the accuracy and the rate of
well-formed responses (`compass.trace_format`). The judgement itself, extraction and comparison,
is `compass.answers`, shared with distillation, the pairs stage and the RL rewards; its policy is
in docs/evaluation.md ("Grading policy").
"""

from __future__ import annotations

from typing import Iterable

from compass import trace_format
from compass.answers import grade_one
from compass.io import CompassError, iter_jsonl, write_jsonl


def grade_rows(
    rows: Iterable[dict], *, prediction_field: str = "prediction", answer_field: str = "answer"
) -> tuple[list[dict], dict]:
    """Each row copied with `correct` (bool), `extracted` (str or None) and `extracted_form`; and
    the summary {n, correct, accuracy, well_formed, well_formed_rate, forms}."""
    graded: list[dict] = []
    n_correct = n_well = 0
    forms: dict[str, int] = {}
    for i, row in enumerate(rows, 1):
        gold = row.get(answer_field)
        if gold is None or (isinstance(gold, str) and not gold.strip()):
            raise CompassError(f"row {i}: empty gold answer in field {answer_field!r}")
        pred = row.get(prediction_field)
        pred = pred if isinstance(pred, str) else ("" if pred is None else str(pred))
        g = grade_one(pred, gold)
        n_correct += g.correct
        n_well += trace_format.is_well_formed(pred)
        forms[g.form or "none"] = forms.get(g.form or "none", 0) + 1
        graded.append({**row, "correct": bool(g.correct), "extracted": g.extracted, "extracted_form": g.form})
    n = len(graded)
    summary = {
        "n": n,
        "correct": n_correct,
        "accuracy": n_correct / n if n else 0.0,
        "well_formed": n_well,
        "well_formed_rate": n_well / n if n else 0.0,
        "forms": dict(sorted(forms.items())),
    }
    return graded, summary


def add_arguments(parser) -> None:
    parser.add_argument("--predictions", required=True, metavar="IN.jsonl", help="JSONL rows with a model output and a gold answer")
    parser.add_argument("--out", required=True, metavar="OUT.jsonl", help="the rows again, with `correct`, `extracted`, `extracted_form`")
    parser.add_argument("--prediction-field", default="prediction", metavar="NAME", help="field holding the model output (default: prediction)")
    parser.add_argument("--answer-field", default="answer", metavar="NAME", help="field holding the gold answer (default: answer)")


def main(args, cfg=None) -> dict:
    pf, af = args.prediction_field, args.answer_field
    rows = list(iter_jsonl(args.predictions, required=(pf, af)))
    if not rows:
        raise CompassError(f"{args.predictions}: no rows to grade")
    try:
        graded, summary = grade_rows(rows, prediction_field=pf, answer_field=af)
    except CompassError as e:
        raise CompassError(f"{args.predictions}: {e}") from None
    write_jsonl(args.out, graded)
    n = summary["n"]
    print(f"accuracy: {summary['accuracy']:.4f} ({summary['correct']}/{n})")
    print(f"well-formed: {summary['well_formed_rate']:.4f} ({summary['well_formed']}/{n})")
    return summary
