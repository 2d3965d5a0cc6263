"""Run gcp-storage-emulator with GCS generation preconditions on uploads.

The emulator (PyPI ``gcp-storage-emulator``) speaks the GCS JSON API well enough for every call
the GCS backend makes, except that it ignores ``ifGenerationMatch``: real GCS answers
``412 Precondition Failed`` when ``ifGenerationMatch=0`` and the object exists, which is how the
backend implements ``put(if_absent=True)``. Without that, the contract's "exactly one writer
wins" test could never pass against the emulator, so this launcher adds the documented rule
(https://cloud.google.com/storage/docs/request-preconditions) to the upload handlers, and
answers a resumable-upload status query that found no bytes without a ``Range`` header (as GCS
does; the emulator claims one byte), then starts the server. The emulator serves one request at
a time, so a precondition check and the write it guards cannot interleave with another upload.

Usage: ``python gcs_emulator.py --host 127.0.0.1 --port 9023``
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from gcp_storage_emulator import server
from gcp_storage_emulator.handlers import objects

Handler = Callable[..., Any]


def _upload_target(request: Any, storage: Any) -> tuple[str, str] | None:
    """(bucket, object name) an upload request writes, or None when it cannot tell."""
    upload_id = request.query.get("upload_id")
    if upload_id:
        try:
            obj = storage.get_resumable_file_obj(upload_id[0])
        except Exception:
            return None
        return obj["bucket"], obj["name"]
    bucket = request.params.get("bucket_name")
    if "name" in request.query:
        return bucket, request.query["name"][0]
    data = request.data
    if isinstance(data, dict):
        meta = data.get("meta") if "meta" in data else data
        if isinstance(meta, dict) and meta.get("name"):
            return bucket, meta["name"]
    return None


def _with_preconditions(handler: Handler) -> Handler:
    def guarded(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        wanted = request.query.get("ifGenerationMatch")
        target = _upload_target(request, storage) if wanted else None
        if wanted and target:
            bucket, name = target
            current = storage.objects.get(bucket, {}).get(name)
            generation = str(current["generation"]) if current else "0"
            if generation != wanted[0]:
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json(
                    {
                        "error": {
                            "code": 412,
                            "message": "At least one of the pre-conditions you specified did not hold.",
                            "errors": [{"reason": "conditionNotMet"}],
                        }
                    }
                )
                return None
        return handler(request, response, storage, *args, **kwargs)

    return guarded


def _resumable_incomplete(response: Any, storage: Any, upload_id: str, fallback_end: int = 0) -> None:
    """``308`` for an unfinished resumable upload, with ``Range`` only once bytes were persisted.

    The emulator answers ``Range: bytes=0-0`` (one byte) when it has none, which would make a
    client that resumes correctly skip the first byte; real GCS omits the header.
    """
    response.status = objects.GoogleHTTPStatus.RESUME_INCOMPLETE
    received = storage.get_resumable_byte_count(upload_id)
    if received > 0:
        response["Range"] = f"bytes=0-{received - 1}"


def install() -> None:
    """Route uploads through the precondition check and fix the resume status (idempotent)."""
    if getattr(objects, "_wv_preconditions", False):
        return
    objects._resumable_incomplete = _resumable_incomplete
    originals = {objects.insert, objects.upload_partial, objects.xml_upload}
    wrapped = {fn: _with_preconditions(fn) for fn in originals}
    server.HANDLERS = tuple(
        (regex, {method: wrapped.get(fn, fn) for method, fn in routes.items()})
        for regex, routes in server.HANDLERS
    )
    objects.insert = wrapped[objects.insert]  # the router's fallback for un-prefixed uploads
    objects._wv_preconditions = True  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    install()
    srv = server.create_server(args.host, args.port, in_memory=True)
    srv.start()
    print(json.dumps({"listening": f"http://{args.host}:{args.port}"}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
