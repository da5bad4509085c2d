"""The infra fixtures: plans are built with a fake powertools layer (no package index)."""

from tests.infra.conftest import fake_layer_cache  # noqa: F401 - autouse fixture, registered here
