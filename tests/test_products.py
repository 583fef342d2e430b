"""Validation of queue items: each problem gives one error naming the item and the problem."""

from __future__ import annotations

import pytest

from hybrid_core.errors import ItemError
from hybrid_core.products import parse_update, parse_version


def item(data, **extra):
    return {"ref": "cat.jsonl:7", "op": "upsert", "version": 5, "data": data, **extra}


def test_a_good_product(layout):
    update = parse_update(
        item({"id": 12, "title": " Red Kurta ", "colour": "Red", "price": 10, "year": 2012, "image": "a.jpg", "split": "test"}),
        layout,
    )
    product = update.product
    assert (update.op, update.id, update.version) == ("upsert", "12", 5)
    assert product.title == "Red Kurta"
    assert product.attributes == {"colour": "Red", "price": 10.0, "year": 2012}
    assert product.images == ["a.jpg"] and product.extra == {"split": "test"}
    assert product.source()["colour"] == "Red"


@pytest.mark.parametrize(
    "data, reason",
    [
        ('{"id": 1, "title": ', "invalid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"title": "x"}, "id must be a string or an integer"),
        ({"id": "", "title": "x"}, "id is empty"),
        ({"id": "a\x00b", "title": "x"}, "control characters"),
        ({"id": 1}, "missing title"),
        ({"id": 1, "title": "   "}, "title is empty"),
        ({"id": 1, "title": 42}, "title must be a string, got int"),
        ({"id": 1, "title": "x" * 1001}, "title has 1001 characters"),
        ({"id": 1, "title": "x", "price": "cheap"}, "price must be a finite number"),
        ({"id": 1, "title": "x", "year": 2012.5}, "year must be an integer"),
        ({"id": 1, "title": "x", "colour": ["Red"]}, "colour must be a string"),
        ({"id": 1, "title": "x", "images": [1]}, "image/images must be a string or a list"),
        ({"id": 1, "title": "x", "images": ["a"] * 11}, "11 images"),
        ({"id": 1, "title": "x", "version": "new"}, "version must be an integer"),
        ({"id": 1, "title": "x", "updated_at": "yesterday"}, "not an ISO 8601 time"),
    ],
)
def test_bad_items_name_the_item_and_the_problem(layout, data, reason):
    with pytest.raises(ItemError, match=reason) as info:
        parse_update(item(data), layout)
    assert info.value.item.startswith("cat.jsonl:7")


def test_non_utf8_and_producer_errors(layout):
    with pytest.raises(ItemError, match="not UTF-8"):
        parse_update(item(b'{"id": 1, "title": "\xff"}'), layout)
    with pytest.raises(ItemError, match="broken line"):
        parse_update({"ref": "f:1", "error": "broken line"}, layout)


def test_versions_from_product_updated_at_or_producer(layout):
    assert parse_update(item({"id": 1, "title": "x", "version": 9}), layout).version == 9
    iso = parse_update(item({"id": 1, "title": "x", "updated_at": "2024-01-01T00:00:00Z"}), layout).version
    assert iso == 1_704_067_200_000_000
    assert parse_version(1_704_067_200, what="updated_at") == iso
    assert parse_update(item({"id": 1, "title": "x"}), layout).version == 5
    with pytest.raises(ItemError, match="no version"):
        parse_update({"ref": "r", "data": {"id": 1, "title": "x"}}, layout)


def test_delete_needs_only_id_and_version(layout):
    update = parse_update({"ref": "d", "op": "delete", "version": 3, "data": {"id": "p9"}}, layout)
    assert (update.op, update.id, update.version, update.product) == ("delete", "p9", 3, None)


def test_title_field_can_be_remapped(layout):
    update = parse_update(item({"id": 1, "title": "Puma Black T-shirt", "title_sparse": "Puma"}), layout, title_field="title_sparse")
    assert update.product.title == "Puma"
    assert update.product.extra == {"original_title": "Puma Black T-shirt"}


def test_a_catalogue_file_with_a_repeated_id_gives_an_error_for_the_repeat(tmp_path):
    from indexer.producer import catalogue_items

    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"id": 1, "title": "a"}\n{"id": 2, "title": "b"}\n{"id": "1", "title": "again"}\n'
        '{"id": 3, "title": "v1", "version": 1}\n{"id": 3, "title": "v2", "version": 2}\n'
    )
    items = list(catalogue_items(path))
    assert [i.get("error", "") for i in items][2].startswith("product id '1' appears again (first at line 1)")
    assert [i["ref"] for i in items if "error" not in i] == ["c.jsonl:1", "c.jsonl:2", "c.jsonl:4", "c.jsonl:5"]  # a change log is fine
