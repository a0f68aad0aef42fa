"""`compass evaluate`: one model on one evaluation task; a summary JSON and the predictions beside it.

    compass evaluate --model DIR --task gsm8k --data results/RUN/data/test/gsm8k.jsonl --out X.json
    compass evaluate --model ANY_CHECKPOINT --task fp2 --out X.json --set eval.data.fp2.path=.../data.json

Works for a causal LM and for a LLaVA-OneVision VLM checkpoint. By task kind (compass.eval.tasks):

* ``math``: batched generation with the reasoning system prompt (greedy, seeded; `hf` backend via
  compass.generation or `vllm`), graded with compass.answers; accuracy and the well-formed-XML
  rate are reported separately. Prompt variant ``step_by_step`` (an ablation) appends "Let's think
  step by step." (ステップバイステップで考えましょう。 for Japanese problems) to the problem.
* ``mc``: log-likelihood multiple choice on lm-evaluation-harness (compass.eval.fin_harness).
* ``edinet``: generation with the upstream prompt; JSON answers parsed, parse failures reported
  (compass.eval.edinet).

Image tasks (charts, chartqa, mathvista: rows with ``images``, compass.images) put one image part per
picture before the question; the pictures are read relative to the ``--data`` file. Variant
``blank_image`` (the grounding check) shows a white image of the same size instead of each picture: a
model that reads the chart loses accuracy. A text-only checkpoint (an extracted LLM) cannot see images:
it is asked the question alone, and its summary says so (``image_input: none``). ChartQA is graded
with its relaxed accuracy: a numeric answer within 5 % of the gold one counts (``Task.tolerance``).

Without ``--data`` the task is read from ``eval.data.{task}`` (a local path or a Hub id).
"""

from __future__ import annotations

import time
from pathlib import Path

from compass.io import CompassError, read_jsonl, write_json, write_jsonl
from compass.trace_format import detect_lang, is_well_formed, prompt_messages

TASK_FIELDS = ("id", "problem", "answer")
STEP_BY_STEP = {"en": "Let's think step by step.", "ja": "ステップバイステップで考えましょう。"}
VARIANTS = ("default", "step_by_step", "blank_image")


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


def math_messages(row: dict, variant: str = "default", n_images: int = 0) -> list[dict]:
    """The row's prompt: system + user (one image part per picture, then the problem) for a prompt variant."""
    if variant not in VARIANTS:
        raise CompassError(f"unknown prompt variant {variant!r} (known: {', '.join(VARIANTS)})")
    problem = row["problem"]
    if variant == "step_by_step":
        lang = "ja" if (row.get("lang") or detect_lang(problem)) == "ja" else "en"
        problem = f"{problem}\n{STEP_BY_STEP[lang]}"
    return prompt_messages(problem, row.get("lang"), n_images)


def within_tolerance(prediction: str, gold, rel_tol: float) -> bool:
    """The answer of `prediction` and `gold` are numbers within `rel_tol` of the gold one (ChartQA's relaxed
    accuracy; a gold 0 must be met exactly). Read by the answer layer (compass.answers)."""
    from compass.answers import extract_answer, parse_number

    got = extract_answer(prediction)
    a, g = (None if got is None else parse_number(got)), parse_number(str(gold))
    if a is None or g is None:
        return False
    av, gv = a.value, g.value  # "44%" reads as 44, as ChartQA's own metric strips the sign
    return abs(av - gv) <= abs(gv) * rel_tol if gv else av == 0


def grader(task) -> "callable":
    """is_correct, or with the task's tolerance also a number close enough (compass.eval.tasks.Task)."""
    from compass.answers import is_correct

    if not task.tolerance:
        return is_correct
    return lambda pred, gold: is_correct(pred, gold) or within_tolerance(pred, gold, task.tolerance)


