"""Decontamination: normalisation, exact and n-gram hits (word n-grams for English, character
n-grams for Japanese), per-source stats, and the proof on the real GSM8K train/test files that
no evaluation item survives."""

from __future__ import annotations

import time

import pytest

from compass.data.decontaminate import build_index, decontaminate, dedupe, index_from_config, normalize_text
from compass.data.sources import load_source
from compass.io import CompassError
from conftest import shared_file

EVAL = [
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
    "muffins for her friends every day with four. She sells the remainder at the farmers' market "
    "daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?",
    "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?",
    "What is 2+3?",
]
JA_EVAL = "ジャネットのアヒルは1日に16個の卵を生みます。ジャネットは毎朝朝食の一環で3個を消費し、毎日4個使って友達向けにマフィンを焼きます。"


def rows_of(*problems, source="src"):
    return [{"id": f"{source}-{i}", "source": source, "problem": p} for i, p in enumerate(problems)]


@pytest.fixture(scope="module")
def index():
    return build_index({"evalset": EVAL, "ja_eval": [JA_EVAL]})


# --- normalisation ------------------------------------------------------------------------------


def test_normalize_text_case_space_punct_width():
    assert normalize_text("  What IS\t2+3 ?\n") == "what is 2+3"
    assert normalize_text("Ｆｕｌｌ　ｗｉｄｔｈ！") == "full width"  # NFKC
    assert normalize_text("１２個、です。") == "12個 です"
    assert normalize_text("He paid $80,000 (not 1,234,567.5).") == "he paid 80000 not 1234567.5"
    assert normalize_text("3.5 apples") != normalize_text("35 apples")  # decimal points are kept
    assert normalize_text("end. next") == "end next"
    assert normalize_text(r"$\frac{1}{2}$") == "frac 1 2"
    assert normalize_text("") == ""


# --- exact and n-gram hits ----------------------------------------------------------------------


def test_exact_duplicate_with_whitespace_and_case_changes_is_caught(index):
    variant = "  JANET'S   ducks lay 16 eggs per day.She eats three for breakfast every morning and bakes\n" + EVAL[0][88:].upper()
    short = "what is 2 + 3"  # shorter than the 8-word window: only the exact match can catch it
    kept, stats = decontaminate(rows_of(variant, short), index)
    assert kept == []
    assert stats["sources"]["src"]["exact"] == 2
    assert stats["sources"]["src"]["by_eval_set"] == {"evalset": 2}


def test_paraphrase_sharing_an_8gram_is_caught(index):
    paraphrase = (
        "Every morning Janet has three eggs for breakfast. Her ducks lay 16 eggs per day and "
        "she sells the remainder at the farmers' market daily, at two dollars each. What does she earn?"
    )
    assert index.match(paraphrase) == ("ngram", "evalset")
    kept, stats = decontaminate(rows_of(paraphrase), index)
    assert kept == [] and stats["sources"]["src"]["ngram"] == 1


def test_seven_shared_words_are_not_enough(index):
    # "sells the remainder at the farmers' market daily" is 8 words; 7 of them alone do not match.
    text = "Tom sells the remainder at the farmers' market on Sundays. How much does he earn in total?"
    assert index.match(text) is None


def test_clearly_different_problems_are_kept(index):
    different = [
        "A train leaves the station at 3 pm travelling at 60 miles per hour. When does it arrive 150 miles away?",
        "What is 2-3?",  # one symbol apart from an evaluation problem: not the same prompt
        "Find the remainder when 2^100 is divided by 7.",
        "花子さんはりんごを5個持っています。3個もらいました。全部で何個ですか？",
    ]
    kept, stats = decontaminate(rows_of(*different), index)
    assert [r["problem"] for r in kept] == different
    assert stats["total"] == {"rows": 4, "kept": 4, "removed": 0, "exact": 0, "ngram": 0, "image": 0}
    assert stats["warnings"] == []


def test_japanese_uses_character_ngrams(index):
    # Same clause, different sentence around it, full-width digits and different punctuation.
    ja_paraphrase = "問題：ジャネットのアヒルは１日に１６個の卵を生みます！ 彼女はいくら稼ぎますか。"
    assert index.match(ja_paraphrase) == ("ngram", "ja_eval")
    assert index.match("ジャネットのアヒルは１日に１６個の卵を、生みます。ジャネットは毎朝朝食の一環で３個を消費し、毎日４個使って友達向けにマフィンを焼きます") == ("exact", "ja_eval")
    # Japanese sharing fewer than 20 normalised characters is kept.
    assert index.match("ジャネットのアヒルは毎日たくさん泳ぎます。池は何個ありますか？") is None
    # English quoted inside a Japanese prompt is still compared by words.
    assert index.match("問題: Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning") == ("ngram", "evalset")


