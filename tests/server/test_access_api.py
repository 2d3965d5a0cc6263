"""Authentication, per-model authorisation and the audit log, through a real server."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from weightvault import Vault
from weightvault.core.errors import AccessDeniedError, AuthenticationError, ModelNotFoundError

from ..conftest import tree_bytes
from .conftest import Served


@pytest.fixture(scope="module")
def tokens(served: Served) -> dict[str, str]:
    with Vault.open(served.url, token=served.admin) as admin:
        out = {
            "writer": admin.access.create_token("wendy", "write").token,
            "writer_read_scope": admin.access.create_token("wendy", "read").token,
            "reader": admin.access.create_token("rita", "read").token,
            "stranger": admin.access.create_token("sam", "write").token,
            "model_admin": admin.access.create_token("ada", "admin").token,
        }
        admin.access.add_grant("wendy", "team/*", "writer")
        admin.access.add_grant("rita", "team/*", "reader")
        admin.access.add_grant("ada", "team/m", "admin")
    return out


def test_grants_decide_every_verb(
    served: Served, tokens: dict[str, str], model_dir: Path, tmp_path: Path
) -> None:
    with Vault.open(served.url, token=tokens["writer"]) as w:
        w.push("team/m", model_dir, version="v1")
        w.push("team/m", model_dir, version="v2")
        with pytest.raises(AccessDeniedError):  # no grant outside the namespace
            w.push("elsewhere", model_dir, version="v1")
    with Vault.open(served.url, token=tokens["writer_read_scope"]) as w_read:
        assert w_read.show("team/m@v1").label == "v1"
        with pytest.raises(AccessDeniedError):  # a read-scope token cannot write, whatever the grant
            w_read.set_alias("team/m", "staging", "v1")
    with Vault.open(served.url, token=tokens["reader"]) as r:
        r.pull("team/m@v1", tmp_path / "o")
        assert tree_bytes(tmp_path / "o") == tree_bytes(model_dir)
        with pytest.raises(AccessDeniedError):
            r.delete("team/m@v1")
        with pytest.raises(AccessDeniedError):
            r.push("team/m", model_dir, version="v3")
    with Vault.open(served.url, token=tokens["stranger"]) as s:
        assert "team/m" not in s.model_names()  # listings show only readable models
        with pytest.raises(ModelNotFoundError):
            s.show("team/m@v1")
        with pytest.raises(ModelNotFoundError):
            s.pull("team/m@v1", tmp_path / "s")
        direct = httpx.get(
            f"{served.url}/api/v1/models/team/m/-/versions/v1/files/config.json",
            headers={"Authorization": f"Bearer {tokens['stranger']}"},
        )
        assert direct.status_code == 404 and direct.json()["code"] == "model_not_found"
    anonymous = httpx.get(f"{served.url}/api/v1/models/team/m/-/versions/v1")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthenticated"
    assert anonymous.headers["www-authenticate"] == "Bearer"


def test_public_models_and_protected_aliases(
    served: Served, tokens: dict[str, str], model_dir: Path, tmp_path: Path
) -> None:
    with Vault.open(served.url, token=tokens["writer"]) as w:
        w.push("team/pub", model_dir, version="v1")
        w.push("team/pub", model_dir, version="v2")
        w.set_alias("team/pub", "production", "v1")
    with Vault.open(served.url, token=served.admin) as admin:
        admin.access.set_public("team/pub", True)
        admin.access.protect_alias("team/pub", "production")
    with Vault.open(served.url) as anon:  # no token at all
        assert anon.show("team/pub@production").label == "v1"
        anon.pull("team/pub@v2", tmp_path / "anon")
        assert "team/pub" in anon.model_names() and "team/m" not in anon.model_names()
        with pytest.raises(AuthenticationError):
            anon.set_alias("team/pub", "production", "v2")
    with Vault.open(served.url, token=tokens["writer"]) as w:
        with pytest.raises(AccessDeniedError):  # a writer cannot move a protected alias ...
            w.set_alias("team/pub", "production", "v2")
        with pytest.raises(AccessDeniedError):  # ... nor delete the version it points at
            w.delete("team/pub@v1")
        w.set_alias("team/pub", "staging", "v2")  # unprotected aliases are a writer's
    with Vault.open(served.url, token=served.admin) as admin:
        assert admin.set_alias("team/pub", "production", "v2").label == "v2"
        denied = [e for e in admin.access.audit_log(model="team/pub") if e.outcome == "denied"]
        assert {e.principal for e in denied} >= {"wendy", "anonymous"}
        assert all(e.source == "127.0.0.1" for e in denied)
        actions = [e.action for e in admin.access.audit_log(model="team/pub")]
        assert {"push", "alias.set", "model.public", "alias.protect"} <= set(actions)


def test_tokens_revocation_and_oauth_client_credentials(served: Served, tokens: dict[str, str]) -> None:
    with Vault.open(served.url, token=served.admin) as admin:
        new = admin.access.create_token("svc", "write", description="ci job")
        admin.access.add_grant("svc", "team/*", "reader")
        listed = [t for t in admin.access.list_tokens("svc") if t.id == new.info.id]
        assert listed and listed[0].last_chars == new.token[-4:]
    token_url = f"{served.url}/api/v1/oauth/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": "svc",
        "client_secret": new.token,
        "scope": "read",
    }
    issued = httpx.post(token_url, data=form)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert body["token_type"] == "bearer" and body["scope"] == "read" and body["expires_in"] == 3600
    with Vault.open(served.url, token=body["access_token"]) as svc:
        assert svc.whoami() == {"principal": "svc", "scope": "read", "is_admin": False}
    basic = base64.b64encode(f"svc:{new.token}".encode()).decode()
    via_basic = httpx.post(
        token_url, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert via_basic.status_code == 200 and via_basic.json()["scope"] == "write"
    wrong = httpx.post(token_url, data={**form, "client_secret": "wvt_nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthenticated"
    other = httpx.post(token_url, data={**form, "client_id": "rita"})
    assert other.status_code == 401
    too_much = httpx.post(token_url, data={**form, "scope": "admin"})
    assert too_much.status_code == 403
    with Vault.open(served.url, token=new.token) as svc:  # a principal may revoke its own token
        svc.access.revoke_token(new.info.id)
        with pytest.raises(AuthenticationError, match="revoked"):
            svc.whoami()
    with Vault.open(served.url, token=tokens["reader"]) as r, pytest.raises(AccessDeniedError):
        r.access.create_token("rita", "admin", admin=True)  # no self-promotion


def test_docs_advertise_bearer_and_oauth2_client_credentials(served: Served) -> None:
    doc = httpx.get(f"{served.url}/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    flows = next(s for s in schemes.values() if s["type"] == "oauth2")["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/api/v1/oauth/token"
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    page = httpx.get(f"{served.url}/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
