"""A photo vocabulary: the phrases an image space can read a photo as, so a photo can be searched in words.

BM25 is the strongest single leg for text queries (it rewards every asked word and nothing else),
and image queries had no such leg: every one of theirs is a vector nearest-neighbour search. A
tower trained into a text space (or any CLIP model) can classify a photo zero-shot against a list of
phrases; its reading ("Men Navy Blue Tshirts", taken facet by facet, see ``describe``) is then a
text query that BM25 answers precisely. The phrases are rows of facets (``gender``, ``colour``, ``article_type`` for the packaged
tower, the fields its caption term was trained on), so that where the shopper's own words name a
facet ("this, in red"), the words win and the photo's reading of that facet is dropped.

The packaged vocabulary is built from the ``train`` split's fields (training labels, as the tower's
captions are); nothing of a ``test`` product is read. A user's own vocabulary is any JSON file of the
same format (their taxonomy), for any image space with a text tower.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from hybrid_core.errors import ConfigError
from hybrid_core.json_files import read_json
from hybrid_core.synonyms import words

FORMAT = "es-hybrid-search/photo-vocabulary@1"
# Softmax temperature over the phrases' cosines when a photo is read facet by facet (``describe``).
# Chosen on the dev image queries: every value from 0.015 (the packaged tower's learned temperature)
# to 0.05 read better than the single best phrase, in both title variants; 0.03 best in both.
DEFAULT_TEMPERATURE = 0.03


def facet_value(product: Mapping[str, Any], name: str) -> str | None:
    """A product's value of a facet, top-level or under ``attributes``; ``None`` where missing or blank."""
    raw = product.get(name)
    if raw is None and isinstance(product.get("attributes"), Mapping):
        raw = product["attributes"].get(name)
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):  # as pandas exports leave a missing value
        return None
    text = str(raw).strip()
    return text or None


