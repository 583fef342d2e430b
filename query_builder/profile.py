"""Fusion profiles: the fusion (method, weights, window) chosen per query kind, as a JSON file.

``hybrid-search tune`` writes one; ``search`` and ``eval`` load it. Query kinds
differ enough that one setting serves them badly: an image-only query has no text
legs at all, and "this, in brown" needs the image far more than the two words.
A leg weighted 0 is not run. A kind may also carry pseudo-relevance feedback, in a vector
space (``query_builder.feedback``) and in words (``query_builder.term_feedback``), which ``tune``
keeps only where cross-validation says it pays; profiles written before either existed load unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hybrid_core.errors import ConfigError, SearchError
from hybrid_core.json_files import read_json
from query_builder.feedback import Feedback
from query_builder.query import LEG_NAMES, FusionConfig, HybridQuery
from query_builder.term_feedback import TermFeedback

FORMAT = "es-hybrid-search/fusion-profile@1"
KINDS = ("text", "image", "text+image")


def query_kind(text: str | None, image: Any) -> str:
    """``text``, ``image`` or ``text+image``."""
    if text and image is not None:
        return "text+image"
    return "image" if image is not None else "text"


@dataclass
class FusionProfile:
    """A ``FusionConfig`` (and optionally a ``Feedback`` and a ``TermFeedback``) per query kind; kinds it
    omits use the query's own."""

    kinds: dict[str, FusionConfig] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # how it was chosen (tuning report)
    feedback: dict[str, Feedback] = field(default_factory=dict)
    term_feedback: dict[str, TermFeedback] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted((set(self.kinds) | set(self.feedback) | set(self.term_feedback)) - set(KINDS))
        if unknown:
            raise ConfigError(f"fusion profile names unknown query kinds {unknown}; kinds are {list(KINDS)}")

    def apply(self, query: HybridQuery) -> HybridQuery:
        """The query with its kind's fusion (window kept if larger), its kind's feedback unless the
        query brings its own, and, unless it names its own legs, only the legs the profile weighs above zero."""
        kind = query_kind(query.text, query.image)
        if query.feedback is None and kind in self.feedback:
            query = replace(query, feedback=self.feedback[kind])
        if query.term_feedback is None and kind in self.term_feedback:
            query = replace(query, term_feedback=self.term_feedback[kind])
        chosen = self.kinds.get(kind)
        if chosen is None:
            return query
        fusion = replace(chosen, weights=dict(chosen.weights))
        if query.offset + query.size > fusion.rank_window_size:
            fusion = replace(fusion, rank_window_size=query.offset + query.size)
        legs = query.legs
        if legs is None and any(w == 0 for w in fusion.weights.values()):
            legs = tuple(leg for leg in LEG_NAMES if fusion.weight(leg) > 0)
        return replace(query, fusion=fusion, legs=legs)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT, "kinds": {k: v.to_dict() for k, v in self.kinds.items()}}
        if self.feedback:
            data["feedback"] = {k: v.to_dict() for k, v in self.feedback.items()}
        if self.term_feedback:
            data["term_feedback"] = {k: v.to_dict() for k, v in self.term_feedback.items()}
        return {**data, "notes": self.notes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "fusion profile") -> FusionProfile:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConfigError(f"{source} is not a fusion profile (expected \"format\": \"{FORMAT}\")")
        kinds = data.get("kinds")
        if not isinstance(kinds, Mapping):
            raise ConfigError(f"{source}: \"kinds\" must be an object of query kind -> fusion")
        feedback = data.get("feedback") or {}
        if not isinstance(feedback, Mapping):
            raise ConfigError(f"{source}: \"feedback\" must be an object of query kind -> feedback settings")
        term_feedback = data.get("term_feedback") or {}
        if not isinstance(term_feedback, Mapping):
            raise ConfigError(f"{source}: \"term_feedback\" must be an object of query kind -> term feedback settings")
        try:
            return cls(
                {str(k): FusionConfig.from_dict(v) for k, v in kinds.items()},
                dict(data.get("notes") or {}),
                {str(k): Feedback.from_dict(v) for k, v in feedback.items()},
                {str(k): TermFeedback.from_dict(v) for k, v in term_feedback.items()},
            )
        except SearchError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FusionProfile:
        return cls.from_dict(read_json(path, "fusion profile"), source=str(path))
