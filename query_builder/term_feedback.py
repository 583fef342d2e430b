"""Term feedback: a BM25 leg from the words most of the first page's titles share.

A photo has no words, so the lexical leg, the strongest one on catalogues whose titles
name type, colour and gender, cannot run for it. The first fused page can lend it words:
when most of a photo's nearest products are titled "... Women Pink Kurta", a BM25 search
for "women pink kurta" finds the pink kurtas whose photos look different. The vector
feedback of ``query_builder.feedback`` does the same in a vector space (the centroid of the
page's text vectors); this does it with the words themselves, which BM25 weighs by rarity.

The terms are the words (stop words aside) that at least ``min_share`` of the first
``depth`` hits hold in their text fields, most shared first, at most ``max_terms``; the
query's own words come first. The choice is a document-frequency vote, as the term
selection of relevance models (Lavrenko and Croft, 2001) without their probabilities:
titles are short, so a word either names what the page agrees on or is noise.

The leg runs as one more BM25 search (with the query's filters and field boosts) named
``term_feedback`` and is fused at ``weight``. On Elasticsearch the terms are chosen
client-side from the first page's ``_source`` and sent as an ordinary ``multi_match``, so
the request is what any client could send. ``hybrid-search tune`` keeps it per query kind
only where nested cross-validation says it pays (see docs/evaluation.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hybrid_core.dicts import known_keys
from hybrid_core.errors import ValidationError
from hybrid_core.stores.lexical import ENGLISH_STOP_WORDS
from hybrid_core.synonyms import words as analyzed_words
from query_builder.checks import non_negative, whole_number

LEG = "term_feedback"
MAX_DEPTH = 100
MAX_TERMS = 32


@dataclass(frozen=True)
class TermFeedback:
    """A BM25 leg from the words at least ``min_share`` of the first ``depth`` fused hits share
    (at most ``max_terms`` of them, after the query's own), fused at ``weight``."""

    depth: int = 20
    min_share: float = 0.5
    max_terms: int = 8
    weight: float = 1.0

    def __post_init__(self) -> None:
        for name, top in (("depth", MAX_DEPTH), ("max_terms", MAX_TERMS)):
            whole_number(getattr(self, name), 1, top, f"term feedback {name}")
        share = self.min_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ValidationError(f"term feedback min_share must be a number in (0, 1], got {share!r}")
        non_negative(self.weight, "term feedback weight")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TermFeedback:
        if not isinstance(data, Mapping):
            raise ValidationError(f"term feedback must be an object of settings, got {type(data).__name__}")
        return cls(**known_keys(cls, data, "term feedback", ValidationError))


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` as the synonym rules read them (possessives dropped, as
    Elasticsearch's analyzer drops them, so "Men's" votes for ``men``), without English stop words."""
    return [w for w in analyzed_words(text) if w not in ENGLISH_STOP_WORDS]


def shared_terms(texts: Sequence[str], *, min_share: float, max_terms: int, exclude: Iterable[str] = ()) -> list[str]:
    """The words at least ``min_share`` of ``texts`` hold (each text votes once per word), most
    shared first (ties: first seen first), at most ``max_terms``, leaving out ``exclude``."""
    if not texts:
        return []
    votes: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    for text in texts:
        for word in dict.fromkeys(words(text)):
            votes[word] += 1
            first_seen.setdefault(word, len(first_seen))
    skip = set(exclude)
    need = min_share * len(texts)
    chosen = [w for w in votes if votes[w] >= need - 1e-9 and w not in skip]
    chosen.sort(key=lambda w: (-votes[w], first_seen[w]))
    return chosen[:max_terms]


def hit_text(source: Mapping[str, Any], fields: Sequence[str]) -> str:
    """A hit's searchable text: its text fields' values (strings, or lists of strings) joined."""
    parts: list[str] = []
    for name in fields:
        value = source.get(name)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, (list, tuple)):
            parts.extend(v for v in value if isinstance(v, str))
    return " ".join(parts)


def feedback_text(query_text: str | None, sources: Sequence[Mapping[str, Any]], fields: Sequence[str], settings: TermFeedback) -> str:
    """The feedback leg's BM25 text: the query's words, then the shared words it lacks ("" when neither)."""
    own = words(query_text or "")
    texts = [t for t in (hit_text(s, fields) for s in sources) if t.strip()]
    terms = shared_terms(texts, min_share=settings.min_share, max_terms=settings.max_terms, exclude=own)
    return " ".join([*own, *terms])
