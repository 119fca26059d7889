"""An app whose code is compatible with V1's stored workflows."""

from tests.engine.deploy.test_deploy import Compatible

WORKFLOWS = [Compatible]
