"""Import a function of tests/zoo/ without going through xent's loader."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ZOO = Path(__file__).resolve().parent / "zoo"


def load_zoo(file: str, name: str) -> Any:
    path = ZOO / file
    spec = importlib.util.spec_from_file_location(f"zoo_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)
