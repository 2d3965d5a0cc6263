"""Reading versions: their records in the index, their manifests and recipes (sealed ones opened
with the model's keys), the objects a version is made of, and pulling its files."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from weightvault.cas.chunker import Chunker
from weightvault.cas.pack import decode_table
from weightvault.core import layout
from weightvault.core.errors import (
    ConfigError,
    CorruptObjectError,
    FormatError,
    IntegrityError,
    MissingObjectError,
    WeightvaultError,
)
from weightvault.core.manifest import FileEntry, FileRecipe, Manifest
from weightvault.core.names import check_model_name
from weightvault.core.revision import Ref, parse_ref
from weightvault.core.types import (
    ModelInfo,
    PullResult,
    VersionInfo,
)
from weightvault.registry.index import RegistryIndex, VersionRecord
from weightvault.storage.backend import Backend
from weightvault.vault import aliasseq, refauth
from weightvault.vault.cachefill import fills_cache
from weightvault.vault.codecs import BlobCodec
from weightvault.vault.config import Settings
from weightvault.vault.following import Following
from weightvault.vault.keyring import (
    KEYS,
    Domain,
    KeyringRecord,
    is_sealed_manifest,
    keyring_key,
    parse_keyring_key,
    sealed_manifest_model,
)
from weightvault.vault.placement import Placer, check_link_mode
from weightvault.vault.pull import (
    PullCounters,
    build_version,
    plan,
    pull_result,
    select_files,
    unmatched_includes,
)
from weightvault.vault.reader import ChunkReader
from weightvault.vault.state import Progress, ProgressStart
from weightvault.vault.store import RefSigner
from weightvault.vault.trust import KeyringTrustError

logger = logging.getLogger(__name__)


class Records(Following):
    """A vault that reads versions; the store opens sealed manifests and checks refs through it."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend | None = None,
        index: RegistryIndex | None = None,
        *,
        access_control: bool = False,
    ) -> None:
        super().__init__(settings, backend, index, access_control=access_control)
        self.store.manifest_opener = self._open_sealed_manifest
        self.store.ref_checker = self._check_ref

    def _info(self, rec: VersionRecord, with_files: bool = False) -> VersionInfo:
        files: tuple[FileEntry, ...] = ()
        lineage: tuple[dict[str, Any], ...] = ()
        safety: dict[str, dict[str, Any]] = {}
        if with_files:
            manifest = self._manifest(rec.commit)
            files = tuple(sorted(manifest.files, key=lambda f: f.path))
            lineage = tuple(dict(x) for x in manifest.lineage)
            safety = {k: dict(v) for k, v in manifest.safety.items()}
        return VersionInfo(
            model=rec.model,
            label=rec.label,
            commit=rec.commit,
            created=rec.created,
            message=rec.message,
            metadata=rec.metadata,
            total_size=rec.total_size,
            file_count=rec.file_count,
            parent=rec.parent,
            aliases=rec.aliases,
            files=files,
            lineage=lineage,
            safety=safety,
        )

    def _manifest(self, commit: str) -> Manifest:
        body = self.index.get_manifest(commit)
        if body is not None:
            return self.store.parse_manifest(commit, body)
        return self.store.get_manifest(commit)

    def _manifest_sealed(self, commit: str) -> bool:
        """Whether the version was pushed encrypted (its manifest is sealed)."""
        body = self.index.get_manifest(commit)
        if body is None:
            body = self.backend.get(layout.manifest_key(commit))
        return is_sealed_manifest(body)

    def _open_sealed_manifest(self, commit: str, data: bytes) -> Manifest:
        """A sealed manifest, opened with the keys of the model it names and checked to be that
        model's (a manifest moved to another model, or to another commit id, fails)."""
        model = sealed_manifest_model(data)
        dom = self.keys.domain(model)
        if dom is None:
            raise IntegrityError(f"manifest {commit} is sealed for model {model}, which has no keys")
        manifest = Manifest.from_bytes(dom.open_manifest(commit, data))
        if manifest.model != model:
            raise IntegrityError(f"manifest {commit} is sealed for {model} but names model {manifest.model}")
        return manifest

    def _reader_for(self, model: str) -> ChunkReader:
        """The chunk reader of ``model``'s domain (the store-wide one for a plain model).

        Opening the domain unwraps its keys, so a wrong or missing key fails here, before
        anything is read or written.
        """
        dom = self.keys.domain(model)
        if dom is None:
            return self.reader
        with self._readers_lock:
            reader = self._readers.get(model)
            if reader is None or reader.codec.domain is not dom:
                codec = BlobCodec(dom, refresh=lambda: self.keys.domain(model, refresh=True))
                reader = self.reader.for_codec(codec)
                self._readers[model] = reader
            return reader

    def _read_checked(self, key: str, check: Callable[[bytes], bool]) -> bytes:
        """An object from the store; with replicas, the first copy that passes ``check``."""
        if self.replicas is not None:
            return self.replicas.read(key, verify=check).data
        return self.backend.get(key)

    def _sealed_recipe_body(self, dom: Domain, name: str) -> bytes | None:
        body = self.index.get_recipe(name)
        if body is not None:
            return body

        def opens(data: bytes) -> bool:
            try:
                dom.open_recipe(name, data)
            except CorruptObjectError:
                return False
            return True

        try:
            return self._read_checked(layout.recipe_key(name), opens)
        except MissingObjectError:
            return None

    def _find_recipe(
        self,
        sha256: str,
        model: str | None,
        *,
        allow_plain: bool = True,
        inline: FileRecipe | None = None,
    ) -> tuple[str, FileRecipe]:
        """(name, recipe) of a file of ``model``: its keyed recipe when the model is encrypted and
        has one, else ``inline`` (the recipe its manifest entry carries), else the plain recipe
        (versions pushed before encryption was turned on). A version pushed encrypted
        (``allow_plain=False``) accepts only its keyed recipe."""
        dom = self.keys.domain(model) if model is not None else None
        if dom is not None:
            name = dom.recipe_name(sha256)
            body = self._sealed_recipe_body(dom, name)
            if body is not None:
                recipe = FileRecipe.from_bytes(dom.open_recipe(name, body))
                if recipe.sha256 != sha256:
                    raise FormatError(f"recipe {name} of {model} names another file")
                return name, recipe
            if not allow_plain:
                raise MissingObjectError(f"the sealed recipe of file {sha256} of {model} is missing")
        if inline is not None:
            return sha256, inline
        body = self.index.get_recipe(sha256)
        if body is not None:
            return sha256, FileRecipe.from_bytes(body)
        try:
            return sha256, self.store.get_recipe(sha256)
        except MissingObjectError:
            raise MissingObjectError(f"recipe for file {sha256} is missing from the store") from None

    def _recipe(
        self,
        sha256: str,
        model: str | None = None,
        *,
        allow_plain: bool = True,
        inline: FileRecipe | None = None,
    ) -> FileRecipe:
        return self._find_recipe(sha256, model, allow_plain=allow_plain, inline=inline)[1]

    def _entry_recipe(self, entry: FileEntry, model: str, *, allow_plain: bool = True) -> FileRecipe:
        """The recipe a read of ``entry`` (a file of a version of ``model``) uses."""
        return self._recipe(entry.sha256, model, allow_plain=allow_plain, inline=entry.inline_recipe())

    def _check_ref(self, model: str, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Refuse a ref from the store that is not authentic (encrypted models: its MAC, and for
        an alias its sequence number against this home's pin); returns the ref as it must be read
        when that differs (``refauth.check``). A ref refused by the domain this process opened
        earlier is checked once more against the keyring in the store (another machine may have
        moved the model to a new domain since)."""
        dom = self.keys.domain(model)
        try:
            moved = refauth.check(dom, model, kind, name, body)
        except refauth.RefAuthError:
            fresh = self.keys.domain(model, refresh=True)
            if fresh is None or dom is None or fresh.record.generation == dom.record.generation:
                raise
            dom = fresh
            moved = refauth.check(fresh, model, kind, name, body)
        if kind == "alias" and dom is not None:
            aliasseq.check(self, model, name, moved or body)
        return moved

    @staticmethod
    def _signer(dom: Domain | None) -> RefSigner | None:
        if dom is None:
            return None
        return lambda kind, body: refauth.sign(dom, kind, body)

    def adopt_refs(self, model: str, dom: Domain) -> None:
        """A model that just got its keys: authenticate the refs of its existing (plain) versions
        and aliases from this machine's index, so readers accept them and nothing else."""
        try:
            versions = self.index.list_versions(model)
        except WeightvaultError:
            return
        signer = self._signer(dom)
        for rec in versions:
            self.store.create_version_ref(model, rec.label, rec.commit, rec.created, signer, replace=True)
            for alias in rec.aliases:
                seq = aliasseq.next_seq(self, model, alias)
                self.store.set_alias_ref(model, alias, rec.label, rec.commit, signer, seq)

    def chunker_for(self, dom: Domain | None) -> Chunker:
        """The store's chunker for a plain model; one keyed with the domain's secret seed for an
        encrypted one (chunk boundaries then reveal nothing about a known file)."""
        if dom is None:
            return self.chunker
        return Chunker(self.store.config.chunking, seed=dom.chunker_seed)

    def shows_encryption(self, model: str) -> bool:
        """Whether the store shows ``model`` (which has no keyring) to be encrypted: a few reads,
        not one per version (``Store.shows_encryption``)."""
        return self.store.shows_encryption(model, self.index.latest_label(model))

    def _push_domain(self, model: str) -> Domain | None:
        """The domain a push of ``model`` seals under: its own, or a new one when encryption is on."""
        dom = self.keys.domain(model)
        if dom is None and self.shows_encryption(model):
            # no keyring, no pin here, but the store says the model is encrypted
            raise KeyringTrustError(
                f"model {model} is encrypted (its refs are authenticated or a keyring claim is left) "
                "but its keyring is missing from the store; refusing to push it as a plain model or "
                "under new keys"
            )
        if dom is None and self.settings.encryption.enabled:
            key_file = self.settings.default_key_file
            existed = key_file.exists()
            dom = self.keys.recheck_new_domain(self.keys.create(model))
            self.adopt_refs(model, dom)
            if not existed and key_file.exists():
                logger.warning(
                    "created the key file %s (mode 0600) that encrypts %s; back it up: without it "
                    "the encrypted models cannot be read",
                    key_file,
                    model,
                )
        return dom

    def model_names(self) -> list[str]:
        """Every model's name, sorted (cheap: no versions are read)."""
        return self.index.list_model_names()

    def list_models(self) -> list[ModelInfo]:
        self._refresh_to_read()
        return [self._model(name) for name in self.index.list_model_names()]

    def model(self, name: str) -> ModelInfo:
        check_model_name(name)
        self._refresh_to_read()
        return self._model(name)

    def _model(self, name: str) -> ModelInfo:
        versions = tuple(self._info(r) for r in self.index.list_versions(name))
        return ModelInfo(name, self.index.model_created(name), versions, self.index.aliases(name))

    def list_versions(self, model: str) -> list[VersionInfo]:
        check_model_name(model)
        self._refresh_to_read()
        return [self._info(r) for r in self.index.list_versions(model)]

    def show(self, ref: str | Ref) -> VersionInfo:
        r = parse_ref(ref) if isinstance(ref, str) else ref
        self._refresh_to_read()
        try:
            return self._info(self._lookup(r.model, r.revision), with_files=True)
        except IntegrityError:
            if not self.follow_domain_move(r.model):
                raise
            return self._info(self._lookup(r.model, r.revision), with_files=True)

    def resolve(self, ref: str | Ref) -> VersionInfo:
        r = parse_ref(ref) if isinstance(ref, str) else ref
        self._refresh_to_read()
        return self._info(self._lookup(r.model, r.revision))

    def pull(
        self,
        ref: str | Ref,
        dest: Path | str,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        force: bool = False,
        provider: str | None = None,
        progress: Progress | None = None,
        on_start: ProgressStart | None = None,
        link_mode: str | None = None,
    ) -> PullResult:
        """``link_mode`` (default: the setting) says how cached files are placed: see ``placement``."""
        started = time.perf_counter()
        mode = check_link_mode(link_mode or self.settings.link_mode)
        if provider is not None:
            if self.replicas is None:
                if provider != self.settings.storage_type:
                    raise ConfigError(
                        f"no replica named {provider!r}: this vault has only {self.settings.storage_type!r}"
                    )
            else:
                self.replicas.backend(provider)  # unknown names are a clear error
        if self.replicas is not None:
            self.replicas.drain_failures()
        info = self.show(ref)
        reader = self._reader_for(info.model)  # opens the keys before anything is written
        reader.prefer = provider
        model = info.model
        dest_path = Path(dest).absolute()
        files = select_files(info.files, include, exclude)
        unmatched = unmatched_includes(info.files, include)
        planned = plan(dest_path, files, force, self.cache)
        placer = Placer(
            mode, self.settings.link_fallback, self.cache, dest_path, private=self._cache_private(model)
        )
        placer.check()
        fill = fills_cache(self.settings.cache_fill, remote=self._reads_remote(provider), placer=placer)
        if on_start:
            on_start(sum(p.entry.size for p in planned))
        allow_plain = not self._manifest_sealed(info.commit)
        plain = self.keys.domain(model) is None

        def place() -> PullCounters:
            # recipes of the files to build: inline ones from the manifest, the others in one pass
            # over the index
            known = {p.entry.sha256: r for p in planned if plain and (r := p.entry.inline_recipe())}
            rest = [p.entry.sha256 for p in planned if plain and p.entry.sha256 not in known]
            bodies = self.index.get_recipes(rest) if rest else {}
            known.update({sha: FileRecipe.from_bytes(body) for sha, body in bodies.items()})
            inline = {p.entry.sha256: r for p in planned if (r := p.entry.inline_recipe())}

            def recipe_for(sha: str) -> FileRecipe:
                found = known.get(sha)
                if found is not None:
                    return found
                return self._recipe(sha, model, allow_plain=allow_plain, inline=inline.get(sha))

            return build_version(
                dest_path if files else None,  # an empty selection creates nothing
                planned,
                known,
                recipe_for,
                reader,
                self.cache,
                self.settings.workers,
                progress or (lambda n: None),
                placer,
                fill=fill,
            )

        try:
            counters = place()
        except MissingObjectError:
            # another machine's gc may have repacked what our index located: follow the store
            # and try once more
            if not self.refresh().applied:
                raise
            planned = plan(dest_path, files, force, self.cache)
            counters = place()
        if self.cache is not None:
            self.cache.prune(keep=frozenset(p.entry.sha256 for p in planned))
        fallbacks = tuple(
            f"{f.replica}: {f.key} {f.kind.value}"
            for f in (self.replicas.drain_failures() if self.replicas else [])
        )
        return pull_result(info, files, counters, started, unmatched, placer, fallbacks)

    def _reads_remote(self, provider: str | None) -> bool:
        """Whether a pull's chunks come over a network: from the store it reads first (``provider``,
        else the primary) unless that is a folder on this machine (or a test's memory store)."""
        from weightvault.storage.local import LocalBackend
        from weightvault.storage.memory import MemoryBackend

        backend = self.replicas.backend(provider) if self.replicas is not None and provider else self.primary
        return not isinstance(backend, LocalBackend | MemoryBackend)

    def _cache_private(self, model: str) -> bool:
        """Whether ``model``'s pulled plaintext must be cached for this user only: it is encrypted."""
        return self.keys.domain(model) is not None

    def version_keys(self, rec: VersionRecord) -> list[str]:
        """Every object a version needs, data first and the ref last (a replica then shows it only
        when complete); an encrypted model's keyring comes first."""
        manifest = self._manifest(rec.commit)
        entries = {f.sha256: f for f in manifest.files}
        found = {
            sha: self._find_recipe(sha, rec.model, inline=f.inline_recipe()) for sha, f in entries.items()
        }
        chunk_ids = {cid for _, recipe in found.values() for cid, _ in recipe.chunks}
        packs = sorted(self.index.pack_ids_for_chunks(chunk_ids))
        keys = [keyring_key(rec.model)] if self.keys.has_keyring(rec.model) else []
        keys += [layout.pack_key(p) for p in packs] + [layout.index_key(p) for p in packs]
        # an inline recipe has no object (it travels in the manifest)
        objects = {n for sha, (n, _) in found.items() if entries[sha].chunks is None or n != sha}
        keys += [layout.recipe_key(name) for name in sorted(objects)]
        keys += [layout.manifest_key(rec.commit), layout.version_ref_key(rec.model, rec.label)]
        keys += [layout.alias_ref_key(rec.model, a) for a in rec.aliases]
        return keys

    def object_ok(self, key: str, data: bytes) -> bool:
        """Whether ``data`` is a good copy of the store object ``key`` (for repair): packs and
        sealed recipes are opened with the keys of the model they belong to."""
        name = layout.name_from_key(key)
        try:
            if key.startswith(layout.PACKS):
                return self._pack_ok(data)
            if key.startswith(layout.INDEX):
                decode_table(data)
                return True
            if key.startswith(layout.MANIFESTS):
                self.store.parse_manifest(name, data)
                return True
            if key.startswith(layout.RECIPES):
                if data.startswith(b"{"):
                    return FileRecipe.from_bytes(data).sha256 == name
                for dom in self._domains():
                    try:
                        dom.open_recipe(name, data)
                        return True
                    except CorruptObjectError:
                        continue
                return False
            if key.startswith(KEYS) and (model := parse_keyring_key(key)) is not None:
                opened = self.keys.domain(model)
                rec = KeyringRecord.from_bytes(data, model)
                if opened is not None:
                    rec.check_mac(opened.mac_key)
                return True
        except (IntegrityError, ValueError):
            return False
        return True

    def _domains(self) -> list[Domain]:
        return [d for m in self.keys.models() if (d := self.keys.domain(m)) is not None]

    def _pack_ok(self, data: bytes) -> bool:
        entries = decode_table(data)
        mv = memoryview(data)
        codecs = [BlobCodec()]
        if any(e.codec & 0x80 for e in entries):  # find the model whose keys open it
            codecs = [BlobCodec(d) for d in self._domains()]
        for codec in codecs:
            try:
                for e in entries:
                    blob = mv[e.offset : e.offset + e.stored_len]
                    raw = codec.decode(e.codec, blob, e.raw_len, e.chunk_id, e.key_slot)
                    if len(raw) != e.raw_len or codec.chunk_id_for(e.codec)(raw) != e.chunk_id:
                        return False
                return True
            except WeightvaultError:
                continue
        return False
