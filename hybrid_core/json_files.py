"""Reading the JSON files users hand over (config, fusion profile, photo vocabulary) with one kind of error.

A file that is missing or not JSON should stop a command with a sentence naming the file and what it
was meant to be, not a traceback from deep inside ``json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hybrid_core.errors import ConfigError


def read_json(path: str | Path, what: str) -> Any:
    """The parsed contents of ``path``; ``ConfigError("cannot read <what> <path>: ...")`` otherwise."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
