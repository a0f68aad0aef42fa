"""Synthetic charts and tables with questions that need reading them: the project's own image data.

Each example is one small image (a bar, line or pie chart, or a table) of a few labelled values,
every value written on the image, and one question about it that needs reading values and doing one
step of arithmetic:

* ``value``: the value of one label;
* ``difference``: how much larger one value is than another;
* ``sum``: the total of two values;
* ``ratio``: how many times one value is another (asked only where it divides evenly);
* ``argmax``: which label has the largest value (the answer is the label's text).

English and Japanese, with a worked solution that states the values read and the arithmetic
(the trace format's <Thinking>, as the arithmetic demo's). Numbers are small (1..max_value) and
values few, so a tiny model can learn to read them on a CPU.

Everything is a pure function of its arguments: `generate` gives the (train, test) rows, each with
its chart spec (``chart``: kind, lang, title, labels, values); `render_png` draws a spec into PNG
bytes, byte-identical for the same spec and size (matplotlib's Agg backend, a fixed figure size and
dpi, the bundled IPAexGothic font of `matplotlib-fontja` for every glyph, and no date or version in
the PNG's metadata). Train and test are drawn from one shuffled pool of distinct charts, so no test
image is a training image. Writing the files is the caller's (compass.data.prompts).
"""

from __future__ import annotations

import io
import math
import random
from functools import lru_cache

KINDS = ("bar", "line", "pie", "table")
QUESTIONS = ("value", "difference", "sum", "ratio", "argmax")
DPI = 100

# (title, labels) per theme and language; labels are short so they fit under a bar.
THEMES = {
    "en": [
        ("Fruit sold", ["Apple", "Pear", "Plum", "Lime", "Fig", "Kiwi"]),
        ("Pets", ["Cat", "Dog", "Fish", "Bird", "Frog", "Duck"]),
        ("Rain days", ["Jan", "Feb", "Mar", "Apr", "May", "Jun"]),
        ("Club members", ["Art", "Chess", "Music", "Track", "Drama", "Math"]),
    ],
    "ja": [
        ("果物の販売数", ["りんご", "なし", "もも", "かき", "くり", "ぶどう"]),
        ("ペットの数", ["ねこ", "いぬ", "さかな", "とり", "かえる", "うさぎ"]),
        ("雨の日数", ["1月", "2月", "3月", "4月", "5月", "6月"]),
        ("部員の数", ["美術", "将棋", "音楽", "陸上", "演劇", "数学"]),
    ],
}
NOUN = {"en": {"table": "table", "chart": "chart"}, "ja": {"table": "表", "chart": "グラフ"}}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]

# Question and worked-solution templates. {where}: "chart" / "table"; {reading}: the values read.
TEMPLATES = {
    ("value", "en"): ("In the {where}, what is the value for {a}?", "The {where} shows {a} = {va}.", "{va}"),
    ("difference", "en"): (
        "In the {where}, how much larger is the value for {a} than the value for {b}?",
        "The {where} shows {a} = {va} and {b} = {vb}, so {va} - {vb} = {ans}.", "{ans}",
    ),
    ("sum", "en"): (
        "In the {where}, what is the sum of the values for {a} and {b}?",
        "The {where} shows {a} = {va} and {b} = {vb}, so {va} + {vb} = {ans}.", "{ans}",
    ),
    ("ratio", "en"): (
        "In the {where}, how many times the value for {b} is the value for {a}?",
        "The {where} shows {a} = {va} and {b} = {vb}, so {va} / {vb} = {ans}.", "{ans}",
    ),
    ("argmax", "en"): (
        "In the {where}, which label has the largest value?",
        "The {where} shows {reading}. The largest value is {vmax}, for {ans}.", "{ans}",
    ),
    ("value", "ja"): ("{where}で、{a}の値はいくつですか？", "{where}から{a} = {va}です。", "{va}"),
    ("difference", "ja"): (
        "{where}で、{a}の値は{b}の値よりいくつ大きいですか？",
        "{where}から{a} = {va}、{b} = {vb}なので、{va} - {vb} = {ans}です。", "{ans}",
    ),
    ("sum", "ja"): (
        "{where}で、{a}と{b}の値の合計はいくつですか？",
        "{where}から{a} = {va}、{b} = {vb}なので、{va} + {vb} = {ans}です。", "{ans}",
    ),
    ("ratio", "ja"): (
        "{where}で、{a}の値は{b}の値の何倍ですか？",
        "{where}から{a} = {va}、{b} = {vb}なので、{va} / {vb} = {ans}です。", "{ans}",
    ),
    ("argmax", "ja"): (
        "{where}で、値が最も大きいのはどれですか？",
        "{where}から{reading}です。最も大きい値は{vmax}で、{ans}です。", "{ans}",
    ),
}


