"""The registry port (mlops_ci/registry/__init__.py): resolving a version reference."""

from __future__ import annotations

from typing import Any

import pytest


def test_an_unknown_model_name_is_named(fake_registry: Any) -> None:
    from mlops_ci.errors import InputError
    from mlops_ci.registry import resolve_version

    with pytest.raises(InputError, match="there is no model 'nosuch'"):
        resolve_version(fake_registry, "nosuch", "@production")
