"""HTTP header names and values that the server and its clients share (the download protocol).

One place for both sides, so a client asks for exactly what the server understands; the
protocol itself (who checks what on a download, and why skipping the server's check is safe
for a client that checks the file's SHA-256) is described in README "Team server" and
docs/security.md "Through a server".
"""

from __future__ import annotations

#: a file's SHA-256 (hex) as recorded in the version's manifest, on every file download
CHECKSUM_SHA256 = "X-Checksum-Sha256"

#: request header of a download: the client checks the whole file's SHA-256 against the
#: manifest itself, so the server may skip its per-chunk BLAKE3 check for this one response
CLIENT_VERIFIES = "X-Weightvault-Client-Verifies"
#: the one value ``CLIENT_VERIFIES`` takes (any other is refused: a check the server cannot
#: match to a promise it understands must not turn its own check off)
CLIENT_VERIFIES_SHA256 = "sha256"

#: response header of a download: ``chunks`` (every chunk checked against its id by the server,
#: a bad replica copy skipped) or ``none`` (the client said it checks the SHA-256)
SERVER_VERIFIED = "X-Weightvault-Server-Verified"
SERVER_VERIFIED_CHUNKS = "chunks"
SERVER_VERIFIED_NONE = "none"
