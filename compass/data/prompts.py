"""`compass prompts`: the configured sources, normalised into one prompt file.

Every row has the schema `{id, source, lang, problem, answer, solution}` (solution may be null).
The demo source also yields its held-out test split, written as the evaluation task `demo`.

Image sources (the synthetic `charts`, and `chartqa`, `mathvista`) add `images` and `image_digests`
(compass.images, compass.data.image_store): their files are written under `images/{source}/` beside
the prompts file (the rule's `data/images` directory output), and referenced relative to it. Files
of rows that dedupe or decontamination drop are removed. The charts' held-out split is the
evaluation task `charts`, written by `compass eval-data` from the same `data.charts` settings.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from compass.data import demo
from compass.io import CompassError, atomic_output, write_json, write_jsonl

IMAGES = "images"  # the image directory beside the prompts file


def demo_rows(demo_cfg: dict, seed: int) -> tuple[list[dict], list[dict]]:
    try:
        return demo.generate(
            demo_cfg["n_train"], demo_cfg["n_test"], seed=seed,
            max_operand=demo_cfg["max_operand"], ops=demo_cfg["ops"], langs=demo_cfg["langs"],
        )
    except ValueError as e:
        raise CompassError(str(e)) from None


def chart_rows(charts_cfg: dict, seed: int, limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """(train, test) rows of the synthetic charts (compass.data.charts), each with its rendered PNG as the
    transient `image` (compass.data.image_store); `limit`: only the first so many training rows."""
    from compass.data import charts

    try:
        train, test = charts.generate(
            charts_cfg["n_train"], charts_cfg["n_test"], seed=seed, kinds=charts_cfg["kinds"], langs=charts_cfg["langs"],
            questions=charts_cfg["questions"], n_values=tuple(charts_cfg["n_values"]), max_value=charts_cfg["max_value"],
            axis=charts_cfg.get("axis", "fit"),
        )
    except ValueError as e:
        raise CompassError(str(e)) from None
    size = charts_cfg["image_size"]
    return ([{**r, "image": charts.render_png(r["chart"], size)} for r in train[:limit]],
            [{**r, "image": charts.render_png(r["chart"], size)} for r in test])


def is_image_source(name: str) -> bool:
    from compass.data.sources import SOURCES

    return name == "charts" or (name in SOURCES and SOURCES[name].images)


def collect(cfg: dict, image_dir=None) -> tuple[list[dict], dict[str, list[dict]]]:
    """(training prompts, {eval task name: rows}) for the config's data section. Image rows get their files
    under `image_dir/{source}/` (a directory being built for `images/` beside the prompts file)."""
    from compass.data.image_store import store_images

    prompts: list[dict] = []
    tests: dict[str, list[dict]] = {}
    for i, spec in enumerate(cfg["data"]["sources"]):
        name = spec["name"]
        if is_image_source(name) and image_dir is None:
            raise CompassError(f"data.sources[{i}] ({name}): an image source needs a directory for its images")
        if name == "demo":
            train, test = demo_rows(cfg["data"]["demo"], cfg["seed"])
            if spec.get("limit"):
                train = train[: spec["limit"]]
            prompts += train
            tests["demo"] = test
        elif name == "charts":
            rows = chart_rows(cfg["data"]["charts"], cfg["seed"], spec.get("limit"))[0]
            prompts += store_images(rows, Path(image_dir) / name, f"{IMAGES}/{name}")
        else:
            from compass.data import sources

            try:
                rows = sources.load_source(spec, seed=cfg["seed"])
                prompts += store_images(rows, Path(image_dir) / name, f"{IMAGES}/{name}") if is_image_source(name) else rows
            except CompassError as e:
                raise CompassError(f"data.sources[{i}] ({name}): {e}") from None
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
    from compass.data.image_store import remove_unreferenced

    image_sources = sorted({s["name"] for s in cfg["data"]["sources"] if is_image_source(s["name"])})
    with contextlib.ExitStack() as stack:
        image_dir = (stack.enter_context(atomic_output(Path(args.out).parent / IMAGES, directory=True))
                     if image_sources else None)
        prompts, tests = collect(cfg, image_dir)
        prompts, clean_stats = clean(prompts, cfg["data"])
        if image_dir is not None:
            clean_stats["image_files_removed"] = sum(
                remove_unreferenced(prompts, Path(image_dir) / name, f"{IMAGES}/{name}") for name in image_sources)
    for task, rows in tests.items():
        write_jsonl(args.test_dir / f"{task}.jsonl", rows)
    stats = {"prompts": len(prompts), "per_source": {}, "tests": {k: len(v) for k, v in tests.items()}, **clean_stats}
    for r in prompts:
        stats["per_source"][r["source"]] = stats["per_source"].get(r["source"], 0) + 1
    write_json(Path(args.out).with_suffix(".stats.json"), stats)
    write_jsonl(args.out, prompts)
    print(f"{len(prompts)} prompts -> {args.out}; test sets: {stats['tests']}")
