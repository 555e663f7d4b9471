"""The front's routes: the weighted choice, what an admin's body parses to, HAProxy's weights."""

from __future__ import annotations

import pytest

from mlops_ci.serve.frontroutes import Routes, parse_routes
from mlops_ci.serve.haproxy import haproxy_weights


@pytest.mark.timeout(120)
def test_routes_choose_by_weight() -> None:
    routes = Routes({"a": "http://a", "b": "http://b"}, {"a": 1.0, "b": 3.0})
    assert [routes.choose(d) for d in (0.0, 0.24, 0.25, 0.99)] == ["a", "a", "b", "b"]
    assert Routes({"a": "http://a"}, {"a": 0.0}).choose(0.5) is None
    routes = parse_routes({"upstreams": {"1": "http://h:1/"}}, lambda v, u: None)
    assert routes.upstreams == {"1": "http://h:1"}
    # HAProxy's weights are integers up to 256: the largest gets 256, a small share keeps 1
    assert haproxy_weights({"a": 1.0, "b": 3.0}) == {"a": 85, "b": 256}
    assert haproxy_weights({"a": 0.001, "b": 99.999, "c": 0.0}) == {"a": 1, "b": 256, "c": 0}
    assert haproxy_weights({"a": 0.0}) == {"a": 0}
