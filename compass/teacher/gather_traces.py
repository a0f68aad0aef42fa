"""`compass gather-traces` (rule gather_traces): join the distillation shards into one traces file, with its report.

The stats sum the shards' and add counts per source and language and the response-length
distribution; a histogram of response lengths is drawn beside them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from compass.images import rebase
from compass.io import CompassError, atomic_output, dumps, iter_jsonl, read_json, write_json


def merge_stats(shard_stats: list[dict]) -> dict:
    out = {"backend": shard_stats[0]["backend"] if shard_stats else None, "shards": len(shard_stats),
           "prompts": 0, "completions": 0, "traces": 0, "resumed": 0, "dropped": Counter(), "per_source": Counter()}
    for s in shard_stats:
        for k in ("prompts", "completions", "traces", "resumed"):
            out[k] += s.get(k, 0)
        out["dropped"].update(s["dropped"])
        out["per_source"].update(s["per_source"])
    out["dropped"] = dict(sorted(out["dropped"].items()))
    out["per_source"] = dict(sorted(out["per_source"].items()))
    return out


def length_summary(lengths: list[int]) -> dict:
    if not lengths:
        return {}
    xs = sorted(lengths)
    q = lambda f: xs[min(len(xs) - 1, int(f * len(xs)))]  # noqa: E731
    return {"min": xs[0], "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": xs[-1], "mean": round(sum(xs) / len(xs), 1)}


def plot_lengths(by_lang: dict[str, list[int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for lang, xs in sorted(by_lang.items()):
        ax.hist(xs, bins=40, alpha=0.6, label=f"{lang} (n={len(xs)})")
    ax.set_xlabel("response length (characters)")
    ax.set_ylabel("traces")
    ax.set_title("Teacher trace lengths")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gather(shards: list[Path], out: Path, stats_path: Path, plot_path: Path | None) -> dict:
    stats = merge_stats([read_json(Path(s).with_suffix(".stats.json")) for s in shards])
    if stats["prompts"] and not stats["traces"]:
        raise CompassError(f"no trace survived the filters in any shard (drops: {stats['dropped']})")
    per_lang, by_lang, seen = Counter(), {}, set()
    with atomic_output(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for shard in shards:
            for row in iter_jsonl(shard, required=("id", "response")):
                if row["id"] in seen:
                    raise CompassError(f"{shard}: trace id {row['id']} also appears in an earlier shard")
                seen.add(row["id"])
                row = rebase(row, Path(shard).parent, Path(out).parent)  # image paths: from the joined file
                per_lang[row.get("lang") or "?"] += 1
                by_lang.setdefault(row.get("lang") or "?", []).append(len(row["response"]))
                f.write(dumps(row) + "\n")
    stats["per_lang"] = dict(sorted(per_lang.items()))
    stats["response_chars"] = {lang: length_summary(xs) for lang, xs in sorted(by_lang.items())}
    write_json(stats_path, stats)
    if plot_path is not None:
        with atomic_output(plot_path) as tmp:
            plot_lengths(by_lang, Path(tmp).with_suffix(".png"))
            Path(tmp).with_suffix(".png").replace(tmp)
    return stats


def add_arguments(p) -> None:
    p.add_argument("--shards", nargs="+", required=True, type=Path, help="shard traces JSONL files, in order")
    p.add_argument("--out", required=True, type=Path, help="joined traces JSONL")
    p.add_argument("--stats", type=Path, default=None, help="statistics JSON (default: OUT with .stats.json)")
    p.add_argument("--plot", type=Path, default=None, help="response-length histogram PNG")


def main(args, cfg) -> None:
    stats = gather(args.shards, args.out, args.stats or Path(args.out).with_suffix(".stats.json"), args.plot)
    print(f"{stats['traces']} traces from {stats['shards']} shard(s); per source {stats['per_source']}; "
          f"dropped {stats['dropped']} -> {args.out}")
