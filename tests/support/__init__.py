"""Code the tests share: in-memory fakes of the ports, servers, helpers."""
