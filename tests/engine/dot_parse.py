"""A small DOT reader for tests: the statements of a ``graphviz`` source, parsed, not grepped.

It tokenises DOT as Graphviz does (IDs, numerals, quoted strings with escapes, balanced
``<...>`` HTML strings, ``//`` and ``/* */`` comments) and collects nodes, edges, clusters
and graph attributes, so tests can assert on what Graphviz itself would read. Anything it
does not understand raises ``DotSyntaxError``: text that escaped its quoting shows up as a
syntax error or as an extra statement, never silently.
"""

from __future__ import annotations

import html
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_SKIP = re.compile(r"\s+|//[^\n]*|/\*.*?\*/", re.S)
_ID = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*")
_NUMERAL = re.compile(r"-?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)


class DotSyntaxError(ValueError):
    """The source is not the DOT this reader expects."""


@dataclass(frozen=True)
class Value:
    """An attribute value or ID: its decoded text and how it was written."""

    text: str
    kind: str  # "id", "quoted" or "html"


def _unquote(raw: str) -> str:
    """What the DOT lexer makes of a quoted string: ``\\"`` is a quote; nothing else changes."""
    return raw.replace("\\\n", "").replace('\\"', '"')


_SUBST = set("NGETHL")


def subst(s: str) -> str:
    """Graphviz's escString pass: ``\\\\`` is one backslash; ``\\N`` and the like would be
    replaced by object names, which must never happen to user text, so they raise."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            nxt = s[i + 1]
            if nxt in _SUBST:
                raise DotSyntaxError(f"Graphviz would expand \\{nxt} in {s!r}")
            out.append("\\" if nxt == "\\" else s[i : i + 2])
            i += 2
            continue
        out.append(s[i])
        i += 1
    return "".join(out)


def tooltip_text(raw: str) -> str:
    """The text Graphviz shows for a tooltip: entities decoded, ``\\n`` a newline, other
    backslashes dropped from their character, then the escString pass."""
    s = html.unescape(raw)
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append("\n" if s[i + 1] in "nlr" else s[i + 1])
            i += 2
            continue
        out.append(s[i])
        i += 1
    return subst("".join(out))


def tokenize(source: str) -> list[tuple[str, Any]]:
    """``(kind, value)`` tokens: ``punct``, ``arrow``, or ``value`` with a ``Value``."""
    tokens: list[tuple[str, Any]] = []
    i = 0
    while i < len(source):
        m = _SKIP.match(source, i)
        if m:
            i = m.end()
            continue
        c = source[i]
        if source.startswith("->", i):
            tokens.append(("arrow", "->"))
            i += 2
        elif c in "{}[]=;,:":
            tokens.append(("punct", c))
            i += 1
        elif c == '"':
            m = _QUOTED.match(source, i)
            if not m:
                raise DotSyntaxError(f"unterminated string at {i}: {source[i : i + 40]!r}")
            tokens.append(("value", Value(_unquote(m.group(1)), "quoted")))
            i = m.end()
        elif c == "<":
            depth, j = 0, i
            while j < len(source):
                if source[j] == "<":
                    depth += 1
                elif source[j] == ">":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            else:
                raise DotSyntaxError(f"unbalanced HTML string at {i}")
            tokens.append(("value", Value(source[i + 1 : j], "html")))
            i = j + 1
        else:
            m = _ID.match(source, i) or _NUMERAL.match(source, i)
            if not m:
                raise DotSyntaxError(f"unexpected {c!r} at {i}: {source[i : i + 40]!r}")
            tokens.append(("value", Value(m.group(0), "id")))
            i = m.end()
    return tokens


@dataclass
class Dot:
    """What a DOT source declares."""

    name: str = ""
    graph_attrs: dict[str, Value] = field(default_factory=dict)
    nodes: dict[str, dict[str, Value]] = field(default_factory=dict)
    node_cluster: dict[str, tuple[str, ...]] = field(default_factory=dict)
    edges: list[tuple[str, str, dict[str, Value]]] = field(default_factory=list)
    clusters: dict[str, dict[str, Value]] = field(default_factory=dict)
    statements: Counter[str] = field(default_factory=Counter)
    """How many statements of each kind: node, edge, subgraph, defaults, assign."""

    def edge(self, a: str, b: str) -> dict[str, Value]:
        found = [attrs for x, y, attrs in self.edges if (x, y) == (a, b)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} edges {a} -> {b}")
        return found[0]

    def attr(self, node: str, key: str) -> str:
        """The attribute as the DOT lexer reads it."""
        return self.nodes[node][key].text

    def tooltip(self, node: str) -> str:
        """The node's tooltip as Graphviz shows it."""
        return tooltip_text(self.attr(node, "tooltip"))


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.t, self.i, self.dot = tokens, 0, Dot()

    def peek(self, k: int = 0) -> tuple[str, Any]:
        return self.t[self.i + k] if self.i + k < len(self.t) else ("eof", None)

    def take(self, kind: str, value: str | None = None) -> Any:
        tk, tv = self.peek()
        if tk != kind or (value is not None and (tv.text if tk == "value" else tv) != value):
            raise DotSyntaxError(f"expected {kind} {value or ''} at token {self.i}, got {tk} {tv}")
        self.i += 1
        return tv

    def is_punct(self, c: str) -> bool:
        return self.peek() == ("punct", c)

    def keyword(self, *words: str) -> bool:
        tk, tv = self.peek()
        return tk == "value" and tv.kind == "id" and tv.text.lower() in words

    def graph(self) -> Dot:
        self.take("value", "digraph")
        if self.peek()[0] == "value":
            self.dot.name = self.take("value").text
        self.take("punct", "{")
        self.stmts(())
        self.take("punct", "}")
        if self.peek()[0] != "eof":
            raise DotSyntaxError(f"text after the graph: {self.t[self.i :]!r:.80}")
        return self.dot

    def stmts(self, cluster: tuple[str, ...]) -> None:
        while not self.is_punct("}"):
            if self.peek()[0] == "eof":
                raise DotSyntaxError("missing }")
            self.stmt(cluster)
            if self.is_punct(";"):
                self.i += 1

    def attrs(self) -> dict[str, Value]:
        out: dict[str, Value] = {}
        while self.is_punct("["):
            self.i += 1
            while not self.is_punct("]"):
                key = self.take("value").text
                self.take("punct", "=")
                out[key] = self.take("value")
                if self.is_punct(",") or self.is_punct(";"):
                    self.i += 1
            self.take("punct", "]")
        return out

    def stmt(self, cluster: tuple[str, ...]) -> None:
        if self.keyword("subgraph"):
            self.dot.statements["subgraph"] += 1
            self.i += 1
            name = self.take("value").text if self.peek()[0] == "value" else ""
            self.take("punct", "{")
            inner = (*cluster, name)
            self.dot.clusters.setdefault(name, {})
            self.stmts(inner)
            self.take("punct", "}")
            return
        if self.keyword("graph", "node", "edge"):
            which = self.take("value").text.lower()
            self.dot.statements["defaults"] += 1
            attrs = self.attrs()
            if which == "graph":
                target = self.dot.clusters[cluster[-1]] if cluster else self.dot.graph_attrs
                target.update(attrs)
            return
        first = self.take("value")
        if self.is_punct("="):  # ID = ID: a graph (or subgraph) attribute
            self.i += 1
            self.dot.statements["assign"] += 1
            value = self.take("value")
            target = self.dot.clusters[cluster[-1]] if cluster else self.dot.graph_attrs
            target[first.text] = value
            return
        chain = [first.text]
        while self.peek()[0] == "arrow":
            self.i += 1
            chain.append(self.take("value").text)
        attrs = self.attrs()
        self.dot.statements["node" if len(chain) == 1 else "edge"] += 1
        if len(chain) == 1:
            self.dot.nodes.setdefault(chain[0], {}).update(attrs)
            self.dot.node_cluster[chain[0]] = cluster
        else:
            for a, b in itertools.pairwise(chain):
                self.dot.edges.append((a, b, attrs))


def parse(source: str) -> Dot:
    """Parse a ``digraph`` as the ``graphviz`` package writes it."""
    return _Parser(tokenize(source)).graph()


def html_text(label: str) -> str:
    """The text an HTML-like label shows: tags dropped, ``<BR/>`` as newlines, entities decoded.

    Graphviz then reads a doubled backslash as one (see ``subst``).
    """
    return subst(html.unescape(re.sub(r"<[^>]*>", "", re.sub(r"<BR/>", "\n", label))))
