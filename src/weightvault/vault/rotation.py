"""Key rotation: re-wrap keyrings under a new KEK (seconds, any size), and ``--reencrypt``.

``rotate`` touches keyrings only: every key of every domain is unwrapped under the KEK that
holds it now and wrapped under the new one; the data stays as it is. With a local key file
and no new key given, a new key file is written beside the configured one, every keyring
moves to it, and it is renamed over the configured file: the old KEK is gone and the
configuration still names the right file. A rerun after a crash finds the new file and goes
on where it stopped.

``--reencrypt`` also rewrites the data of each model under a new data key, in a new slot:
every chunk of every live version is read (verified), compressed per the settings, sealed
under the new slot and written to new packs, pack by pack with the push's write order (pack
durable -> index object -> index rows), so reads keep working throughout: a chunk's row moves
to its new pack only once that pack is durable, and the old data keys stay in the keyring
until nothing live needs them. Files pushed before the model was encrypted get keyed recipes
(new keyed chunk ids); recipes of encrypted files stay as they are (chunk ids are keyed by the
domain's id key, which never changes). Rerun after an interruption, it reuses the slot and
skips chunks already on it. The old packs and plain recipes become garbage for ``gc``.
"""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightvault.core.errors import (
    ConcurrentModificationError,
    ConfigError,
    InvalidInputError,
    ModelNotFoundError,
    StorageError,
    WeightvaultError,
)
from weightvault.core.manifest import FileRecipe
from weightvault.core.names import check_model_name
from weightvault.keys import KeyProvider, open_key_provider
from weightvault.keys.local_file import LocalFileKeyProvider
from weightvault.storage.backend import Backend
from weightvault.storage.local import fsync_dir
from weightvault.vault.codecs import BlobEncoder, layout_from_chunks
from weightvault.vault.keyring import (
    KEYS,
    Domain,
    KeyringRecord,
    keyring_key,
    parse_keyring_key,
    provider_params,
)
from weightvault.vault.locks import SHARED, holding
from weightvault.vault.packer import PackSink, default_temp_factory
from weightvault.vault.source import SourceFile

if TYPE_CHECKING:
    from weightvault.registry.index import VersionRecord
    from weightvault.vault.versions import Versions

#: How many times a re-encryption re-checks for live chunks left on old slots (pushes that
#: were sealing under the old data key while it ran) before it gives up dropping old keys.
_SETTLE_ROUNDS = 3


@dataclass(slots=True)
class ReencryptReport:
    slot: int
    files: int = 0
    files_rekeyed: int = 0  # pushed before encryption: given keyed recipes
    chunks_written: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    packs_written: int = 0
    dropped_slots: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "files": self.files,
            "files_rekeyed": self.files_rekeyed,
            "chunks_written": self.chunks_written,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "packs_written": self.packs_written,
            "dropped_slots": self.dropped_slots,
        }


@dataclass(slots=True)
class RotateReport:
    provider: dict[str, Any]
    kek_id: str
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    replaced_key_file: str | None = None
    replica_errors: list[str] = field(default_factory=list)
    #: keyring copies (replica: model) that do not open with the new KEK yet: until this is
    #: empty the old KEK must not be destroyed
    old_key_needed_by: list[str] = field(default_factory=list)
    #: the configured key file, left holding the old KEK because a copy still needs it
    kept_old_key_file: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "kek_id": self.kek_id,
            "models": self.models,
            "replaced_key_file": self.replaced_key_file,
            "replica_errors": self.replica_errors,
            "old_key_needed_by": self.old_key_needed_by,
            "kept_old_key_file": self.kept_old_key_file,
            "seconds": self.seconds,
        }


# ---------------------------------------------------------------- choosing the new KEK


