"""`compass distill`: teacher traces in the XML format, from one of three backends.

- `reference`: no model; a dataset's own worked solution becomes the <Thinking> (the demo uses it).
- `hf`: batched transformers generation (CPU or GPU).
- `vllm`: vLLM's offline engine with tensor parallelism (production; imported only when chosen).

The backends only turn conversations into completions. Prompt building, parsing and filtering are
shared (`run_backend`, `to_trace`) so what reaches the SFT data does not depend on the backend.

Image prompts (rows with `images`, compass.images: the synthetic charts, ChartQA, MathVista) go to an
`hf` or `vllm` teacher as one image part per picture before the question (the teacher must be an
image-text checkpoint, e.g. Qwen2.5-VL); the `reference` backend needs no model (the charts' worked
solutions). Traces keep their `images`, rewritten relative to the traces file.

Cluster scale: `--shard I --num-shards N` takes one contiguous slice of the prompts. Completions
are appended to `OUT.progress.jsonl` one chunk at a time (a single write, flushed and fsynced), so
a shard killed midway (SIGTERM, SIGKILL, preemption) restarts after its last saved chunk without
regenerating, duplicating or losing an item. The progress file starts with the fingerprint of what
determines its completions (the shard's prompt rows, the teacher settings, the seed, the vLLM engine
arguments, the teacher checkpoint's files); a progress file of another run is set aside, with a
message, and the shard starts afresh. The traces file itself appears only when the shard is complete
(the progress file is then removed); `compass gather-traces` joins the shards.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

from compass.images import rebase
from compass.io import CompassError, dumps, read_jsonl, write_json, write_jsonl
from compass.trace_format import check_response, format_response, prompt_messages, system_prompt

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
    # graded as evaluation grades (the whole response: its <Answer> box), so a label answer ("Lime", "1月") counts too
    if require_correct and row.get("answer") not in (None, "") and not is_correct(response, row["answer"]):
        return None, "wrong_answer"
    trace = {k: row.get(k) for k in PROMPT_FIELDS}
    for k in ("images", "image_digests"):  # an image prompt's pictures (compass.images), relative to the prompts file
        if row.get(k):
            trace[k] = row[k]
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

    def __init__(self, tcfg: dict, seed: int, engine_kwargs: dict | None = None, base_dir=None):
        self.backend, self.tcfg, self.seed = tcfg["backend"], tcfg, seed
        self.base_dir = base_dir  # the directory of the prompts file: image paths are relative to it
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

        n_images = [len(r.get("images") or []) for r in rows]
        conversations = [prompt_messages(r["problem"], r["lang"], n) for r, n in zip(rows, n_images)]
        images = None
        if any(n_images):
            if not self.engine.vlm:
                first = next(r["id"] for r, n in zip(rows, n_images) if n)
                raise CompassError(f"teacher.model {self.tcfg['model']} is a text-only model, and prompts such as {first} "
                                   "come with images: name an image-text teacher (e.g. Qwen/Qwen2.5-VL-72B-Instruct)")
            from compass.images import load_images

            images = [load_images(r, self.base_dir) for r in rows]
        return generation.texts(self.engine.generate(conversations, self.sampling, images=images, desc="distill",
                                                        ids=[r["id"] for r in rows]))


def model_files(model) -> list | str | None:
    """What identifies the teacher checkpoint: a local directory's files (name, size, mtime: cheap, and
    changed by any rewrite), else the Hub id as given (its cached snapshot is fetched once)."""
    if model and Path(model).is_dir():
        root = Path(model)
        return [[p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns]
                for p in sorted(root.rglob("*")) if p.is_file()]
    return model


def progress_fingerprint(rows: list[dict], tcfg: dict, seed: int, engine_kwargs: dict | None) -> str:
    """Everything that determines a shard's completions: its prompt rows, the teacher settings (backend,
    model, sampling, batching), the seed and the vLLM engine arguments."""
    content = {"rows": rows, "teacher": {k: v for k, v in tcfg.items() if k != "shards"}, "seed": seed,
               "engine_kwargs": engine_kwargs or {}, "model_files": model_files(tcfg.get("model"))}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def read_progress(path: Path, fingerprint: str | None = None) -> dict[str, list]:
    """Completions saved by an earlier, interrupted run of the same shard: {id: completions}. A torn
    last line (the process died inside a write) is cut off; its chunk is generated again. A file whose
    first line is not `fingerprint` belongs to another run (changed prompts, seed or teacher): it is
    removed, with a message, and nothing is resumed."""
    done: dict[str, list] = {}
    if not path.is_file():
        return done
    data = path.read_bytes()
    lines = data.split(b"\n")
    offset = 0
    for i, line in enumerate(lines):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if i == 0 and fingerprint is not None and (rec is None or rec.get("fingerprint") != fingerprint):
            print(f"{path}: progress of another run (prompts, seed or teacher settings changed): starting afresh")
            path.unlink()
            return {}
        if rec is None:
            if i >= len(lines) - 2:  # only the last line can be torn: cut it off before appending again
                os.truncate(path, start)
                break
            raise CompassError(f"{path}:{i + 1}: corrupt progress line (delete the file to start the shard again)")
        if i == 0 and fingerprint is not None:
            continue
        done[str(rec["id"])] = rec["completions"]
    return done


def _append(path: Path, data: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def append_progress(path: Path, rows: list[dict], completions: list[list]) -> None:
    _append(path, "".join(dumps({"id": r["id"], "completions": c}) + "\n" for r, c in zip(rows, completions)))


def generate_resumable(rows: list[dict], generate, progress: Path, chunk_size: int,
                       fingerprint: str | None = None) -> tuple[list[list], int]:
    """Completions for every row, saved chunk by chunk to `progress` (whose first line is `fingerprint`);
    returns (completions, resumed)."""
    from tqdm import tqdm

    done = read_progress(progress, fingerprint)
    if fingerprint is not None and not progress.is_file():
        _append(progress, dumps({"fingerprint": fingerprint}) + "\n")
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


def main(args, cfg) -> None:
    from compass.answers import is_correct

    tcfg = cfg["teacher"]  # backend, model & co.: --set teacher.KEY=VALUE, --config FILE or the rule's --params
    all_rows = read_jsonl(args.prompts, required=PROMPT_FIELDS)
    if not all_rows:
        raise CompassError(f"{args.prompts}: no prompts (an empty file)")
    rows = all_rows[shard_slice(len(all_rows), args.shard, args.num_shards)]
    progress = Path(f"{args.out}.progress.jsonl")
    progress.parent.mkdir(parents=True, exist_ok=True)
    template_kwargs = None
    if rows:
        generator = Generator(tcfg, cfg["seed"], cfg["vllm"]["engine_kwargs"], base_dir=Path(args.prompts).parent)
        fingerprint = progress_fingerprint(rows, tcfg, cfg["seed"], cfg["vllm"]["engine_kwargs"])
        completions, resumed = generate_resumable(rows, generator, progress, tcfg["chunk_size"], fingerprint)
        template_kwargs = generator.template_kwargs
    else:  # more shards than prompts: an empty shard, no teacher loaded
        completions, resumed = [], 0
        print(f"shard {args.shard} of {args.num_shards} holds none of the {len(all_rows)} prompts")
    traces, stats = filter_traces(rows, completions, tcfg["require_correct"], is_correct)
    traces = [rebase(t, Path(args.prompts).parent, Path(args.out).parent) for t in traces]  # images: from the traces file
    stats = {"backend": tcfg["backend"], "shard": args.shard, "num_shards": args.num_shards, "resumed": resumed,
             "chat_template_kwargs": template_kwargs, **stats}
    write_json(args.stats or Path(args.out).with_suffix(".stats.json"), stats)
    write_jsonl(args.out, traces)
    progress.unlink(missing_ok=True)
    print(f"{stats['traces']} traces from {stats['prompts']} prompts ({tcfg['backend']}); dropped: {stats['dropped']} -> {args.out}")
