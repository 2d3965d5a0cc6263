"""Encryption domains: one per model, its keys kept wrapped in a keyring object in the store.

``keys/<model>/keyring`` (canonical JSON, replaced atomically like an alias ref) holds the
provider that wrapped its keys (type and parameters, never a secret), the KEK id, the
wrapped *id key* and the wrapped *data keys* by slot. The id key lives as long as the
domain: chunk ids, recipe names and recipe bodies are keyed with keys derived from it, so
re-encrypting data under new data keys never changes a chunk id, a recipe or a commit id.
Data keys seal blobs (``cas.encryption``); slot numbers only grow (1..255; 0 = plain), which
is what lets the index and ``recover`` prefer the newest seal of a chunk without keys.

A keyring carries a MAC keyed from the id key over everything else in it, so a flipped bit
anywhere in it is caught once the id key is unwrapped (the wrapped keys themselves are
authenticated by the provider), and a generation number that grows with every rewrite, which
the home's pins (``vault.trust``) use to refuse an old copy put back. The index database never
holds a key or a keyring.

Which provider opens a keyring: only one the local configuration names (``encryption.provider``,
``encryption.trusted_providers``, the providers this home rotated to, and a key file staged by an
unfinished rotation). The provider a keyring records is informational: a keyring naming a KEK no
trusted provider holds is refused, so a bucket writer cannot choose the provider, the KMS endpoint
or the KDF cost. Keys are created under the configured provider.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import blake3

from weightvault.core import layout
from weightvault.core.errors import (
    ConcurrentModificationError,
    ConfigError,
    ConflictError,
    CorruptObjectError,
    FormatError,
    IntegrityError,
    MissingObjectError,
    ObjectExistsError,
    StorageError,
    WeightvaultError,
)
from weightvault.core.manifest import canonical_json
from weightvault.core.names import check_model_name
from weightvault.storage.backend import Backend
from weightvault.storage.replica import ReplicaSet
from weightvault.vault.store import SEALED_MANIFEST_MAGIC
from weightvault.vault.trust import KeyringTrustError, LocalTrust, UntrustedKeyProviderError

if TYPE_CHECKING:
    from weightvault.cas.encryption import BlobCipher, DataKey
    from weightvault.keys import KeyProvider, WrappedKey

# cryptography, numpy (through cas.encryption) and the key providers are imported where keys are
# actually used: a vault that encrypts nothing never pays for importing them.

KEYS: Final = "keys/"
KEYRING_NAME: Final = "keyring"
KEYRING_FORMAT: Final = 2
#: version of the additive ``next_domain`` field (a keyring without it is unchanged format 2)
NEXT_DOMAIN_VERSION: Final = 1
MAX_SLOT: Final = 255
ACTIVE: Final = "active"
RETIRED: Final = "retired"

_CTX_RECIPE_NAME: Final = "weightvault 2026-11 recipe name key v1"
_CTX_RECIPE_BODY: Final = "weightvault 2026-11 recipe body key v1"
_CTX_KEYRING_MAC: Final = "weightvault 2026-11 keyring mac key v1"
_CTX_REF_MAC: Final = "weightvault 2026-11 ref mac key v1"
_CTX_COMMIT: Final = "weightvault 2026-11 commit id key v1"
_CTX_MANIFEST_BODY: Final = "weightvault 2026-11 manifest body key v1"
#: Sealed manifest: magic ‖ u16 BE len(model) ‖ model ‖ nonce(12) ‖ AES-256-GCM(manifest JSON) ‖ tag(16).
MANIFEST_MAGIC: Final = SEALED_MANIFEST_MAGIC
_MANIFEST_AAD: Final = b"weightvault manifest v1\x00"
_CTX_CHUNKER_SEED: Final = "weightvault 2026-11 chunker seed v1"
#: Sealed recipe object: magic ‖ nonce(12) ‖ AES-256-GCM(canonical recipe JSON) ‖ tag(16).
RECIPE_MAGIC: Final = b"WVRCPE\x00\x01"
_RECIPE_AAD: Final = b"weightvault recipe v1\x00"
#: Options of a configured provider that say where its secret comes from; never recorded
#: in a keyring beyond what the provider's own ``params()`` returns, except these names.
_SECRET_SOURCES: Final = {"passphrase": ("passphrase", "passphrase_env")}
#: Kinds of provider whose key id is a fingerprint of a key held here (never printed in errors).
_LOCAL_KINDS: Final = frozenset({"local_file", "env", "passphrase"})


class KeySlotMissingError(IntegrityError):
    """A blob is sealed under a data key slot its model's keyring does not hold (any more)."""

    code = "key_slot_missing"


def keyring_key(model: str) -> str:
    return layout.keyring_key(model)


def claim_key(model: str, generation: int) -> str:
    """Where a rewrite claims a keyring generation (if-absent):
    ``keys/<ns>/<name>/keyring.claims/<n>`` (beside the keyring, never a folder of another key)."""
    return f"{KEYS}{layout.model_path(model)}/{KEYRING_NAME}.claims/{generation:010d}"


def _tombstone(generation: int, body: bytes) -> bytes:
    return canonical_json({"generation": generation, "keyring_blake3": blake3.blake3(body).hexdigest()})


