"""Schemathesis against the served OpenAPI document: generated requests (valid and invalid) to
every operation never get a 5xx, and every response matches the documented schema.

Driven through Hypothesis directly, one property per operation (schemathesis's own pytest
plugin does not load under this pytest version).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from weightvault.testing.server import ServerProcess
from weightvault.vault.vault import Vault


def test_api_conforms_to_its_schema(tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = tmp_path / "m"
    src.mkdir()
    (src / "w.bin").write_bytes(b"w" * 50_000)
    with Vault.open(home) as v:
        token = v.access.create_token("root", "admin", admin=True).token
        v.push("m", src, version="v1")
        v.push("org/m", src, version="v1")
    headers = {"Authorization": f"Bearer {token}"}
    with ServerProcess(home) as server:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        # revoking the fuzzer's own token would end the run early; the route is tested in test_access_api
        schema = schema.exclude(method="DELETE", path="/api/v1/tokens/{token_id}")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 30
        failures: list[str] = []
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=20,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    headers=headers, checks=[not_a_server_error, response_schema_conformance], timeout=60
                )

            try:
                check()
            except Exception as exc:  # collect every operation's failure, then report them together
                failures.append(f"{operation.label}: {str(exc)[:1500]}")
        assert not failures, "\n\n".join(failures)


pytestmark = pytest.mark.slow