@dataclass(frozen=True)
class PhotoVocabulary:
    """Rows of facet values (each a phrase when joined in ``fields`` order), most frequent first.

    ``temperature``: a photo is read facet by facet, each facet's value the one holding the most
    probability once the phrases' cosines are put through a softmax at this temperature (so
    "Tshirts" wins when many T-shirt rows are close, even where one "Shirts" row is closest);
    ``None`` takes the single closest phrase as it is."""

    fields: tuple[str, ...]
    rows: tuple[tuple[str | None, ...], ...]
    source: str = ""
    temperature: float | None = DEFAULT_TEMPERATURE

    def __post_init__(self) -> None:
        if not self.fields or not all(isinstance(f, str) and f for f in self.fields):
            raise ConfigError(f"photo vocabulary {self.source}: fields must be a non-empty list of names")
        if not self.rows:
            raise ConfigError(f"photo vocabulary {self.source}: it has no phrases")
        for number, row in enumerate(self.rows):
            if len(row) != len(self.fields) or not any(row):
                raise ConfigError(
                    f"photo vocabulary {self.source}: row {number} {list(row)} must give {len(self.fields)} values "
                    f"({', '.join(self.fields)}), at least one of them non-empty"
                )
        t = self.temperature
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0):
            raise ConfigError(f"photo vocabulary {self.source}: temperature must be a number > 0 (or null), got {t!r}")

    @property
    def phrases(self) -> list[str]:
        return [" ".join(v for v in row if v) for row in self.rows]

    def values(self, canonical: Callable[[str], str] | None = None) -> Mapping[str, Mapping[tuple[str, ...], str]]:
        """Per facet, every value by its words (``("navy", "blue")`` -> ``"Navy Blue"``): what a query's
        words are matched against. With ``canonical`` (synonym rules' first wording), each value by
        its canonical words too, so that a query's "tee", made "t shirt", names the value "Tshirts"."""
        if canonical is None:
            return self._facet_values
        cache = self._canonical_values
        if canonical not in cache:
            if len(cache) >= 8:  # one entry per searcher's rules; a bound method keeps its searcher alive
                cache.pop(next(iter(cache)))
            cache[canonical] = MappingProxyType({
                name: MappingProxyType({**found, **{tuple(words(canonical(v))): v for v in found.values()}})
                for name, found in self._facet_values.items()})
        return cache[canonical]

    def names(self, word: str) -> bool:
        """Whether ``word`` (lower case) is a word of some facet value, as written or in the plural
        the values use ("kurta" -> "Kurtas", "scarve" -> "Scarves"): a word the catalogue's own
        taxonomy describes products by, never a shopper's filler."""
        return any(form in self._words for form in (word, word + "s", word + "es"))

    @cached_property
    def _words(self) -> frozenset[str]:
        return frozenset(w for found in self._facet_values.values() for value_words in found for w in value_words)

    @cached_property
    def _canonical_values(self) -> dict[Callable[[str], str], Mapping[str, Mapping[tuple[str, ...], str]]]:
        return {}

    @cached_property
    def _facet_values(self) -> Mapping[str, Mapping[tuple[str, ...], str]]:
        # built once: tokenizing every row's values took 3.8 ms, which every image query paid in describe()
        out: dict[str, dict[tuple[str, ...], str]] = {f: {} for f in self.fields}
        for row in self.rows:
            for name, value in zip(self.fields, row):
                if value:
                    out[name].setdefault(tuple(words(value)), value)
        return MappingProxyType({name: MappingProxyType(found) for name, found in out.items()})

    def describe(self, scores: np.ndarray, text: str | None = None, canonical: Callable[[str], str] | None = None) -> str:
        """The words a photo is searched with: per facet, the value with the most softmax probability
        over ``scores`` (the phrases' cosines to the photo; without a temperature, the best-scoring
        row), except where the query's ``text`` names a value of that facet: the shopper's value wins
        ("in red" over the photo's black).

        Only the values the text names are taken from it, not its other words: "show me this in red,
        please" must search "Men Red Tshirts", since BM25 would rank the few products whose text
        says "show" or "please" first (on the dev image + text queries so reworded, the leg alone fell
        from 0.86 to 0.36-0.43 NDCG@10 when the whole text was appended). The query's own legs search
        all its words. ``canonical`` puts the text in the wording the facet values use (synonym
        rules: ``gray`` -> ``grey``) before the values are looked for."""
        return self.worded(self.read(scores), text, canonical)

    def worded(self, row: Sequence[str | None], text: str | None = None, canonical: Callable[[str], str] | None = None) -> str:
        """A photo's reading (a value per facet, from ``read`` or a trained ``PhotoReader``) in words,
        each facet the ``text`` names taking the text's value, as ``describe`` says."""
        named = named_values(canonical(text) if (text and canonical) else (text or ""), self.values(canonical))
        return " ".join(v for v in (named.get(name, photo) for name, photo in zip(self.fields, row)) if v)

    def read(self, scores: np.ndarray) -> tuple[str | None, ...]:
        """The photo's value per facet (in ``fields`` order): the one with the most softmax probability
        over ``scores``, or the best-scoring row's without a temperature."""
        if len(scores) != len(self.rows):
            raise ValueError(f"{len(scores)} scores for {len(self.rows)} phrases")
        if self.temperature is None:
            return self.rows[int(np.argmax(scores))]
        weights = np.exp((np.asarray(scores, dtype=np.float64) - np.max(scores)) / self.temperature)
        return tuple(values[int(np.argmax(np.bincount(ids, weights=weights, minlength=len(values))))]
                     for values, ids in self._facet_columns)

    @cached_property
    def _facet_columns(self) -> tuple[tuple[tuple[str | None, ...], np.ndarray], ...]:
        """Per facet, its distinct values (``None`` among them) and each row's index into them."""
        columns = []
        for i in range(len(self.fields)):
            values = tuple(dict.fromkeys(row[i] for row in self.rows))
            index = {v: n for n, v in enumerate(values)}
            columns.append((values, np.array([index[row[i]] for row in self.rows], dtype=np.intp)))
        return tuple(columns)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "fields": list(self.fields), "temperature": self.temperature, "rows": [list(r) for r in self.rows],
                "source": self.source}

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> PhotoVocabulary:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConfigError(f"{where} is not a photo vocabulary (expected \"format\": \"{FORMAT}\")")
        fields, rows = data.get("fields"), data.get("rows")
        if not isinstance(fields, list) or not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise ConfigError(f"{where}: \"fields\" must be a list of names and \"rows\" a list of lists of values")
        clean = tuple(tuple(None if v in (None, "") else str(v) for v in r) for r in rows)
        # a file written before facet-by-facet reading has no "temperature": it is read as it was then
        return cls(tuple(fields), clean, source=str(data.get("source") or where), temperature=data.get("temperature"))

    @classmethod
    def load(cls, path: str | Path) -> PhotoVocabulary:
        return cls.from_dict(read_json(path, "photo vocabulary"), where=str(path))

    def save(self, path: str | Path) -> None:
        data = self.to_dict()
        rows = ",\n  ".join(json.dumps(r) for r in data.pop("rows"))  # one phrase per line: diffs read as phrases
        head = json.dumps(data, indent=1)[:-2]
        Path(path).write_text(f"{head},\n \"rows\": [\n  {rows}\n ]\n}}\n")

    @classmethod
    def from_products(cls, products: Iterable[Mapping[str, Any]], fields: Sequence[str], *, min_count: int = 2,
                      source: str = "", temperature: float | None = DEFAULT_TEMPERATURE) -> PhotoVocabulary:
        """Every distinct row of ``fields`` values among ``products`` seen at least ``min_count`` times
        (a row seen once is as likely a labelling slip as a kind of product), most frequent first."""
        counts: Counter[tuple[str | None, ...]] = Counter()
        for product in products:
            row = tuple(facet_value(product, f) for f in fields)
            if any(row):
                counts[row] += 1
        rows = tuple(row for row, n in sorted(counts.items(), key=lambda kv: (-kv[1], tuple(v or "" for v in kv[0]))) if n >= min_count)
        return cls(tuple(fields), rows, source=source, temperature=temperature)


def named_values(text: str, values: Mapping[str, Mapping[tuple[str, ...], str]]) -> dict[str, str]:
    """Per facet, the value ``text`` names as whole words (``"this in navy blue"`` -> colour ``Navy Blue``):
    the longest value found, then the first in the text ("navy blue" over "blue")."""
    tokens = words(text)
    named = {}
    for name, phrases in values.items():
        found = [(-len(phrase), start, value) for phrase, value in phrases.items()
                 for start in range(len(tokens) - len(phrase) + 1) if phrase and tuple(tokens[start : start + len(phrase)]) == phrase]
        if found:
            named[name] = min(found)[2]
    return named
