"""The XML reasoning-trace format of COMPASS Phase 2, as pure functions.

A teacher response looks like::

    <Problem>…</Problem>
    <Thinking>…</Thinking>
    <Answer>
    \\boxed{…}
    </Answer>

This module is the one parser of that format, and of the ``\\boxed{…}`` it ends with:

* `boxed_spans` / `last_boxed`: balanced ``\\boxed{…}`` groups, found in one left-to-right pass
  (linear in the text: thousands of unclosed ``\\boxed{`` cost no more than one);
* `parse`: one pass over the tags giving the sections (leniently, so that a malformed response
  still has the spans the pairs stage corrupts and the grader reads) and, when the response is
  not well formed, the reason. `check_response`, `is_well_formed`, `parse_sections` and `locate`
  are views of it; distillation filtering, the pairs stage and evaluation all use it.

Everything here is text in, text (or a small value) out: no I/O, no globals beyond constants.
Reading the *answer* out of a response (which box, which phrase, which number) is
`compass.answers`' job, on top of this module.
"""

from __future__ import annotations

import bisect
import re
from typing import NamedTuple

SYSTEM_PROMPTS = {
    "en": (
        "You are an advanced mathematical AI assistant.\n"
        "Your task is to solve the given math problem step-by-step and provide a final answer."
    ),
    "ja": (
        "あなたは高度な数学AIアシスタントです。\n"
        "与えられた数学問題をステップバイステップで解き、最終回答を提示してください。"
    ),
}

TAGS = ("Problem", "Thinking", "Answer")

_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")


def detect_lang(text: str) -> str:
    """'ja' when the text holds any kana or kanji, else 'en'."""
    return "ja" if _JAPANESE.search(text) else "en"


def system_prompt(lang: str) -> str:
    return SYSTEM_PROMPTS["ja" if lang == "ja" else "en"]


def prompt_messages(problem: str, lang: str | None = None, n_images: int = 0) -> list[dict]:
    """System + user messages for one problem (the prompt side of every stage). With `n_images` > 0 the
    user message is a list of parts: one `{"type": "image"}` per image, then the text (compass.images)."""
    lang = lang or detect_lang(problem)
    user = problem if not n_images else [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": problem}]
    return [
        {"role": "system", "content": system_prompt(lang)},
        {"role": "user", "content": user},
    ]


def format_response(problem: str, thinking: str, answer: str) -> str:
    return (
        f"<Problem>{problem.strip()}</Problem>\n"
        f"<Thinking>{thinking.strip()}</Thinking>\n"
        f"<Answer>\n\\boxed{{{answer.strip()}}}\n</Answer>"
    )


# ---------------------------------------------------------------------------------------------
# \boxed{…}
# ---------------------------------------------------------------------------------------------

Span = tuple[int, int]

# An opening box command, or a brace. Escaped braces (\{ \}) are literal characters in LaTeX and
# never open or close a group.
_BOX_TOKENS = {
    False: re.compile(r"\\boxed\s*\{|(?<!\\)[{}]"),
    True: re.compile(r"\\(?:boxed|fbox)\s*\{|(?<!\\)[{}]"),
}


def _box_triples(text: str, start: int, end: int | None, fbox: bool) -> list[tuple[int, int, int]]:
    """(command start, content start, content end) of each balanced box, in order of closing.

    One pass over the braces with a stack: linear in the text whatever the nesting or the number
    of unclosed boxes."""
    end = len(text) if end is None else end
    stack: list[tuple[int, int]] = []  # (command start, content start) of an open box; (-1, -1): a plain brace
    out: list[tuple[int, int, int]] = []
    for m in _BOX_TOKENS[fbox].finditer(text, start, end):
        if m.group() == "}":
            if stack:
                c, s = stack.pop()
                if s >= 0:
                    out.append((c, s, m.start()))
        elif m.group() == "{":
            stack.append((-1, -1))
        else:
            stack.append((m.start(), m.end()))
    return out


def boxed_spans(text: str, start: int = 0, end: int | None = None, *, fbox: bool = False) -> list[Span]:
    """Content spans of the balanced ``\\boxed{…}`` groups of text[start:end], in text order,
    nested ones included (an unclosed box has none). `fbox`: ``\\fbox{…}`` counts as a box too."""
    return sorted((s, e) for _, s, e in _box_triples(text, start, end, fbox))


def find_boxed(text: str, start: int = 0, end: int | None = None) -> Span | None:
    """Span of the content of the last ``\\boxed{…}`` (the one that opens last), empty or not."""
    spans = boxed_spans(text, start, end)
    return spans[-1] if spans else None


_BARE_BOX_RE = re.compile(r"\\boxed[ \t]+([^\s{$]+)")


def answer_boxes(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int, int]]:
    """The boxes an answer can be read from, in text order, as (command start, content start,
    content end): top-level (a box inside another belongs to it), non-empty, ``\\boxed{}`` and
    ``\\fbox{}`` and the rare unbraced ``\\boxed 5``."""
    triples = sorted(_box_triples(text, start, end, True))
    top: list[tuple[int, int, int]] = []
    for t in triples:
        if top and t[0] < top[-1][2]:
            continue  # inside the previous top-level box
        top.append(t)
    out = [t for t in top if text[t[1] : t[2]].strip()]
    if "\\boxed " in text or "\\boxed\t" in text:
        end = len(text) if end is None else end
        starts = [t[0] for t in top]
        for m in _BARE_BOX_RE.finditer(text, start, end):
            i = bisect.bisect_right(starts, m.start()) - 1
            if i < 0 or m.start() >= top[i][2]:  # not inside a braced box
                out.append((m.start(), m.start(1), m.end(1)))
        out.sort()
    return out


