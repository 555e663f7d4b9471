"""The serving app's own parsing of request headers."""

from __future__ import annotations

import pytest

from mlops_ci.serve.payload import PayloadError


@pytest.mark.parametrize("value", ["²", "١٢", "-1", "1e3", " 12", "9" * 13])
def test_the_binary_header_length_is_ascii_digits_only(value: str) -> None:
    """str.isdigit() accepts '²' (which int() refuses: a 500 before); any such value is a 400."""
    from mlops_ci.serve.bodies import int_header as _int_header

    with pytest.raises(PayloadError) as caught:
        _int_header(value)
    assert caught.value.status == 400
    assert _int_header("42") == 42 and _int_header(None) is None
