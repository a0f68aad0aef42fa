"""`compass prompts`: the configured sources, normalised into one prompt file.

Every row has the schema `{id, source, lang, problem, answer, solution}` (solution may be null).
The demo source also yields its held-out test split, written as the evaluation task `demo`.
"""

from __future__ import annotations

from pathlib import Path

from compass.data import demo
from compass.io import CompassError, write_json, write_jsonl


def demo_rows(demo_cfg: dict, seed: int) -> tuple[list[dict], list[dict]]:
    try:
        return demo.generate(
            demo_cfg["n_train"], demo_cfg["n_test"], seed=seed,
            max_operand=demo_cfg["max_operand"], ops=demo_cfg["ops"], langs=demo_cfg["langs"],
        )
    except ValueError as e:
        raise CompassError(str(e)) from None


def collect(cfg: dict) -> tuple[list[dict], dict[str, list[dict]]]:
    """(training prompts, {eval task name: rows}) for the config's data section."""
    prompts: list[dict] = []
    tests: dict[str, list[dict]] = {}
    for i, spec in enumerate(cfg["data"]["sources"]):
        if spec["name"] == "demo":
            train, test = demo_rows(cfg["data"]["demo"], cfg["seed"])
            if spec.get("limit"):
                train = train[: spec["limit"]]
            prompts += train
            tests["demo"] = test
        else:
            from compass.data import sources

            try:
                prompts += sources.load_source(spec, seed=cfg["seed"])
            except CompassError as e:
                raise CompassError(f"data.sources[{i}] ({spec['name']}): {e}") from None
    ids = [r["id"] for r in prompts]
    if len(set(ids)) != len(ids):
        raise CompassError("data.sources: two rows share an id (is a source listed twice?)")
    return prompts, tests


def clean(prompts: list[dict], dcfg: dict) -> tuple[list[dict], dict]:
    """Cross-source duplicates out, then every prompt overlapping a configured evaluation set."""
    from compass.data import decontaminate

    stats: dict = {}
    if dcfg["dedupe"]:
        prompts, stats["duplicates_dropped"] = decontaminate.dedupe(prompts)
    sets = dcfg["decontamination"]["eval_sets"]
    if sets:
        try:
            index = decontaminate.index_from_config(sets, dcfg["decontamination"]["ngram"], dcfg["decontamination"]["char_ngram"])
        except CompassError as e:
            raise CompassError(f"data.decontamination.eval_sets: {e}") from None
        prompts, stats["decontamination"] = decontaminate.decontaminate(prompts, index)
        for warning in stats["decontamination"]["warnings"]:
            print(f"warning: {warning}")
    return prompts, stats


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, type=Path, help="output JSONL of training prompts")
    p.add_argument("--test-dir", required=True, type=Path, help="directory for held-out evaluation sets ({task}.jsonl)")


def main(args, cfg) -> None:
    prompts, tests = collect(cfg)
    prompts, clean_stats = clean(prompts, cfg["data"])
    for task, rows in tests.items():
        write_jsonl(args.test_dir / f"{task}.jsonl", rows)
    stats = {"prompts": len(prompts), "per_source": {}, "tests": {k: len(v) for k, v in tests.items()}, **clean_stats}
    for r in prompts:
        stats["per_source"][r["source"]] = stats["per_source"].get(r["source"], 0) + 1
    write_json(Path(args.out).with_suffix(".stats.json"), stats)
    write_jsonl(args.out, prompts)
    print(f"{len(prompts)} prompts -> {args.out}; test sets: {stats['tests']}")