def parse_keyring_key(key: str) -> str | None:
    return layout.parse_keyring_key(key)


def _derive(context: str, material: bytes) -> bytes:
    return blake3.blake3(material, derive_key_context=context).digest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the stored record


@dataclass(frozen=True, slots=True)
class SlotRecord:
    slot: int
    state: str  # "active" (new blobs are sealed with it) or "retired" (still opens old blobs)
    created: str
    key: WrappedKey

    def to_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "state": self.state, "created": self.created, "key": self.key.to_dict()}


@dataclass(frozen=True, slots=True)
class NextDomain:
    """The keys of the domain a ``keys rotate MODEL --new-domain`` is moving the model to,
    kept in the keyring (same KEK) until every version is moved, then made the keyring's own."""

    id_key: WrappedKey
    slots: tuple[SlotRecord, ...]
    created: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": NEXT_DOMAIN_VERSION,
            "id_key": self.id_key.to_dict(),
            "data_keys": [s.to_dict() for s in sorted(self.slots, key=lambda s: s.slot)],
            "created": self.created,
        }


@dataclass(frozen=True, slots=True)
class KeyringRecord:
    model: str
    created: str
    provider: Mapping[str, Any]  # the params of the provider that wrapped the keys (no secrets)
    id_key: WrappedKey
    slots: tuple[SlotRecord, ...]
    #: set while ``keys rotate --reencrypt`` moves the domain's data to this slot
    reencrypt_target: int | None = None
    #: grows by one with every rewrite; a home refuses a generation older than one it has seen
    generation: int = 1
    mac: str = ""
    #: set while ``keys rotate MODEL --new-domain`` moves the model to a new domain
    next_domain: NextDomain | None = None
    #: id key fingerprints of the domains this one replaced (oldest first): a home that pinned
    #: one of them accepts this keyring as its successor
    replaces: tuple[str, ...] = ()

    @property
    def kek_id(self) -> str:
        return self.id_key.kek_id

    @property
    def provider_type(self) -> str:
        return str(self.provider.get("type", ""))

    @property
    def active_slot(self) -> int:
        active = [s.slot for s in self.slots if s.state == ACTIVE]
        if not active:
            raise FormatError(f"keyring of {self.model} has no active data key")
        return max(active)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "format": KEYRING_FORMAT,
            "model": self.model,
            "created": self.created,
            "provider": dict(self.provider),
            "kek_id": self.kek_id,
            "id_key": self.id_key.to_dict(),
            "data_keys": [s.to_dict() for s in sorted(self.slots, key=lambda s: s.slot)],
            "reencrypt_target": self.reencrypt_target,
            "generation": self.generation,
        }
        # additive fields, written only when set: keyrings without them keep their bytes and MACs
        if self.next_domain is not None:
            body["next_domain"] = self.next_domain.to_dict()
        if self.replaces:
            body["replaces"] = list(self.replaces)
        return body

    def successor(self) -> KeyringRecord:
        """The keyring of the next domain once it is made current (unsealed): its keys only,
        naming this domain among those it replaces."""
        if self.next_domain is None:
            raise FormatError(f"keyring of {self.model} has no next domain")
        nxt = self.next_domain
        return replace(
            self,
            id_key=nxt.id_key,
            slots=nxt.slots,
            reencrypt_target=None,
            next_domain=None,
            replaces=(*self.replaces, self.id_key.key_id),
            generation=self.generation + 1,
            mac="",
        )

    def sealed(self, mac_key: bytes) -> KeyringRecord:
        mac = blake3.blake3(canonical_json(self.body()), key=mac_key).hexdigest()
        return replace(self, mac=mac)

    def to_bytes(self) -> bytes:
        if not self.mac:
            raise FormatError("keyring must be sealed with its MAC before it is written")
        return canonical_json({**self.body(), "mac": self.mac})

    def check_mac(self, mac_key: bytes) -> None:
        want = blake3.blake3(canonical_json(self.body()), key=mac_key).hexdigest()
        if not hmac.compare_digest(want, self.mac):
            raise CorruptObjectError(f"keyring of {self.model} fails its MAC (damaged or altered)")

    @classmethod
    def from_bytes(cls, data: bytes, model: str) -> KeyringRecord:
        from weightvault.keys import WrappedKey

        try:
            raw = json.loads(data)
            if raw.get("format") != KEYRING_FORMAT:
                raise FormatError(f"keyring of {model}: unsupported format {raw.get('format')!r}")
            if raw["model"] != model:
                raise FormatError(f"keyring {layout.keyring_key(model)} names model {raw['model']!r}")
            slots = _parse_slots(raw["data_keys"], model)
            nxt = raw.get("next_domain")
            next_domain = None
            if nxt is not None:
                if not isinstance(nxt, dict) or nxt.get("version") != NEXT_DOMAIN_VERSION:
                    raise FormatError(f"keyring of {model}: unsupported next_domain {nxt!r:.80}")
                next_domain = NextDomain(
                    WrappedKey.from_dict(nxt["id_key"]),
                    _parse_slots(nxt["data_keys"], model),
                    str(nxt["created"]),
                )
            replaces = raw.get("replaces", [])
            if not isinstance(replaces, list) or not all(isinstance(x, str) for x in replaces):
                raise FormatError(f"keyring of {model}: malformed replaces")
            target = raw.get("reencrypt_target")
            generation = raw["generation"]
            if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
                raise FormatError(f"keyring of {model}: bad generation {generation!r}")
            provider = raw["provider"]
            if not isinstance(provider, dict) or not isinstance(raw["mac"], str):
                raise FormatError(f"keyring of {model} is malformed")
            rec = cls(
                model=model,
                created=str(raw["created"]),
                provider=provider,
                id_key=WrappedKey.from_dict(raw["id_key"]),
                slots=slots,
                reencrypt_target=None if target is None else int(target),
                generation=generation,
                mac=raw["mac"],
                next_domain=next_domain,
                replaces=tuple(replaces),
            )
            if raw.get("kek_id") != rec.kek_id:
                raise FormatError(f"keyring of {model}: kek_id does not match its id key")
            wrapped = [s.key for s in rec.slots]
            if next_domain is not None:
                wrapped += [next_domain.id_key, *(s.key for s in next_domain.slots)]
                if {s.slot for s in next_domain.slots} & {s.slot for s in rec.slots}:
                    raise FormatError(f"keyring of {model}: its next domain reuses a slot")
                if not any(s.state == ACTIVE for s in next_domain.slots):
                    raise FormatError(f"keyring of {model}: its next domain has no active data key")
            for w in wrapped:
                if (w.provider, w.kek_id) != (rec.id_key.provider, rec.kek_id):
                    raise FormatError(f"keyring of {model}: its keys are wrapped under different KEKs")
            rec.active_slot  # noqa: B018 - validates
            return rec
        except FormatError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"malformed keyring of {model}: {exc}") from None