# --- specs and questions (pure) ---------------------------------------------------------------------


def _spec(rng: random.Random, kinds, langs, n_values: tuple[int, int], max_value: int) -> dict:
    lang = rng.choice(list(langs))
    kind = rng.choice(list(kinds))
    title, names = rng.choice(THEMES[lang])
    n = rng.randint(*n_values)
    labels = rng.sample(names, n)
    values = [rng.randint(1, max_value) for _ in range(n)]
    return {"kind": kind, "lang": lang, "title": title, "labels": labels, "values": values}


def _key(spec: dict) -> tuple:
    return (spec["kind"], spec["lang"], spec["title"], tuple(spec["labels"]), tuple(spec["values"]))


def possible_questions(spec: dict) -> list[tuple[str, int, int]]:
    """Every (question kind, index a, index b) the chart supports, in a fixed order: differences and
    ratios only of a larger value over a smaller one (ratio only where it divides), argmax only with
    one largest value."""
    v = spec["values"]
    out = []
    for i in range(len(v)):
        out.append(("value", i, i))
    for i in range(len(v)):
        for j in range(len(v)):
            if i == j:
                continue
            if v[i] > v[j]:
                out.append(("difference", i, j))
                if v[i] % v[j] == 0 and v[j] > 1:
                    out.append(("ratio", i, j))
            if i < j:
                out.append(("sum", i, j))
    if v.count(max(v)) == 1:
        out.append(("argmax", v.index(max(v)), v.index(max(v))))
    return out


def _reading(spec: dict) -> str:
    sep = "、" if spec["lang"] == "ja" else ", "
    return sep.join(f"{lab} = {val}" for lab, val in zip(spec["labels"], spec["values"]))


def question_row(spec: dict, qkind: str, i: int, j: int) -> dict:
    """{problem, answer, solution, question} of one question about one chart."""
    lang = spec["lang"]
    labels, values = spec["labels"], spec["values"]
    va, vb = values[i], values[j]
    ans = {
        "value": va, "difference": va - vb, "sum": va + vb, "ratio": va // vb if vb else None, "argmax": labels[i],
    }[qkind]
    fill = dict(where=NOUN[lang]["table" if spec["kind"] == "table" else "chart"], a=labels[i], b=labels[j], va=va,
                vb=vb, ans=ans, vmax=max(values), reading=_reading(spec))
    problem_t, solution_t, answer_t = TEMPLATES[(qkind, lang)]
    return {"problem": problem_t.format(**fill), "answer": answer_t.format(**fill),
            "solution": solution_t.format(**fill), "question": qkind}


def generate(n_train: int, n_test: int, *, seed: int, kinds=KINDS, langs=("en", "ja"), questions=QUESTIONS,
             n_values=(3, 4), max_value: int = 9, axis: str = "fit") -> tuple[list[dict], list[dict]]:
    """Deterministic (train, test) rows, one question per distinct chart; no chart is in both splits.

    A row: {id, source: "charts", lang, problem, answer, solution, question, chart}; the image file
    (rows' `images`) is the caller's to write from `chart` (`render_png`)."""
    kinds, langs, questions = list(kinds), list(langs), list(questions)
    lo, hi = n_values
    if not (2 <= lo <= hi <= min(len(t[1]) for ts in THEMES.values() for t in ts)):
        raise ValueError(f"data.charts.n_values: need 2 <= min <= max <= 6, got {list(n_values)}")
    bad = [k for k in kinds if k not in KINDS] + [q for q in questions if q not in QUESTIONS] + \
        [lang for lang in langs if lang not in THEMES]
    if bad or not (kinds and langs and questions):
        raise ValueError(f"data.charts: unknown or empty kinds/langs/questions {bad} (kinds {list(KINDS)}, "
                         f"questions {list(QUESTIONS)}, langs {list(THEMES)})")
    if max_value < 2:
        raise ValueError(f"data.charts.max_value must be >= 2, got {max_value}")
    if axis not in ("fit", "fixed"):
        raise ValueError(f"data.charts.axis must be fit or fixed, got {axis!r}")
    # fixed: bar and line charts share one value axis (0 .. max_value), so a bar's height is its value
    scale = {"axis_max": max_value} if axis == "fixed" else {}
    rng = random.Random(f"compass:charts:{seed}")
    want = n_train + n_test
    seen: set = set()
    rows: list[dict] = []
    attempts = 0
    while len(rows) < want:
        attempts += 1
        if attempts > 50 * want + 1000:
            raise ValueError(f"data.charts asks for {want} distinct charts; only {len(rows)} found with "
                             f"n_values={list(n_values)}, max_value={max_value}, kinds={kinds}, langs={langs}")
        spec = _spec(rng, kinds, langs, (lo, hi), max_value)
        if _key(spec) in seen:
            continue
        options = [q for q in possible_questions(spec) if q[0] in questions]
        if not options:
            continue
        seen.add(_key(spec))
        kind = rng.choice(sorted({q[0] for q in options}, key=QUESTIONS.index))  # question kinds about equally often
        qkind, i, j = rng.choice([q for q in options if q[0] == kind])
        rows.append({"source": "charts", "lang": spec["lang"], **question_row(spec, qkind, i, j), "chart": {**spec, **scale}})
    train = [{"id": f"charts-train-{k:06d}", **r} for k, r in enumerate(rows[:n_train])]
    test = [{"id": f"charts-test-{k:06d}", **r} for k, r in enumerate(rows[n_train:])]
    return train, test


