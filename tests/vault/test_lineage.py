"""Adapters and fine-tunes linked to their base versions; lineage both ways; pull --with-base."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from weightvault.core.errors import (
    DestinationConflictError,
    InvalidInputError,
    MalformedFileError,
    ModelNotFoundError,
    RevisionNotFoundError,
)
from weightvault.vault.lineage import lineage, pull_with_base
from weightvault.vault.vault import Vault

from ..conftest import run_cli, tree_bytes, write_random


def adapter(root: Path, base: str, revision: str | None = None, seed: int = 0) -> Path:
    """A PEFT LoRA adapter folder as ``save_pretrained`` writes it."""
    root.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
              "base_model_name_or_path": base, "task_type": "CAUSAL_LM"}  # fmt: skip
    if revision is not None:
        config["revision"] = revision
    (root / "adapter_config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(seed)
    save_file(
        {"base_model.model.q_proj.lora_A.weight": rng.standard_normal((4, 32)).astype(np.float32)},
        str(root / "adapter_model.safetensors"),
    )
    return root


def base_model(root: Path, seed: int = 0) -> Path:
    write_random(root / "model.safetensors", 200_000, seed=seed)
    (root / "config.json").write_text('{"model_type": "llama"}')
    return root


def test_adapter_links_to_the_latest_base_version(vault: Vault, tmp_path: Path) -> None:
    vault.push("org/base", base_model(tmp_path / "b1"), version="v1")
    v2 = vault.push("org/base", base_model(tmp_path / "b2", seed=1), version="v2").version
    info = vault.push("lora", adapter(tmp_path / "a", "org/base")).version
    edges = vault.show(info.model).lineage
    assert edges == (
        {"kind": "base_model", "model": "org/base", "label": "v2", "commit": v2.commit,
         "via": "adapter_config"},
    )  # fmt: skip


def test_adapter_revision_picks_that_base_version(vault: Vault, tmp_path: Path) -> None:
    v1 = vault.push("org/base", base_model(tmp_path / "b1"), version="v1").version
    vault.push("org/base", base_model(tmp_path / "b2", seed=1), version="v2")
    vault.push("lora", adapter(tmp_path / "a", "org/base", revision="v1"))
    assert vault.show("lora").lineage[0]["commit"] == v1.commit


def test_base_not_in_the_vault_records_the_hub_id(vault: Vault, tmp_path: Path) -> None:
    pinned = "4e20de362430cd3b72f300e6b0f18e50e7166e08"
    vault.push("lora", adapter(tmp_path / "a", "meta-llama/Llama-3.2-1B", revision=pinned))
    assert vault.show("lora").lineage == (
        {"kind": "base_model", "repo": "meta-llama/Llama-3.2-1B",
         "revision": "4e20de362430cd3b72f300e6b0f18e50e7166e08", "via": "adapter_config"},
    )  # fmt: skip
    with pytest.raises(ModelNotFoundError, match=r"meta-llama/Llama-3\.2-1B.*not in this vault"):
        pull_with_base(vault, "lora", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_manual_base_and_a_two_level_graph_both_ways(vault: Vault, tmp_path: Path) -> None:
    base = vault.push("base", base_model(tmp_path / "b"), version="v1").version
    tuned = vault.push("tuned", base_model(tmp_path / "t", seed=3), base="base@v1", version="ft1").version
    lora = vault.push("lora", adapter(tmp_path / "a", "tuned"), version="a1").version
    vault.push("unrelated", base_model(tmp_path / "u", seed=4))
    assert vault.show("tuned").lineage[0] == {
        "kind": "base_model", "model": "base", "label": "v1", "commit": base.commit, "via": "manual",
    }  # fmt: skip

    down = vault.lineage("base@v1")
    assert [(d["depth"], d["model"], d["label"]) for d in down.descendants] == [
        (1, "tuned", "ft1"),
        (2, "lora", "a1"),
    ]
    assert down.ancestors == ()
    up = lineage(vault, f"lora@{lora.commit[:8]}")
    assert [(a["depth"], a["model"], a["commit"]) for a in up.ancestors] == [
        (1, "tuned", tuned.commit),
        (2, "base", base.commit),
    ]
    assert all(a["present"] for a in up.ancestors) and up.descendants == ()


def test_bad_base_is_refused_before_anything_is_written(vault: Vault, tmp_path: Path) -> None:
    vault.push("base", base_model(tmp_path / "b"), version="v1")
    packs = sorted(o.key for o in vault.backend.list("packs/"))
    with pytest.raises(RevisionNotFoundError):
        vault.push("tuned", base_model(tmp_path / "t", seed=3), base="base@v9")
    src = adapter(tmp_path / "a", "base")
    (src / "adapter_config.json").write_text("{broken")
    with pytest.raises(MalformedFileError, match=r"adapter_config\.json"):
        vault.push("lora", src)
    assert sorted(o.key for o in vault.backend.list("packs/")) == packs
    assert [m.name for m in vault.list_models()] == ["base"]


def test_adapter_pushed_before_its_base_is_found_from_the_base(vault: Vault, tmp_path: Path) -> None:
    vault.push("lora", adapter(tmp_path / "a", "org/base"), version="a1")
    vault.push("org/base", base_model(tmp_path / "b"), version="v1")
    assert [(d["model"], d["label"]) for d in lineage(vault, "org/base").descendants] == [("lora", "a1")]


def test_pull_with_base_materialises_both(vault: Vault, tmp_path: Path) -> None:
    b = base_model(tmp_path / "b")
    vault.push("base", b, version="v1")
    a = adapter(tmp_path / "a", "base")
    vault.push("lora", a, version="a1")
    (adapter_pull, dest), (base_pull, base_dest) = pull_with_base(vault, "lora@a1", tmp_path / "out")
    assert dest == tmp_path / "out" and base_dest == tmp_path / "out" / "base"
    got = tree_bytes(tmp_path / "out")
    assert {k: v for k, v in got.items() if not k.startswith("base/")} == tree_bytes(a)
    assert tree_bytes(tmp_path / "out" / "base") == tree_bytes(b)
    assert base_pull.version.label == "v1" and adapter_pull.version.label == "a1"
    pull_with_base(vault, "lora@a1", tmp_path / "o2", tmp_path / "elsewhere")
    assert tree_bytes(tmp_path / "elsewhere") == tree_bytes(b)
    assert tree_bytes(tmp_path / "o2") == tree_bytes(a)
    with pytest.raises(InvalidInputError, match="no base model"):
        pull_with_base(vault, "base@v1", tmp_path / "o3")


def test_pull_with_base_refuses_a_clash_with_the_adapters_own_files(vault: Vault, tmp_path: Path) -> None:
    vault.push("base", base_model(tmp_path / "b"), version="v1")
    a = adapter(tmp_path / "a", "base")
    (a / "base").mkdir()
    (a / "base" / "notes.txt").write_text("mine")
    vault.push("lora", a)
    with pytest.raises(DestinationConflictError, match="--base-dest"):
        pull_with_base(vault, "lora", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_lineage_and_pull_with_base(home: Path, tmp_path: Path) -> None:
    b = base_model(tmp_path / "b")
    assert run_cli(home, "push", "base", str(b), "--version", "v1", "-q").returncode == 0
    tuned = base_model(tmp_path / "t", 2)
    assert run_cli(home, "push", "tuned", str(tuned), "--base", "base@v1", "-q").returncode == 0
    r = run_cli(home, "lineage", "base@v1")
    assert r.returncode == 0 and "built on by:" in r.stdout
    assert "tuned@" in r.stdout and "via manual" in r.stdout
    up = json.loads(run_cli(home, "lineage", "tuned", "--json").stdout)
    assert up["ancestors"][0]["model"] == "base" and up["ancestors"][0]["label"] == "v1"
    out = tmp_path / "out"
    r = run_cli(home, "pull", "tuned", str(out), "--with-base", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["base"]["dest"] == str(out / "base") and summary["base"]["version"]["label"] == "v1"
    assert tree_bytes(out / "base") == tree_bytes(b)
    missing = run_cli(home, "push", "x", str(b), "--base", "nope@v1")
    assert missing.returncode == 3 and missing.stderr.strip().startswith("error:")


def test_same_files_on_a_new_base_make_a_new_version(vault: Vault, tmp_path: Path) -> None:
    vault.push("base", base_model(tmp_path / "b1"), version="v1")
    vault.push("base", base_model(tmp_path / "b2", seed=1), version="v2")
    src = base_model(tmp_path / "t", seed=3)
    first = vault.push("tuned", src, base="base@v1")
    same = vault.push("tuned", src, base="base@v1")
    assert same.unchanged and same.version.commit == first.version.commit
    moved = vault.push("tuned", src, base="base@v2")
    assert not moved.unchanged and vault.show("tuned").lineage[0]["label"] == "v2"