def row_images(rows: list[dict], base_dir, blank: bool) -> list[list]:
    """Each row's pictures (compass.images, relative to `base_dir`; or a loader's transient `image`), or as
    many blank ones of the same sizes (the grounding check)."""
    from compass.data.image_store import open_image
    from compass.images import blank_like, load_images

    out = []
    for r in rows:
        if "image" in r:  # straight from a loader (compass evaluate without --data)
            ims = [open_image(r["image"], f"row {r.get('id')!r}").convert("RGB")]
        else:
            if base_dir is None and any(not Path(p).is_absolute() for p in r.get("images") or []):
                raise CompassError(f"row {r.get('id')!r}: its images are relative to its JSONL file; give --data")
            ims = load_images(r, base_dir)
        if not ims:
            raise CompassError(f"row {r.get('id')!r}: an image task's row without images")
        out.append([blank_like(im) for im in ims] if blank else ims)
    return out


# --- generation -----------------------------------------------------------------------------------


def load_engine(model_path, cfg: dict, seed: int):
    """The configured generation engine (compass.generation: `hf` or `vllm`) over one checkpoint."""
    from compass import generation

    ecfg = cfg["eval"]
    return generation.load(ecfg["backend"], model_path, cfg["chat"], dtype=ecfg["dtype"], batch_size=ecfg["batch_size"],
                           tensor_parallel_size=ecfg["tensor_parallel_size"], seed=seed,
                           engine_kwargs=cfg["vllm"]["engine_kwargs"])


def _edinet_conversations(engine, model_path, task: str, rows: list[dict], ecfg: dict) -> tuple[list, int]:
    """Upstream prompts, each report cut (head kept) to fit the model's context; how many were cut."""
    from compass.eval import edinet

    sheets = tuple(ecfg.get("edinet_sheets") or edinet.DEFAULT_SHEETS)
    budget = ecfg.get("max_prompt_tokens")
    if budget is None:
        from compass.generation import max_positions

        ctx = max_positions(model_path)
        budget = None if ctx is None else max(256, ctx - ecfg["max_new_tokens"] - 64)
    fixed = len(engine.tokenizer(edinet.SYSTEM_PROMPT + edinet.PROMPTS[task], add_special_tokens=False).input_ids) + 32
    convs, cut = [], 0
    for row in rows:
        report = "\n".join(f"{s}: {row[s]}" for s in sheets if s in row)
        if budget is not None:
            ids = engine.tokenizer(report, add_special_tokens=False).input_ids
            room = max(0, budget - fixed)
            if len(ids) > room:
                report = engine.tokenizer.decode(ids[:room], skip_special_tokens=True)
                cut += 1
        convs.append(edinet.messages(task, row, sheets, report_text=report))
    return convs, cut


# --- one model x one task -----------------------------------------------------------------------


def evaluate_task(model_path, task: str, rows: list[dict], cfg: dict, variant: str = "default", base_dir=None):
    """(per-row predictions, summary) of one model on one task's normalised rows (`cfg`: the
    config's eval, chat, vllm and seed; `base_dir`: the directory of the rows' JSONL, for their images)."""
    from compass.eval.tasks import get_task

    ecfg, seed = cfg["eval"], cfg["seed"]
    spec = get_task(task)
    kind = spec.kind
    if variant == "blank_image" and not spec.images:
        raise CompassError(f"variant blank_image applies to the image tasks only, not {task}")
    if ecfg.get("limit"):
        rows = rows[: ecfg["limit"]]
    if not rows:
        raise CompassError(f"{task}: no rows to evaluate")
    if variant != "default" and kind != "math":
        raise CompassError(f"prompt variant {variant!r} applies to the math tasks only, not {task} ({kind})")
    if kind == "mc":
        from compass.eval import fin_harness

        lm = fin_harness.make_lm(ecfg, model_path, seed, cfg)
        graded, summary = fin_harness.run(lm, task, rows)
        summary["primary"] = get_task(task).primary
        summary["backend"] = ecfg["backend"]
        return graded, summary
    from compass.generation import Sampling

    engine = load_engine(model_path, cfg, seed)
    sampling = Sampling(max_new_tokens=ecfg["max_new_tokens"], temperature=ecfg["temperature"], top_p=ecfg["top_p"], seed=seed)
    t0 = time.perf_counter()
    images, image_input = None, None
    if kind == "math":
        if spec.images and engine.vlm:
            images = row_images(rows, base_dir, blank=variant == "blank_image")
            image_input = "blank" if variant == "blank_image" else "real"
        elif spec.images:
            image_input = "none"  # a text-only model: the question alone
        convs = [math_messages(r, variant, len(images[i]) if images else 0) for i, r in enumerate(rows)]
    else:
        from compass.eval import edinet

        convs, cut = _edinet_conversations(engine, model_path, task, rows, ecfg)
    completions = [c[0] for c in engine.generate(convs, sampling, images=images, desc=f"evaluate {task}",
                                                   ids=[r.get("id", f"#{i}") for i, r in enumerate(rows)])]
    seconds = time.perf_counter() - t0
    outputs = [c.text for c in completions]
    if kind == "math":
        graded, summary = score(rows, outputs, grader(spec))
        summary["kind"] = "math"
        if image_input is not None:
            summary["image_input"] = image_input
            if spec.tolerance:
                summary["relative_tolerance"] = spec.tolerance
    else:
        graded, summary = edinet.score(task, rows, outputs)
        summary["prompts_truncated"] = cut
    for row, c in zip(graded, completions):
        if c.analysis:  # kept apart, never graded
            row["analysis"] = c.analysis
    summary["primary"] = get_task(task).primary
    summary["generation_seconds"] = round(seconds, 2)
    summary["backend"] = engine.backend
    summary["decoding"] = {"temperature": sampling.temperature, "top_p": sampling.top_p,
                           "max_new_tokens": sampling.max_new_tokens, "seed": seed}
    summary["chat_template_kwargs"] = engine.template_kwargs
    return graded, summary


