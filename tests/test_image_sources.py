"""Image + question sources in their upstream schemas (compass.data.sources: chartqa, mathvista), their files
(compass.data.image_store), the prompts stage with images, and decontamination by pictures.

Fixtures are written here, in the upstream layouts: HuggingFaceM4/ChartQA's parquet (image struct, query, label
list), the original ChartQA release ({split}/{split}_human.json + {split}/png/), and AI4Math/MathVista's parquet
(decoded_image, question, choices, answer, question_type, answer_type, precision, unit)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from compass.io import CompassError, read_jsonl


def png(color, size=(40, 30), fmt="PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def chartqa_hf(directory: Path, split: str, rows: list[tuple]) -> Path:
    """HuggingFaceM4/ChartQA's layout: data/{split}-00000-of-00001.parquet, columns image, query, label, human_or_machine."""
    import datasets

    feats = datasets.Features({"image": datasets.Image(), "query": datasets.Value("string"),
                               "label": datasets.Sequence(datasets.Value("string")),
                               "human_or_machine": datasets.ClassLabel(names=["human", "machine"])})
    ds = datasets.Dataset.from_dict({
        "image": [{"bytes": b, "path": None} for b, _, _ in rows], "query": [q for _, q, _ in rows],
        "label": [[a] for _, _, a in rows], "human_or_machine": [0] * len(rows)}, features=feats)
    out = directory / "data" / f"{split}-00000-of-00001.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(out))
    return out


def chartqa_release(directory: Path, split: str, rows: list[tuple]) -> Path:
    """The original release: ChartQA Dataset/{split}/{split}_human.json ([{imgname, query, label}]) + png/."""
    d = directory / "ChartQA Dataset" / split
    (d / "png").mkdir(parents=True)
    items = []
    for k, (image, query, label) in enumerate(rows):
        name = f"{1000 + k}.png"
        (d / "png" / name).write_bytes(image)
        items.append({"imgname": name, "query": query, "label": label})
    (d / f"{split}_human.json").write_text(json.dumps(items), encoding="utf-8")
    return d / f"{split}_human.json"


CHARTQA_TEST = [(png("red"), "What is the value of the red bar?", "12"),
                (png("blue"), "Which country has the highest share?", "Japan"),
                (png("red"), "What is the sum of the two largest values?", "1,250")]


def test_chartqa_in_both_upstream_layouts(tmp_path):
    from compass.data.image_store import digest_of
    from compass.data.sources import load_source

    parquet = chartqa_hf(tmp_path / "hf", "test", CHARTQA_TEST)
    release = chartqa_release(tmp_path / "release", "test", CHARTQA_TEST)
    by_hub = load_source({"name": "chartqa", "hf_id": str(tmp_path / "hf"), "split": "test"})  # datasets.load_dataset path
    by_parquet = load_source({"name": "chartqa", "path": str(parquet)})
    by_release = load_source({"name": "chartqa", "path": str(release)})
    for rows in (by_hub, by_parquet, by_release):
        assert [r["problem"] for r in rows] == [q for _, q, _ in CHARTQA_TEST]
        assert [r["answer"] for r in rows] == ["12", "Japan", "1250"]  # a list label unwrapped; separators read
        assert all(r["source"] == "chartqa" and r["solution"] is None for r in rows)
        assert [digest_of(r["image"])[0] for r in rows] == [digest_of(b)[0] for b, _, _ in CHARTQA_TEST]
    assert by_release[0]["id"] == "chartqa-test-000000"
    assert isinstance(by_release[0]["image"], Path) and isinstance(by_hub[0]["image"], bytes)


def test_a_missing_image_file_is_named(tmp_path):
    from compass.data.sources import load_source

    release = chartqa_release(tmp_path, "val", CHARTQA_TEST[:1])
    (release.parent / "png" / "1000.png").unlink()
    with pytest.raises(CompassError, match=r"val_human.json: row 0: image '1000.png' not found"):
        load_source({"name": "chartqa", "path": str(release)})


