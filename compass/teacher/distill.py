"""`compass distill`: teacher traces in the XML format, from one of three backends.

- `reference`: no model; a dataset's own worked solution becomes the <Thinking> (the demo uses it).
- `hf`: batched transformers generation (CPU or GPU).
- `vllm`: vLLM's offline engine with tensor parallelism (production; imported only when chosen).

The backends only turn conversations into completions. Prompt building, parsing and filtering are
shared (`run_backend`, `to_trace`) so what reaches the SFT data does not depend on the backend.

Cluster scale: `--shard I --num-shards N` takes one contiguous slice of the prompts. Completions
are appended to `OUT.progress.jsonl` one chunk at a time (a single write, flushed and fsynced), so
a shard killed midway (SIGTERM, SIGKILL, preemption) restarts after its last saved chunk without
regenerating, duplicating or losing an item. The traces file itself appears only when the shard is
complete; `compass gather-traces` joins the shards.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from compass.io import CompassError, dumps, read_jsonl, write_json, write_jsonl
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


def shard_slice(n_rows: int, shard: int, num_shards: int) -> slice:
    """Contiguous, near-equal slice `shard` of `num_shards` (every row in exactly one shard)."""
    if not 0 <= shard < num_shards:
        raise CompassError(f"--shard {shard} is outside 0..{num_shards - 1}")
    return slice(shard * n_rows // num_shards, (shard + 1) * n_rows // num_shards)


def teacher_chat(tcfg: dict) -> dict:
    """The teacher's own chat template settings: its template arguments (enable_thinking & co.)."""
    return {"template_kwargs": {"enable_thinking": tcfg["enable_thinking"], **tcfg["template_kwargs"]}, "stop_tokens": None}


class Generator:
    """One backend, loaded once, turning rows into `samples_per_prompt` completions each."""

    def __init__(self, tcfg: dict, seed: int, engine_kwargs: dict | None = None):
        self.backend, self.tcfg, self.seed = tcfg["backend"], tcfg, seed
        self.template_kwargs = None
        if self.backend == "reference":
            return
        if not tcfg.get("model"):
            raise CompassError(f"teacher.model must name a checkpoint for the {self.backend} backend")
        from compass import generation

        self.sampling = generation.Sampling(
            max_new_tokens=tcfg["max_new_tokens"], temperature=tcfg["temperature"], top_p=tcfg["top_p"],
            n=tcfg["samples_per_prompt"], seed=seed,
        )
        self.engine = generation.load(self.backend, tcfg["model"], teacher_chat(tcfg), batch_size=tcfg["batch_size"],
                                      tensor_parallel_size=tcfg["tensor_parallel_size"], seed=seed,
                                      engine_kwargs=engine_kwargs)
        self.template_kwargs = self.engine.template_kwargs

    def __call__(self, rows: list[dict]) -> list[list[str | None]]:
        if self.backend == "reference":
            return [[reference_response(r)] for r in rows]
        from compass import generation

        conversations = [prompt_messages(r["problem"], r["lang"]) for r in rows]
        return generation.texts(self.engine.generate(conversations, self.sampling, desc="distill"))


def read_progress(path: Path) -> dict[str, list]:
    """Completions saved by an earlier, interrupted run: {id: completions}. A torn last line (the
    process died inside a write) is ignored; its chunk is generated again."""
    done: dict[str, list] = {}
    if not path.is_file():
        return done
    lines = path.read_bytes().split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if i >= len(lines) - 2:  # only the last line can be torn
                break
            raise CompassError(f"{path}:{i + 1}: corrupt progress line (delete the file to start the shard again)") from None
        done[str(rec["id"])] = rec["completions"]
    return done


def append_progress(path: Path, rows: list[dict], completions: list[list]) -> None:
    data = "".join(dumps({"id": r["id"], "completions": c}) + "\n" for r, c in zip(rows, completions))
    with open(path, "a", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def generate_resumable(rows: list[dict], generate, progress: Path, chunk_size: int) -> tuple[list[list], int]:
    """Completions for every row, saved chunk by chunk to `progress`; returns (completions, resumed)."""
    from tqdm import tqdm

    done = read_progress(progress)
    resumed = sum(1 for r in rows if str(r["id"]) in done)
    if resumed:
        print(f"resuming: {resumed} of {len(rows)} prompts already generated ({progress})")
    todo = [r for r in rows if str(r["id"]) not in done]
    with tqdm(total=len(rows), initial=resumed, desc="distill", unit="prompt") as bar:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            outs = generate(chunk)
            append_progress(progress, chunk, outs)
            done.update((str(r["id"]), o) for r, o in zip(chunk, outs))
            bar.update(len(chunk))
    return [done[str(r["id"])] for r in rows], resumed


def filter_traces(rows: list[dict], completions: list[list], require_correct: bool, is_correct) -> tuple[list[dict], dict]:
    traces, drops, per_source = [], Counter(), Counter()
    for row, outs in zip(rows, completions):
        for s, text in enumerate(outs):
            if text is None:
                drops["no_reference_solution"] += 1
                continue
            trace, reason = to_trace(row, text, sample=s, require_correct=require_correct, is_correct=is_correct)
            if trace is None:
                drops[reason] += 1
            else:
                traces.append(trace)
                per_source[row["source"]] += 1
    stats = {
        "prompts": len(rows),
        "completions": sum(len(o) for o in completions),
        "traces": len(traces),
        "dropped": dict(sorted(drops.items())),
        "per_source": dict(sorted(per_source.items())),
    }
    return traces, stats


def add_arguments(p) -> None:
    p.add_argument("--prompts", required=True, type=Path, help="normalised prompts JSONL (from `compass prompts`)")
    p.add_argument("--out", required=True, type=Path, help="output traces JSONL (of this shard)")
    p.add_argument("--stats", type=Path, default=None, help="statistics JSON (default: OUT with .stats.json)")
    p.add_argument("--shard", type=int, default=0, help="which shard of the prompts to distill (0-based)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards the prompts are split into")
    p.add_argument("--backend", choices=["reference", "hf", "vllm"], help="overrides teacher.backend")
    p.add_argument("--model", help="overrides teacher.model")


def main(args, cfg) -> None:
    from compass.answers import is_correct

    tcfg = dict(cfg["teacher"])
    if args.backend:
        tcfg["backend"] = args.backend
    if args.model:
        tcfg["model"] = args.model
    all_rows = read_jsonl(args.prompts, required=PROMPT_FIELDS)
    rows = all_rows[shard_slice(len(all_rows), args.shard, args.num_shards)]
    progress = Path(f"{args.out}.progress.jsonl")
    progress.parent.mkdir(parents=True, exist_ok=True)
    generator = Generator(tcfg, cfg["seed"], cfg["vllm"]["engine_kwargs"])
    completions, resumed = generate_resumable(rows, generator, progress, tcfg["chunk_size"])
    traces, stats = filter_traces(rows, completions, tcfg["require_correct"], is_correct)
    stats = {"backend": tcfg["backend"], "shard": args.shard, "num_shards": args.num_shards, "resumed": resumed,
             "chat_template_kwargs": generator.template_kwargs, **stats}
    write_json(args.stats or Path(args.out).with_suffix(".stats.json"), stats)
    write_jsonl(args.out, traces)
    progress.unlink()
    print(f"{stats['traces']} traces from {stats['prompts']} prompts ({tcfg['backend']}); dropped: {stats['dropped']} -> {args.out}")
