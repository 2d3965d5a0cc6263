# ruff: noqa: E501  (the statements are kept exactly as SQLite stores them)
"""The index's schema at its head revision as SQLite DDL text, for creating a new index without
SQLAlchemy (``registry.lightindex``).

The statements are those ``bootstrap.create_head`` makes SQLAlchemy emit on SQLite, in the same
order and spelled as SQLite keeps them in ``sqlite_master`` (a test creates a database each way and
compares ``sqlite_master`` and the version stamp); a schema change updates both.
"""

from __future__ import annotations

from weightvault.registry.migrations import HEAD

#: the statements, in the order ``create_all`` runs them on SQLite
DDL: tuple[str, ...] = (
    "CREATE TABLE models (\n\tid INTEGER NOT NULL, \n\tname VARCHAR(96) NOT NULL, \n\tcreated_at DATETIME NOT NULL, \n\tPRIMARY KEY (id), \n\tUNIQUE (name)\n)",
    "CREATE TABLE manifests (\n\tcommit_id VARCHAR(40) NOT NULL, \n\tbody BLOB NOT NULL, \n\tcreated_at DATETIME NOT NULL, \n\tPRIMARY KEY (commit_id)\n)",
    "CREATE TABLE recipes (\n\tname VARCHAR(64) NOT NULL, \n\tsize BIGINT NOT NULL, \n\tbody BLOB NOT NULL, \n\tcreated_at DATETIME NOT NULL, \n\tPRIMARY KEY (name)\n)",
    "CREATE TABLE packs (\n\tid VARCHAR(64) NOT NULL, \n\tsize BIGINT NOT NULL, \n\tcreated_at DATETIME NOT NULL, \n\tcondemned_at DATETIME, \n\tPRIMARY KEY (id)\n)",
    "CREATE TABLE store_state (\n\tname VARCHAR(64) NOT NULL, \n\tvalue TEXT NOT NULL, \n\tPRIMARY KEY (name)\n)",
    "CREATE TABLE principals (\n\tid INTEGER NOT NULL, \n\tname VARCHAR(64) NOT NULL, \n\tis_admin BOOLEAN NOT NULL, \n\tcreated_at DATETIME NOT NULL, \n\tPRIMARY KEY (id), \n\tUNIQUE (name)\n)",
    "CREATE TABLE model_policies (\n\tmodel VARCHAR(96) NOT NULL, \n\tpublic_read BOOLEAN NOT NULL, \n\tPRIMARY KEY (model)\n)",
    "CREATE TABLE protected_aliases (\n\tmodel VARCHAR(96) NOT NULL, \n\talias VARCHAR(128) NOT NULL, \n\tPRIMARY KEY (model, alias)\n)",
    "CREATE TABLE audit_log (\n\tid INTEGER NOT NULL, \n\tat DATETIME NOT NULL, \n\tprincipal VARCHAR(64) NOT NULL, \n\taction VARCHAR(64) NOT NULL, \n\toutcome VARCHAR(16) NOT NULL, \n\tmodel VARCHAR(96), \n\tversion VARCHAR(128), \n\tsource VARCHAR(64) NOT NULL, \n\tdetail TEXT NOT NULL, \n\tPRIMARY KEY (id)\n)",
    "CREATE INDEX ix_audit_at ON audit_log (at)",
    "CREATE INDEX ix_audit_model_at ON audit_log (model, at)",
    "CREATE TABLE upload_sessions (\n\tid VARCHAR(32) NOT NULL, \n\tmodel VARCHAR(96) NOT NULL, \n\tpath TEXT NOT NULL, \n\tsize BIGINT NOT NULL, \n\tsha256 VARCHAR(64) NOT NULL, \n\tprincipal VARCHAR(64) NOT NULL, \n\tcreated_at DATETIME NOT NULL, \n\ttouched_at DATETIME NOT NULL, \n\tPRIMARY KEY (id)\n)",
    "CREATE INDEX ix_upload_sessions_touched ON upload_sessions (touched_at)",
    "CREATE TABLE versions (\n\tid INTEGER NOT NULL, \n\tmodel_id INTEGER NOT NULL, \n\tlabel VARCHAR(128) NOT NULL, \n\tcommit_id VARCHAR(40) NOT NULL, \n\tparent VARCHAR(40), \n\tcreated_at DATETIME NOT NULL, \n\tmessage TEXT NOT NULL, \n\tmetadata_json TEXT NOT NULL, \n\ttotal_size BIGINT NOT NULL, \n\tfile_count INTEGER NOT NULL, \n\tPRIMARY KEY (id), \n\tCONSTRAINT uq_versions_model_label UNIQUE (model_id, label), \n\tFOREIGN KEY(model_id) REFERENCES models (id) ON DELETE CASCADE\n)",
    "CREATE INDEX ix_versions_model_commit ON versions (model_id, commit_id)",
    'CREATE TABLE chunks (\n\tid BLOB NOT NULL, \n\tpack_id VARCHAR(64) NOT NULL, \n\t"offset" BIGINT NOT NULL, \n\tstored_len INTEGER NOT NULL, \n\traw_len INTEGER NOT NULL, \n\tcodec INTEGER NOT NULL, \n\tkey_slot INTEGER NOT NULL, \n\tPRIMARY KEY (id, pack_id), \n\tFOREIGN KEY(pack_id) REFERENCES packs (id) ON DELETE CASCADE\n)',
    "CREATE INDEX ix_chunks_pack ON chunks (pack_id)",
    "CREATE TABLE api_tokens (\n\tid INTEGER NOT NULL, \n\tprincipal_id INTEGER NOT NULL, \n\ttoken_hash VARCHAR(64) NOT NULL, \n\tlast_chars VARCHAR(8) NOT NULL, \n\tscope VARCHAR(8) NOT NULL, \n\tkind VARCHAR(8) NOT NULL, \n\tdescription VARCHAR(200) NOT NULL, \n\tcreated_at DATETIME NOT NULL, \n\texpires_at DATETIME, \n\trevoked_at DATETIME, \n\tlast_used_at DATETIME, \n\tPRIMARY KEY (id), \n\tFOREIGN KEY(principal_id) REFERENCES principals (id) ON DELETE CASCADE, \n\tUNIQUE (token_hash)\n)",
    "CREATE TABLE grants (\n\tid INTEGER NOT NULL, \n\tprincipal_id INTEGER NOT NULL, \n\tpattern VARCHAR(100) NOT NULL, \n\trole VARCHAR(8) NOT NULL, \n\tcreated_at DATETIME NOT NULL, \n\tPRIMARY KEY (id), \n\tCONSTRAINT uq_grants_principal_pattern UNIQUE (principal_id, pattern), \n\tFOREIGN KEY(principal_id) REFERENCES principals (id) ON DELETE CASCADE\n)",
    "CREATE TABLE aliases (\n\tid INTEGER NOT NULL, \n\tmodel_id INTEGER NOT NULL, \n\tname VARCHAR(128) NOT NULL, \n\tversion_id INTEGER NOT NULL, \n\tPRIMARY KEY (id), \n\tCONSTRAINT uq_aliases_model_name UNIQUE (model_id, name), \n\tFOREIGN KEY(model_id) REFERENCES models (id) ON DELETE CASCADE, \n\tFOREIGN KEY(version_id) REFERENCES versions (id) ON DELETE CASCADE\n)",
    "CREATE TABLE alembic_version (\n\tversion_num VARCHAR(32) NOT NULL, \n\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n)",
)
#: the version stamp Alembic (and ``bootstrap``) leaves in an index at head
STAMP = ("INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD,))
