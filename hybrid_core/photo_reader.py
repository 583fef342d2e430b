"""A trained photo reader: per facet, a linear classifier over one image space's photo vectors.

A photo vocabulary reads a photo zero-shot: its vector against the vector of every phrase. That is
what any CLIP model can do, and what a user's own taxonomy gets for free. Where labelled photos exist
(the packaged tower's training split carries gender, colour and article type, the labels its caption
term was trained on), a linear head per facet fitted on those photos' vectors reads better: on the
Myntra test split, gender 82 % -> 90 %, colour 65 % -> 68 %, article type 82 % -> 84 % (``hybrid-search
eval`` reports the reading's accuracy). What a photo reads as feeds the ``photo_caption`` field the
indexer writes and the ``photo_words`` leg of an image query, so both gain.

A reader belongs to the weights whose vectors it was fitted on: it records that space's ``model_id``
and ``EmbeddingSpace`` refuses it beside any other. It reads the facets of the space's vocabulary,
whose values are the words the rest of the path matches (a query's "in red" replaces the photo's colour).

The file is a NumPy ``.npz`` without pickles: a JSON header (format, facets, values, model id, where
it was fitted from) and per facet a weight matrix and a bias vector.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybrid_core.errors import ConfigError

FORMAT = "es-hybrid-search/photo-reader@1"


@dataclass(frozen=True)
class PhotoReader:
    """``values[i]``: facet ``facets[i]``'s classes; ``weights[i]`` (``[len(values[i]), dims]``) and
    ``biases[i]``: its linear head. A photo's value is the class of the highest logit."""

    facets: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    model_id: str
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or "photo reader"
        if not self.facets or not (len(self.facets) == len(self.values) == len(self.weights) == len(self.biases)):
            raise ConfigError(f"{where}: it needs, per facet, its values, a weight matrix and a bias vector")
        dims = {w.shape[1] if w.ndim == 2 else -1 for w in self.weights}
        if len(dims) != 1 or -1 in dims:
            raise ConfigError(f"{where}: every facet's weights must be a matrix of the same width (the vector dimensions)")
        for facet, values, w, b in zip(self.facets, self.values, self.weights, self.biases):
            if len(values) < 2 or w.shape[0] != len(values) or b.shape != (len(values),):
                raise ConfigError(f"{where}: facet {facet!r} has {len(values)} values, weights {w.shape} and bias {b.shape}; "
                                  "it needs two values or more, one row and one bias each")
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise ConfigError(f"{where}: facet {facet!r} has weights that are not finite numbers")

    @property
    def dims(self) -> int:
        return int(self.weights[0].shape[1])

    def read(self, vectors: np.ndarray) -> list[tuple[str, ...]]:
        """Each photo vector's value per facet (in ``facets`` order)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dims:
            raise ValueError(f"{self.source or 'photo reader'} reads {self.dims}-dimensional vectors, got shape {vectors.shape}")
        picks = [np.argmax(vectors @ w.T + b, axis=1) for w, b in zip(self.weights, self.biases)]
        return [tuple(values[int(p[i])] for values, p in zip(self.values, picks)) for i in range(len(vectors))]

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: Sequence[Sequence[str | None]], facets: Sequence[str], *, model_id: str,
            source: str = "", regularization: float = 1.0, min_count: int = 2) -> PhotoReader:
        """Multinomial logistic regression per facet (scikit-learn's, at its default strength ``C=1``,
        not tuned: on the Myntra test split, C=10 and C=100 read within a point of it), on
        the photos whose ``labels`` row (a value per facet, ``None`` where unknown) carries the facet; a
        value seen fewer than ``min_count`` times is left out (as likely a labelling slip as a kind of
        product, as in ``PhotoVocabulary.from_products``)."""
        from sklearn.linear_model import LogisticRegression

        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) != len(labels):
            raise ValueError(f"{len(vectors)} photo vectors for {len(labels)} label rows")
        values, weights, biases = [], [], []
        for column, facet in enumerate(facets):
            found = [(i, row[column]) for i, row in enumerate(labels)]
            counts: dict[str, int] = {}
            for _, value in found:
                if value is not None:
                    counts[value] = counts.get(value, 0) + 1
            kept = [(i, v) for i, v in found if v is not None and counts[v] >= min_count]
            classes = sorted({v for _, v in kept})
            if len(classes) < 2:
                raise ValueError(f"facet {facet!r}: {len(classes)} value(s) seen at least {min_count} times; a reader needs two or more")
            model = LogisticRegression(C=regularization, max_iter=1000)
            model.fit(vectors[[i for i, _ in kept]], [v for _, v in kept])
            coef, intercept = model.coef_, model.intercept_
            if len(model.classes_) == 2:  # scikit-learn keeps one row for two classes: the second's logit against the first's
                coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
            values.append(tuple(str(c) for c in model.classes_))
            weights.append(np.asarray(coef, dtype=np.float32))
            biases.append(np.asarray(intercept, dtype=np.float32))
        return cls(tuple(facets), tuple(values), tuple(weights), tuple(biases), model_id, source)

    def save(self, path: str | Path) -> None:
        header = {"format": FORMAT, "facets": list(self.facets), "values": [list(v) for v in self.values],
                  "model_id": self.model_id, "source": self.source}
        arrays = {f"weights_{i}": w for i, w in enumerate(self.weights)} | {f"bias_{i}": b for i, b in enumerate(self.biases)}
        with open(path, "wb") as handle:  # a path ending otherwise than .npz is kept as given
            np.savez_compressed(handle, header=np.array(json.dumps(header)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> PhotoReader:
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                if not isinstance(header, dict) or header.get("format") != FORMAT:
                    raise ConfigError(f"{path} is not a photo reader (expected \"format\": \"{FORMAT}\")")
                n = len(header["facets"])
                return cls(tuple(header["facets"]), tuple(tuple(v) for v in header["values"]),
                           tuple(data[f"weights_{i}"] for i in range(n)), tuple(data[f"bias_{i}"] for i in range(n)),
                           str(header["model_id"]), str(header.get("source") or path))
        except ConfigError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"photo reader {path} cannot be read: {exc}") from None

