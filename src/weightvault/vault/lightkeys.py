"""An encrypted model's keys for a light pull (``vault.lightpull``) or push (``vault.lightpush``),
without the vault stack.

``Records.pull`` opens a model's domain with ``KeyManager`` once pydantic settings, the storage
stack and SQLAlchemy are loaded: about 0.3 CPU-s of start-up that a plain pull no longer pays.
This module opens it with the same code (``KeyManager`` over the store folder: the keyring
parsed, unwrapped by a trusted KEK, its MAC checked; ``Domain`` then opens sealed manifests and
recipes and checks every sealed chunk's AES-GCM tag), in the cases it judges exactly as the full
path would:

* every key provider this home trusts is a local key file: the configured one (by default
  ``<home>/keys/kek.key``), ``encryption.trusted_providers`` (``fastopen.PULL_KEYS`` checks
  both) and the providers this home's own rotations moved keyrings to (``vault.trust``);
* the keyring is wrapped under one of those files, and no rotation is half done: no key file
  staged beside the configured one, no re-encryption target, no next domain;
* this home pinned exactly this keyring (its id key and generation): the full path would accept
  it without writing a new pin;
* the revision is not an alias this home remembers as rolled back in the store.

Every other case raises ``SnapshotUnavailable`` with nothing written, and the full path opens
the keys: it writes the pin of a model new to this home, opens a passphrase, the environment's
key or KMS, and reports a wrong or missing key, a replaced or older keyring, with its own message
and exit code. A model without a keyring is plain (None), unless this home pinned its keys.

A push (``open_push_keys``) is judged the same way, and also gets the ``KeyManager`` it opened
the keys with: it re-reads the keyring through it before its commit (``check_slot_held``), as
the full push does. A push of a model without a keyring is not served here: the full path decides
whether it creates one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from weightvault.core import layout
from weightvault.registry.snapshot import IndexSnapshot, SnapshotUnavailable
from weightvault.vault.fastopen import STORE_ID, FastHome

if TYPE_CHECKING:  # the keys (cryptography) are loaded only for a model that has them
    from weightvault.core.manifest import Manifest
    from weightvault.vault.codecs import BlobCodec
    from weightvault.vault.keyring import Domain, KeyManager

LOCAL_FILE = "local_file"


class Home(Protocol):
    """What this module reads of a home (``fastopen.FastHome``, ``lightpush.PushHome``)."""

    @property
    def home(self) -> Path: ...
    @property
    def store(self) -> Path: ...
    @property
    def settings(self) -> dict[str, Any]: ...


def _trusted(where: Home, pinned: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the configured provider as ``Settings.key_provider_config`` fills it in, the other trusted
    ones), all local key files; else ``SnapshotUnavailable``."""
    encryption: Mapping[str, Any] = where.settings.get("encryption", {})
    configured = dict(encryption.get("provider") or {})
    configured.setdefault("type", LOCAL_FILE)
    configured.setdefault("path", str(where.home / "keys" / "kek.key"))
    others = [dict(c) for c in encryption.get("trusted_providers", [])] + pinned
    for config in (configured, *others):
        if config.get("type") != LOCAL_FILE or not isinstance(config.get("path"), str):
            raise SnapshotUnavailable("a key provider other than a local key file: the full path opens it")
    staged = Path(configured["path"]).expanduser()
    if os.path.lexists(staged.with_name(staged.name + ".new")):
        raise SnapshotUnavailable("a key rotation is unfinished: the full path reads the keys")
    return configured, others


def open_keys(where: FastHome, snap: IndexSnapshot, model: str, revision: str | None) -> Domain | None:
    """The opened domain of ``model``, or None for a plain model; ``SnapshotUnavailable`` (nothing
    written) when the full path must judge (see the module's text). ``revision`` as the pull names
    it (an alias remembered as rolled back is the full path's error)."""
    keyring = where.store / layout.keyring_key(model)
    pins = where.home / "keys" / "pins"
    if not os.path.lexists(keyring) and not os.path.lexists(pins):
        return None  # a plain model in a home that never opened an encrypted one
    opened = _judged(where, str(snap.state(STORE_ID)), model, revision, keyring)
    return None if opened is None else opened[0]