def _parse_slots(items: Any, model: str) -> tuple[SlotRecord, ...]:
    from weightvault.keys import WrappedKey

    slots = []
    for d in items:
        slot, state = int(d["slot"]), d["state"]
        if not 1 <= slot <= MAX_SLOT or state not in (ACTIVE, RETIRED):
            raise FormatError(f"keyring of {model}: bad data key slot {slot} / state {state!r}")
        slots.append(SlotRecord(slot, state, str(d["created"]), WrappedKey.from_dict(d["key"])))
    if len({s.slot for s in slots}) != len(slots):
        raise FormatError(f"keyring of {model} lists a slot twice")
    return tuple(slots)


# ---------------------------------------------------------------- an opened domain


class Domain:
    """The unwrapped keys of one model: keyed ids, recipe sealing, blob ciphers by slot."""

    def __init__(self, record: KeyringRecord, id_key: DataKey, data_keys: Mapping[int, DataKey]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from weightvault.cas.encryption import BlobCipher, chunk_id_function

        self.model = record.model
        self.record = record
        self.id_key = id_key
        self.data_keys = dict(data_keys)
        self.ciphers: dict[int, BlobCipher] = {slot: BlobCipher(dk) for slot, dk in self.data_keys.items()}
        self.chunk_id: Callable[[bytes | bytearray | memoryview], bytes] = chunk_id_function(id_key)
        self._name_key = _derive(_CTX_RECIPE_NAME, id_key.material)
        self._recipe_aead = AESGCM(_derive(_CTX_RECIPE_BODY, id_key.material))
        self.mac_key = _derive(_CTX_KEYRING_MAC, id_key.material)
        self._commit_key = _derive(_CTX_COMMIT, id_key.material)
        self._manifest_aead = AESGCM(_derive(_CTX_MANIFEST_BODY, id_key.material))
        #: authenticates the model's version and alias refs (``vault.refauth``)
        self.ref_mac_key = _derive(_CTX_REF_MAC, id_key.material)
        #: keys the chunker's gear table, so chunk boundaries (and lengths) depend on a secret
        seed = int.from_bytes(_derive(_CTX_CHUNKER_SEED, id_key.material)[:8], "little")
        self.chunker_seed = (seed & ((1 << 63) - 1)) | 1  # pyfastcdc's range; never 0 (unkeyed)
        #: the opened keys of the domain a ``--new-domain`` rotation is moving the model to
        self.pending: Domain | None = None

    @property
    def id_key_id(self) -> str:
        """Public fingerprint of the id key: what names this domain (pins, refs in transition)."""
        return self.record.id_key.key_id

    @property
    def active_slot(self) -> int:
        return self.record.active_slot

    @property
    def slots(self) -> frozenset[int]:
        return frozenset(self.ciphers)

    def recipe_name(self, sha256: str) -> str:
        """The name of a file's recipe in this domain: keyed BLAKE3 of its SHA-256 (64 hex)."""
        return blake3.blake3(bytes.fromhex(sha256), key=self._name_key).hexdigest()

    def seal_recipe(self, name: str, body: bytes) -> bytes:
        nonce = os.urandom(12)
        return RECIPE_MAGIC + nonce + self._recipe_aead.encrypt(nonce, body, _RECIPE_AAD + name.encode())

    def commit_id(self, manifest_body: bytes) -> str:
        """A version's commit id in this domain: keyed, so a bucket cannot confirm a guessed manifest."""
        return blake3.blake3(manifest_body, key=self._commit_key).hexdigest()[:40]

    def _manifest_aad(self, commit: str) -> bytes:
        return _MANIFEST_AAD + commit.encode() + b"\x00" + self.model.encode()

    def seal_manifest(self, commit: str, body: bytes) -> bytes:
        name = self.model.encode()
        nonce = os.urandom(12)
        sealed = self._manifest_aead.encrypt(nonce, body, self._manifest_aad(commit))
        return MANIFEST_MAGIC + len(name).to_bytes(2, "big") + name + nonce + sealed

    def open_manifest(self, commit: str, data: bytes) -> bytes:
        """The manifest JSON; it must be this model's, under this commit id."""
        from cryptography.exceptions import InvalidTag

        from weightvault.cas.encryption import DecryptionError

        if sealed_manifest_model(data) != self.model:
            raise CorruptObjectError(f"manifest {commit} is sealed for another model than {self.model}")
        start = len(MANIFEST_MAGIC) + 2 + len(self.model.encode())
        try:
            body = self._manifest_aead.decrypt(
                data[start : start + 12], data[start + 12 :], self._manifest_aad(commit)
            )
        except InvalidTag:
            raise DecryptionError(f"manifest {commit} of {self.model} failed authentication") from None
        if self.commit_id(body) != commit:
            raise CorruptObjectError(f"manifest {commit} of {self.model} does not hash to its name")
        return body

    def open_recipe(self, name: str, data: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        from weightvault.cas.encryption import DecryptionError

        if not data.startswith(RECIPE_MAGIC) or len(data) < len(RECIPE_MAGIC) + 28:
            raise CorruptObjectError(f"recipe {name} of {self.model} is not a sealed recipe")
        n = len(RECIPE_MAGIC)
        try:
            return self._recipe_aead.decrypt(data[n : n + 12], data[n + 12 :], _RECIPE_AAD + name.encode())
        except InvalidTag:
            raise DecryptionError(
                f"recipe {name} of {self.model} failed authentication (corrupt, or another model's)"
            ) from None


def is_sealed_manifest(data: bytes) -> bool:
    return data.startswith(MANIFEST_MAGIC)


def sealed_manifest_model(data: bytes) -> str:
    """The model a sealed manifest says it belongs to (authenticated only once it is opened)."""
    n = len(MANIFEST_MAGIC)
    if not is_sealed_manifest(data) or len(data) < n + 2:
        raise CorruptObjectError("not a sealed manifest")
    size = int.from_bytes(data[n : n + 2], "big")
    try:
        return check_model_name(data[n + 2 : n + 2 + size].decode())
    except (UnicodeDecodeError, WeightvaultError):
        raise CorruptObjectError("sealed manifest names no valid model") from None


def is_sealed_recipe(data: bytes) -> bool:
    return data.startswith(RECIPE_MAGIC)


# ---------------------------------------------------------------- providers


def provider_params(provider: KeyProvider, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a keyring records about its provider: ``params()`` plus where the secret comes from."""
    params = dict(provider.params())
    for option in _SECRET_SOURCES.get(provider.name, ()):
        if option != "passphrase" and config is not None and config.get(option) is not None:
            params[option] = config[option]
    params.pop("passphrase", None)
    return params


@dataclass(slots=True)
class _Cache:
    domains: dict[str, Domain] = field(default_factory=dict)
    plain: set[str] = field(default_factory=set)
    providers: dict[bytes, KeyProvider] = field(default_factory=dict)


class KeyManager:
    """Opens, creates and rewrites the keyrings of one vault; thread-safe."""

    def __init__(
        self,
        provider_config: Callable[[], dict[str, Any]],
        backend: Backend,
        primary: Backend,
        replicas: ReplicaSet | None,
        store_id: str,
        *,
        trusted_configs: Callable[[], list[dict[str, Any]]] = list,
        trust: LocalTrust | None = None,
    ) -> None:
        self._provider_config = provider_config
        self._trusted_configs = trusted_configs
        self.trust = trust
        self._backend = backend
        self._primary = primary
        self._replicas = replicas
        self._store_id = store_id
        self._cache = _Cache()
        self._lock = threading.RLock()

    # ---- providers ---------------------------------------------------------------------------

    def _with_salt(self, config: dict[str, Any]) -> dict[str, Any]:
        if config.get("type") == "passphrase" and "salt" not in config:
            # public, unique per store, and fixed in this home on first use: a bucket writer who
            # later changes the store's id cannot choose the salt
            default = base64.b64encode(bytes.fromhex(self._store_id)[:16]).decode()
            config["salt"] = self.trust.passphrase_salt(default) if self.trust is not None else default
        return config

    def configured_config(self) -> dict[str, Any]:
        return self._with_salt(dict(self._provider_config()))

    def trusted_configs(self) -> list[dict[str, Any]]:
        """Every provider config that may open a keyring: the configured one first, then
        ``encryption.trusted_providers``, the providers this home rotated to, and a key file
        staged by an unfinished rotation. Nothing from the store."""
        configured = self.configured_config()
        out = [configured]
        out += [self._with_salt(dict(c)) for c in self._trusted_configs()]
        if self.trust is not None:
            out += [self._with_salt(dict(c)) for c in self.trust.providers()]
        if configured.get("type") == "local_file" and configured.get("path"):
            staged = Path(str(configured["path"])).expanduser()
            staged = staged.with_name(staged.name + ".new")
            if staged.exists():
                out.append({"type": "local_file", "path": str(staged)})
        unique: list[dict[str, Any]] = []
        for c in out:
            if c not in unique:
                unique.append(c)
        return unique

    def trust_provider(self, config: Mapping[str, Any]) -> None:
        """Record in this home a provider its own rotation moved keyrings to."""
        if self.trust is not None:
            self.trust.add_provider(config)

    def open_provider(self, config: Mapping[str, Any]) -> KeyProvider:
        from weightvault.keys import open_key_provider

        cache_key = canonical_json(dict(config))
        with self._lock:
            cached = self._cache.providers.get(cache_key)
            if cached is not None:
                return cached
        provider = open_key_provider(config)
        with self._lock:
            self._cache.providers[cache_key] = provider
        return provider

    def configured(self, *, create_key_file: bool = False) -> KeyProvider:
        """The configured provider; its local key file is created (0600) when asked and absent."""
        from weightvault.keys.local_file import LocalFileKeyProvider

        config = self.configured_config()
        if create_key_file and config.get("type") == "local_file":
            path = Path(str(config.get("path", ""))).expanduser()
            if path.name and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                LocalFileKeyProvider.create(path)
        return self.open_provider(config)

    def _provider_for(self, rec: KeyringRecord) -> tuple[KeyProvider, list[str]]:
        """The trusted provider holding the KEK ``rec`` names, and the problems met on the way.

        Only locally configured providers are candidates; the one a keyring records is never
        opened (it is the bucket's word)."""
        from weightvault.keys import KeyProviderConfigError, KeyProviderError, WrongKeyError

        problems: list[str] = []
        first_error: Exception | None = None
        same_kind: KeyProvider | None = None
        for config in self.trusted_configs():
            if config.get("type") != rec.id_key.provider:
                continue
            try:
                provider = self.open_provider(config)
            except (KeyProviderError, KeyProviderConfigError) as exc:
                problems.append(f"a configured {config.get('type')} provider cannot be opened ({exc.detail})")
                first_error = first_error or exc
                continue
            if provider.key_id == rec.kek_id:
                return provider, problems
            same_kind = same_kind or provider
        if same_kind is not None and rec.id_key.provider in _LOCAL_KINDS:
            hint = str(getattr(same_kind, "wrong_key_hint", ""))
            raise WrongKeyError(
                same_kind.name,
                f"cannot open the keys of model {rec.model!r}: they are wrapped under a KEK that no "
                f"configured {same_kind.name} provider holds{hint}"
                + (f" ({'; '.join(problems)})" if problems else ""),
            )
        if first_error is not None and same_kind is None:
            raise first_error  # the configured key is missing or unusable: say that, as it is
        which = rec.id_key.provider
        if which not in _LOCAL_KINDS:
            which += f" key {rec.kek_id}"
        extra = f" ({'; '.join(problems)})" if problems else ""
        raise UntrustedKeyProviderError(
            f"the keyring of {rec.model} is wrapped by a {which} KEK that no configured key provider "
            f"holds; refusing it (if that key is yours, name its provider in encryption.provider or "
            f"encryption.trusted_providers){extra}"
        )

    # ---- reading keyrings --------------------------------------------------------------------

    def models(self) -> list[str]:
        """Models that have a keyring (in the primary's listing)."""
        out = []
        for info in self._backend.list(KEYS):
            model = parse_keyring_key(info.key)
            if model is not None:
                out.append(model)
        return sorted(out)

    def record(self, model: str) -> KeyringRecord | None:
        """The keyring as stored (not authenticated: that needs the keys), or None."""
        try:
            data = self._primary.get(keyring_key(model))
        except MissingObjectError:
            if self._replicas is None:
                return None
            try:
                data = self._backend.get(keyring_key(model))
            except (MissingObjectError, CorruptObjectError):
                return None
        return KeyringRecord.from_bytes(data, model)

    def check_slot_held(self, model: str, slot: int) -> None:
        """Before a push's commit (docs/format.md, "Write order", step 6): the keyring as it is
        now must still hold the data key slot the push sealed under, which a re-encryption
        (``keys rotate --reencrypt``) drops; else ``ConcurrentModificationError`` (push again)."""
        rec = self.record(model)
        if rec is None or slot not in {s.slot for s in rec.slots}:
            self.forget(model)  # the next attempt opens the keyring as it is now
            raise ConcurrentModificationError(
                f"the data keys of {model} were rotated during the push; push again (only what is "
                "missing is written)"
            )

    def _unwrap(self, rec: KeyringRecord, provider: KeyProvider, problems: list[str]) -> Domain:
        from weightvault.keys import WrongKeyError, unwrap_data_key

        try:
            id_key = unwrap_data_key(provider, rec.id_key)
            rec.check_mac(_derive(_CTX_KEYRING_MAC, id_key.material))
            keys = {s.slot: unwrap_data_key(provider, s.key) for s in rec.slots}
            pending = None
            if rec.next_domain is not None:
                nxt = rec.next_domain
                pending = Domain(
                    rec.successor(),
                    unwrap_data_key(provider, nxt.id_key),
                    {s.slot: unwrap_data_key(provider, s.key) for s in nxt.slots},
                )
        except WrongKeyError as exc:
            extra = f" ({'; '.join(problems)})" if problems else ""
            raise WrongKeyError(
                provider.name, f"cannot open the keys of model {rec.model!r}: {exc.detail}{extra}"
            ) from None
        dom = Domain(rec, id_key, keys)
        dom.pending = pending
        return dom

    def _open_verified(self, model: str, data: bytes) -> Domain:
        rec = KeyringRecord.from_bytes(data, model)
        provider, problems = self._provider_for(rec)
        dom = self._unwrap(rec, provider, problems)
        if self.trust is not None:
            self.trust.check(model, rec.id_key.key_id, rec.generation, rec.replaces)
        return dom

    def _load(self, model: str) -> Domain | None:
        key = keyring_key(model)
        if self._replicas is None:
            try:
                data = self._backend.get(key)
            except MissingObjectError:
                self._missing(model)
                return None
            return self._open_verified(model, data)
        # The primary decides whether the model has keys (keyrings are written there first), so an
        # unreachable secondary never stops a plain model's push or pull.
        try:
            data = self._primary.get(key)
        except MissingObjectError:
            self._missing(model)
            return None
        except StorageError:
            pass  # the primary is unreachable: a replica's copy will do
        else:
            from weightvault.keys import WrongKeyError

            try:
                return self._open_verified(model, data)
            except (IntegrityError, WrongKeyError):
                pass  # damaged, old or forged (a damaged wrapped key looks like a wrong KEK): judged below
        # Every copy is checked (parsed, unwrapped, MAC): a damaged keyring on one replica falls
        # through to the next, and the failure is reported like any bad copy.
        opened: list[Domain] = []
        key_errors: list[WeightvaultError] = []

        def verify(data: bytes) -> bool:
            from weightvault.keys import WrongKeyError

            try:
                opened.append(self._open_verified(model, data))
                return True
            except (WrongKeyError, UntrustedKeyProviderError, KeyringTrustError) as exc:
                key_errors.append(exc)  # a damaged wrapped key looks like a wrong KEK
                return False
            except (FormatError, CorruptObjectError):
                return False

        try:
            self._replicas.read(key, verify=verify)
        except MissingObjectError:
            self._missing(model)
            return None
        except CorruptObjectError:
            if key_errors:
                raise key_errors[0] from None
            raise
        return opened[-1]

    def open_with(self, model: str, provider: KeyProvider) -> Domain:
        """The domain of ``model`` opened with ``provider`` (a rotation's old KEK, still in memory
        after its file was replaced), from the primary's copy."""
        rec = KeyringRecord.from_bytes(self._primary.get(keyring_key(model)), model)
        return self._unwrap(rec, provider, [])

    def recheck_new_domain(self, dom: Domain) -> Domain:
        """After creating a domain under the configured key file: if a rotation replaced the file
        meanwhile, move the new keyring to the key now there (so it never needs a destroyed KEK)."""
        config = self.configured_config()
        if config.get("type") != "local_file":
            return dom
        self.forget_providers()
        current = self.configured()
        if current.key_id == dom.record.kek_id:
            return dom
        return self.rewrap(dom, current, provider_params(current, config))[0]

    def _missing(self, model: str) -> None:
        """No keyring in the store: fine for a plain model, an error for one this home pinned."""
        if self.trust is not None:
            self.trust.check_missing(model)

    def domain(self, model: str, *, refresh: bool = False) -> Domain | None:
        """The opened domain of ``model``, or None when it has no keyring (a plain model)."""
        with self._lock:
            if not refresh:
                if model in self._cache.domains:
                    return self._cache.domains[model]
                if model in self._cache.plain:
                    return None
        dom = self._load(model)
        with self._lock:
            if dom is None:
                self._cache.plain.add(model)
                self._cache.domains.pop(model, None)
            else:
                self._cache.plain.discard(model)
                self._cache.domains[model] = dom
        return dom

    def has_keyring(self, model: str) -> bool:
        with self._lock:
            if model in self._cache.domains:
                return True
        try:
            return self._primary.exists(keyring_key(model))
        except StorageError:
            return False

    def forget_providers(self) -> None:
        """Drop opened providers (a key file was replaced under them)."""
        with self._lock:
            self._cache.providers.clear()

    def forget(self, model: str | None = None) -> None:
        with self._lock:
            if model is None:
                self._cache.domains.clear()
                self._cache.plain.clear()
            else:
                self._cache.domains.pop(model, None)
                self._cache.plain.discard(model)

    # ---- writing keyrings --------------------------------------------------------------------

    def write(
        self, rec: KeyringRecord, *, if_absent: bool = False, mac_key: bytes | None = None
    ) -> dict[str, str]:
        """Put a sealed keyring on the primary (must succeed), then on every other replica.

        Returns replica -> "ok" or the error; a keyring left stale on a replica is reported,
        because there it would still open under the old KEK.
        """
        key = keyring_key(rec.model)
        body = rec.to_bytes()
        if if_absent:  # a new domain: generation 1, created once
            self._primary.put(key, body, if_absent=True)
        else:
            self._claim(rec, body, mac_key)
            self._primary.put(key, body)
            # the claim has done its work: keep only a digest, so it is no copy of old keys
            self._primary.put(claim_key(rec.model, rec.generation), _tombstone(rec.generation, body))
        if self.trust is not None:
            self.trust.check(rec.model, rec.id_key.key_id, rec.generation, rec.replaces)
        status: dict[str, str] = {}
        if self._replicas is not None:
            for name in self._replicas.names:
                if name == self._replicas.primary_name:
                    continue
                try:
                    self._replicas.backend(name).put(key, body)
                    status[name] = "ok"
                except WeightvaultError as exc:
                    status[name] = f"error: {exc}"
        with self._lock:
            self._cache.domains.pop(rec.model, None)
            self._cache.plain.discard(rec.model)
        return status

    def _claim(self, rec: KeyringRecord, body: bytes, mac_key: bytes | None) -> None:
        """Claim generation ``rec.generation`` on the primary with an if-absent put: the
        conditional write that makes two concurrent rewrites of one keyring (a rotation and a
        re-encryption, two rotations) fail instead of one silently undoing the other.

        A claim whose keyring write never happened (a crash in between) is rolled forward by
        the next writer that finds it, once its MAC checks out under the same id key."""
        claim = claim_key(rec.model, rec.generation)
        try:
            self._primary.put(claim, body, if_absent=True)
            return
        except ObjectExistsError:
            pass
        with contextlib.suppress(WeightvaultError, ValueError):
            claimed = self._primary.get(claim)
            current = KeyringRecord.from_bytes(self._primary.get(keyring_key(rec.model)), rec.model)
            if mac_key is not None and claimed.startswith(b"{") and current.generation < rec.generation:
                stale = KeyringRecord.from_bytes(claimed, rec.model)
                if stale.id_key.key_id == rec.id_key.key_id and stale.generation == rec.generation:
                    stale.check_mac(mac_key)
                    self._primary.put(keyring_key(rec.model), claimed)  # roll the lost write forward
                    self._primary.put(claim, _tombstone(rec.generation, claimed))
        with self._lock:
            self._cache.domains.pop(rec.model, None)
        raise ConcurrentModificationError(
            f"the keyring of {rec.model} was changed by another process meanwhile (generation "
            f"{rec.generation} is taken); run the command again"
        )

    def create(
        self, model: str, provider: KeyProvider | None = None, params: Mapping[str, Any] | None = None
    ) -> Domain:
        """A new domain for ``model`` under ``provider`` (default: the configured one), recorded
        with ``params`` (default: the provider's, plus the configured secret source).

        Two processes creating the same domain race on an if-absent put; the loser opens the
        winner's keyring.
        """
        from weightvault.cas.encryption import DataKey
        from weightvault.keys import wrap_data_key

        config = self.configured_config()
        if provider is None:
            # the default local key file is made on first use, but only while nothing is
            # encrypted yet: a missing key file with keyrings around is an error, not a fresh start
            provider = self.configured(create_key_file=not self.models())
        id_key, data_key = DataKey.generate(), DataKey.generate()
        now = _now()
        rec = KeyringRecord(
            model=model,
            created=now,
            provider=dict(params)
            if params is not None
            else provider_params(provider, config if provider.name == config.get("type") else None),
            id_key=wrap_data_key(provider, id_key),
            slots=(SlotRecord(1, ACTIVE, now, wrap_data_key(provider, data_key)),),
        )
        dom = Domain(rec, id_key, {1: data_key})
        rec = rec.sealed(dom.mac_key)
        try:
            self.write(rec, if_absent=True)
        except ObjectExistsError:
            existing = self.domain(model, refresh=True)
            if existing is None:  # pragma: no cover - deleted between the two calls
                raise
            return existing
        dom.record = rec
        with self._lock:
            self._cache.domains[model] = dom
        return dom

    def update(self, dom: Domain, **changes: Any) -> Domain:
        """Rewrite the keyring of an opened domain with ``changes`` (new slots, states, target)."""
        rec = replace(dom.record, **changes, generation=dom.record.generation + 1, mac="").sealed(dom.mac_key)
        self.write(rec, mac_key=dom.mac_key)
        new = Domain(rec, dom.id_key, {s.slot: dom.data_keys[s.slot] for s in rec.slots})
        new.pending = dom.pending
        with self._lock:
            self._cache.domains[dom.model] = new
        return new

    def add_data_key(self, dom: Domain, provider: KeyProvider) -> tuple[Domain, int]:
        """A fresh data key in the next slot, made active; the others are retired."""
        from weightvault.cas.encryption import DataKey
        from weightvault.keys import wrap_data_key

        if dom.record.next_domain is not None:
            raise ConflictError(
                f"model {dom.model} is being moved to a new domain; finish it first "
                f"(weightvault keys rotate {dom.model} --new-domain)"
            )
        slot = max(s.slot for s in dom.record.slots) + 1
        if slot > MAX_SLOT:
            raise ConfigError(
                f"model {dom.model} has used all {MAX_SLOT} data key slots; push it as a new model to go on"
            )
        dk = DataKey.generate()
        now = _now()
        slots = (
            *tuple(replace(s, state=RETIRED) for s in dom.record.slots),
            SlotRecord(slot, ACTIVE, now, wrap_data_key(provider, dk)),
        )
        rec = replace(
            dom.record, slots=slots, reencrypt_target=slot, generation=dom.record.generation + 1, mac=""
        ).sealed(dom.mac_key)
        self.write(rec, mac_key=dom.mac_key)
        keys = {**dom.data_keys, slot: dk}
        new = Domain(rec, dom.id_key, keys)
        with self._lock:
            self._cache.domains[dom.model] = new
        return new, slot

    def rewrap(
        self, dom: Domain, target: KeyProvider, params: Mapping[str, Any]
    ) -> tuple[Domain, dict[str, str]]:
        """Wrap every key of the domain under ``target`` (the data stays as it is)."""
        from weightvault.keys import wrap_data_key

        nxt = dom.record.next_domain
        if nxt is not None and dom.pending is not None:  # the domain being moved to goes along
            pend = dom.pending
            nxt = replace(
                nxt,
                id_key=wrap_data_key(target, pend.id_key),
                slots=tuple(replace(s, key=wrap_data_key(target, pend.data_keys[s.slot])) for s in nxt.slots),
            )
        rec = replace(
            dom.record,
            provider=dict(params),
            id_key=wrap_data_key(target, dom.id_key),
            slots=tuple(
                replace(s, key=wrap_data_key(target, dom.data_keys[s.slot])) for s in dom.record.slots
            ),
            next_domain=nxt,
            generation=dom.record.generation + 1,
            mac="",
        ).sealed(dom.mac_key)
        status = self.write(rec, mac_key=dom.mac_key)
        new = Domain(rec, dom.id_key, dom.data_keys)
        if dom.pending is not None:
            new.pending = Domain(rec.successor(), dom.pending.id_key, dom.pending.data_keys)
        with self._lock:
            self._cache.domains[dom.model] = new
        return new, status

    # ---- a new domain (``keys rotate MODEL --new-domain``, ``vault.domains``) ---------------------

    def begin_domain(self, dom: Domain) -> Domain:
        """Add a fresh domain (id key, data key in the next slot) to the keyring as its
        ``next_domain``, wrapped under the KEK that holds the current one; a conditional write.
        Returns the current domain with the new one opened as its ``pending``."""
        from weightvault.cas.encryption import DataKey
        from weightvault.keys import wrap_data_key

        if dom.record.next_domain is not None:
            return dom
        if dom.record.reencrypt_target is not None:
            raise ConflictError(
                f"a re-encryption of {dom.model} is unfinished; run `weightvault keys rotate {dom.model} "
                "--reencrypt` first"
            )
        slot = max(s.slot for s in dom.record.slots) + 1
        if slot > MAX_SLOT:
            raise ConfigError(f"model {dom.model} has used all {MAX_SLOT} data key slots")
        provider, _problems = self._provider_for(dom.record)
        id_key, data_key = DataKey.generate(), DataKey.generate()
        now = _now()
        nxt = NextDomain(
            wrap_data_key(provider, id_key),
            (SlotRecord(slot, ACTIVE, now, wrap_data_key(provider, data_key)),),
            now,
        )
        rec = replace(dom.record, next_domain=nxt, generation=dom.record.generation + 1, mac="").sealed(
            dom.mac_key
        )
        self.write(rec, mac_key=dom.mac_key)
        new = Domain(rec, dom.id_key, dom.data_keys)
        new.pending = Domain(rec.successor(), id_key, {slot: data_key})
        with self._lock:
            self._cache.domains[dom.model] = new
        return new

    def switch_domain(self, dom: Domain) -> tuple[Domain, dict[str, str]]:
        """Make the pending domain the model's own: the keyring keeps only its keys (the old
        domain's secrets leave it) and names the old id key in ``replaces``."""
        pending = dom.pending
        if pending is None:
            raise FormatError(f"keyring of {dom.model} has no next domain to switch to")
        rec = dom.record.successor().sealed(pending.mac_key)
        status = self.write(rec, mac_key=pending.mac_key)
        new = Domain(rec, pending.id_key, pending.data_keys)
        with self._lock:
            self._cache.domains[dom.model] = new
        return new, status


def iter_wrapped(rec: KeyringRecord) -> Iterator[WrappedKey]:
    yield rec.id_key
    for s in rec.slots:
        yield s.key
    if rec.next_domain is not None:
        yield rec.next_domain.id_key
        for s in rec.next_domain.slots:
            yield s.key


__all__ = [
    "ACTIVE",
    "KEYS",
    "MAX_SLOT",
    "RETIRED",
    "Domain",
    "KeyManager",
    "KeySlotMissingError",
    "KeyringRecord",
    "NextDomain",
    "SlotRecord",
    "is_sealed_manifest",
    "is_sealed_recipe",
    "iter_wrapped",
    "keyring_key",
    "parse_keyring_key",
    "provider_params",
    "sealed_manifest_model",
]
