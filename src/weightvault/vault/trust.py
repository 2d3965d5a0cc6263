"""What this home trusts about encryption, kept on the local machine, never in the store.

The bucket is not trusted (docs/security.md), so what a reader must know about encrypted
models comes from here:

* **pins** ``<home>/keys/pins/<hash>.json``: for each model this home has opened encrypted, the
  fingerprint of its id key and the highest keyring generation seen. A missing keyring, a keyring
  with another id key or an older generation is then an error, never a plain model or a
  rollback to dropped keys; a newer keyring naming the pinned id key among those it replaces
  (``keys rotate MODEL --new-domain``) moves the pin to its own id key;
* **alias pins** ``<home>/keys/pins/<hash>.aliases.json``: for each alias of an encrypted model,
  the highest sequence number seen in an authentic ref of it; an older one (an old alias ref
  replayed by the bucket) is refused as a rollback;
* **rotated-to providers** ``<home>/keys/providers.json``: the key providers this home's own
  ``keys rotate --new-…`` moved keyrings to (their params, never a secret), trusted beside the
  configured ones so the machine that rotated keeps reading;
* **the passphrase salt** ``<home>/keys/passphrase.salt`` when the configuration names none:
  fixed on first use so a bucket writer cannot choose it later.

Files are written atomically (temp file, fsync, rename) with mode 0600 in a 0700 folder.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from weightvault.core.errors import ConfigError, IntegrityError
from weightvault.core.manifest import canonical_json


class KeyringTrustError(IntegrityError):
    """A keyring in the store contradicts what this home knows (missing, replaced, older)."""

    code = "keyring_untrusted"


class UntrustedKeyProviderError(IntegrityError):
    """A keyring names a key provider or KEK the local configuration does not name."""

    code = "untrusted_key_provider"


@dataclass(frozen=True, slots=True)
class Pin:
    model: str
    id_key: str  # public fingerprint of the domain's id key
    generation: int


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class LocalTrust:
    """Pins, locally recorded providers and the passphrase salt of one home; thread-safe."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    # ---- pins -----------------------------------------------------------------------------------

    def pin_path(self, model: str) -> Path:
        return self.root / "pins" / f"{blake3.blake3(model.encode()).hexdigest()[:32]}.json"

    def pin(self, model: str) -> Pin | None:
        try:
            raw = json.loads(self.pin_path(model).read_bytes())
            return Pin(str(raw["model"]), str(raw["id_key"]), int(raw["generation"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"pin file {self.pin_path(model)} is unreadable: {exc}") from None

    def check(self, model: str, id_key: str, generation: int, replaces: Sequence[str] = ()) -> None:
        """Refuse a keyring that contradicts the pin; raise the pin when it is newer.

        A keyring of another id key is accepted only as the successor of the pinned domain: it
        names the pinned id key in ``replaces`` (it was opened with a trusted KEK and its MAC
        checked, so only a holder of that KEK made it) and is of a later generation. The pin
        then moves to the new id key, and the old domain's keyring is refused from then on."""
        with self._lock:
            pinned = self.pin(model)
            if pinned is not None:
                successor = pinned.id_key in replaces and generation > pinned.generation
                if pinned.id_key != id_key and not successor:
                    raise KeyringTrustError(
                        f"the keyring of {model} holds another id key than the one this home pinned: "
                        f"it was replaced in the store (if the model was deleted and re-created on "
                        f"purpose, remove {self.pin_path(model)})"
                    )
                if generation < pinned.generation:
                    raise KeyringTrustError(
                        f"the keyring of {model} is generation {generation}, older than generation "
                        f"{pinned.generation} this home has seen: an old copy was put back in the store"
                    )
                if generation == pinned.generation:
                    return
            _write_atomic(
                self.pin_path(model),
                canonical_json({"model": model, "id_key": id_key, "generation": generation}),
            )

    def check_missing(self, model: str) -> None:
        """A model without a keyring in the store: an error when this home knows it is encrypted."""
        if self.pin(model) is not None:
            raise KeyringTrustError(
                f"model {model} is encrypted (this home pinned its keys) but its keyring is missing "
                f"from the store; refusing to treat it as a plain model (if it was deleted on purpose, "
                f"remove {self.pin_path(model)})"
            )

    def forget(self, model: str) -> None:
        with self._lock:
            self.pin_path(model).unlink(missing_ok=True)

    # ---- alias sequence numbers -----------------------------------------------------------------

    def alias_pin_path(self, model: str) -> Path:
        return self.root / "pins" / f"{blake3.blake3(model.encode()).hexdigest()[:32]}.aliases.json"

    def _alias_pins(self, model: str) -> tuple[dict[str, int], dict[str, str]]:
        path = self.alias_pin_path(model)
        try:
            raw = json.loads(path.read_bytes())
            seqs = {str(k): int(v) for k, v in raw["aliases"].items()}
            return seqs, {str(k): str(v) for k, v in raw.get("rolled_back", {}).items()}
        except FileNotFoundError:
            return {}, {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"pin file {path} is unreadable: {exc}") from None

    def _write_alias_pins(self, model: str, seqs: dict[str, int], rolled: dict[str, str]) -> None:
        body: dict[str, Any] = {"model": model, "aliases": seqs}
        if rolled:
            body["rolled_back"] = rolled
        _write_atomic(self.alias_pin_path(model), canonical_json(body))

    def alias_seqs(self, model: str) -> dict[str, int]:
        """alias -> the highest sequence number this home has seen in an authentic ref of it."""
        return self._alias_pins(model)[0]

    def rolled_back(self, model: str, alias: str) -> str | None:
        """Why the store's ref of ``alias`` was last refused as a rollback, while it stands."""
        return self._alias_pins(model)[1].get(alias)

    def check_alias(self, model: str, alias: str, seq: int | None, refusal: str = "") -> int | None:
        """Raise the pin of ``alias`` to ``seq``; returns the pinned number when ``seq`` is older
        (an authentic alias ref replayed: a rollback, remembered with ``refusal`` until a newer
        ref or ``forget_alias``), else None. A ref without a number is older than any numbered one."""
        with self._lock:
            seqs, rolled = self._alias_pins(model)
            pinned = seqs.get(alias)
            if pinned is not None and (seq is None or seq < pinned):
                if refusal and rolled.get(alias) != refusal:
                    rolled[alias] = refusal
                    self._write_alias_pins(model, seqs, rolled)
                return pinned
            if (seq is not None and seq != pinned) or alias in rolled:
                if seq is not None:
                    seqs[alias] = seq
                rolled.pop(alias, None)
                self._write_alias_pins(model, seqs, rolled)
            return None

    def forget_alias(self, model: str, alias: str) -> None:
        """Accept whatever the store says about ``alias`` next (a deliberate rollback)."""
        with self._lock:
            seqs, rolled = self._alias_pins(model)
            if seqs.pop(alias, None) is not None or rolled.pop(alias, None) is not None:
                self._write_alias_pins(model, seqs, rolled)

    # ---- providers this home rotated to ---------------------------------------------------------

    @property
    def _providers_path(self) -> Path:
        return self.root / "providers.json"

    def providers(self) -> list[dict[str, Any]]:
        try:
            raw = json.loads(self._providers_path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self._providers_path} is unreadable: {exc}") from None
        if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
            raise ConfigError(f"{self._providers_path} must hold a list of provider configs")
        return raw

    def add_provider(self, config: Mapping[str, Any]) -> None:
        entry = {k: v for k, v in config.items() if k != "passphrase"}
        with self._lock:
            known = self.providers()
            if entry not in known:
                _write_atomic(self._providers_path, json.dumps([*known, entry], indent=1).encode())

    # ---- passphrase salt ------------------------------------------------------------------------

    def passphrase_salt(self, default: str) -> str:
        """The salt fixed in this home (``default`` on first use)."""
        path = self.root / "passphrase.salt"
        with self._lock:
            try:
                return path.read_text().strip()
            except FileNotFoundError:
                _write_atomic(path, default.encode())
                return default


__all__ = ["KeyringTrustError", "LocalTrust", "Pin", "UntrustedKeyProviderError"]