def last_boxed(text: str) -> str | None:
    """Content of the last answer box (see `answer_boxes`), stripped; None when there is none."""
    if not text or ("\\boxed" not in text and "\\fbox" not in text):
        return None
    boxes = answer_boxes(text)
    return text[boxes[-1][1] : boxes[-1][2]].strip() if boxes else None


# ---------------------------------------------------------------------------------------------
# Sections and well-formedness
# ---------------------------------------------------------------------------------------------


class Sections(NamedTuple):
    """Spans of each section's content (None: not found), and of the answer's box content."""

    problem: Span | None
    thinking: Span | None
    answer: Span | None
    boxed: Span | None  # the last \boxed{} inside <Answer> (or after the thinking when there is no <Answer>)


_TAG_RE = re.compile("</?(?:" + "|".join(TAGS) + ")>")
_SEQUENCE = [tag for t in TAGS for tag in (f"<{t}>", f"</{t}>")]


def parse(text: str) -> tuple[Sections, str | None]:
    """(sections, None) for a well-formed response; (sections found leniently, reason) otherwise.

    Well formed: each tag exactly once, each section closed before the next one opens (so the
    tags, in text order, are exactly <Problem> </Problem> <Thinking> </Thinking> <Answer>
    </Answer>), and a non-empty ``\\boxed{}`` last inside <Answer>. Reasons: missing_<tag>,
    duplicate_<tag>, tags_out_of_order, no_boxed_answer, empty_boxed_answer.

    Lenient sections: the first <Problem>/<Thinking> to the next close tag; the last <Answer>
    after the thinking (else the last one) to its </Answer> or the end of the text; no <Answer>:
    the box is looked for after the thinking."""
    tags = [(m.group(), m.start(), m.end()) for m in _TAG_RE.finditer(text)]
    if [t[0] for t in tags] == _SEQUENCE:
        answer = (tags[4][2], tags[5][1])
        box = find_boxed(text, *answer)
        reason = "no_boxed_answer" if box is None else (None if text[box[0] : box[1]].strip() else "empty_boxed_answer")
        return Sections((tags[0][2], tags[1][1]), (tags[2][2], tags[3][1]), answer, box), reason
    return _lenient(text, tags), _reason(tags)


def _section(tags, name: str, after: int, last: bool = False) -> Span | None:
    opens = [t for t in tags if t[0] == f"<{name}>" and t[1] >= after]
    if not opens:
        return None
    o = opens[-1] if last else opens[0]
    close = next((t[1] for t in tags if t[0] == f"</{name}>" and t[1] >= o[2]), None)
    return (o[2], close) if close is not None else None


def _lenient(text: str, tags) -> Sections:
    problem = _section(tags, "Problem", 0)
    thinking = _section(tags, "Thinking", 0)
    after = thinking[1] if thinking else 0
    opens = [t for t in tags if t[0] == "<Answer>"]
    later = [t for t in opens if t[1] >= after]
    if opens:
        o = (later or opens)[-1]
        close = next((t[1] for t in tags if t[0] == "</Answer>" and t[1] >= o[2]), len(text))
        answer = (o[2], close)
        box = find_boxed(text, *answer)
    else:
        answer = None
        box = find_boxed(text, after)
    return Sections(problem, thinking, answer, box)


def _reason(tags) -> str:
    last_end = -1
    for name in TAGS:
        opens = [t for t in tags if t[0] == f"<{name}>"]
        closes = [t for t in tags if t[0] == f"</{name}>"]
        if not opens or not closes:
            return f"missing_{name.lower()}"
        if len(opens) > 1 or len(closes) > 1:
            return f"duplicate_{name.lower()}"
        # The open tag must start after the previous section's close tag has ended.
        if closes[0][1] < opens[0][2] or opens[0][1] < last_end:
            return "tags_out_of_order"
        last_end = closes[0][2]
    return "tags_out_of_order"  # unreachable: the checks above imply the exact sequence


def check_response(text: str) -> str | None:
    """None when well formed, else the reason it is not (a short snake_case string)."""
    return parse(text)[1]


def is_well_formed(text: str) -> bool:
    return parse(text)[1] is None


def parse_sections(text: str) -> Sections | None:
    """Section spans of a well-formed response, None when it is not well formed."""
    sections, reason = parse(text)
    return sections if reason is None else None


def locate(text: str) -> Sections:
    """The sections of any response, found leniently (see `parse`)."""
    return parse(text)[0]


def answer_of(text: str) -> str | None:
    """The boxed answer inside <Answer> of a well-formed response, else None."""
    sec = parse_sections(text)
    return None if sec is None else text[sec.boxed[0] : sec.boxed[1]]
