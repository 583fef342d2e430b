"""Kibana saved objects for the products alias: a data view with readable formats, vectors hidden.

``kibana/saved_objects.ndjson`` is this rendered for the default layout (a test keeps
them equal); ``hybrid-search kibana-import`` sends the rendering for the configured
layout to Kibana's saved objects import API.
Reference: https://www.elastic.co/docs/api/doc/kibana/operation/operation-importsavedobjectsdefault
"""

from __future__ import annotations

import json

from hybrid_core.layout import FieldLayout

DATA_VIEW_ID = "es-hybrid-search-products"


def saved_objects(layout: FieldLayout, alias: str = "products") -> str:
    """NDJSON with one data view over ``alias``."""
    formats = {
        a.name: {"id": "number", "params": {"pattern": "0,0.00" if a.type == "float" else "0"}}
        for a in layout.attribute_fields
        if a.numeric
    }
    formats["version"] = {"id": "number", "params": {"pattern": "0"}}
    data_view = {
        "type": "index-pattern",
        "id": DATA_VIEW_ID,
        "attributes": {
            "title": alias,
            "name": f"Products ({alias}, es-hybrid-search)",
            "timeFieldName": "indexed_at",
            "fieldFormatMap": json.dumps(formats, sort_keys=True),
            # dense vectors are hundreds of numbers: keep them out of Discover's documents
            "sourceFilters": json.dumps([{"value": v.name} for v in layout.vector_fields] + [{"value": "*_hash"}]),
        },
        "references": [],
        "managed": False,
    }
    return json.dumps(data_view, sort_keys=True) + "\n"