def test_mathvista_choices_become_letters_and_precision_is_asked(tmp_path):
    import datasets

    from compass.data.sources import load_source

    feats = datasets.Features({
        "pid": datasets.Value("string"), "question": datasets.Value("string"), "image": datasets.Value("string"),
        "decoded_image": datasets.Image(), "choices": datasets.Sequence(datasets.Value("string")),
        "unit": datasets.Value("string"), "precision": datasets.Value("float64"), "answer": datasets.Value("string"),
        "question_type": datasets.Value("string"), "answer_type": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({
        "pid": ["1", "2", "3"],
        "question": ["Which bar is tallest?", "What is the length of AB?", "How many cubes are there?"],
        "image": ["images/1.jpg", "images/2.jpg", "images/3.jpg"],
        "decoded_image": [{"bytes": png("green", fmt="JPEG"), "path": None}, {"bytes": png("gray"), "path": None},
                          {"bytes": png("white"), "path": None}],
        "choices": [["red", "blue", "green"], None, None], "unit": [None, "cm", None], "precision": [None, 1.0, None],
        "answer": ["blue", "2.5", "7"], "question_type": ["multi_choice", "free_form", "free_form"],
        "answer_type": ["text", "float", "integer"]}, features=feats)
    path = tmp_path / "testmini.parquet"
    ds.to_parquet(str(path))
    rows = load_source({"name": "mathvista", "path": str(path)})
    assert rows[0]["problem"] == "Which bar is tallest?\nChoices: (A) red (B) blue (C) green" and rows[0]["answer"] == "B"
    assert rows[1]["problem"] == "What is the length of AB?\nGive the answer with 1 decimal place. (unit: cm)"
    assert rows[1]["answer"] == "2.5" and rows[2]["answer"] == "7"
    assert rows[0]["id"] == "mathvista-testmini-000000"


def test_store_images_writes_each_picture_once_and_rows_point_at_it(tmp_path):
    from compass.data.image_store import remove_unreferenced, store_images
    from compass.images import load_images

    rows = [{"id": f"r{i}", "problem": q, "image": b} for i, (b, q, _) in enumerate(CHARTQA_TEST)]
    out = store_images(rows, tmp_path / "data" / "images" / "chartqa", "images/chartqa")
    assert out[0]["images"] == out[2]["images"] != out[1]["images"]  # the same red picture: one file
    assert len(list((tmp_path / "data" / "images" / "chartqa").iterdir())) == 2
    assert all("image" not in r and len(r["image_digests"]) == 1 for r in out)
    (im,) = load_images(out[1], tmp_path / "data")
    assert im.size == (40, 30) and im.getpixel((0, 0)) == (0, 0, 255)
    assert remove_unreferenced(out[:1], tmp_path / "data" / "images" / "chartqa", "images/chartqa") == 1


def test_prompts_stage_with_charts_and_chartqa_decontaminated_by_picture(tmp_path, demo_config, monkeypatch):
    """A ChartQA training row whose picture is a ChartQA test picture is removed, whatever its question; its
    file is removed too; chart questions asked of different pictures are all kept."""
    import copy
    from types import SimpleNamespace

    from compass.data import prompts
    from compass.images import load_images

    train = [(png("red"), "How many bars are there?", "3"),  # the test set's red picture: contaminated
             (png("yellow"), "What is the value of the red bar?", "7"),  # a test question, another picture: kept
             (png("yellow"), "What is the value of the red bar?", "7")]  # the same question and picture again: a duplicate
    train_file = chartqa_release(tmp_path / "up", "train", train)
    test_file = chartqa_release(tmp_path / "up2", "test", CHARTQA_TEST)
    cfg = copy.deepcopy(demo_config)
    cfg["data"]["sources"] = [{"name": "charts", "limit": None}, {"name": "chartqa", "path": str(train_file), "limit": None}]
    cfg["data"]["charts"].update(n_train=12, n_test=3, image_size=64)
    cfg["data"]["decontamination"]["eval_sets"] = [{"name": "chartqa_test", "path": str(test_file)}]
    out = tmp_path / "run" / "data" / "prompts.jsonl"
    prompts.main(SimpleNamespace(out=out, test_dir=out.parent / "test"), cfg)
    rows = read_jsonl(out)
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    assert stats["per_source"] == {"charts": 12, "chartqa": 1}
    assert stats["duplicates_dropped"] == 1
    dec = stats["decontamination"]["sources"]["chartqa"]
    assert dec["removed"] == 1 and dec["image"] == 1 and dec["by_eval_set"] == {"chartqa_test": 1}
    assert stats["decontamination"]["sources"]["charts"]["removed"] == 0
    files = {p.relative_to(out.parent).as_posix() for p in (out.parent / "images").rglob("*.png")}
    assert files == {p for r in rows for p in r["images"]}  # the contaminated picture's file is gone
    for r in rows:
        (im,) = load_images(r, out.parent)
        assert im.size == ((64, 64) if r["source"] == "charts" else (40, 30))


def test_eval_data_writes_the_task_and_its_pictures(tmp_path, demo_config):
    import copy
    from types import SimpleNamespace

    from compass.eval import eval_data
    from compass.images import load_images

    test_file = chartqa_release(tmp_path / "up", "test", CHARTQA_TEST)
    cfg = copy.deepcopy(demo_config)
    cfg["eval"]["data"]["chartqa"]["path"] = str(test_file)
    out = tmp_path / "data" / "test" / "chartqa.jsonl"
    eval_data.main(SimpleNamespace(task="chartqa", out=out), cfg)
    rows = read_jsonl(out)
    assert [r["answer"] for r in rows] == ["12", "Japan", "1250"]
    assert all(r["images"][0].startswith("images/chartqa/") for r in rows)
    assert (out.parent / "images" / "chartqa" / "compass-manifest.json").is_file()
    assert load_images(rows[0], out.parent)[0].getpixel((1, 1)) == (255, 0, 0)
    # the synthetic charts' held-out split is the same with or without the charts source: data.charts alone
    cfg["data"]["charts"].update(n_train=12, n_test=3, image_size=64)
    out = tmp_path / "data" / "test" / "charts.jsonl"
    eval_data.main(SimpleNamespace(task="charts", out=out), cfg)
    from compass.data import charts

    _, expected = charts.generate(12, 3, seed=cfg["seed"])
    assert [r["problem"] for r in read_jsonl(out)] == [r["problem"] for r in expected]
