"""Search-time synonyms: one rule list for Elasticsearch's analyzer, the embedded store and the
words the vector legs embed.

Vocabulary mismatch is where BM25 loses most: a shopper types ``ladies``, ``gray`` or
``wristwatch`` and the titles say ``women``, ``grey`` and ``watch``. BM25 scores those words
zero; the vector legs lose less, but lose too (a dense encoder puts ``joggers`` near, not on,
``track pants``). Elasticsearch's answer for BM25 is a ``synonym_graph`` filter in the
*search* analyzer (rules can change without reindexing), and this module holds the rules in
the format that filter reads (Solr's), so the same list is rendered into
``mappings/products.json`` and applied by the embedded store at query time. The vector legs
embed the query with each matched phrase in its rule's canonical wording (``canonical``),
which the searcher does before encoding, whichever store answers.

Rules, one per line, ``#`` starts a comment:

- ``a, b, c``: equivalent; a query with any of them matches any of them.
- ``a, b => c, d``: explicit; ``a`` or ``b`` in a query matches ``c`` or ``d`` (and no
  longer ``a`` itself unless it is on the right too).

Phrases are matched on word sequences, longest first, left to right, as the graph filter
does. How the embedded store scores a matched phrase's alternatives is in
``LexicalIndex.score`` (``stores/lexical.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hybrid_core.errors import ConfigError

PACKAGED = "packaged"
NONE = "none"
PACKAGED_FILE = "fashion-synonyms.txt"
# words as Elasticsearch's standard tokenizer + possessive filter + lowercase see them, near enough:
# letters and digits, an inner apostrophe kept, a trailing possessive dropped
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def words(text: str) -> list[str]:
    """The lower-cased words of ``text``, possessives dropped (``Men's``, ``Men’s`` -> ``men``)."""
    out = []
    for word in _WORD.findall(text.lower().replace("\u2019", "'")):  # a typographic apostrophe too
        if word.endswith("'s"):
            word = word[:-2]
        out.append(word)
    return out


@dataclass(frozen=True)
class Clause:
    """One part of a query: a plain word (``alternatives`` is one phrase, itself), or a phrase a
    rule matched with every phrase it stands for (each a tuple of words)."""

    alternatives: tuple[tuple[str, ...], ...]
    matched: tuple[str, ...]

    @property
    def is_synonym(self) -> bool:
        return self.alternatives != (self.matched,)


class SynonymRules:
    """Parsed rules and the longest-match expansion of a query."""

    def __init__(self, lines: tuple[str, ...] | list[str], *, source: str = "synonyms") -> None:
        self.lines = tuple(lines)
        self._map: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
        # each phrase's canonical wording: the first phrase of the first rule that rewrites it
        # (an equivalence's first phrase, an explicit rule's first target)
        self._canonical: dict[tuple[str, ...], tuple[str, ...]] = {}
        for number, line in enumerate(self.lines, 1):
            rule = line.split("#", 1)[0].strip()
            if not rule:
                continue
            if rule.count("=>") > 1:
                raise ConfigError(f"{source} line {number}: {line!r} has more than one '=>'")
            if "=>" in rule:
                left, right = rule.split("=>")
                sources, targets = _phrases(left, source, number, line), _phrases(right, source, number, line)
            else:
                sources = targets = _phrases(rule, source, number, line)
            if "=>" not in rule and len(sources) < 2:
                raise ConfigError(f"{source} line {number}: {line!r} names one phrase; a rule needs two or more")
            for phrase in sources:
                self._map.setdefault(phrase, set()).update(targets)
                self._canonical.setdefault(phrase, targets[0])
        self._longest = max((len(p) for p in self._map), default=0)

    def __bool__(self) -> bool:
        return bool(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def expand(self, text: str) -> list[Clause]:
        """``text`` as clauses: at each word the longest phrase a rule knows becomes one clause with
        its alternatives (sorted, for a stable order), any other word a plain clause."""
        tokens = words(text)
        clauses: list[Clause] = []
        i = 0
        while i < len(tokens):
            for length in range(min(self._longest, len(tokens) - i), 0, -1):
                phrase = tuple(tokens[i : i + length])
                if phrase in self._map:
                    clauses.append(Clause(tuple(sorted(self._map[phrase])), phrase))
                    i += length
                    break
            else:
                clauses.append(Clause(((tokens[i],),), (tokens[i],)))
                i += 1
        return clauses


    def canonical(self, text: str) -> str:
        """``text`` with every phrase a rule matches put in its rule's canonical wording (``ladies
        tee`` -> ``women t shirt``), for the legs that embed the query rather than match its words.

        A dense encoder places ``joggers`` or ``rucksack`` near, not on, ``track pants`` and
        ``backpack``, and the catalogue's vectors were made from its own wording; BM25 gets the
        same rules as alternatives (``expand``), the vector legs one wording, the first phrase of
        each line. ``text`` comes back unchanged (case and punctuation kept) when nothing in it
        needs rewriting; otherwise as its lower-cased words, the matched phrases replaced."""
        clauses = self.expand(text)
        if all(self._canonical.get(c.matched, c.matched) == c.matched for c in clauses):
            return text
        return " ".join(" ".join(self._canonical.get(c.matched, c.matched)) for c in clauses)


def _phrases(part: str, source: str, number: int, line: str) -> list[tuple[str, ...]]:
    phrases = []
    for item in part.split(","):
        phrase = tuple(words(item))
        if not phrase:
            raise ConfigError(f"{source} line {number}: {line!r} has an empty phrase")
        phrases.append(phrase)
    return phrases


def load(setting: str | None) -> tuple[str, ...]:
    """The rule lines a ``synonyms`` setting names: ``packaged`` (the list shipped for fashion
    catalogues), ``none``/empty (no synonyms), or a path to a file of rules. Comments and blank
    lines are dropped; every rule is checked, and a bad one is named with its line."""
    if not setting or setting.lower() == NONE:
        return ()
    if setting.lower() == PACKAGED:
        text = resources.files("hybrid_core").joinpath("lexicons", PACKAGED_FILE).read_text(encoding="utf-8")
        source = PACKAGED_FILE
    else:
        try:
            text = Path(setting).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read synonyms file {setting}: {exc}") from None
        source = setting
    SynonymRules(text.splitlines(), source=source)  # validate now, with the file's own line numbers
    return tuple(rule for rule in (line.split("#", 1)[0].strip() for line in text.splitlines()) if rule)
