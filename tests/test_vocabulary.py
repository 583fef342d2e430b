"""The photo vocabulary: built from products, read as a photo's words, loaded with clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybrid_core.errors import ConfigError
from hybrid_core.spaces import MODEL_CONFIG_DIR, TOWER_VOCABULARY
from hybrid_core.synonyms import SynonymRules
from hybrid_core.vocabulary import FORMAT, PhotoVocabulary, named_values

FIELDS = ("gender", "colour", "article_type")
VOCABULARY = PhotoVocabulary(FIELDS, (("Men", "Navy Blue", "Tshirts"), ("Women", "Black", "Handbags"), (None, "Grey", "Socks")))


def test_rows_come_from_products_most_frequent_first_and_rare_rows_are_dropped():
    products = (
        [{"gender": "Men", "colour": "Black", "article_type": "Tshirts"}] * 3
        + [{"attributes": {"gender": "Women", "colour": "Red", "article_type": "Kurtas"}}] * 2  # nested, as catalogues allow
        + [{"gender": float("nan"), "colour": "Grey", "article_type": "Socks"}] * 2  # a missing value, as pandas writes it
        + [{"gender": "Men", "colour": "Teal", "article_type": "Shirts"}]  # seen once: a slip as likely as a kind
        + [{"title": "no fields at all"}] * 5
    )
    vocabulary = PhotoVocabulary.from_products(products, FIELDS, min_count=2)
    assert vocabulary.rows == (("Men", "Black", "Tshirts"), (None, "Grey", "Socks"), ("Women", "Red", "Kurtas"))
    assert vocabulary.phrases == ["Men Black Tshirts", "Grey Socks", "Women Red Kurtas"]
    assert PhotoVocabulary.from_products(products, FIELDS, min_count=1).rows[-1] == ("Men", "Teal", "Shirts")


def test_a_photo_reads_as_its_best_row_and_the_values_the_query_names_win():
    scores = np.array([0.9, 0.2, 0.1])
    assert VOCABULARY.describe(scores) == "Men Navy Blue Tshirts"
    assert VOCABULARY.describe(scores, "in black") == "Men Black Tshirts"  # the shopper's colour, not the photo's
    assert VOCABULARY.describe(scores, "same in navy blue for women") == "Women Navy Blue Tshirts"
    # only the values it names are taken from the text: filler words would lead BM25 astray
    assert VOCABULARY.describe(scores, "show me this one in black, please") == "Men Black Tshirts"
    assert VOCABULARY.describe(scores, "cotton") == "Men Navy Blue Tshirts"
    # only whole values count: "blue" alone is not the value "Navy Blue"
    assert VOCABULARY.describe(scores, "blue") == "Men Navy Blue Tshirts"
    assert VOCABULARY.describe(np.array([0.1, 0.2, 0.3]), "for men") == "Men Grey Socks"
    # the query's wording is put in the values' wording first (synonym rules: gray -> grey)
    rules = SynonymRules(["grey, gray"])
    assert VOCABULARY.describe(np.array([0.9, 0.2, 0.3]), "in gray", canonical=rules.canonical) == "Men Grey Tshirts"
    # and the values are matched in that wording too: "tee" and "Tshirts" are both "t shirt" to the rules
    tees = SynonymRules(["t shirt, tshirt, tshirts, tee, tees"])
    assert VOCABULARY.describe(np.array([0.1, 0.9, 0.2]), "the same as a tee", canonical=tees.canonical) == "Women Black Tshirts"
    assert VOCABULARY.describe(np.array([0.1, 0.9, 0.2]), "the same as a tee") == "Women Black Handbags"  # without the rules
    with pytest.raises(ValueError, match="2 scores for 3 phrases"):
        VOCABULARY.describe(np.array([0.1, 0.2]))


def test_a_photo_is_read_facet_by_facet_where_many_close_rows_agree():
    """The single closest row says Shirts, but two T-shirt rows nearly as close hold more of the
    probability: read facet by facet, the photo is Tshirts (and the gender every row agrees on)."""
    rows = (("Men", "White", "Shirts"), ("Men", "Navy Blue", "Tshirts"), ("Men", "Black", "Tshirts"), ("Women", "Red", "Kurtas"))
    scores = np.array([0.80, 0.79, 0.79, 0.20])
    by_facet = PhotoVocabulary(FIELDS, rows, temperature=0.03)
    assert by_facet.describe(scores) == "Men White Tshirts"  # white: the colour with most probability of its own
    assert PhotoVocabulary(FIELDS, rows, temperature=None).describe(scores) == "Men White Shirts"  # the closest row as it is
    assert PhotoVocabulary(FIELDS, rows, temperature=0.001).describe(scores) == "Men White Shirts"  # a cold softmax is the argmax
    assert by_facet.describe(scores, "in red") == "Men Red Tshirts"
    # a facet whose most probable value is "none" is left out
    assert PhotoVocabulary(FIELDS, ((None, "Grey", "Socks"), (None, "Black", "Socks"), ("Men", "Grey", "Socks"))).describe(
        np.array([0.5, 0.5, 0.51])) == "Grey Socks"
    for bad in (0, -1.0, float("nan"), True, "warm"):
        with pytest.raises(ConfigError, match="temperature must be a number > 0"):
            PhotoVocabulary(FIELDS, rows, temperature=bad)


def test_named_values_match_whole_words_case_and_possessives_aside_the_longest_first():
    values = VOCABULARY.values()
    assert named_values("Women's NAVY BLUE tee", values) == {"gender": "Women", "colour": "Navy Blue"}
    assert named_values("menswear", values) == {}
    wider = PhotoVocabulary(FIELDS, VOCABULARY.rows + (("Men", "Blue", "Shirts"), ("Men", "Red", "Shirts"))).values()
    assert named_values("blue or navy blue", wider) == {"colour": "Navy Blue"}  # the longer value
    assert named_values("red or blue", wider) == {"colour": "Red"}  # then the first in the text


def test_save_and_load_round_trip_and_bad_files_are_named(tmp_path):
    path = tmp_path / "vocabulary.json"
    VOCABULARY.save(path)
    assert PhotoVocabulary.load(path) == PhotoVocabulary(FIELDS, VOCABULARY.rows, source=str(path), temperature=0.03)
    # a file from before facet-by-facet reading (no "temperature") is read as it was: the closest phrase
    path.write_text(json.dumps({"format": FORMAT, "fields": list(FIELDS), "rows": [list(r) for r in VOCABULARY.rows]}))
    assert PhotoVocabulary.load(path).temperature is None
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ConfigError, match=f"{path} is not a photo vocabulary"):
        PhotoVocabulary.load(path)
    path.write_text(json.dumps({"format": FORMAT, "fields": list(FIELDS), "rows": [["Men", "Black", "Tshirts"], ["Men", "Black"]]}))
    with pytest.raises(ConfigError, match=r"row 1 \['Men', 'Black'\] must give 3 values"):
        PhotoVocabulary.load(path)
    path.write_text(json.dumps({"format": FORMAT, "fields": list(FIELDS), "rows": []}))
    with pytest.raises(ConfigError, match="it has no phrases"):
        PhotoVocabulary.load(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=f"cannot read photo vocabulary {path}"):
        PhotoVocabulary.load(path)


def test_the_packaged_vocabulary_is_the_tower_caption_fields_rows():
    vocabulary = PhotoVocabulary.load(MODEL_CONFIG_DIR / TOWER_VOCABULARY)
    assert vocabulary.fields == FIELDS  # the fields of the tower's caption term (train-image-tower --caption-fields)
    assert len(vocabulary.rows) > 1000 and len(set(vocabulary.rows)) == len(vocabulary.rows)
    assert vocabulary.phrases[0] == "Men Black Tshirts"  # the most frequent kind of the train split


def test_the_command_builds_a_vocabulary_from_a_catalogue_selection(tmp_path):
    from click.testing import CliRunner

    from hybrid_cli.main import cli

    catalogue = tmp_path / "catalogue.jsonl"
    lines = ([{"split": "train", "gender": "Men", "colour": "Black", "article_type": "Tshirts"}] * 2
             + [{"split": "test", "gender": "Women", "colour": "Red", "article_type": "Kurtas"}] * 3)
    catalogue.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    out = tmp_path / "vocabulary.json"
    result = CliRunner().invoke(cli, ["photo-vocabulary", str(catalogue), "--where", "split=train", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert PhotoVocabulary.load(out).phrases == ["Men Black Tshirts"]  # the test lines are not read
    result = CliRunner().invoke(cli, ["photo-vocabulary", str(catalogue), "--where", "split=train", "--min-count", "3", "--out", str(out)])
    assert result.exit_code == 2 and "it has no phrases" in result.output


def test_phrase_vectors_are_encoded_once_and_kept_in_the_cache_folder(tmp_path, monkeypatch):
    from hybrid_core.spaces import PACKAGED_TOWER, EmbeddingSpace, catalogue_tower_spec

    if not PACKAGED_TOWER.exists():
        pytest.skip(f"the packaged tower is not at {PACKAGED_TOWER}")
    monkeypatch.setenv("HYBRID_SEARCH_CACHE_DIR", str(tmp_path / "cache"))
    first = EmbeddingSpace(catalogue_tower_spec()).load()
    vocabulary, vectors = first.photo_vocabulary()
    [cached] = (tmp_path / "cache").glob("phrases-*.npy")
    np.testing.assert_allclose(vectors[:3], first.embed_texts(vocabulary.phrases[:3]), atol=1e-6)
    second = EmbeddingSpace(catalogue_tower_spec())  # not even loaded: the cache answers
    np.testing.assert_array_equal(second.photo_vocabulary()[1], vectors)
    assert second._model is None
    cached.write_bytes(b"not an array")  # a damaged cache is encoded again, and rewritten
    np.testing.assert_allclose(EmbeddingSpace(catalogue_tower_spec()).photo_vocabulary()[1], vectors, atol=1e-6)
    assert np.load(cached).shape == vectors.shape
