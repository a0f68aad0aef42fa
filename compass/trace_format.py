"""The XML reasoning-trace format of COMPASS Phase 2, as pure functions.

A teacher response looks like::

    <Problem>…</Problem>
    <Thinking>…</Thinking>
    <Answer>
    \\boxed{…}
    </Answer>

Everything here is text in, text (or a small value) out: no I/O, no globals beyond constants.
The same validator is used by distillation filtering, the pairs stage and evaluation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


def prompt_messages(problem: str, lang: str | None = None) -> list[dict]:
    """System + user messages for one problem (the prompt side of every stage)."""
    lang = lang or detect_lang(problem)
    return [
        {"role": "system", "content": system_prompt(lang)},
        {"role": "user", "content": problem},
    ]


def format_response(problem: str, thinking: str, answer: str) -> str:
    return (
        f"<Problem>{problem.strip()}</Problem>\n"
        f"<Thinking>{thinking.strip()}</Thinking>\n"
        f"<Answer>\n\\boxed{{{answer.strip()}}}\n</Answer>"
    )


def find_boxed(text: str) -> tuple[int, int] | None:
    """Span (start, end) of the *content* of the last ``\\boxed{…}``, braces balanced."""
    start = text.rfind("\\boxed{")
    while start != -1:
        i = start + len("\\boxed{")
        depth = 1
        j = i
        while j < len(text):
            c = text[j]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return i, j
            j += 1
        start = text.rfind("\\boxed{", 0, start)
    return None


def extract_boxed(text: str) -> str | None:
    span = find_boxed(text)
    return None if span is None else text[span[0] : span[1]]


@dataclass(frozen=True)
class Sections:
    """Character spans of each section's content inside a response."""

    problem: tuple[int, int]
    thinking: tuple[int, int]
    answer: tuple[int, int]
    boxed: tuple[int, int] | None  # absolute span of the boxed content, inside answer


def check_response(text: str) -> str | None:
    """None when well formed, else the reason it is not (a short snake_case string)."""
    return _parse(text)[1]


def is_well_formed(text: str) -> bool:
    return check_response(text) is None


def parse_sections(text: str) -> Sections | None:
    """Section spans of a well-formed response, None when it is not well formed."""
    return _parse(text)[0]


def _parse(text: str) -> tuple[Sections | None, str | None]:
    spans = {}
    last_end = -1
    for tag in TAGS:
        opens = [m.end() for m in re.finditer(f"<{tag}>", text)]
        closes = [m.start() for m in re.finditer(f"</{tag}>", text)]
        if not opens or not closes:
            return None, f"missing_{tag.lower()}"
        if len(opens) > 1 or len(closes) > 1:
            return None, f"duplicate_{tag.lower()}"
        # The open tag must start after the previous section's close tag has ended (comparing
        # the open tag's end with the close tag's start let "<Thinking></Problem>" through).
        if closes[0] < opens[0] or opens[0] - len(f"<{tag}>") < last_end:
            return None, "tags_out_of_order"
        spans[tag] = (opens[0], closes[0])
        last_end = closes[0] + len(f"</{tag}>")
    a0, a1 = spans["Answer"]
    boxed = find_boxed(text[a0:a1])
    if boxed is None:
        return None, "no_boxed_answer"
    if not text[a0 + boxed[0] : a0 + boxed[1]].strip():
        return None, "empty_boxed_answer"
    return Sections(spans["Problem"], spans["Thinking"], spans["Answer"], (a0 + boxed[0], a0 + boxed[1])), None


def answer_of(text: str) -> str | None:
    """The boxed answer inside <Answer> of a well-formed response, else None."""
    sec = parse_sections(text)
    return None if sec is None else text[sec.boxed[0] : sec.boxed[1]]
