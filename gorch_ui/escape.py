"""Text a user wrote (ids, names, reasons, errors, query parameters) as inert Streamlit Markdown.

Streamlit renders titles, messages, captions and widget labels as Markdown: HTML stays text
there, but a name such as ``[sign in again](https://evil)`` or ``![](https://evil/pixel)``
would become a link or an image, and ``:red[...]`` a directive. ``md`` and ``code`` make such
text show as written (``md`` adds an invisible word joiner to bare URLs, so they stay text).
No Streamlit here, so the tests can check the Markdown itself.
"""

from __future__ import annotations

import re
from typing import Any

# The characters that open or close inline Markdown anywhere in a line: code, emphasis, links
# and images, HTML and autolinks, strikethrough, ``$math$``, entities, table cells and
# Streamlit's ``:colour[...]`` directives. CommonMark shows a backslash-escaped punctuation
# character as itself.
_INLINE = re.compile(r"([\\`*_\[\]<>~$&|:])")
# What starts a block at the beginning of a line: a heading, list item, quote or rule.
_BLOCK = re.compile(r"^(\s*)([#+\-=]|\d+[.)])")
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\u2028\u2029]")
# GitHub's autolinks turn ``https://...`` and ``www....`` in text into links after escapes are
# read, so no backslash stops them: an invisible word joiner after the scheme or ``www`` does.
_AUTOLINK = re.compile(r"(?i)(https?)(?=:)|(www)(?=\.)")
WORD_JOINER = "\u2060"


def md(value: Any) -> str:
    """``value`` as Markdown that shows its text as written, on one line, with no link."""
    s = _AUTOLINK.sub(lambda m: m.group(0) + WORD_JOINER, _LINE_BREAKS.sub(" ", str(value)))
    s = _INLINE.sub(r"\\\1", s)
    return _BLOCK.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], s)


def code(value: Any) -> str:
    """``value`` as an inline code span that no backtick or line break in it can close."""
    s = _LINE_BREAKS.sub(" ", str(value))
    if not s.strip():
        return md(s)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"
