"""An app whose code breaks V1's stored workflows."""

from tests.engine.deploy.test_deploy import Breaking

WORKFLOWS = [Breaking]