def _new_key_file(path: Path) -> LocalFileKeyProvider:
    """The key file at ``path``, created (0600) unless a previous run left it there."""
    if path.exists():
        return LocalFileKeyProvider(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return LocalFileKeyProvider.create(path)


def _target(
    vault: Versions, model: str | None, new_provider: Mapping[str, Any] | None
) -> tuple[KeyProvider, dict[str, Any], Path | None]:
    """(new provider, its config, the configured key file to rename it over at the end)."""
    if new_provider is not None:
        config = dict(new_provider)
        if config.get("type") == "local_file":
            return _new_key_file(Path(str(config["path"])).expanduser()), config, None
        return open_key_provider(config), config, None
    configured = vault.keys.configured_config()
    kind = configured.get("type")
    if kind == "local_file":
        current = Path(str(configured["path"])).expanduser()
        if model is None:  # every model: the configured file itself gets the new key at the end
            staged = current.with_name(current.name + ".new")
            provider = _new_key_file(staged)
            return provider, {"type": "local_file", "path": str(staged)}, current
        path = current.with_name(f"kek-{uuid.uuid4().hex[:12]}.key")
        return _new_key_file(path), {"type": "local_file", "path": str(path)}, None
    if kind == "aws_kms":  # same KMS key: Encrypt wraps under its current backing key
        return vault.keys.open_provider(configured), configured, None
    raise ConfigError(
        f"key provider {kind!r} cannot make a new key by itself: give the new key "
        "(--new-key-file, --new-key-env, --new-passphrase-env or --new-kms-key-id)"
    )


def _needing_old_key(vault: Versions, target: KeyProvider) -> list[str]:
    """Every keyring copy, on every replica, that is not wrapped under ``target``, cannot be
    read, or is missing where the primary has one: while one is left, destroying the old KEK
    could lose that model on that replica."""
    backends: list[tuple[str, Backend]] = (
        [(n, vault.replicas.backend(n)) for n in vault.replicas.names]
        if vault.replicas is not None
        else [(vault.settings.storage_type, vault.backend)]
    )
    wanted = set(vault.keys.models())
    out: list[str] = []
    for name, backend in backends:
        try:
            listed = {m for i in backend.list(KEYS) if (m := parse_keyring_key(i.key)) is not None}
        except StorageError as exc:
            out.append(f"{name}: unreachable ({exc})")
            continue
        for m in sorted(wanted | listed):
            try:
                rec = KeyringRecord.from_bytes(backend.get(keyring_key(m)), m)
            except WeightvaultError as exc:
                out.append(f"{name}: {m}: no readable copy ({exc})")
                continue
            if (rec.id_key.provider, rec.kek_id) != (target.name, target.key_id):
                out.append(f"{name}: {m}")
    return out


def _models(vault: Versions, model: str | None, reencrypt: bool) -> list[str]:
    keyed = set(vault.keys.models())
    if model is not None:
        check_model_name(model)
        if model not in keyed:
            if not reencrypt:
                raise InvalidInputError(
                    f"model {model!r} is not encrypted; `keys rotate {model} --reencrypt` encrypts it"
                    " (with encryption enabled)"
                )
            if not vault.settings.encryption.enabled:
                raise ConfigError(f"model {model!r} is not encrypted and encryption is not enabled")
            vault.index.list_versions(model)  # ModelNotFoundError for a model that does not exist
        return [model]
    if reencrypt and vault.settings.encryption.enabled:
        keyed |= set(vault.index.list_model_names())
    return sorted(keyed)


# ---------------------------------------------------------------- rotate


def rotate(
    vault: Versions,
    model: str | None = None,
    *,
    reencrypt: bool = False,
    new_provider: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RotateReport:
    started = time.perf_counter()
    models = _models(vault, model, reencrypt)
    keys = vault.keys
    if not models:  # nothing is encrypted: no key to replace
        return RotateReport(provider={}, kek_id="", seconds=time.perf_counter() - started)
    # Open every domain first: a key that cannot be unwrapped stops the rotation before any
    # keyring is rewritten or any new key made (the error names the provider).
    domains: dict[str, Domain] = {}
    for m in models:
        dom = keys.domain(m, refresh=True)
        if dom is not None:
            domains[m] = dom
    target, target_config, replace_file = _target(vault, model, new_provider)
    if replace_file is None:  # this home trusts the KEK it moves keyrings to (a staged file already is)
        keys.trust_provider(target_config)
    params = provider_params(target, target_config)
    report = RotateReport(provider=params, kek_id=target.key_id)
    same_kms_key = target_config.get("type") == "aws_kms" and new_provider is None
    old = keys.configured() if replace_file is not None else None

    def move(m: str, dom: Domain, to: KeyProvider, to_params: dict[str, Any], force: bool) -> None:
        entry = report.models.setdefault(m, {})
        entry.setdefault("kek_from", dom.record.kek_id)
        if not force and dom.record.kek_id == to.key_id and dict(dom.record.provider) == to_params:
            entry.setdefault("rewrapped", False)  # already there (a rerun)
        else:
            for attempt in range(3):  # keyring writes are conditional: a concurrent rewrite wins, we redo
                try:
                    dom, status = keys.rewrap(dom, to, to_params)
                    break
                except ConcurrentModificationError:
                    if attempt == 2:
                        raise
                    dom = keys.domain(m, refresh=True) or dom
            domains[m] = dom
            entry["rewrapped"] = True
            report.replica_errors += [f"{n}: {s}" for n, s in status.items() if s != "ok"]
        entry["kek_to"] = to.key_id

    for m, dom in list(domains.items()):
        move(m, dom, target, params, same_kms_key)
    if model is None:
        # keyrings created meanwhile (a first push of another model) are moved too, until none is left
        for _ in range(5):
            late = [m for m in keys.models() if m not in domains or domains[m].record.kek_id != target.key_id]
            if not late:
                break
            for m in late:
                dom = keys.domain(m, refresh=True)
                if dom is not None:
                    move(m, dom, target, params, False)
    report.old_key_needed_by = _needing_old_key(vault, target)
    if replace_file is not None and old is not None:
        if report.old_key_needed_by:
            # the old KEK stays where it is until every keyring everywhere opens with the new one
            report.kept_old_key_file = str(replace_file)
        else:
            staged = Path(str(target_config["path"]))
            os.replace(staged, replace_file)
            fsync_dir(replace_file.parent)
            report.replaced_key_file = str(replace_file)
            keys.forget_providers()
            final = keys.configured()
            params = provider_params(final, keys.configured_config())
            report.provider = params
            for m, dom in list(domains.items()):  # same keys, the path they are found at now
                move(m, dom, final, params, True)
            # a keyring a push made under the old KEK after our last look is moved with the old
            # key still in memory (the push itself also rechecks the key file, see Vault._push_domain)
            for m in keys.models():
                rec = keys.record(m)
                if rec is not None and rec.kek_id == old.key_id:
                    move(m, keys.open_with(m, old), final, params, True)
            target = final
    if reencrypt:
        # re-encryption reuses live chunks like a push: a gc must not sweep meanwhile
        with holding(
            vault.primary,
            SHARED,
            stale_seconds=vault.settings.lock_stale_seconds,
            wait_seconds=vault.settings.lock_wait_seconds,
        ):
            vault.refresh()
            for m in models:
                dom = domains.get(m)
                if dom is None:  # a plain model encrypted now: its existing refs get authenticated
                    dom = keys.create(m, target, params)
                    vault.adopt_refs(m, dom)
                report.models.setdefault(m, {"kek_from": None, "rewrapped": False, "kek_to": target.key_id})
                report.models[m]["reencrypt"] = reencrypt_model(vault, dom, target, progress).to_json()
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------- re-encrypt one model


@dataclass(frozen=True, slots=True)
class _FileJob:
    sha256: str
    size: int
    path: str
    #: the recipe the file's manifest entry carries inline (a plain version's small file), if any
    inline: FileRecipe | None = None


def _versions(vault: Versions, model: str) -> list[VersionRecord]:
    try:
        return vault.index.list_versions(model)
    except ModelNotFoundError:  # a keyring whose model has no versions left
        return []


def _live_files(vault: Versions, model: str) -> list[_FileJob]:
    jobs: dict[str, _FileJob] = {}
    for rec in _versions(vault, model):
        for f in vault._manifest(rec.commit).files:
            job = jobs.setdefault(f.sha256, _FileJob(f.sha256, f.size, f.path, f.inline_recipe()))
            if job.inline is None and f.chunks is not None:
                jobs[f.sha256] = _FileJob(f.sha256, f.size, job.path, f.inline_recipe())
    return sorted(jobs.values(), key=lambda j: -j.size)


def live_slots(vault: Versions, model: str) -> dict[int, tuple[int, int]]:
    """slot -> (chunks, raw bytes) over the live versions of ``model`` (slot 0 = plain)."""
    out: dict[int, tuple[int, int]] = {}
    ids: set[bytes] = set()
    for job in _live_files(vault, model):
        ids.update(cid for cid, _ in vault._find_recipe(job.sha256, model, inline=job.inline)[1].chunks)
    for loc in vault.index.locate_chunks(list(ids)).values():
        n, b = out.get(loc.key_slot, (0, 0))
        out[loc.key_slot] = (n + 1, b + loc.raw_len)
    return out


class _Joined(io.RawIOBase):
    """The chunks of a file as one readable stream (to cut them again)."""

    def __init__(self, chunks: Iterator[bytes | memoryview]) -> None:
        self._chunks = chunks
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self._left:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._left = memoryview(nxt)
        n = min(len(buf), len(self._left))
        buf[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


class _Converter:
    def __init__(self, vault: Versions, dom: Domain, slot: int, progress: Callable[[int], None]) -> None:
        self.vault = vault
        self.dom = dom
        self.slot = slot
        self.encoder = BlobEncoder(vault.settings.compression, dom.ciphers[slot], slot)
        self.chunker = vault.chunker_for(dom)
        # sealed chunks hashed against their ids too before their old key is dropped
        self.reader = vault._reader_for(dom.model).rehashing()
        self.sink = PackSink(
            vault.primary,
            vault.index,
            default_temp_factory(vault.primary, vault.settings.home / "tmp"),
            vault.settings.pack_size,
            on_sealed=vault.journal_pack,  # other machines learn of the new packs
        )
        self.progress = progress
        self.lock = threading.Lock()
        self.recipes: list[FileRecipe] = []
        self.report = ReencryptReport(slot)

    def _layout_prefix(self, job: _FileJob, ids: list[bytes], src: SourceFile) -> None:
        first = self.reader.chunks(ids[:4], f"{self.dom.model}:{job.path}")
        layout = layout_from_chunks(job.path, job.size, first)
        if layout is not None:
            self.encoder.set_layout(src, layout)

    def _write(self, cid: bytes, raw: bytes | memoryview, offset: int, src: SourceFile) -> None:
        if not self.sink.claim(cid):
            return
        view = memoryview(raw)
        codec, stored, slot = self.encoder(view, cid, offset, src)
        self.sink.add(cid, stored, len(view), codec, slot)
        with self.lock:
            self.report.chunks_written += 1

    def file(self, job: _FileJob) -> None:
        vault, dom = self.vault, self.dom
        name, recipe = vault._find_recipe(job.sha256, dom.model, inline=job.inline)
        keyed = name != job.sha256
        ids = [cid for cid, _ in recipe.chunks]
        where = vault.index.locate_chunks(ids)
        what = f"{dom.model}:{job.path}"
        src = SourceFile(job.path, Path(f"/reencrypt/{job.sha256}/{job.path}"), job.size, 0, 0)
        if keyed and all(cid in where and where[cid].key_slot == self.slot for cid in ids):
            with self.lock:
                self.report.files += 1
            return  # done by an earlier (interrupted) run
        self._layout_prefix(job, ids, src)
        new_chunks: list[tuple[bytes, int]] = []
        offset = 0
        chunks: Iterator[bytes | memoryview] = self.reader.chunks(ids, what)
        if not keyed:  # cut again with the domain's keyed chunker: plain boundaries are public
            chunks = self.chunker.chunks(_Joined(chunks))
        for raw in chunks:
            n = len(raw)
            cid = dom.chunk_id(raw)
            new_chunks.append((cid, n))
            if vault.index.chunk_slot(cid) != self.slot:
                self._write(cid, raw, offset, src)
            offset += n
            self.progress(n)
        new = FileRecipe(job.sha256, job.size, tuple(new_chunks))
        with self.lock:
            self.report.files += 1
            self.report.bytes_read += job.size
            if not keyed:
                self.report.files_rekeyed += 1
                self.recipes.append(new)

    def run(self, jobs: list[_FileJob]) -> None:
        try:
            with ThreadPoolExecutor(self.vault.settings.workers, thread_name_prefix="wv-reencrypt") as pool:
                for fut in [pool.submit(self.file, j) for j in jobs]:
                    fut.result()
            self.sink.flush()
        except BaseException:
            self.sink.abort()
            raise
        finally:
            self.vault.index.release_probes()
        self.report.bytes_written += self.sink.bytes_written
        self.report.packs_written += len(self.sink.packs_written)
        # recipes only once every chunk they name is durable and indexed (the push's order)
        for recipe in self.recipes:
            name = self.dom.recipe_name(recipe.sha256)
            body = self.dom.seal_recipe(name, recipe.to_bytes())
            self.vault.store.put_recipe_object(name, body)
            self.vault.index.put_recipe(name, recipe.size, body)
        self.recipes.clear()


def reencrypt_model(
    vault: Versions, dom: Domain, provider: KeyProvider, progress: Callable[[int], None] | None = None
) -> ReencryptReport:
    keys = vault.keys
    target = dom.record.reencrypt_target
    if target is None or target not in dom.ciphers:
        dom, target = keys.add_data_key(dom, provider)
    tick = progress or (lambda n: None)
    total = ReencryptReport(target)
    for _ in range(_SETTLE_ROUNDS):
        conv = _Converter(vault, keys.domain(dom.model) or dom, target, tick)
        conv.run(_live_files(vault, dom.model))
        r = conv.report
        total.files = r.files
        total.files_rekeyed += r.files_rekeyed
        total.chunks_written += r.chunks_written
        total.bytes_read += r.bytes_read
        total.bytes_written += r.bytes_written
        total.packs_written += r.packs_written
        if set(live_slots(vault, dom.model)) <= {target}:
            break
    else:
        raise ConcurrentModificationError(
            f"versions of {dom.model} sealed under old data keys kept appearing during the re-encryption "
            "(pushes running meanwhile); run it again"
        )
    # secondaries get the new packs and recipes before the old keys go from their keyrings
    if vault.replicas is not None and vault.settings.sync_enabled:
        for rec in _versions(vault, dom.model):
            vault._replicate_version(rec)
    current = keys.domain(dom.model, refresh=True) or dom
    keep = tuple(s for s in current.record.slots if s.slot == target)
    total.dropped_slots = sorted(s.slot for s in current.record.slots if s.slot != target)
    keys.update(current, slots=keep, reencrypt_target=None)
    return total
