"""`compass distill`: teacher traces in the XML format, from one of three backends.

- `reference`: no model; a dataset's own worked solution becomes the <Thinking> (the demo uses it).
- `hf`: batched transformers generation (CPU or GPU).
- `vllm`: vLLM's offline engine with tensor parallelism (production; imported only when chosen).

The backends only turn conversations into completions. Prompt building, parsing and filtering are
shared (`requests`, `to_trace`) so what reaches the SFT data does not depend on the backend.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from compass.io import CompassError, read_jsonl, write_json, write_jsonl
from compass.trace_format import answer_of, check_response, format_response, prompt_messages, system_prompt

PROMPT_FIELDS = ("id", "source", "lang", "problem", "answer")


def reference_response(row: dict) -> str | None:
    """The dataset's own worked solution in the trace format, or None when it has none."""
    if not row.get("solution"):
        return None
    return format_response(row["problem"], row["solution"], row["answer"])


def to_trace(row: dict, response: str, *, sample: int, require_correct: bool, is_correct) -> tuple[dict | None, str | None]:
    """(trace row, None) when the response passes the filters, else (None, drop reason)."""
    reason = check_response(response)
    if reason is not None:
        return None, f"malformed:{reason}"
    if require_correct and row.get("answer") not in (None, "") and not is_correct(answer_of(response), row["answer"]):
        return None, "wrong_answer"
    trace = {k: row.get(k) for k in PROMPT_FIELDS}
    if sample:
        trace["id"] = f"{row['id']}#s{sample}"
    trace["system"] = system_prompt(row["lang"])
    trace["response"] = response.strip()
    return trace, None


def run_backend(backend: str, rows: list[dict], tcfg: dict, seed: int) -> list[list[str | None]]:
    """Completions per row (`samples_per_prompt` each); None where the backend has none."""
    if backend == "reference":
        return [[reference_response(r)] for r in rows]
    if not tcfg.get("model"):
        raise CompassError(f"teacher.model must name a checkpoint for the {backend} backend")
    conversations = [prompt_messages(r["problem"], r["lang"]) for r in rows]
    from compass.generation import Sampling

    sampling = Sampling(
        max_new_tokens=tcfg["max_new_tokens"], temperature=tcfg["temperature"], top_p=tcfg["top_p"],
        n=tcfg["samples_per_prompt"], seed=seed,
    )
    template_kwargs = {"enable_thinking": tcfg["enable_thinking"]}
    if backend == "hf":
        from compass import generation

        model, tokenizer = generation.load(tcfg["model"])
        return generation.generate(model, tokenizer, conversations, sampling, tcfg["batch_size"], "distill", template_kwargs)
    if backend == "vllm":
        from compass.teacher import vllm_backend

        return vllm_backend.generate(tcfg["model"], conversations, sampling, tcfg["tensor_parallel_size"], template_kwargs)
    raise CompassError(f"teacher.backend: unknown backend {backend!r}")


def distill(rows: list[dict], tcfg: dict, seed: int, is_correct) -> tuple[list[dict], dict]:
    completions = run_backend(tcfg["backend"], rows, tcfg, seed)
    traces, drops, per_source = [], Counter(), Counter()
    for row, outs in zip(rows, completions):
        for s, text in enumerate(outs):
            if text is None:
                drops["no_reference_solution"] += 1
                continue
            trace, reason = to_trace(row, text, sample=s, require_correct=tcfg["require_correct"], is_correct=is_correct)
            if trace is None:
                drops[reason] += 1
            else:
                traces.append(trace)
                per_source[row["source"]] += 1
    stats = {
        "backend": tcfg["backend"],
        "prompts": len(rows),
        "completions": sum(len(o) for o in completions),
        "traces": len(traces),
        "dropped": dict(sorted(drops.items())),
        "per_source": dict(sorted(per_source.items())),
    }
    return traces, stats


def add_arguments(p) -> None:
    p.add_argument("--prompts", required=True, type=Path, help="normalised prompts JSONL (from `compass prompts`)")
    p.add_argument("--out", required=True, type=Path, help="output traces JSONL")
    p.add_argument("--stats", type=Path, default=None, help="statistics JSON (default: OUT with .stats.json)")
    p.add_argument("--backend", choices=["reference", "hf", "vllm"], help="overrides teacher.backend")
    p.add_argument("--model", help="overrides teacher.model")


def main(args, cfg) -> None:
    from compass.eval.grade import is_correct

    tcfg = dict(cfg["teacher"])
    if args.backend:
        tcfg["backend"] = args.backend
    if args.model:
        tcfg["model"] = args.model
    rows = read_jsonl(args.prompts, required=PROMPT_FIELDS)
    traces, stats = distill(rows, tcfg, cfg["seed"], is_correct)
    if not traces:
        raise CompassError(f"no trace survived the filters (drops: {stats['dropped']})")
    write_json(args.stats or Path(args.out).with_suffix(".stats.json"), stats)
    write_jsonl(args.out, traces)
    print(f"{stats['traces']} traces from {stats['prompts']} prompts ({tcfg['backend']}); dropped: {stats['dropped']} -> {args.out}")
