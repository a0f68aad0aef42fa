"""The synthetic charts (compass/data/charts.py): distinct charts split into train/test, questions whose
gold answers follow from the values drawn, and byte-identical PNGs for the same seed across processes."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import warnings

import pytest

from compass.answers import is_correct
from compass.data import charts
from compass.trace_format import format_response


def test_splits_hold_distinct_charts_and_answers_follow_from_the_values():
    train, test = charts.generate(300, 60, seed=7)
    assert len(train) == 300 and len(test) == 60
    keys = [charts._key(r["chart"]) for r in train + test]
    assert len(set(keys)) == len(keys)  # no chart twice, so no test image is a training image
    assert {r["chart"]["kind"] for r in train} == set(charts.KINDS)
    assert {r["question"] for r in train} == set(charts.QUESTIONS)
    assert {r["lang"] for r in train} == {"en", "ja"}
    for r in train + test:
        spec = r["chart"]
        values = dict(zip(spec["labels"], spec["values"]))
        assert 3 <= len(values) <= 4 and all(1 <= v <= 9 for v in values.values())
        q = r["question"]
        if q == "argmax":
            assert values[r["answer"]] == max(values.values())
            assert list(values.values()).count(max(values.values())) == 1
        else:
            ans = int(r["answer"])
            named = [lab for lab in spec["labels"] if lab in r["problem"]]
            # every label named in the question is read in the worked solution, with its value
            assert all(f"{lab} = {values[lab]}" in r["solution"] for lab in named)
            if q == "value":
                assert ans in values.values()
            else:
                assert str(ans) in r["solution"].rsplit("=", 1)[1]
        # the worked solution in the trace format grades as correct
        assert is_correct(format_response(r["problem"], r["solution"], r["answer"]), r["answer"])
    ja = next(r for r in train if r["lang"] == "ja")
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in ja["problem"])


def test_same_seed_same_rows_other_seed_other_rows():
    assert charts.generate(50, 10, seed=3) == charts.generate(50, 10, seed=3)
    assert charts.generate(50, 10, seed=3) != charts.generate(50, 10, seed=4)
    # the test split does not depend on how many training rows are asked for beyond it... but the
    # first n_train rows of a larger request are the same charts
    small, _ = charts.generate(20, 0, seed=3)
    big, _ = charts.generate(40, 0, seed=3)
    assert big[:20] == small


def test_ratio_questions_divide_evenly_and_difference_is_positive():
    spec = {"kind": "bar", "lang": "en", "title": "t", "labels": ["A", "B", "C"], "values": [8, 2, 3]}
    qs = charts.possible_questions(spec)
    assert ("ratio", 0, 1) in qs and ("ratio", 0, 2) not in qs and ("ratio", 2, 1) not in qs
    assert all(spec["values"][i] > spec["values"][j] for k, i, j in qs if k == "difference")
    row = charts.question_row(spec, "ratio", 0, 1)
    assert row["answer"] == "4" and "8 / 2 = 4" in row["solution"]
    tie = dict(spec, values=[5, 5, 1])
    assert not any(k == "argmax" for k, _, _ in charts.possible_questions(tie))


def test_asking_for_more_distinct_charts_than_exist_is_a_clear_error():
    with pytest.raises(ValueError, match="distinct charts"):
        charts.generate(600, 0, seed=0, kinds=["bar"], langs=["en"], n_values=(2, 2), max_value=2)
    with pytest.raises(ValueError, match="unknown"):
        charts.generate(1, 0, seed=0, kinds=["radar"])


def test_pngs_are_byte_identical_for_the_same_seed_in_another_process():
    from PIL import Image

    train, _ = charts.generate(8, 0, seed=11)
    digests = []
    for r in train:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a missing glyph (tofu) is a matplotlib warning
            png = charts.render_png(r["chart"], 96)
        assert png.startswith(b"\x89PNG") and b"Software" not in png
        with Image.open(io.BytesIO(png)) as im:
            assert im.size == (96, 96)
            assert len(im.convert("L").getcolors(maxcolors=256 * 256) or []) > 2  # something is drawn
        digests.append(hashlib.sha256(png).hexdigest())
    code = (
        "import hashlib; from compass.data import charts\n"
        "train, _ = charts.generate(8, 0, seed=11)\n"
        "print(' '.join(hashlib.sha256(charts.render_png(r['chart'], 96)).hexdigest() for r in train))\n"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert other == digests
    assert len(set(digests)) == len(digests)


def test_the_values_are_drawn_on_the_image():
    """Two charts that differ only in one value give different pixels (the value is on the image)."""
    spec = {"kind": "table", "lang": "ja", "title": "部員の数", "labels": ["美術", "将棋", "音楽"], "values": [3, 5, 7]}
    a = charts.render_png(spec, 128)
    b = charts.render_png(dict(spec, values=[3, 5, 8]), 128)
    assert a != b
    assert charts.render_png(spec, 128) == a


def test_fixed_axis_makes_a_bars_height_its_value():
    """axis fixed (the vision demo): the first bar (value 2) is as tall beside a 4 as beside an 8; axis fit: it is
    scaled to its chart's largest value."""
    import io

    import numpy as np
    from PIL import Image

    def first_bar_pixels(values, **scale):
        spec = {"kind": "bar", "lang": "en", "title": "Pets", "labels": ["Cat", "Dog"], "values": values, **scale}
        rgb = np.asarray(Image.open(io.BytesIO(charts.render_png(spec, 128))).convert("RGB")).astype(int)
        blue = np.array([0x1f, 0x77, 0xb4])  # the first bar's colour
        return int((np.abs(rgb - blue).sum(axis=-1) < 30).sum())

    assert first_bar_pixels([2, 4], axis_max=9) == first_bar_pixels([2, 8], axis_max=9) > 0
    assert first_bar_pixels([2, 4]) > first_bar_pixels([2, 8]) > 0
    train, _ = charts.generate(3, 1, seed=0, axis="fixed", max_value=7)
    assert all(r["chart"]["axis_max"] == 7 for r in train)
