"""`compass eval-data` (rule eval_data): one evaluation task's data, from a local path or a Hugging
Face dataset id (config `eval.data.{task}`), normalised once into the task kind's row schema.

    compass eval-data --task gsm8k --out results/RUN/data/test/gsm8k.jsonl [--set eval.data.gsm8k.path=...]

Every model then reads that file (`compass evaluate --data`). The tasks, their sources and row schemas
are compass/eval/tasks.py. An image task (charts, chartqa, mathvista) also writes its pictures under
`images/{task}/` beside the JSONL (the rule's directory output), referenced relatively by the rows;
charts is generated from `data.charts` (the synthetic charts' held-out split).
"""

from __future__ import annotations

from pathlib import Path

from compass.eval.tasks import TASKS, load_task, task_spec
from compass.io import atomic_output, write_jsonl


def add_arguments(p) -> None:
    p.add_argument("--task", required=True, choices=[t for t in TASKS if t != "demo"], help="evaluation task")
    p.add_argument("--out", required=True, type=Path, help="normalised task JSONL")


def main(args, cfg) -> None:
    from compass.data.image_store import store_images

    spec = task_spec(args.task, cfg)
    rows = load_task(args.task, spec, cfg["seed"])
    if TASKS[args.task].images:  # the pictures beside the JSONL, in images/{task}/
        with atomic_output(Path(args.out).parent / "images" / args.task, directory=True) as tmp:
            rows = store_images(rows, tmp, f"images/{args.task}")
    n = write_jsonl(args.out, rows)
    where = "data.charts" if args.task == "charts" else spec.get("path") or spec.get("hf_id") or TASKS[args.task].hf_id
    print(f"{args.task}: {n} rows from {where} -> {args.out}")
