"""`compass pairs`: DPO preference pairs from teacher traces.

Every trace row (`id`, `problem`, `response`, and `lang`, `source`, `answer` when known) becomes at
most one pair in TRL's conversational format::

    {"id", "source", "lang", "strategy",
     "prompt": [system, user], "chosen": [assistant: the trace], "rejected": [assistant: a worse one]}

The rejected side is a synthetic corruption of the trace (`compass.pairs.corrupt`), drawn per row
with the configured weights, or, in on-policy mode, the SFT model's own sample that the grader
marks wrong (`compass.pairs.on_policy`).

Determinism: a row's randomness is `random.Random` seeded with (seed, row id) only, and the output
is sorted by id (rows with the same id by their own bytes). So the same input and seed give
byte-identical output whatever the order of the rows or the number of workers; the stats JSON
holds no timing either.

The pure core is `make_pair` (one row in, its pair out) and `build_pairs` (rows in, sorted pairs and
stats out); `run_pairs` reads a JSONL file through it (in worker processes when asked), sorts the
pairs in memory and writes them; `main` is the CLI edge.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import multiprocessing
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from compass import trace_format
from compass.images import rebase
from compass.io import CompassError, JsonlError, atomic_output, dumps, write_json
from compass.pairs.corrupt import STRATEGIES, corrupt
from compass.pairs.on_policy import ON_POLICY, id_text, load_samples, mix_on_policy, samples_for
from compass.trace_format import detect_lang, prompt_messages

REQUIRED = ("id", "problem", "response")
DEFAULT_WEIGHTS = {"omit_thinking": 0.34, "tamper_thinking_numbers": 0.33, "tamper_answer": 0.33}
MAX_ERRORS_IN_STATS = 20

# ---------------------------------------------------------------------------------------------
# Pure core
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything a row's pair depends on (besides the row)."""

    seed: int = 42
    weights: tuple[tuple[str, float], ...] = tuple(DEFAULT_WEIGHTS.items())
    require_tags: bool = False
    on_policy_ratio: float = 0.0
    samples: Mapping[str, list[str]] | None = field(default=None, compare=False)
    is_correct: Callable[[str, str], bool] | None = field(default=None, compare=False)
    # (traces directory, pairs directory): a row's relative image paths are rewritten for the pairs file
    image_dirs: tuple[str, str] | None = None


def make_settings(*, seed=42, weights=None, require_tags=False, on_policy_ratio=0.0, samples=None, is_correct=None) -> Settings:
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = sorted(set(weights) - set(STRATEGIES))
    if unknown:
        raise CompassError(f"pairs.weights: unknown strategy {unknown[0]} (known: {', '.join(STRATEGIES)})")
    ordered = tuple((name, float(weights.get(name, 0.0))) for name in STRATEGIES)
    if any(w < 0 for _, w in ordered) or sum(w for _, w in ordered) <= 0:
        raise CompassError("pairs.weights: weights must be >= 0 and at least one > 0")
    if not 0.0 <= on_policy_ratio <= 1.0:
        raise CompassError(f"pairs.on_policy_ratio must lie in [0, 1], got {on_policy_ratio}")
    if on_policy_ratio > 0 and (samples is None or is_correct is None):
        raise CompassError("pairs.on_policy_ratio > 0 needs on-policy samples (--samples) and a grader")
    return Settings(int(seed), ordered, bool(require_tags), float(on_policy_ratio), samples, is_correct)


def row_random(seed: int, row_id) -> random.Random:
    """The synthetic corruption's random stream of one row: a function of the seed and the row id only
    (7 and "7" are the same id)."""
    return random.Random(f"{seed}:{id_text(row_id)}")


def sort_key(row_id) -> bytes:
    """Output order: the id as text, as UTF-8 bytes (code-point order; integer ids as their decimal text)."""
    return id_text(row_id).encode("utf-8")


