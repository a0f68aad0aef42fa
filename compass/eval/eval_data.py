"""`compass eval-data` (rule eval_data): one evaluation task's data, from a local path or a Hugging
Face dataset id (config `eval.data.{task}`), normalised once into the task kind's row schema.

    compass eval-data --task gsm8k --out results/RUN/data/test/gsm8k.jsonl [--set eval.data.gsm8k.path=...]

Every model then reads that file (`compass evaluate --data`). The tasks, their sources and row schemas
are compass/eval/tasks.py.
"""

from __future__ import annotations

from pathlib import Path

from compass.eval.tasks import TASKS, load_task
from compass.io import write_jsonl


def add_arguments(p) -> None:
    p.add_argument("--task", required=True, choices=[t for t in TASKS if t != "demo"], help="evaluation task")
    p.add_argument("--out", required=True, type=Path, help="normalised task JSONL")


def main(args, cfg) -> None:
    spec = (cfg["eval"].get("data") or {}).get(args.task) or {}
    rows = load_task(args.task, spec, cfg["seed"])
    n = write_jsonl(args.out, rows)
    where = spec.get("path") or spec.get("hf_id") or TASKS[args.task].hf_id
    print(f"{args.task}: {n} rows from {where} -> {args.out}")
