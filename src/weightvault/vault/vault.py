"""The one façade every interface uses. It knows nothing of transport: a remote client can
implement the same methods over REST.

It stands on layers that the operations share (``state``: what an open vault holds;
``following``: the index kept in step with the store; ``records``: reading versions;
``versions``: making them visible), and adds the verbs; the operation modules (gc, ingest,
rotation, …) work on those layers, never on this module."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightvault.cas.hashing import chunk_id
from weightvault.core import layout
from weightvault.core.errors import (
    ConfigError,
    ConflictError,
    InvalidInputError,
    MissingObjectError,
    NotFoundError,
    RevisionNotFoundError,
    StorageError,
    VersionExistsError,
    WeightvaultError,
)
from weightvault.core.manifest import FileEntry, FileRecipe, Manifest
from weightvault.core.names import check_label, check_model_name, check_new_name, check_relative_path
from weightvault.core.revision import Ref, parse_ref
from weightvault.core.types import (
    GcReport,
    PullResult,
    PushResult,
    RecoverReport,
    VerifyReport,
    VersionInfo,
)
from weightvault.registry.lostdata import PACK_ATTEMPTS, packs_keep_disappearing
from weightvault.storage.replica import ReplicaSet
from weightvault.vault import aliasseq as aliasseq_module
from weightvault.vault import gc as gc_module
from weightvault.vault import lineage as lineage_module
from weightvault.vault import recover as recover_module
from weightvault.vault import replication as replication_module
from weightvault.vault import safety as safety_module
from weightvault.vault import tensors as tensors_module
from weightvault.vault import verify as verify_module
from weightvault.vault.codecs import BlobEncoder
from weightvault.vault.config import load_settings
from weightvault.vault.keyring import (
    KEYS,
    Domain,
    parse_keyring_key,
    provider_params,
)
from weightvault.vault.locks import SHARED, holding
from weightvault.vault.packer import PackSink, default_temp_factory
from weightvault.vault.push import PushPipeline
from weightvault.vault.pushrecipes import put_push_recipes
from weightvault.vault.source import SourceFile, scan_source
from weightvault.vault.state import Progress, ProgressStart
from weightvault.vault.versions import Versions

if TYPE_CHECKING:
    from weightvault.vault import ingest as ingest_types
    from weightvault.vault.domains import NewDomainReport
    from weightvault.vault.earlyhash import EarlyHashes
    from weightvault.vault.rotation import RotateReport
    from weightvault.vault.stream import FileStream


@dataclass(frozen=True)
class _NewVersion:
    """What a push says about the version it makes, besides its files."""

    model: str
    parent: str | None
    message: str
    metadata: dict[str, str]
    lineage: tuple[dict[str, Any], ...]
    safety: Any


@dataclass
class _Staged:
    """A push's data, written and durable, before its ref makes it a version."""

    pipeline: PushPipeline
    sink: PackSink
    slot: int
    recipe_names: list[str]
    manifest: Manifest
    commit: str
    body: bytes
    packs: set[str]
    #: the latest version, when it already holds exactly these files (nothing is committed)
    same: VersionInfo | None = None


