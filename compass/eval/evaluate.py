"""`compass evaluate`: generate on one evaluation task with one model and grade the answers.

Writes a summary JSON (accuracy and well-formed-XML rate, reported separately) and the
predictions JSONL beside it. Works for a causal LM and for a LLaVA-OneVision VLM checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

from compass.io import read_jsonl, write_json, write_jsonl
from compass.trace_format import is_well_formed, prompt_messages

TASK_FIELDS = ("id", "problem", "answer")


def score(rows: list[dict], predictions: list[str], is_correct) -> tuple[list[dict], dict]:
    out = []
    for row, pred in zip(rows, predictions):
        out.append(
            {
                "id": row["id"], "lang": row.get("lang"), "problem": row["problem"], "answer": row["answer"],
                "prediction": pred, "well_formed": is_well_formed(pred), "correct": bool(is_correct(pred, row["answer"])),
            }
        )
    n = len(out)
    summary = {
        "n": n,
        "accuracy": sum(r["correct"] for r in out) / n if n else 0.0,
        "well_formed_rate": sum(r["well_formed"] for r in out) / n if n else 0.0,
    }
    by_lang: dict = {}
    for r in out:
        by_lang.setdefault(r["lang"] or "?", []).append(r)
    summary["per_lang"] = {
        lang: {"n": len(rs), "accuracy": sum(r["correct"] for r in rs) / len(rs)} for lang, rs in sorted(by_lang.items())
    }
    return out, summary


def evaluate(model_path, task_path, ecfg: dict, seed: int, is_correct):
    from compass import generation

    rows = read_jsonl(task_path, required=TASK_FIELDS)
    if ecfg.get("limit"):
        rows = rows[: ecfg["limit"]]
    model, tokenizer = generation.load(model_path)
    sampling = generation.Sampling(max_new_tokens=ecfg["max_new_tokens"], temperature=0.0, seed=seed)
    t0 = time.perf_counter()
    outs = generation.generate(
        model, tokenizer, [prompt_messages(r["problem"], r.get("lang")) for r in rows], sampling, ecfg["batch_size"], "evaluate"
    )
    seconds = time.perf_counter() - t0
    graded, summary = score(rows, [o[0] for o in outs], is_correct)
    summary["generation_seconds"] = round(seconds, 2)
    return graded, summary


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, type=Path, help="checkpoint directory (LLM or VLM)")
    p.add_argument("--task", required=True, help="task name, recorded in the output")
    p.add_argument("--data", required=True, type=Path, help="task JSONL with id, problem, answer (and lang)")
    p.add_argument("--out", required=True, type=Path, help="summary JSON; predictions go to OUT with .predictions.jsonl")
    p.add_argument("--label", default=None, help="model label recorded in the output (default: the directory name)")


def main(args, cfg) -> None:
    from compass.eval.grade import is_correct

    graded, summary = evaluate(args.model, args.data, cfg["eval"], cfg["seed"], is_correct)
    summary = {"model": args.label or args.model.name, "model_path": str(args.model), "task": args.task, **summary}
    write_jsonl(Path(args.out).with_suffix(".predictions.jsonl"), graded)
    write_json(args.out, summary)
    print(
        f"{summary['model']} on {args.task}: accuracy {summary['accuracy']:.1%}, "
        f"well-formed {summary['well_formed_rate']:.1%} (n={summary['n']}) -> {args.out}"
    )
