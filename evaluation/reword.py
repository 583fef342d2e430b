"""Reworded dev queries: a stress test of how much a strategy depends on the dev wording.

The held-out query set asks for the same things in other words (synonyms, inflections,
paraphrases). A fusion tuned on the dev wording can lean on BM25 matching that exact
wording; rewording each text query once and running the same strategies shows what
survives. Every rewrite keeps what the query is judged on (article type, colour,
gender): ``tee`` for ``t-shirt``, ``ladies`` for ``women``, ``gray`` for ``grey``,
``same in red`` for ``in red``, and a text query as a request (``show me ...``, ``... please``); none crosses a judged boundary (``sneakers`` could be
casual or sports shoes, ``girls`` is another gender, ``tan`` another colour, so none of
those is used).

Deterministic: which phrase is rewritten, and into what, follows a hash of the query id.
This is not a tuning set: it is one guess at other wording, reported next to the dev
figures, never used to choose a fusion.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

# phrase -> meaning-preserving alternatives (lower case); longer phrases are tried first
ARTICLE_TYPES: dict[str, tuple[str, ...]] = {
    "t-shirt": ("tee", "tshirt", "t shirt"),
    "sports shoe": ("running shoes", "sport shoes", "training shoes"),
    "casual shoe": ("casual shoes", "everyday shoes"),
    "formal shoe": ("formal shoes", "office shoes"),
    "flip flops": ("flip-flops", "flipflops"),
    "track pants": ("trackpants", "joggers"),
    "innerwear vest": ("vest", "undershirt"),
    "handbag": ("hand bag", "handbags", "shoulder bag"),
    "sunglasses": ("shades", "sun glasses"),
    "watch": ("wristwatch", "wrist watch"),
    "trousers": ("pants", "chinos"),
    "briefs": ("brief", "underwear briefs"),
    "heels": ("high heels", "heeled shoes"),
    "jeans": ("denims", "denim jeans"),
    "shorts": ("half pants", "bermudas"),
    "sweater": ("pullover", "jumper"),
    "jacket": ("jackets",),
    "cap": ("caps", "baseball cap"),
    "earring": ("earrings", "ear rings"),
    "kurta": ("kurtas",),
    "kurti": ("kurtis",),
    "top": ("tops",),
    "wallet": ("wallets", "billfold"),
    "belt": ("belts",),
    "clutche": ("clutch", "clutch bag"),
    "backpack": ("rucksack", "backpacks"),
    "dress": ("dresses", "frock"),
    "trunk": ("trunks",),
    "bra": ("bras", "brassiere"),
    "capris": ("capri pants",),
    "flats": ("flat shoes", "ballet flats"),
    "tie": ("necktie", "ties"),
    "cufflink": ("cufflinks", "cuff links"),
    "scarve": ("scarf", "scarves"),
    "sweatshirt": ("sweat shirt", "sweatshirts"),
    "sandals": ("sandal",),
    "socks": ("sock", "ankle socks"),
    "shirt": ("shirts", "button-down shirt"),
    "ring": ("rings", "finger ring"),
    "pendant": ("pendants",),
    "suit": ("suits",),
}
GENDERS: dict[str, tuple[str, ...]] = {
    "men": ("men's", "mens", "male", "gents"),
    "women": ("women's", "womens", "ladies", "female"),
}
COLOURS: dict[str, tuple[str, ...]] = {
    "grey": ("gray",),
    "navy blue": ("navy",),
    "multi": ("multicolour", "multicolored"),
    "gold": ("golden",),
}
# "this, in red": the image+text queries' connective, and longer requests around it (words no title
# holds, which a leg that searched the whole text with BM25 ranked by)
PHRASING: dict[str, tuple[str, ...]] = {
    "in": ("same in", "but in", "this in", "show me this in", "i want this one in", "same style but in"),
}
TABLES = {"article type": ARTICLE_TYPES, "gender": GENDERS, "colour": COLOURS, "phrasing": PHRASING}
# a text query as a request: words around it that no product is named by, though a few slogan T-shirts hold them
# ("Try Me", "No Show"), so BM25 weighs them as the rarest words of the query (query_builder/word_check.py)
REQUESTS = ("show me {}", "i am looking for {}", "i need {}", "{} please", "do you have {}")
SUFFIX = "~reworded"


def _pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])")


def rewrite(query_id: str, text: str, *, request: bool = False) -> tuple[str, str | None]:
    """``text`` with one phrase (article type, gender, colour or the connective ``in``) in other words
    that keep its judgment, and which of those it was (a key of ``TABLES``); unchanged (lower-cased),
    with ``None``, when it has none of the phrases the tables know. With ``request``, the whole text
    put in a request (``REQUESTS``, kind ``"request"``) is one more candidate."""
    lowered = text.lower()
    found: list[tuple[str, str, tuple[str, ...]]] = []
    for kind, table in TABLES.items():
        for phrase in sorted(table, key=len, reverse=True):
            if _pattern(phrase).search(lowered):
                found.append((kind, phrase, table[phrase]))
                break
    if request:
        found.append(("request", lowered, REQUESTS))
    if not found:
        return lowered, None
    digest = int.from_bytes(hashlib.sha256(query_id.encode()).digest()[:8], "big")
    kind, phrase, alternatives = found[digest % len(found)]
    chosen = alternatives[(digest // len(found)) % len(alternatives)]
    if kind == "request":
        return chosen.format(lowered), kind
    return _pattern(phrase).sub(chosen, lowered, count=1), kind


def reword(query_id: str, text: str) -> str:
    """``rewrite``'s text."""
    return rewrite(query_id, text)[0]


def reword_queries(queries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The queries with text, each reworded once (id + ``~reworded``; image and judgments kept;
    ``reworded``: what was, a key of ``TABLES``, ``"request"`` or ``None``; text-only queries may come
    as a request); image-only queries are left out, there is no wording to change."""
    out = []
    for q in queries:
        if q.get("text"):
            text, kind = rewrite(str(q["id"]), str(q["text"]), request=not q.get("image"))
            out.append({**q, "id": f"{q['id']}{SUFFIX}", "text": text, "reworded": kind})
    return out
