from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def update_golden() -> bool:
    """UPDATE_GOLDEN=1 rewrites golden files instead of comparing (review the diff!)."""
    return os.environ.get("UPDATE_GOLDEN") == "1"