def check_row(row) -> str | None:
    """Why a parsed line is not a usable trace row, or None."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    rid = row["id"]
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return "field id must be a string or an integer"
    for k in ("problem", "response"):
        if not isinstance(row[k], str):
            return f"field {k} must be a string"
    for k in ("lang", "source", "answer"):
        if row.get(k) is not None and not isinstance(row[k], str):
            return f"field {k} must be a string or null"
    return None


def pair_parts(row: dict, settings: Settings, counts: Counter) -> tuple[str, str] | None:
    """(strategy, rejected text) for one (already checked) trace row, or None when the row is
    dropped; `counts` gets `strategy:*`, `dropped:*`, `fallback:*` and `on_policy:*` keys."""
    response = row["response"]
    loc = None
    if settings.require_tags:
        loc, reason = trace_format.parse(response)
        if reason is not None:
            counts[f"dropped:malformed:{reason}"] += 1
            return None
    rejected = None
    if settings.on_policy_ratio > 0 and settings.samples is not None:
        rejected, outcome = mix_on_policy(
            row, samples_for(settings.samples, row["id"]),
            seed=settings.seed, ratio=settings.on_policy_ratio, is_correct=settings.is_correct,
        )
        counts[f"on_policy:{outcome}"] += 1
        strategy = ON_POLICY
    if rejected is None:
        rejected, strategy, drawn = corrupt(response, row_random(settings.seed, row["id"]), dict(settings.weights), loc)
        if strategy != drawn:
            counts[f"fallback:{drawn}->{strategy or 'none'}"] += 1
        if rejected is None:
            counts["dropped:no_applicable_strategy"] += 1
            return None
    if rejected == response:  # impossible by construction; the guarantee is checked here anyway
        counts["dropped:rejected_equals_chosen"] += 1
        return None
    counts[f"strategy:{strategy}"] += 1
    return strategy, rejected


def pair_dict(row: dict, strategy: str, rejected: str) -> dict:
    """The output row (TRL conversational preference format plus id, source, lang, strategy; an image row's
    `images`, compass.images). The prompt stays text: the VLM stage puts the image parts in
    (compass.train.vlm.with_image_parts), so text and image pairs share one column type."""
    lang = row.get("lang") or detect_lang(row["problem"])
    images = row.get("images") or []
    pair = {
        "id": row["id"],
        "source": row.get("source"),
        "lang": lang,
        "strategy": strategy,
        "prompt": prompt_messages(row["problem"], lang),
        "chosen": [{"role": "assistant", "content": row["response"]}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }
    if images:
        pair["images"] = images
    return pair


def make_pair(row: dict, settings: Settings, counts: Counter) -> dict | None:
    """The pair of one (already checked) trace row, or None when the row is dropped."""
    parts = pair_parts(row, settings, counts)
    if parts is None:
        return None
    if settings.image_dirs and row.get("images"):
        row = rebase(row, *settings.image_dirs)
    return pair_dict(row, *parts)


def keyed_line(row: dict, pair: dict) -> tuple[bytes, bytes]:
    """(sort key, JSONL line) of a pair: the output file is these lines in key order."""
    return sort_key(row["id"]), (dumps(pair) + "\n").encode("utf-8")


def summarize(counts: Counter, settings: Settings, *, rows_in: int, pairs_out: int, duplicate_ids: int,
              extra: dict | None = None) -> dict:
    """The stats JSON from the counters (no timings, so it is as deterministic as the pairs)."""

    def section(prefix, keys=()):
        d = {k: 0 for k in keys}
        for k, v in counts.items():
            if k.startswith(prefix):
                d[k[len(prefix):]] = d.get(k[len(prefix):], 0) + v
        return dict(sorted(d.items()))

    fallback_paths = section("fallback:")
    fallbacks = Counter()
    for path, n in fallback_paths.items():
        fallbacks[path.split("->")[0]] += n
    strategies = section("strategy:", STRATEGIES + ((ON_POLICY,) if settings.samples is not None else ()))
    stats = {
        "rows_in": rows_in,
        "pairs_out": pairs_out,
        "strategies": strategies,
        "fallbacks": dict(sorted(fallbacks.items())),
        "fallback_paths": fallback_paths,
        "dropped": section("dropped:"),
        "seed": settings.seed,
        "weights": dict(settings.weights),
        "require_tags": settings.require_tags,
    }
    if settings.samples is not None:
        op = section("on_policy:", ("not_drawn", "no_samples", "no_gold", "no_wrong_sample", ON_POLICY))
        stats["on_policy"] = {
            "ratio": settings.on_policy_ratio,
            "share": round(strategies.get(ON_POLICY, 0) / pairs_out, 6) if pairs_out else 0.0,
            "outcomes": op,
        }
    stats["duplicate_ids"] = duplicate_ids
    if extra:
        stats.update(extra)
    return stats


def sort_keyed(keyed: list[tuple]) -> int:
    """Sort (key, line, ...) tuples into output order (by key, then by the line's bytes) in place;
    how many repeat the previous one's id."""
    keyed.sort(key=lambda t: t[:2])
    return sum(a[0] == b[0] for a, b in zip(keyed, keyed[1:]))


def build_pairs(rows: Iterable[dict], *, seed: int = 42, weights: Mapping[str, float] | None = None, require_tags: bool = False,
                samples: Mapping[str, list[str]] | None = None, is_correct: Callable[[str, str], bool] | None = None,
                on_policy_ratio: float = 0.0) -> tuple[list[dict], dict]:
    """Pairs (sorted as the output file is) and stats for trace rows. A row that is not a usable
    trace raises ValueError (the file reader reports those as file:line instead)."""
    settings = make_settings(seed=seed, weights=weights, require_tags=require_tags, on_policy_ratio=on_policy_ratio,
                             samples=samples, is_correct=is_correct)
    counts: Counter = Counter()
    keyed, n = [], 0
    for n, row in enumerate(rows, 1):
        problem = check_row(row)
        if problem is not None:
            raise ValueError(f"row {n - 1}: {problem}")
        pair = make_pair(row, settings, counts)
        if pair is not None:
            keyed.append((*keyed_line(row, pair), pair))
    duplicates = sort_keyed(keyed)
    return [pair for *_, pair in keyed], summarize(counts, settings, rows_in=n, pairs_out=len(keyed), duplicate_ids=duplicates)


# ---------------------------------------------------------------------------------------------
# A JSONL file through the core
# ---------------------------------------------------------------------------------------------


def pairs_of_block(settings: Settings, stop_on_error: bool, block: tuple[int, bytes]) -> dict:
    """The keyed pair lines of a block of whole input lines (first line number, bytes), its counters,
    its bad lines as (line number, message) and its row count. A plain function: it runs in workers."""
    first_lineno, data = block
    keyed, counts, errors, rows_in = [], Counter(), [], 0
    for lineno, line in enumerate(data.split(b"\n"), first_lineno):
        if not line.strip():
            continue
        rows_in += 1
        try:
            row = json.loads(line)
            problem = check_row(row)
            if problem is not None:
                raise ValueError(problem)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError included
            errors.append((lineno, str(e)))
            counts["dropped:bad_line"] += 1
            if stop_on_error:
                break
            continue
        pair = make_pair(row, settings, counts)
        if pair is not None:
            keyed.append(keyed_line(row, pair))
    return {"keyed": keyed, "counts": counts, "errors": errors, "rows_in": rows_in, "bytes": len(data)}


def read_blocks(path: Path, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(first line number, whole lines) of the file, about `block_bytes` at a time."""
    lineno, rest = 1, b""
    with open(path, "rb") as f:
        while data := f.read(block_bytes):
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut:
                yield lineno, data[:cut]
                lineno += data.count(b"\n", 0, cut)
            rest = data[cut:]
    if rest:
        yield lineno, rest


_worker_args: tuple[Settings, bool] | None = None  # set once in each worker by the Pool's initializer


def _init_worker(settings: Settings, stop_on_error: bool) -> None:
    global _worker_args
    _worker_args = (settings, stop_on_error)


def _worker(block: tuple[int, bytes]) -> dict:
    return pairs_of_block(*_worker_args, block)


def map_blocks(settings: Settings, stop_on_error: bool, workers: int, blocks: Iterable[tuple[int, bytes]]) -> Iterator[dict]:
    """`pairs_of_block` over the blocks, results in input order: in this process, or in a Pool of `workers`."""
    if workers <= 1:
        yield from map(functools.partial(pairs_of_block, settings, stop_on_error), blocks)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, _init_worker, (settings, stop_on_error)) as pool:
        yield from pool.imap(_worker, blocks)


def run_pairs(traces, out, stats_path, settings: Settings, *, on_bad_line: str = "raise", workers: int = 1,
              progress: bool | None = None, block_bytes: int = 1 << 20, extra_stats: dict | None = None) -> dict:
    """Read traces JSONL, write the pairs JSONL and the stats JSON (each appears only when whole).

    The pairs are sorted in memory (the process holds about the output's size); a bad line stops the
    run (on_bad_line "raise") or is skipped, counted and listed (the first 20) in the stats."""
    traces, out = Path(traces), Path(out)
    if not traces.is_file():
        raise CompassError(f"{traces}: file not found")
    settings = replace(settings, image_dirs=(str(traces.parent), str(out.parent)))
    stop = on_bad_line != "skip"
    size = traces.stat().st_size
    if progress is None:
        progress = sys.stderr.isatty() or size > (256 << 20)
    from tqdm import tqdm

    keyed, counts, errors, rows_in = [], Counter(), [], 0
    with atomic_output(out) as tmp:
        with tqdm(total=size, unit="B", unit_scale=True, desc="pairs", file=sys.stderr, disable=not progress,
                  mininterval=1.0) as bar, contextlib.closing(map_blocks(settings, stop, workers, read_blocks(traces, block_bytes))) as results:
            for block in results:
                for lineno, msg in block["errors"]:
                    if stop:
                        raise JsonlError(traces, lineno, msg)
                    errors.append(str(JsonlError(traces, lineno, msg)))
                keyed += block["keyed"]
                counts.update(block["counts"])
                rows_in += block["rows_in"]
                bar.update(block["bytes"])
        duplicates = sort_keyed(keyed)
        with open(tmp, "wb") as f:
            f.writelines(line for _, line in keyed)
    stats = summarize(counts, settings, rows_in=rows_in, pairs_out=len(keyed), duplicate_ids=duplicates, extra=extra_stats)
    if errors:
        stats["bad_lines"] = errors[:MAX_ERRORS_IN_STATS]
    write_json(stats_path, stats)
    return stats


# ---------------------------------------------------------------------------------------------
# CLI edge
# ---------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--traces", required=True, type=Path, help="teacher traces JSONL (id, problem, response; lang, source, answer when known)")
    p.add_argument("--out", required=True, type=Path, help="output pairs JSONL (TRL conversational preference format)")
    p.add_argument("--stats", type=Path, default=None, help="statistics JSON (default: OUT with .stats.json)")
    p.add_argument("--samples", type=Path, default=None,
                   help='on-policy samples JSONL: {"id": ..., "samples": ["model output", ...]} per prompt (with pairs.on_policy_ratio > 0)')
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: on a terminal, or for inputs over 256 MB)")


def main(args, cfg) -> None:
    """Settings (seed, require_tags, workers, on_bad_line, on_policy_ratio, weights) come from config
    `pairs`, like every stage's: --set pairs.KEY=VALUE, --config FILE or the rule's --params."""
    pcfg = cfg["pairs"]
    samples = is_correct = None
    extra = None
    if args.samples is not None:
        samples, sample_errors = load_samples(args.samples, on_bad_line=pcfg["on_bad_line"])
        from compass.answers import is_correct  # noqa: F811 (only on-policy mode needs the grader)

        if sample_errors:
            extra = {"bad_sample_lines": [str(e) for e in sample_errors[:MAX_ERRORS_IN_STATS]]}
        if pcfg["on_policy_ratio"] <= 0:
            print("compass pairs: --samples given but pairs.on_policy_ratio is 0: synthetic pairs only", file=sys.stderr)
    elif pcfg["on_policy_ratio"] > 0:
        raise CompassError("pairs.on_policy_ratio > 0 needs --samples (the SFT model's sampled responses)")
    settings = make_settings(seed=pcfg["seed"], weights=pcfg["weights"], require_tags=pcfg["require_tags"],
                             on_policy_ratio=pcfg["on_policy_ratio"], samples=samples, is_correct=is_correct)
    stats_path = args.stats or Path(args.out).with_suffix(".stats.json")
    t0 = time.perf_counter()
    stats = run_pairs(args.traces, args.out, stats_path, settings, on_bad_line=pcfg["on_bad_line"],
                      workers=pcfg["workers"], progress=args.progress, extra_stats=extra)
    dt = time.perf_counter() - t0
    if stats.get("bad_lines"):
        print(f"compass pairs: skipped {stats['dropped'].get('bad_line', 0)} malformed line(s), first: {stats['bad_lines'][0]}", file=sys.stderr)
    if stats["pairs_out"] == 0:
        print(f"compass pairs: warning: no pair written (dropped: {stats['dropped']})", file=sys.stderr)
    print(f"{stats['pairs_out']} pairs from {stats['rows_in']} traces in {dt:.1f}s "
          f"({stats['strategies']}; dropped: {stats['dropped']}) -> {args.out}")
