"""The one registry helper every pluggable kind uses."""

from __future__ import annotations

import pytest

from crossrec.errors import ConfigError
from crossrec.registry import Registry


def test_unknown_names_fail_naming_what_is_valid_and_membership_does_not_raise():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    reg.register("b")(2)
    assert "a" in reg and "zzz" not in reg and reg.get("zzz") is None and list(reg) == ["a", "b"]
    with pytest.raises(ConfigError, match="unknown widget 'zzz'; choose one of a, b"):
        reg["zzz"]
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 3)
    assert reg.register("a", 3, replace=True) == 3 and reg.name_of(3) == "a"