class Vault(Versions):
    """Push, pull, list, show, delete, verify, gc and recover model versions."""

    @classmethod
    def open(
        cls,
        path: Path | str | None = None,
        *,
        config: Path | str | None = None,
        token: str | None = None,
        **overrides: Any,
    ) -> Vault:
        """Open (creating if needed) the vault at ``path``, ``$WEIGHTVAULT_HOME`` or ``~/.weightvault``.

        This is the embedded vault only: a server URL (``http(s)://``, or ``$WEIGHTVAULT_SERVER``
        when no path is given) is opened by ``weightvault.Vault.open``, which sits above both this
        façade and the remote client; here it is refused rather than taken for a folder.
        """
        import os

        target = path if path is not None else os.environ.get("WEIGHTVAULT_SERVER") or None
        if isinstance(target, str) and target.startswith(("http://", "https://")):
            raise ConfigError(f"{target} is a server: open it with weightvault.Vault.open")
        if token is not None:
            raise ConfigError("a token is for a server URL; a local vault needs none")
        return cls(load_settings(path, config, **overrides))

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- push -----------------------------------------------------------------------------------

    def push(
        self,
        model: str,
        source: Path | str | Sequence[SourceFile],
        *,
        version: str | None = None,
        message: str = "",
        metadata: dict[str, str] | None = None,
        lineage: Sequence[dict[str, Any]] = (),
        parent: str | None = None,
        allow_empty: bool = False,
        default_ignores: bool = True,
        base: str | None = None,
        refuse_unsafe: bool = False,
        progress: Progress | None = None,
        on_start: ProgressStart | None = None,
        early_hashes: EarlyHashes | None = None,
    ) -> PushResult:
        """Store a new version of ``model`` from ``source`` (a folder, a file, or files already
        scanned).

        Files equal to the latest version's make no new version (``unchanged`` in the result,
        which names that version) unless an explicit ``version`` label is asked for. An empty
        source is refused unless ``allow_empty``; VCS and cache folders are skipped unless
        ``default_ignores`` is False (``source.DEFAULT_IGNORES``). ``base`` (MODEL@REV) links the
        version to the one it was fine-tuned from (a PEFT adapter's config does so by itself).
        Malformed safetensors files are refused, and with ``refuse_unsafe`` (or the setting
        ``refuse_unsafe_pickles``) dangerous pickles; nothing is written in either case.
        ``early_hashes``: SHA-256s of the source's large files already being computed (the
        command line starts them before the vault is open, ``vault.earlyhash``); the push takes
        each one its rules allow and hashes every other file itself. The caller closes it.
        """
        started = time.perf_counter()
        check_model_name(model)
        if version is not None:
            check_new_name(version)
            self.refresh()
            if self.index.label_exists(model, version):  # before any output (checked again below)
                raise VersionExistsError(f"version {model}@{version} already exists")
        seen_ns = time.time_ns()  # before any stat: the stat cache's "racily clean" rule needs it
        if isinstance(source, Path | str):
            files = scan_source(source, default_ignores=default_ignores)
        else:
            files = list(source)
        if not files and not allow_empty:
            raise InvalidInputError(
                f"source {source} has no files to push"
                + (" (VCS and cache folders are skipped)" if default_ignores else "")
                + "; use --allow-empty (allow_empty=True) to make an empty version"
            )
        safety = safety_module.inspect_files(
            files, refuse_unsafe or self.settings.refuse_unsafe_pickles, known=self.stat_cache.checked(files)
        )
        lineage = [*lineage, *lineage_module.base_edges(self, files, base)]
        had_domain = self.keys.domain(model) is not None
        dom = self._push_domain(model)  # keys first: a key problem stops the push before any write
        if on_start:
            on_start(sum(f.size for f in files))
        # The shared lock keeps a gc from deleting anything between our dedup probes and our
        # commit (docs/format.md, "Locks and online gc").
        with holding(
            self.primary,
            SHARED,
            stale_seconds=self.settings.lock_stale_seconds,
            wait_seconds=self.settings.lock_wait_seconds,
        ):
            self.refresh()
            if version is not None and self.index.label_exists(model, version):
                raise VersionExistsError(f"version {model}@{version} already exists")
            if parent is None:
                with contextlib.suppress(Exception):
                    parent = self.index.resolve(model, None).commit
            new = _NewVersion(model, parent, message, dict(metadata or {}), tuple(lineage), safety)
            check_same = version is None and (dom is None or had_domain)
            for _attempt in range(PACK_ATTEMPTS):
                staged = self._push_data(new, files, dom, progress, check_same, seen_ns, early_hashes)
                if staged.same is not None:
                    return PushResult(
                        version=staged.same,
                        bytes_read=staged.pipeline.bytes_read,
                        bytes_written=staged.sink.bytes_written,
                        chunks_total=staged.pipeline.chunks_total,
                        chunks_new=staged.pipeline.chunks_new,
                        seconds=time.perf_counter() - started,
                        unchanged=True,
                    )
                missing = [p for p in staged.packs if not self.primary.exists(layout.pack_key(p))]
                if not missing:
                    break
                self.index.drop_packs(missing)  # the store lost them: write their chunks again
            else:
                raise packs_keep_disappearing(missing[0])
            if dom is not None:
                self._check_slot_held(model, staged.slot)
            rec = self._commit_version(
                model,
                version,
                staged.commit,
                signer=self._signer(dom),
                parent=parent,
                message=message,
                metadata=metadata,
                total_size=staged.manifest.total_size,
                file_count=len(files),
                manifest=staged.body,
                required_packs=staged.packs,
                required_recipes=set(staged.recipe_names),
            )
        replication = self._replicate_version(rec)
        self.follow_own_changes()
        return PushResult(
            version=self._info(rec),
            bytes_read=staged.pipeline.bytes_read,
            bytes_written=staged.sink.bytes_written,
            chunks_total=staged.pipeline.chunks_total,
            chunks_new=staged.pipeline.chunks_new,
            seconds=time.perf_counter() - started,
            replication=replication,
        )

    def _push_data(
        self,
        new: _NewVersion,
        files: list[SourceFile],
        dom: Domain | None,
        progress: Progress | None,
        check_same: bool,
        seen_ns: int,
        early: EarlyHashes | None = None,
    ) -> _Staged:
        """Write what the store lacks of a push (packs, recipes, manifest); nothing is visible yet.
        With ``check_same``, files (and lineage) equal to the latest version's stop here (``same``)."""
        # the stat cache serves plain models only: an encrypted model's chunk ids and cut points
        # depend on its keys, which a machine-local table should not have to track
        scheme = f"plain:{self.store.config.store_id}:{self.chunker.params}" if dom is None else None
        cached = self.stat_cache.lookup(files, scheme) if scheme else {}
        workers = self.settings.workers
        to_read = sum(f.size for f in files if f.abspath not in cached)
        sink = PackSink(
            self.backend,
            self.index,
            default_temp_factory(self.backend, self.settings.home / "tmp"),
            self.settings.pack_size,
            on_sealed=self.journal_pack,
            # a pack per chunking thread once the push can fill one each; else one pack, not several
            per_thread=workers > 1 and to_read >= workers * self.settings.pack_size,
        )
        encoder: BlobEncoder | None = None
        slot = dom.active_slot if dom is not None else 0
        if dom is not None or self.settings.compression != "none":
            encoder = BlobEncoder(self.settings.compression, dom.ciphers[slot] if dom else None, slot)
        pipeline = PushPipeline(
            self.index,
            sink,
            self.chunker_for(dom),
            self.settings.workers,
            progress,
            encoder=encoder,
            chunk_id_fn=dom.chunk_id if dom is not None else chunk_id,
            usable_slots=dom.slots if dom is not None else None,
            encode_threads=self._encode_threads(files),
        )
        try:
            recipes = pipeline.run(files, cached, early=early)
        finally:
            self.index.release_probes()
        if scheme:
            self.stat_cache.record(
                ((f, r, seen_ns) for f, r in zip(files, recipes, strict=True) if f.abspath not in cached),
                scheme,
                new.safety,
            )
        entries = tuple(
            FileEntry.of(f.path, r, plain=dom is None) for f, r in zip(files, recipes, strict=True)
        )
        manifest = Manifest(
            model=new.model,
            files=entries,
            parent=new.parent,
            message=new.message,
            metadata=dict(new.metadata),
            lineage=new.lineage,
            safety=new.safety,
        )
        if check_same and new.parent is not None:
            same = self._same_files(new.model, new.parent, entries, new.lineage)
            if same is not None:
                return _Staged(pipeline, sink, slot, [], manifest, new.parent, b"", set(), same)
        recipe_names = self._put_recipes(recipes, dom, manifest)
        commit, body = self.store.put_manifest(manifest, dom)
        all_chunks = {cid for r in recipes for cid, _ in r.chunks}
        packs = self.index.pack_ids_for_chunks(all_chunks)
        return _Staged(pipeline, sink, slot, recipe_names, manifest, commit, body, packs)

    def _put_recipes(
        self, recipes: Sequence[FileRecipe], dom: Domain | None, manifest: Manifest
    ) -> list[str]:
        """``pushrecipes.put_push_recipes`` into this vault's store and index (one seam, so a
        test can act between a push's packs and its recipes)."""
        return put_push_recipes(self.store, self.index, recipes, dom, manifest)

    def _encode_threads(self, files: Sequence[Any]) -> int:
        """Threads of the push's encode stage: only when compressing, and only when one file is more
        than a worker's share of the push (else per-file threads already keep every core busy and the
        stage would only add a copy per chunk)."""
        if self.settings.compression == "none" or not files:
            return 0
        sizes = [f.size for f in files]
        return self.settings.workers if max(sizes) * self.settings.workers > sum(sizes) else 0

    def _check_slot_held(self, model: str, slot: int) -> None:
        """A re-encryption may have dropped the data key this push sealed under: then push again."""
        self.keys.check_slot_held(model, slot)

    # ---- streaming and chunk uploads (the server's transport works through these) --------------

    def open_file(self, ref: str | Ref, path: str, *, info: VersionInfo | None = None) -> FileStream:
        """One file of a version, readable as verified bytes from any offset (``info``: the
        version, when the caller has just shown it)."""
        from weightvault.vault.stream import FileStream

        check_relative_path(path)
        if info is None:
            info = self.show(ref)
        entry = next((f for f in info.files if f.path == path), None)
        if entry is None:
            raise NotFoundError(f"{info.model}@{info.label} has no file {path!r}")
        recipe = self._recipe(entry.sha256, info.model, inline=entry.inline_recipe())
        return FileStream(entry, recipe, self._reader_for(info.model), f"{info.model}/{path}")

    def missing_chunks(self, model: str, ids: Sequence[bytes]) -> list[bytes]:
        from weightvault.vault import ingest

        return ingest.missing_chunks(self, model, ids)

    def put_chunks(
        self, model: str, chunks: Iterable[tuple[bytes, bytes | memoryview]]
    ) -> ingest_types.ChunkBatchResult:
        from weightvault.vault import ingest

        return ingest.put_chunks(self, model, chunks, self.chunker.params.max_size)

    def file_recipe(self, model: str, sha256: str) -> FileRecipe:
        """How a file of ``model`` is rebuilt from chunks (to name it again in an uploaded version)."""
        return self._recipe(sha256, model)

    def file_present(self, sha256: str) -> bool:
        """Whether a file stored by ``put_file`` (or any plain push) is whole in the vault."""
        from weightvault.vault import ingest

        return ingest.file_present(self, sha256)

    def put_file(self, model: str, pieces: Iterable[bytes], sha256: str, size: int) -> FileRecipe:
        """Store a whole file sent as a byte stream, checked against ``sha256`` (see ``vault.ingest``)."""
        from weightvault.vault import ingest

        return ingest.put_file(self, model, pieces, sha256, size)

    def commit_upload(
        self, model: str, files: Sequence[ingest_types.UploadedFile], **kwargs: Any
    ) -> PushResult:
        """A version of files whose chunks were sent with ``put_chunks`` (see ``vault.ingest``)."""
        from weightvault.vault import ingest

        return ingest.commit(self, model, files, **kwargs)

    # ---- changing names -------------------------------------------------------------------------

    def delete(self, ref: str | Ref, *, primary_only: bool = False) -> VersionInfo:
        """Remove a version's label and its aliases (from every replica unless ``primary_only``);
        its data goes at the next ``gc``. The version is named by label or commit id: an alias is
        refused, as it only borrows the version. The result lists the aliases deleted with it."""
        r = parse_ref(ref) if isinstance(ref, str) else ref
        if r.revision is None:
            raise InvalidInputError(f"say which version of {r.model} to delete (MODEL@VERSION)")
        self.refresh()
        rec = self.index.resolve(r.model, r.revision)
        if r.revision in rec.aliases and r.revision != rec.label:
            # deleting through an alias would also take every other alias of that version
            raise InvalidInputError(
                f"{r.model}@{r.revision} is an alias of {r.model}@{rec.label} (commit {rec.commit}); "
                f"to remove the alias: weightvault alias rm {r.model} {r.revision}; to delete the "
                f"version: weightvault rm {r.model}@{rec.label}"
            )
        target = self.primary if primary_only else self.backend
        for alias in rec.aliases:
            target.delete(layout.alias_ref_key(r.model, alias))
            self.journal_ref(r.model, "alias", alias)
        target.delete(layout.version_ref_key(r.model, rec.label))
        self.journal_ref(r.model, "version", rec.label)
        self.index.delete_version(r.model, rec.label)
        return self._info(rec)

    def set_alias(self, model: str, alias: str, revision: str) -> VersionInfo:
        check_model_name(model)
        check_new_name(alias, "alias")
        self.refresh()
        rec = self.index.resolve(model, revision)
        if self.index.label_exists(model, alias):
            raise ConflictError(f"{alias!r} is a version label of {model}; an alias cannot shadow it")
        # the keyring as it is now: a ref signed with a domain replaced meanwhile would be refused
        dom = self.keys.domain(model, refresh=True)
        seq = aliasseq_module.next_seq(self, model, alias) if dom is not None else None
        self.store.set_alias_ref(model, alias, rec.label, rec.commit, self._signer(dom), seq)
        if seq is not None:
            aliasseq_module.pin_written(self, model, alias, seq)
        self.journal_ref(model, "alias", alias)
        if self.replicas is not None and self.settings.sync_enabled:  # aliases move: refresh them everywhere
            replication_module.replicate(self, self.replicas, [layout.alias_ref_key(model, alias)])
        self.index.set_alias(model, alias, rec.label)
        return self._info(self.index.resolve(model, rec.label))

    def accept_alias(self, model: str, alias: str) -> VersionInfo | None:
        """Take the store's ref of ``alias`` as it is, even older than one this home has seen (a
        store restored on purpose): forget the alias's pin and read the ref again."""
        check_model_name(model)
        check_label(alias, "alias")
        if aliasseq_module.accept(self, model, alias) is None:
            return None
        return self._info(self.index.resolve(model, alias))

    def remove_alias(self, model: str, alias: str) -> None:
        check_model_name(model)
        check_label(alias, "alias")
        self.refresh()
        if alias not in self.index.aliases(model):
            raise RevisionNotFoundError(f"alias {alias!r} of model {model!r} not found")
        self.store.delete_alias_ref(model, alias)
        self.journal_ref(model, "alias", alias)
        self.index.remove_alias(model, alias)

    # ---- maintenance ----------------------------------------------------------------------------

    def verify(
        self, ref: str | Ref | None = None, *, read_data: bool = False, progress: Progress | None = None
    ) -> VerifyReport:
        return verify_module.verify(self, ref, read_data=read_data, progress=progress)

    def gc(
        self, *, grace_seconds: float | None = None, dry_run: bool = False, force: bool = False
    ) -> GcReport:
        """Delete what no ref in the store reaches and repack sparse packs (``vault.gc``); with
        ``dry_run`` only report it; ``force`` deletes even while some objects cannot be parsed."""
        grace = self.settings.gc_grace_seconds if grace_seconds is None else grace_seconds
        return gc_module.collect(self, grace, dry_run=dry_run, force=force)

    def gc_status(self) -> dict[str, Any]:
        """What gc would work on: index totals and the packs condemned and waiting out the grace period."""
        out = self.index.stats()
        condemned = [p for p in self.index.packs() if p.condemned is not None]
        out["condemned_packs"] = len(condemned)
        out["condemned_bytes"] = sum(p.size for p in condemned)
        out["grace_seconds"] = self.settings.gc_grace_seconds
        return out

    def recover(self) -> RecoverReport:
        """Rebuild the index from the store (built aside, swapped in when complete); what could not
        be read is named in the report."""
        return recover_module.rebuild_index(self)

    # ---- formats and lineage --------------------------------------------------------------------

    def tensors(self, ref: str | Ref, path: str | None = None) -> list[tensors_module.TensorListing]:
        """The tensors of the version's safetensors files (or of ``path``), from their headers alone."""
        return tensors_module.list_tensors(self, ref, path)

    def lineage(self, ref: str | Ref) -> lineage_module.LineageReport:
        """What the version came from and what builds on it."""
        return lineage_module.lineage(self, ref)

    def pull_with_base(
        self, ref: str | Ref, dest: Path | str, base_dest: Path | str | None = None, **options: Any
    ) -> tuple[tuple[PullResult, Path], tuple[PullResult, Path]]:
        """Pull the version into ``dest`` and its base model into ``base_dest`` (default ``dest/base``)."""
        return lineage_module.pull_with_base(self, ref, dest, base_dest, **options)

    # ---- replicas -------------------------------------------------------------------------------

    def _replica_set(self) -> ReplicaSet:
        if self.replicas is None:
            raise ConfigError("this vault has a single store; configure replicas to sync or repair")
        return self.replicas

    def sync(self, progress: Progress | None = None) -> replication_module.SyncReport:
        """Copy to every secondary whatever the primary has and it lacks (keyrings first: they are
        replaced by rotation, so a secondary's copy is refreshed when it differs)."""
        replicas = self._replica_set()
        keyrings = self._sync_keyrings(replicas)
        report = replication_module.sync(self, replicas, progress)
        for name, (copied, errors) in keyrings.items():
            report.copied[name] = report.copied.get(name, 0) + copied
            report.errors.setdefault(name, []).extend(errors)
        return report

    def _sync_keyrings(self, replicas: ReplicaSet) -> dict[str, tuple[int, list[str]]]:
        primary = replicas.backend(replicas.primary_name)
        wanted = {i.key: primary.get(i.key) for i in primary.list(KEYS) if parse_keyring_key(i.key)}
        out: dict[str, tuple[int, list[str]]] = {}
        for name in replicas.names:
            if name == replicas.primary_name:
                continue
            dst = replicas.backend(name)
            copied, errors = 0, []
            for key, body in wanted.items():
                try:
                    try:
                        same = dst.get(key) == body
                    except MissingObjectError:
                        same = False
                    if not same:
                        dst.put(key, body)
                        copied += 1
                except StorageError as exc:
                    errors.append(f"{key}: {exc}")
            out[name] = (copied, errors)
        return out

    def repair(self, progress: Progress | None = None) -> replication_module.RepairReport:
        """Re-read every object of every version on every replica; rewrite bad copies from good ones."""
        return replication_module.repair(self, self._replica_set(), progress)

    def replica_status(self, ref: str | Ref) -> dict[str, bool | str]:
        """Per replica: whether the version is complete there."""
        r = parse_ref(ref) if isinstance(ref, str) else ref
        rec = self.index.resolve(r.model, r.revision)
        if self.replicas is None:
            return {self.settings.storage_type: True}
        keys = self.version_keys(rec)
        out: dict[str, bool | str] = {}
        for name in self.replicas.names:
            try:
                out[name] = not self.replicas.missing_on(name, keys)
            except StorageError as exc:
                out[name] = f"unreachable: {exc}"
        return out

    # ---- keys -----------------------------------------------------------------------------------

    def init_keys(self) -> dict[str, Any]:
        """Make sure the configured key provider works: create its local key file (0600) if it
        has none, and wrap and unwrap a throwaway key with it."""
        from weightvault.cas.encryption import DataKey
        from weightvault.keys import unwrap_data_key, wrap_data_key

        config = self.keys.configured_config()
        path = config.get("path") if config.get("type") == "local_file" else None
        existed = path is not None and Path(str(path)).expanduser().exists()
        provider = self.keys.configured(create_key_file=True)
        probe = DataKey.generate()
        unwrap_data_key(provider, wrap_data_key(provider, probe))
        return {
            "provider": provider_params(provider, config),
            "kek_id": provider.key_id,
            "created_key_file": str(path) if path is not None and not existed else None,
            "encryption_enabled": self.settings.encryption.enabled,
        }

    def key_status(self, model: str | None = None) -> dict[str, Any]:
        """Which key protects what: per model, its provider and KEK, its data keys by slot and
        how much live data each seals (slot 0: plain chunks of versions from before encryption)."""
        from weightvault.vault.rotation import live_slots

        indexed = set(self.index.list_model_names())
        if model is not None:
            check_model_name(model)
            names = [model]
        else:
            names = sorted(indexed | set(self.keys.models()))
        out: list[dict[str, Any]] = []
        for m in names:
            rec = self.keys.record(m)
            entry: dict[str, Any] = {"model": m, "encrypted": rec is not None}
            if rec is not None:
                entry.update(
                    provider=dict(rec.provider),
                    kek_id=rec.kek_id,
                    id_key=rec.id_key.key_id,
                    reencrypt_in_progress=rec.reencrypt_target,
                    new_domain_in_progress=rec.next_domain is not None,
                    replaced_id_keys=list(rec.replaces),
                    data_keys=[
                        {"slot": sl.slot, "key_id": sl.key.key_id, "state": sl.state, "created": sl.created}
                        for sl in sorted(rec.slots, key=lambda x: x.slot)
                    ],
                )
            try:
                usage = live_slots(self, m) if m in indexed else {}
            except WeightvaultError as exc:
                entry["usage_error"] = str(exc)
            else:
                entry["live"] = {str(sl): {"chunks": n, "bytes": b} for sl, (n, b) in sorted(usage.items())}
            out.append(entry)
        configured: dict[str, Any] = dict(self.keys.configured_config())
        configured.pop("passphrase", None)
        return {
            "encryption_enabled": self.settings.encryption.enabled,
            "configured_provider": configured,
            "models": out,
        }

    def rotate_keys(
        self,
        model: str | None = None,
        *,
        reencrypt: bool = False,
        new_provider: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> RotateReport:
        """Re-wrap the keys of ``model`` (every encrypted model when None) under a new KEK; with
        ``reencrypt`` also rewrite their data under new data keys (see ``vault.rotation``)."""
        from weightvault.vault.rotation import rotate

        return rotate(self, model, reencrypt=reencrypt, new_provider=new_provider, progress=progress)

    def rotate_domain(self, model: str, *, progress: Progress | None = None) -> NewDomainReport:
        """Move ``model`` to a new encryption domain: new id key, MAC keys, chunker seed and data
        key; every version re-chunked and re-sealed, every ref re-signed (``vault.domains``).
        For when a key holder leaves; rerun to finish an interrupted one."""
        from weightvault.vault.domains import rotate_domain

        return rotate_domain(self, model, progress)

    def stats(self) -> dict[str, Any]:
        out = self.index.stats()
        out["store_bytes"] = sum(o.size for o in self.backend.list(""))
        out["store_url"] = self.backend.url
        if self.cache is not None:
            out["cache_bytes"] = self.cache.total_bytes()
            out["cache_max_bytes"] = self.cache.max_bytes
        return out
