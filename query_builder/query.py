"""The hybrid query and its fusion settings: plain dataclasses, validated before any store call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hybrid_core.dicts import known_keys
from hybrid_core.errors import ValidationError
from query_builder.checks import non_negative, whole_number
from query_builder.diversify import Diversity
from query_builder.feedback import Feedback
from query_builder.fusion import FUSIONS, NORMALIZERS
from query_builder.term_feedback import TermFeedback
from query_builder.word_check import WordCheck

LEG_NAMES = ("bm25", "text", "cross", "image", "caption", "photo_words", "product")
LEXICAL_LEGS = ("bm25", "photo_words")  # the BM25 legs (words, not a vector), which ``all_terms_boost`` shapes
LEG_HELP = {
    "bm25": "BM25 over the text fields",
    "text": "query text -> text space -> text_vector",
    "cross": "query text -> image space -> image_vector",
    "image": "query image -> image space -> image_vector",
    "caption": "query image -> image space -> text_vector (where the image tower was trained into the text space)",
    "photo_words": "query image -> its words in the image space's vocabulary, facet by facet (a value the query's text "
                   "names replacing the photo's) -> BM25 over the text fields",
    "product": "query (text, image or both averaged) in the image space -> product_vector",
}
MAX_WINDOW = 10_000  # Elasticsearch's index.max_result_window and knn num_candidates cap
MAX_QUERY_CHARS = 2_000


def _check_weights(weights: Mapping[str, Any]) -> None:
    for name, weight in weights.items():
        if name not in LEG_NAMES:
            raise ValidationError(f"unknown leg {name!r} in weights; legs are {list(LEG_NAMES)}")
        non_negative(weight, f"weight of {name}")


@dataclass
class FusionConfig:
    """How legs are combined: ``rrf`` (rank_constant) or ``linear`` (normalizer), per-leg weights, one window.

    ``all_terms_boost`` shapes the BM25 legs rather than the fusion: a constant added to the BM25
    score of every product holding all the leg's words (the query's; for ``photo_words``, the photo's
    phrase and the query's; stop words aside; a synonym group counts when any alternative is
    there), so "men brown shirt" ranks every men's brown shirt above a
    women's brown shirt that BM25 alone scores a hair lower. It lives here because it is chosen
    with the weights (``hybrid-search tune``) and travels with them in a fusion profile, per query
    kind. 0, the default, is plain ``multi_match``."""

    method: str = "rrf"
    weights: dict[str, float] = field(default_factory=dict)
    rank_constant: int = 60
    rank_window_size: int = 100
    normalizer: str = "minmax"
    all_terms_boost: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in FUSIONS:
            raise ValidationError(f"unknown fusion {self.method!r}; choose one of {sorted(FUSIONS)}")
        if self.normalizer not in NORMALIZERS:
            raise ValidationError(f"unknown normalizer {self.normalizer!r}; choose one of {sorted(NORMALIZERS)}")
        _check_weights(self.weights)
        non_negative(self.all_terms_boost, "all_terms_boost")
        if isinstance(self.rank_constant, bool) or not isinstance(self.rank_constant, int) or self.rank_constant < 1:
            raise ValidationError(f"rank_constant must be an integer >= 1, got {self.rank_constant!r}")
        whole_number(self.rank_window_size, 1, MAX_WINDOW, "rank_window_size")

    def weight(self, leg: str) -> float:
        return float(self.weights.get(leg, 1.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionConfig:
        return cls(**known_keys(cls, data, "fusion config", ValidationError))


@dataclass
class HybridQuery:
    """Text and/or an image, filters, a page (``size`` from ``offset``), and the fusion to use.

    ``legs`` restricts which legs may run (default: every leg that applies);
    ``boosts`` overrides the per-field BM25 weights; ``num_candidates`` is the kNN
    candidate pool (default ``2 * rank_window_size``, capped at 10,000);
    ``diversity`` re-ranks the first fused hits by MMR (``query_builder.diversify``);
    ``feedback`` adds a second-round kNN leg from the first page's vectors (``query_builder.feedback``);
    ``term_feedback`` a second-round BM25 leg from the words the first page shares (``query_builder.term_feedback``);
    ``word_check`` leaves out of the BM25 leg the words none of the query's nearest products use
    (``query_builder.word_check``; on by default, ``None`` searches every word).
    """

    text: str | None = None
    image: Any = None  # a path, bytes or a PIL image
    filters: dict[str, Any] = field(default_factory=dict)
    size: int = 10
    offset: int = 0
    fusion: FusionConfig = field(default_factory=FusionConfig)
    legs: tuple[str, ...] | None = None
    boosts: dict[str, float] = field(default_factory=dict)
    num_candidates: int | None = None
    diversity: Diversity | None = None
    feedback: Feedback | None = None
    term_feedback: TermFeedback | None = None
    word_check: WordCheck | None = field(default_factory=WordCheck)

    def __post_init__(self) -> None:
        if self.text is not None and not isinstance(self.text, str):
            raise ValidationError(f"text must be a string, got {type(self.text).__name__}")
        text = (self.text or "").strip()
        if len(text) > MAX_QUERY_CHARS:
            raise ValidationError(f"query text has {len(text)} characters, the limit is {MAX_QUERY_CHARS}")
        self.text = text or None
        if isinstance(self.image, str):
            self.image = Path(self.image)
        if self.text is None and self.image is None:
            raise ValidationError("a query needs text, an image, or both")
        for name, value in (("size", self.size), ("offset", self.offset)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"{name} must be an integer, got {value!r}")
        if self.size < 1:
            raise ValidationError(f"size must be >= 1, got {self.size}")
        if self.offset < 0:
            raise ValidationError(f"offset must be >= 0, got {self.offset}")
        window = self.fusion.rank_window_size
        if self.offset + self.size > window:
            raise ValidationError(
                f"offset + size = {self.offset + self.size} is beyond the fusion window ({window}); "
                "raise rank_window_size or page within it"
            )
        if self.legs is not None:
            self.legs = tuple(self.legs)
            unknown = [leg for leg in self.legs if leg not in LEG_NAMES]
            if unknown or not self.legs:
                raise ValidationError(f"unknown legs {unknown}; legs are {list(LEG_NAMES)}")
        for name, boost in self.boosts.items():
            non_negative(boost, f"boost of {name}")
        if self.diversity is not None and not isinstance(self.diversity, Diversity):
            raise ValidationError(f"diversity must be a Diversity, got {type(self.diversity).__name__}")
        if self.feedback is not None and not isinstance(self.feedback, Feedback):
            raise ValidationError(f"feedback must be a Feedback, got {type(self.feedback).__name__}")
        if self.term_feedback is not None and not isinstance(self.term_feedback, TermFeedback):
            raise ValidationError(f"term_feedback must be a TermFeedback, got {type(self.term_feedback).__name__}")
        if self.word_check is not None and not isinstance(self.word_check, WordCheck):
            raise ValidationError(f"word_check must be a WordCheck or None, got {type(self.word_check).__name__}")
        if self.num_candidates is not None:
            if not isinstance(self.num_candidates, int) or not window <= self.num_candidates <= MAX_WINDOW:
                raise ValidationError(
                    f"num_candidates must be an integer in {window}..{MAX_WINDOW} (at least the window), got {self.num_candidates!r}"
                )

    @property
    def k(self) -> int:
        """Hits each kNN leg returns: the fusion window."""
        return self.fusion.rank_window_size

    @property
    def candidates(self) -> int:
        return self.num_candidates or min(MAX_WINDOW, max(2 * self.k, 100))