# --- drawing -----------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def font_path() -> str:
    """IPAexGothic, installed by the `matplotlib-fontja` package (Latin and Japanese glyphs)."""
    try:
        from matplotlib_fontja import get_font_ttf_path
    except ImportError as e:  # pragma: no cover - a pinned dependency
        raise RuntimeError("the synthetic charts need the matplotlib-fontja package (pip install matplotlib-fontja)") from e
    return get_font_ttf_path()


def _font(size: float):
    from matplotlib.font_manager import FontProperties

    return FontProperties(fname=font_path(), size=size)


def render_png(spec: dict, size: int = 128) -> bytes:
    """PNG bytes of the chart `spec`, `size` x `size` pixels; the same spec and size give the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    px = 72 / DPI  # points per pixel
    fs = max(4.0, size * px / 9)  # values: about a ninth of the image high
    small = _font(fs)
    label_font = _font(max(3.5, size * px / (3.4 * max(4, len(spec["labels"])))))  # labels: side by side in the width
    fig = Figure(figsize=(size / DPI, size / DPI), dpi=DPI)
    kind, labels, values = spec["kind"], spec["labels"], spec["values"]
    colors = COLORS[: len(values)]
    title = spec["title"] if size >= 160 else None
    if kind == "table":
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.96))
        ax.axis("off")
        table = ax.table(cellText=[[lab, str(val)] for lab, val in zip(labels, values)], loc="center", cellLoc="center",
                         bbox=(0, 0, 1, 0.86 if title else 1))
        for cell in table.get_celld().values():
            cell.get_text().set_fontproperties(small)
        table.auto_set_font_size(False)
    elif kind == "pie":
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.84 if title else 0.96))
        wedges, _ = ax.pie(values, colors=colors, startangle=90, counterclock=False,
                           wedgeprops={"linewidth": 0.5, "edgecolor": "white"})
        for w, lab, val in zip(wedges, labels, values):
            ang = math.radians((w.theta1 + w.theta2) / 2)
            ax.text(0.6 * math.cos(ang), 0.6 * math.sin(ang) + 0.1, lab, ha="center", va="center",
                    fontproperties=label_font, color="black")
            ax.text(0.6 * math.cos(ang), 0.6 * math.sin(ang) - 0.12, str(val), ha="center", va="center",
                    fontproperties=small, color="black")
        ax.set_aspect("equal")
    else:
        ax = fig.add_axes((0.04, 0.16, 0.92, 0.66 if title else 0.8))
        x = list(range(len(values)))
        top = spec.get("axis_max", max(values)) * 1.3  # the chart's own maximum, or the axis every chart shares
        if kind == "bar":
            ax.bar(x, values, color=colors, width=0.7)
        else:
            ax.plot(x, values, color="#1f77b4", marker="o", markersize=max(2.0, fs / 2), linewidth=max(0.8, fs / 8))
        for xi, val in zip(x, values):
            ax.text(xi, val + top * 0.03, str(val), ha="center", va="bottom", fontproperties=small)
        ax.set_ylim(0, top)
        ax.set_xlim(-0.6, len(values) - 0.4)
        ax.set_xticks(x, labels)
        for t in ax.get_xticklabels():
            t.set_fontproperties(label_font)
        ax.set_yticks([])
        ax.tick_params(length=0, pad=1)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    if title:
        fig.suptitle(title, fontproperties=_font(fs * 1.1), y=0.98)
    buf = io.BytesIO()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
