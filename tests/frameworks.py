"""Reference frameworks for the tests: imported where installed; required in CI.

``.ci/run`` installs torch (CPU); with ``CI`` or ``XENT_REQUIRE_TOOLS`` set a
missing framework fails the test instead of skipping it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

REQUIRE = bool(os.environ.get("CI") or os.environ.get("XENT_REQUIRE_TOOLS"))


def require_torch() -> Any:
    """The torch module, or a skip (a failure in CI) where it is not installed."""
    try:
        import torch
    except ImportError:
        if REQUIRE:
            pytest.fail("torch is not installed (CI or XENT_REQUIRE_TOOLS is set: .ci/run installs it)")
        pytest.skip("torch is not installed")
    return torch
