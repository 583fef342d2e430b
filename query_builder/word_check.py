"""The word check: a query's words that none of the products near it use count only faintly in BM25.

BM25 weighs a word by its rarity, and a shopper's filler is rare in a catalogue of titles:
"show me a blue watch" scores the one title that says "show" ("Fila Men No Show White Socks")
and the dozen slogan T-shirts that say "me" above every blue watch, since "show" and "me" are
rarer than "blue" and "watch". On the dev text queries so wrapped ("show me {query}",
"i am looking for {query} please") BM25 with the all-words bonus fell from 0.904 to 0.45 and
0.19 NDCG@10 (full titles), and the tuned fusion, which leans on BM25, to 0.72 and 0.46. The
vector legs barely moved: a dense encoder reads "show me" as no product at all.

So the vector side places the words. The text leg's nearest ``depth`` products (the query's
neighbourhood) are the products the query is about; a word (or a synonym phrase, any of its
wordings) is placed when at least ``min_count`` of them hold it, or when every product in the
(filtered) catalogue that holds it is among them: a word only two products use ("Doodle") is
placed when both are near. A word the neighbourhood does not place is filler, whatever its rarity,
and BM25 counts it at ``unplaced_weight`` of its score: a tie-breaker, never the reason a product
ranks, and not needed for the all-words bonus. That keeps what a rare real word is worth where the
text model did not bring its products near: the dev neighbourhood of "mauve kurta" holds 2 of the
15 mauve titles, and "mauve" still orders the kurtas. A hand-written filler list would do the same
only for the words its author thought of; this needs none.

``min_count`` 3 of 100 rather than 1: a T-shirt query's neighbourhood holds a slogan tee or two
("Nike Women Try Me Pink T-shirt"), which would place "me" (on the dev text queries as
"show me {query}", min_count 1 recovered BM25 +2 to 0.848, 3 to 0.90). Where no word is placed, or
every word is, the query is searched as it is.

Where the image space has a photo vocabulary, a word it names (a colour, article type or gender
value, or its plural) is placed without counting (``named_by``): the catalogue's own taxonomy
describes products by it, so it is never filler, even where the text model's neighbourhood misses
it ("black kurta set": kurtas near, few sets; "multi handbag": few multicolour bags near).

Both stores count the same way: the neighbourhood is one kNN search, and the counts are the
store's own analysis of each word (stemming, synonyms), one ``_msearch`` of ``size: 0`` counts on
Elasticsearch (``Store.word_counts``), so the leg searches what either store would. Two round trips
there (the kNN, then the counts) before the hybrid request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hybrid_core.errors import ValidationError
from hybrid_core.stores.lexical import drop_stop_words
from hybrid_core.synonyms import SynonymRules, words
from query_builder.checks import whole_number

MAX_DEPTH = 1_000


@dataclass(frozen=True)
class WordCheck:
    """A query word counts in full for BM25 when at least ``min_count`` of the text leg's nearest
    ``depth`` products hold it (or all the catalogue's products that hold it are among them); the
    others count at ``unplaced_weight`` of their score (0: left out) and are not needed for the
    all-words bonus."""

    depth: int = 100
    min_count: int = 3
    unplaced_weight: float = 0.1

    def __post_init__(self) -> None:
        for name in ("depth", "min_count"):
            whole_number(getattr(self, name), 1, MAX_DEPTH, f"word check {name}")
        if self.min_count > self.depth:
            raise ValidationError(f"word check min_count ({self.min_count}) cannot exceed depth ({self.depth})")
        weight = self.unplaced_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or not 0 <= weight <= 1:
            raise ValidationError(f"word check unplaced_weight must be a number in [0, 1], got {weight!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def query_phrases(text: str, rules: SynonymRules | None) -> list[str]:
    """The units a query's words are checked in, in order, stop words aside: single words, and the
    phrases a synonym rule matches ("t shirt", "navy blue" where a rule names it), which stand or
    fall together. Each is in the query's own wording; the store expands the rules when it counts."""
    text = drop_stop_words(text)
    if rules:
        units = [" ".join(clause.matched) for clause in rules.expand(text)]
    else:
        units = words(text)
    return list(dict.fromkeys(u for u in units if u))


def placed(near: Sequence[int], everywhere: Sequence[int], min_count: int) -> list[bool]:
    """Per phrase: held by at least ``min_count`` of the neighbourhood (``near``), or by all the
    products that hold it anywhere (``everywhere``, at least one)."""
    if len(near) != len(everywhere):
        raise ValueError(f"{len(near)} neighbourhood counts for {len(everywhere)} catalogue counts")
    return [n >= min_count or (0 < e <= n) for n, e in zip(near, everywhere)]


def named_by(phrases: Sequence[str], names: Callable[[str], bool] | None) -> list[bool]:
    """Per phrase: every word of it is one the catalogue's taxonomy names (``names``, the image
    space's photo vocabulary: colours, types, genders), which the check places whatever the
    neighbourhood holds; all ``False`` without a taxonomy."""
    if names is None:
        return [False] * len(phrases)
    return [bool(found) and all(names(w) for w in found) for found in (words(p) for p in phrases)]


def checked_text(text: str, phrases: Sequence[str], keep: Sequence[bool]) -> tuple[str, list[str]]:
    """The text BM25 searches in full and the phrases it could not place: the placed phrases in
    query order; the query's own ``text`` (nothing unplaced) where every phrase or none is placed."""
    dropped = [p for p, k in zip(phrases, keep) if not k]
    if not dropped or len(dropped) == len(phrases):
        return text, []
    return " ".join(p for p, k in zip(phrases, keep) if k), dropped