def load_rows(task: str, data: Path | None, cfg: dict) -> list[dict]:
    from compass.eval.tasks import get_task, load_task

    if data is not None:
        required = TASK_FIELDS if get_task(task).kind == "math" else ("id",)
        return read_jsonl(data, required=required)
    spec = (cfg["eval"].get("data") or {}).get(task) or {}
    return load_task(task, spec, cfg["seed"])


def add_arguments(p) -> None:
    from compass.eval.tasks import TASKS

    p.add_argument("--model", required=True, type=Path, help="checkpoint directory (LLM or LLaVA-OneVision VLM)")
    p.add_argument("--task", required=True, choices=list(TASKS), help="evaluation task")
    p.add_argument("--data", default=None, type=Path,
                   help="the task's normalised JSONL (from `compass eval-data`); default: read eval.data.TASK")
    p.add_argument("--out", required=True, type=Path, help="summary JSON; predictions go to OUT with .predictions.jsonl")
    p.add_argument("--label", default=None, help="model label recorded in the output (default: the directory name)")
    p.add_argument("--variant", default="default", choices=VARIANTS, help="prompt variant (math tasks): an ablation row in the report")


def main(args, cfg) -> None:
    rows = load_rows(args.task, args.data, cfg)
    graded, summary = evaluate_task(args.model, args.task, rows, cfg, args.variant,
                                    base_dir=None if args.data is None else Path(args.data).parent)
    summary = {"model": args.label or args.model.name, "model_path": str(args.model), "task": args.task,
               "variant": args.variant, **summary}
    if args.data is not None and summary.get("image_input") == "real":  # what the model saw, from the predictions file
        from compass.images import rebase

        for row, g in zip(rows, graded):
            g["images"] = rebase(row, Path(args.data).parent, Path(args.out).parent)["images"]
    write_jsonl(Path(args.out).with_suffix(".predictions.jsonl"), graded)
    write_json(args.out, summary)
    primary = summary["primary"]
    value = summary.get(primary)
    extra = ""
    if "well_formed_rate" in summary:
        extra = f", well-formed {summary['well_formed_rate']:.1%}"
    if "parse_failure_rate" in summary:
        extra = f", parse failures {summary['parse_failure_rate']:.1%}"
    shown = "n/a" if value is None else f"{value:.1%}" if primary != "mcc" else f"{value:+.3f}"
    print(f"{summary['model']} on {args.task}{'' if args.variant == 'default' else ' [' + args.variant + ']'}: "
          f"{primary} {shown}{extra} (n={summary['n']}) -> {args.out}")
