"""Score fusion for hybrid search, as pure functions.

The semantics follow Elasticsearch's ``rrf`` and ``linear`` retrievers so that the
embedded store, client-side fusion against Elasticsearch and the server-side
retrievers rank the same legs the same way:

* every leg is cut to its first ``rank_window_size`` entries before fusion, and the
  fused list is cut to ``rank_window_size`` again (Elasticsearch's default window is
  10; ``None`` here means "no cut", which only an in-process caller can afford);
* ranks are 1-based; a document missing from a leg contributes nothing from it;
* RRF: ``score(d) = sum_leg weight * 1 / (rank_constant + rank_leg(d))``;
* linear: each leg's window is normalized on its own (``minmax``: ``(s - min) /
  (max - min)``, or ``min`` for every document when ``max - min < 1e-6``;
  ``l2_norm``: ``s / ||s||``, unchanged when the norm is below ``1e-6``; ``none``),
  then ``score(d) = sum_leg weight * normalized_leg(d)``;
* weights default to 1 and must be finite and non-negative (Elasticsearch rejects
  negative weights);
* equal fused scores are ordered by document id so results are deterministic
  (Elasticsearch breaks ties by its internal doc id, which no client can see).

A leg is a best-first sequence of ``(doc_id, score)``. ``legs`` is either a mapping
``name -> leg`` (then ``weights`` is a mapping by name, legs it omits weigh 1) or a
sequence of legs (then ``weights`` is a sequence of the same length).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from hybrid_core.errors import FusionError

Leg = Sequence[tuple[str, float]]
Legs = Mapping[str, Leg] | Sequence[Leg]
Weights = Mapping[str, float] | Sequence[float] | None
Fused = list[tuple[str, float]]

EPSILON = 1e-6


def _named_legs(legs: Legs, weights: Weights) -> list[tuple[str, Leg, float]]:
    """Pair every leg with its weight, validating both."""
    if isinstance(legs, Mapping):
        named = [(str(name), leg) for name, leg in legs.items()]
        if weights is None:
            weight_of: dict[str, float] = {}
        elif isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(legs))
            if unknown:
                raise FusionError(
                    f"weights name unknown legs {unknown}; the legs are {sorted(legs)}"
                )
            weight_of = {str(k): v for k, v in weights.items()}
        else:
            raise FusionError("legs given by name need weights given by name (a mapping)")
        triples = [(name, leg, weight_of.get(name, 1.0)) for name, leg in named]
    else:
        named = [(str(i), leg) for i, leg in enumerate(legs)]
        if weights is None:
            wlist: list[float] = [1.0] * len(named)
        elif isinstance(weights, Mapping):
            raise FusionError("legs given as a list need weights given as a list")
        else:
            wlist = list(weights)
            if len(wlist) != len(named):
                raise FusionError(
                    f"got {len(wlist)} weights for {len(named)} legs; give one weight per leg"
                )
        triples = [(name, leg, w) for (name, leg), w in zip(named, wlist)]
    for name, _, weight in triples:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise FusionError(f"weight of leg {name!r} must be a number, got {weight!r}")
        if not math.isfinite(weight) or weight < 0:
            raise FusionError(
                f"weight of leg {name!r} must be finite and >= 0, got {weight!r}"
            )
    return triples


def _window(leg: Leg, rank_window_size: int | None, name: str) -> list[tuple[str, float]]:
    """The first ``rank_window_size`` entries of a leg, refusing duplicate ids."""
    cut = list(leg if rank_window_size is None else leg[:rank_window_size])
    seen: set[str] = set()
    for doc_id, score in cut:
        if doc_id in seen:
            raise FusionError(f"leg {name!r} lists document {doc_id!r} twice")
        seen.add(doc_id)
        if not isinstance(score, (int, float)) or math.isnan(score):
            raise FusionError(f"leg {name!r} gives document {doc_id!r} the score {score!r}")
    return cut


def _check_window(rank_window_size: int | None) -> None:
    if rank_window_size is None:
        return
    if isinstance(rank_window_size, bool) or not isinstance(rank_window_size, int):
        raise FusionError(f"rank_window_size must be an integer, got {rank_window_size!r}")
    if rank_window_size < 1:
        raise FusionError(f"rank_window_size must be >= 1, got {rank_window_size}")


def _ranked(scores: Mapping[str, float], rank_window_size: int | None) -> Fused:
    ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return ordered if rank_window_size is None else ordered[:rank_window_size]


def rrf(
    legs: Legs,
    *,
    weights: Weights = None,
    rank_constant: int = 60,
    rank_window_size: int | None = None,
) -> Fused:
    """Weighted reciprocal rank fusion, best first, ties broken by doc id."""
    if isinstance(rank_constant, bool) or not isinstance(rank_constant, int) or rank_constant < 1:
        raise FusionError(f"rank_constant must be an integer >= 1, got {rank_constant!r}")
    _check_window(rank_window_size)
    scores: dict[str, float] = {}
    for name, leg, weight in _named_legs(legs, weights):
        for rank, (doc_id, _) in enumerate(_window(leg, rank_window_size, name), start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + weight / (rank_constant + rank)
    return _ranked(scores, rank_window_size)


def minmax(scores: Sequence[float]) -> list[float]:
    """Min-max scaling to [0, 1]; a flat leg keeps its (common) minimum, as in Elasticsearch."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if abs(high - low) < EPSILON:
        return [low] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def l2_norm(scores: Sequence[float]) -> list[float]:
    """Division by the L2 norm; a (near) zero norm leaves the scores as they are."""
    norm = math.sqrt(sum(s * s for s in scores))
    if norm < EPSILON:
        return list(scores)
    return [s / norm for s in scores]


def identity(scores: Sequence[float]) -> list[float]:
    """No normalization: raw scores, which biases towards whichever leg scores highest."""
    return list(scores)


NORMALIZERS: dict[str, Callable[[Sequence[float]], list[float]]] = {
    "minmax": minmax,
    "l2_norm": l2_norm,
    "none": identity,
}


def normalizer_by_name(name: str) -> Callable[[Sequence[float]], list[float]]:
    """Look a normalizer up by its Elasticsearch name."""
    try:
        return NORMALIZERS[name]
    except KeyError:
        raise FusionError(
            f"unknown normalizer {name!r}; choose one of {sorted(NORMALIZERS)}"
        ) from None


def normalize_leg(leg: Leg, normalizer: str) -> list[tuple[str, float]]:
    """A leg with its scores normalized, order kept."""
    fn = normalizer_by_name(normalizer)
    return list(zip([d for d, _ in leg], fn([float(s) for _, s in leg])))


def linear(
    legs: Legs,
    *,
    weights: Weights = None,
    normalizer: str = "minmax",
    rank_window_size: int | None = None,
) -> Fused:
    """Weighted sum of per-leg normalized scores, best first, ties broken by doc id."""
    normalizer_by_name(normalizer)
    _check_window(rank_window_size)
    scores: dict[str, float] = {}
    for name, leg, weight in _named_legs(legs, weights):
        window = _window(leg, rank_window_size, name)
        for doc_id, score in normalize_leg(window, normalizer):
            scores[doc_id] = scores.get(doc_id, 0.0) + weight * score
    return _ranked(scores, rank_window_size)


FUSIONS = {"rrf": rrf, "linear": linear}