def test_stats_per_source_and_warning_for_a_source_that_is_an_eval_set(index):
    rows = rows_of(EVAL[1], "Something else entirely, about seven cats.", source="a") + rows_of(EVAL[0], EVAL[1], source="b")
    kept, stats = decontaminate(rows, index)
    assert [r["id"] for r in kept] == ["a-1"]
    a, b = stats["sources"]["a"], stats["sources"]["b"]
    assert (a["rows"], a["kept"], a["removed"], a["exact"], a["ngram"]) == (2, 1, 1, 1, 0)
    assert a["removed_ids"] == ["a-0"]
    assert (b["rows"], b["kept"], b["removed"]) == (2, 0, 2)
    assert stats["total"]["removed"] == 3
    assert stats["eval_sets"] == {"evalset": 3, "ja_eval": 1}
    assert stats["ngram"] == 8 and stats["char_ngram"] == 20
    assert len(stats["warnings"]) == 1 and stats["warnings"][0].startswith("source b: 2 of 2 rows")


def test_build_index_from_a_plain_list_and_bad_sizes():
    idx = build_index(EVAL, ngram=5)
    assert idx.sizes == {"eval": 3} and idx.ngram == 5
    assert idx.match("she eats three for breakfast") == ("ngram", "eval")
    with pytest.raises(ValueError):
        build_index(EVAL, ngram=0)


def test_dedupe_after_normalisation():
    rows = rows_of("What is 2+3?", "what is 2 + 3", "What is 2-3?")
    kept, dropped = dedupe(rows)
    assert [r["id"] for r in kept] == ["src-0", "src-2"] and dropped == 1


def test_throughput_is_linear_and_fast(index):
    # ~600k prompts x a few thousand eval items must fit in minutes: here 5k prompts of ~80 words.
    base = "Liam buys {a} boxes of pencils with {b} pencils in each box and gives {c} to each of his friends at school today. " * 3
    rows = rows_of(*(base.format(a=i, b=i % 7, c=i % 5) for i in range(5000)))
    t = time.perf_counter()
    kept, _ = decontaminate(rows, index)
    assert len(kept) == 5000
    assert time.perf_counter() - t < 10  # ~0.5 s on a laptop core


# --- the real files -----------------------------------------------------------------------------


def test_no_gsm8k_test_item_survives_decontamination_of_train_plus_test():
    train = load_source({"name": "gsm8k", "path": str(shared_file("gsm8k", "train.jsonl"))})
    test = load_source({"name": "gsm8k", "path": str(shared_file("gsm8k", "test.jsonl"))})
    assert (len(train), len(test)) == (7473, 1319)
    index = build_index({"gsm8k_test": [r["problem"] for r in test]})
    kept, stats = decontaminate(train + test, index)

    kept_ids = {r["id"] for r in kept}
    assert not any(i.startswith("gsm8k-test-") for i in kept_ids)
    # Independently of the index: no kept prompt equals a test problem after normalisation.
    test_keys = {normalize_text(r["problem"]).replace(" ", "") for r in test}
    assert not any(normalize_text(r["problem"]).replace(" ", "") in test_keys for r in kept)
    st = stats["sources"]["gsm8k"]
    assert st["exact"] == 1319  # every test item, exactly
    assert st["rows"] == 8792 and st["kept"] == len(kept)
    # Train problems that share an 8-gram with a test problem go too (open-r1's rule; ~1% of
    # GSM8K train, mostly stock phrases such as "how much money will she have left over").
    assert 0 < st["ngram"] < 0.03 * len(train)
    assert kept_ids <= {r["id"] for r in train}


def test_mgsm_ja_as_a_training_source_is_removed_whole_by_the_mgsm_ja_eval_set():
    ja = str(shared_file("mgsm", "mgsm_ja.tsv"))
    index = index_from_config(
        [
            {"name": "gsm8k_test", "path": str(shared_file("gsm8k", "test.jsonl"))},
            {"name": "mgsm_ja", "path": ja},
            {"name": "mgsm_en", "path": str(shared_file("mgsm", "mgsm_en.tsv"))},
            {"name": "math500", "path": str(shared_file("math500", "test.jsonl"))},
        ]
    )
    assert index.sizes == {"gsm8k_test": 1319, "mgsm_ja": 250, "mgsm_en": 250, "math500": 500}
    rows = load_source({"name": "mgsm_ja", "path": ja}) + load_source(
        {"name": "svamp", "path": str(shared_file("svamp", "SVAMP.json"))}
    )
    kept, stats = decontaminate(rows, index)
    assert stats["sources"]["mgsm_ja"]["removed"] == 250
    assert stats["sources"]["mgsm_ja"]["by_eval_set"] == {"mgsm_ja": 250}
    assert stats["sources"]["svamp"]["kept"] == 1000  # SVAMP does not overlap these sets
    assert any(w.startswith("source mgsm_ja: 250 of 250") for w in stats["warnings"])
    assert all(r["source"] == "svamp" for r in kept)


def test_index_from_config_errors():
    with pytest.raises(CompassError, match="unknown evaluation set 'aime'.*gsm8k_test"):
        index_from_config([{"name": "aime", "path": "x.jsonl"}])
    with pytest.raises(CompassError, match="n-gram sizes"):
        index_from_config([], ngram=0)