def open_push_keys(where: Home, store_id: str, model: str) -> tuple[Domain, KeyManager]:
    """The opened domain of ``model``, which has a keyring in the store, and the key manager that
    opened it (the push re-reads the keyring through it before its commit); else
    ``SnapshotUnavailable`` with nothing written (see the module's text)."""
    keyring = where.store / layout.keyring_key(model)
    opened = _judged(where, store_id, model, None, keyring)
    if opened is None:
        raise SnapshotUnavailable(f"{model} has no keyring: the full path decides whether to make one")
    return opened


def _judged(
    where: Home, store_id: str, model: str, revision: str | None, keyring: Path
) -> tuple[Domain, KeyManager] | None:
    try:
        return _open(where, store_id, model, revision, keyring)
    except SnapshotUnavailable:
        raise
    except Exception as exc:  # a wrong or missing key, a damaged keyring: the full path says so
        raise SnapshotUnavailable(f"the full path opens the keys of {model} ({exc})") from None


def _open(
    where: Home, store_id: str, model: str, revision: str | None, keyring: Path
) -> tuple[Domain, KeyManager] | None:
    from weightvault.vault.trust import LocalTrust

    trust = LocalTrust(where.home / "keys")
    if revision is not None and trust.rolled_back(model, revision) is not None:
        raise SnapshotUnavailable(f"alias {model}@{revision} was rolled back: the full path reports it")
    pin = trust.pin(model)
    if not os.path.lexists(keyring):
        if pin is not None:
            raise SnapshotUnavailable(f"{model} is pinned but has no keyring: the full path reports it")
        return None
    if pin is None:
        raise SnapshotUnavailable(f"{model} is not pinned here yet: the full path pins it")
    from weightvault.storage.local import LocalBackend
    from weightvault.vault.keyring import KeyManager

    configured, others = _trusted(where, trust.providers())
    store = LocalBackend(where.store)
    keys = KeyManager(lambda: dict(configured), store, store, None, store_id, trusted_configs=lambda: others)
    dom = keys.domain(model)  # trust=None: nothing written; the pin is compared below instead
    if dom is None:
        raise SnapshotUnavailable(f"the keyring of {model} went away: the full path reports it")
    rec = dom.record
    if rec.id_key.provider != LOCAL_FILE or rec.next_domain is not None or rec.reencrypt_target is not None:
        raise SnapshotUnavailable(f"the keys of {model} are being rotated: the full path reads them")
    if (pin.id_key, pin.generation) != (rec.id_key.key_id, rec.generation):
        raise SnapshotUnavailable(f"the keyring of {model} is not the one pinned here: the full path judges")
    return dom, keys


def manifest_opener(dom: Domain) -> Callable[[str, bytes], Manifest]:
    """Opens a sealed manifest of ``dom``'s model as ``Records._open_sealed_manifest`` does: it must
    authenticate under this domain for this commit id and model, hash to the commit id under the
    domain's key, and name the model."""
    from weightvault.core.errors import IntegrityError
    from weightvault.core.manifest import Manifest

    def open_sealed(commit: str, body: bytes) -> Manifest:
        manifest = Manifest.from_bytes(dom.open_manifest(commit, body))
        if manifest.model != dom.model:
            raise IntegrityError(f"manifest {commit} is sealed for {dom.model} but names {manifest.model}")
        return manifest

    return open_sealed


def codec_of(dom: Domain) -> BlobCodec:
    """The chunk codec of ``dom``. A chunk sealed under a slot this keyring lacks declines (after the
    pull undid what it wrote): the full path re-reads the keyring (a rotation may have added it)."""
    from weightvault.vault.codecs import BlobCodec

    def slot_missing() -> Domain | None:
        raise SnapshotUnavailable(f"a chunk of {dom.model} needs a key slot its keyring lacks here")

    return BlobCodec(dom, refresh=slot_missing)
