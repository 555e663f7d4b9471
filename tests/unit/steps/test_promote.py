"""promote: who, why and the replaced version recorded; unknown aliases and unpassed
versions refused."""

from __future__ import annotations

import pytest

from mlops_ci.config.types import Config
from mlops_ci.errors import GateFailed, InputError
from mlops_ci.steps.compare import compare
from mlops_ci.steps.promote import promote
from mlops_ci.steps.register import register
from tests.support.fakes import InMemoryRegistry
from tests.support.runs import candidate_run, in_production


def test_promote_records_who_why_and_the_replaced_version(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    old = in_production(fake_registry, config)
    run = candidate_run(fake_registry, config.root, c=10.0)
    compare(config, fake_registry, run.run_id)
    new = register(config, fake_registry).version
    result = promote(config, fake_registry, "@candidate", by="ada", reason="better recall")
    assert (result.previous, result.version) == (old, new)
    tags = fake_registry.get_version(config.model.name, new).tags
    assert tags["mlops.promoted.production.by"] == "ada"
    assert tags["mlops.promoted.production.reason"] == "better recall"
    assert (
        fake_registry.get_version(config.model.name, old).tags[
            "mlops.replaced.production.by_version"
        ]
        == new
    )
    assert fake_registry.aliases[config.model.name]["production"] == new


def test_promote_refuses_unknown_alias_and_unpassed_versions(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    with pytest.raises(InputError, match="there is no model 'iris-classifier'"):
        promote(config, fake_registry, "@nope", by="a", reason="r")
    run = candidate_run(fake_registry, config.root)
    register(config, fake_registry, run.run_id, force=True)
    with pytest.raises(InputError, match="no alias 'nope'"):
        promote(config, fake_registry, "@nope", by="a", reason="r")
    with pytest.raises(GateFailed, match="verdict 'forced'"):
        promote(config, fake_registry, "1", by="a", reason="r")
    assert promote(config, fake_registry, "1", by="a", reason="r", force=True).version == "1"
