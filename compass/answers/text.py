"""Text preparation shared by extraction, numbers and comparison: Unicode folding and a light,
meaning-preserving LaTeX/markdown clean-up. Pure functions, cached where they are hot."""

from __future__ import annotations

import functools
import re
import unicodedata

_VULGAR = {"½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4", "⅕": "1/5", "⅛": "1/8"}
_VULGAR_RE = re.compile(r"(\d?)\s*([½⅓⅔¼¾⅕⅛])")
_SUPER_RE = re.compile(r"[²³]")
_DASHES = str.maketrans({
    "⁄": "/", "−": "-", "–": "-", "÷": "/", "×": "*", "\u2009": " ", "\u202f": " ", "\u00a0": " ",
    "∞": "\\infty ", "π": "\\pi ", "α": "\\alpha ", "β": "\\beta ", "γ": "\\gamma ", "θ": "\\theta ", "λ": "\\lambda ",
    "μ": "\\mu ", "σ": "\\sigma ", "φ": "\\phi ", "ω": "\\omega ", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "·": "\\cdot ", "∅": "\\emptyset ",
})


def prep(text: str) -> str:
    """NFKC (full-width digits and punctuation become ASCII, thin spaces plain ones); vulgar
    fractions and superscripts made explicit first, so that NFKC does not glue them onto
    neighbouring digits ('m²' -> 'm^2', never 'm2'; '1½' -> '1 1/2')."""
    if text.isascii():
        return text
    text = _SUPER_RE.sub(lambda m: "^2" if m.group() == "²" else "^3", text)
    text = _VULGAR_RE.sub(lambda m: (m.group(1) + " " if m.group(1) else "") + _VULGAR[m.group(2)], text)
    return unicodedata.normalize("NFKC", text).translate(_DASHES)


def balanced(s: str) -> bool:
    depth = 0
    for c in s:
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return False
    return depth == 0


TEXT_COMMANDS = r"(?:text|textnormal|textrm|textup|textsf|texttt|textbf|textit|mbox|hbox|mathrm|mathbf|mathit|mathsf|operatorname)"
TEXT_CMD_RE = re.compile(rf"\\{TEXT_COMMANDS}\s*\{{([^{{}}]*)\}}")
# A unit after a value, in a text wrapper: "18 \text{ dollars}", "5\,\mathrm{cm}^2", "\frac13\textnormal{ miles}".
# Connector words ("12 \text{ and } 13") are not units.
_UNIT_CMD_RE = re.compile(
    rf"(?<=[\d}}.%])\s*\\{TEXT_COMMANDS}\s*\{{\s*(?!(?:and|or|to|if|but)\b)[A-Za-z][A-Za-z .]*\}}(?:\s*\^\s*\{{?\s*[23]\s*\}}?)?",
)
_UNIT_POW_RE = re.compile(r"(?<=[A-Za-z]{2})\s*\^\s*\{?\s*[23]\s*\}?")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ\b|\\degree\b|°")
_LATEX_THIN_COMMA_RE = re.compile(r"(?<=\d),\\!\s*(?=\d)")  # 32,\!348
_LATEX_THIN_SPACE_RE = re.compile(r"(?<=\d)\\[,!:; ]\s*(?=\d{3}(?!\d))")  # 10\,000
_DTFRAC_RE = re.compile(r"\\[dtc]frac(?![A-Za-z])")
_DELIMS_RE = re.compile(r"^\s*\\[\[(]|\\[\])]\s*$")
_SPACING_RE = re.compile(r"\\[!,;: ]|\\quad\b|\\qquad\b|~")
_SIZING_RE = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|bigg|Bigg)(?![A-Za-z])|\\(?:displaystyle|textstyle)\b")


@functools.lru_cache(maxsize=65536)
def clean(s: str) -> str:
    """Whitespace, ``\\left``/``\\right``, spacing commands, ``\\dfrac``, degrees, units in text
    wrappers and the wrappers themselves (their words kept), outer braces and math delimiters,
    trailing punctuation: gone. LaTeX that carries meaning is left alone."""
    s = prep(s).replace("\\varnothing", "\\emptyset")
    s = s.replace("\\$", "$").replace("\\%", "%").replace("**", "").replace("{,}", ",")
    if "\\" in s:
        s = _LATEX_THIN_COMMA_RE.sub(",", s)
        s = _LATEX_THIN_SPACE_RE.sub("", s)
        s = _SIZING_RE.sub("", s)
        s = _SPACING_RE.sub(" ", s)
        s = _UNIT_CMD_RE.sub(" ", s)
        s = _DTFRAC_RE.sub(r"\\frac", s)
        s = _DEGREE_RE.sub("", s)
        for _ in range(2):
            s = TEXT_CMD_RE.sub(lambda m: " " + m.group(1) + " ", s)
        s = _DELIMS_RE.sub("", s)
    else:
        s = s.replace("°", "").replace("~", " ")
    s = s.strip()
    for _ in range(3):  # outer braces: "{18}", "{{x}}"
        if not (len(s) >= 2 and s[0] == "{" and s[-1] == "}" and balanced(s[1:-1])):
            break
        s = s[1:-1].strip()
    s = s.rstrip(" .。,;:")
    while s.endswith("!") and not re.search(r"[\d)}]!$", s):  # an exclamation, not a factorial
        s = s[:-1].rstrip(" .。,;:")
    return s.lstrip(" :")


def strip_unit_powers(s: str) -> str:
    """'15 cm^2' -> '15 cm' (the power of a unit word, never of a variable: 'x^2' stays)."""
    return _UNIT_POW_RE.sub("", s)


_MATH_WRAP_RE = re.compile(r"\$\$?(.*?)\$\$?|\\\((.*)\\\)|\\\[(.*)\\\]", re.S)


def unwrap_math(s: str) -> str:
    """'$x$', '\\(x\\)', '\\[x\\]' -> 'x' (the whole string only); trailing '.' dropped."""
    s = s.strip()
    m = _MATH_WRAP_RE.fullmatch(s)
    if m:
        s = next(g for g in m.groups() if g is not None).strip()
    return s.rstrip(" .")
