"""Compare cloud client libraries, and weightvault's backends, on loopback emulators.

Starts moto (S3), Azurite (Azure Blob) and gcp-storage-emulator (GCS) on free 127.0.0.1 ports,
then for each candidate client measures: upload of a large object from a file, download of it
into memory (MB/s), and the latency of a 4 KiB put and get. Prints medians over ``--runs``.

The emulators are the bottleneck for some rows (moto and the GCS emulator are single-process
Python), so compare clients against the same server, not servers against each other.

    .venv/bin/python bench/bench_backends.py [--runs 5] [--size-mib 64] [--only s3,azure,gcs]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "storage"))
sys.path.insert(0, str(REPO / "src"))

import servers  # noqa: E402  (tests/storage/servers.py: the same launchers the test fixtures use)

SMALL = 4096
Row = tuple[str, str, float, float, float, float, float]


def median_time(fn: Callable[[], Any], runs: int, cpu: list[float] | None = None) -> float:
    """Median wall time; appends the median CPU time of this process (all threads) to ``cpu``."""
    times, cpus = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    if cpu is not None:
        cpu.append(statistics.median(cpus))
    return statistics.median(times)


class Candidate:
    """put_file/get/put/get_small of one client library against one server."""

    provider = ""
    name = ""

    def put_file(self, key: str, path: Path) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError


def measure(cand: Candidate, big: Path, size: int, runs: int, small_runs: int) -> Row:
    key = f"big-{uuid.uuid4().hex}"
    cand.put_file(key, big)  # warm up connections and the server's code paths
    cpu: list[float] = []
    up = median_time(lambda: cand.put_file(key, big), runs, cpu)
    got = cand.get(key)
    assert len(got) == size, (cand.name, len(got))
    del got
    down = median_time(lambda: cand.get(key), runs, cpu)
    small = os.urandom(SMALL)
    cand.put("small", small)
    put_lat = median_time(lambda: cand.put("small", small), small_runs)
    get_lat = median_time(lambda: cand.get("small"), small_runs)
    mb = size / 1e6
    cpu_per_gb = sum(cpu) / (2 * size / 1e9)
    return (cand.provider, cand.name, mb / up, mb / down, put_lat * 1e3, get_lat * 1e3, cpu_per_gb)


# --- S3 ---------------------------------------------------------------------------------------


class Boto3S3(Candidate):
    provider, name = "s3", "boto3 (upload_file, 8 MiB parts x 8)"

    def __init__(self, endpoint: str, bucket: str) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig

        self.client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="bench", aws_secret_access_key="bench",
        )  # fmt: skip
        self.client.create_bucket(Bucket=bucket)
        self.bucket = bucket
        self.config = TransferConfig(multipart_chunksize=8 << 20, max_concurrency=8)

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, key, Config=self.config)

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)


class ObstoreS3(Candidate):
    provider, name = "s3", "obstore (put Path, 8 MiB parts x 8)"

    def __init__(self, endpoint: str, bucket: str) -> None:
        import boto3
        import obstore
        from obstore.store import S3Store

        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="bench", aws_secret_access_key="bench",
        ).create_bucket(Bucket=bucket)  # fmt: skip
        self.ob = obstore
        self.store = S3Store(
            bucket, endpoint=endpoint, region="us-east-1", access_key_id="bench",
            secret_access_key="bench", client_options={"allow_http": True},
        )  # fmt: skip

    def put_file(self, key: str, path: Path) -> None:
        self.ob.put(self.store, key, path, chunk_size=8 << 20, max_concurrency=8)

    def get(self, key: str) -> bytes:
        return bytes(self.ob.get(self.store, key).bytes())

    def put(self, key: str, data: bytes) -> None:
        self.ob.put(self.store, key, data)


# --- Azure ------------------------------------------------------------------------------------


class AzureSDK(Candidate):
    provider, name = "azure", "azure-storage-blob (8 MiB blocks x 8)"

    def __init__(self, conn: str, container: str) -> None:
        from azure.storage.blob import BlobServiceClient

        svc = BlobServiceClient.from_connection_string(
            conn, max_block_size=8 << 20, max_single_put_size=8 << 20
        )
        self.container = svc.create_container(container)

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as f:
            self.container.upload_blob(key, f, overwrite=True, max_concurrency=8)

    def get(self, key: str) -> bytes:
        return self.container.download_blob(key, max_concurrency=8).readall()

    def put(self, key: str, data: bytes) -> None:
        self.container.upload_blob(key, data, overwrite=True)


class ObstoreAzure(Candidate):
    provider, name = "azure", "obstore (put Path, 8 MiB blocks x 8)"

    def __init__(self, endpoint: str, container: str) -> None:
        import obstore
        from azure.storage.blob import BlobServiceClient
        from obstore.store import AzureStore

        conn = servers.azurite_connection_string(endpoint)
        BlobServiceClient.from_connection_string(conn).create_container(container)
        self.ob = obstore
        self.store = AzureStore(
            container, account_name=servers.AZURITE_ACCOUNT, account_key=servers.AZURITE_KEY,
            endpoint=f"{endpoint}/{servers.AZURITE_ACCOUNT}", client_options={"allow_http": True},
        )  # fmt: skip

    def put_file(self, key: str, path: Path) -> None:
        self.ob.put(self.store, key, path, chunk_size=8 << 20, max_concurrency=8)

    def get(self, key: str) -> bytes:
        return bytes(self.ob.get(self.store, key).bytes())

    def put(self, key: str, data: bytes) -> None:
        self.ob.put(self.store, key, data)


# --- GCS --------------------------------------------------------------------------------------


class GoogleGCS(Candidate):
    provider, name = "gcs", "google-cloud-storage (resumable, 8 MiB chunks)"

    def __init__(self, endpoint: str, bucket: str) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="bench", credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )  # fmt: skip
        self.bucket = client.create_bucket(bucket)

    def put_file(self, key: str, path: Path) -> None:
        blob = self.bucket.blob(key, chunk_size=8 << 20)
        blob.upload_from_filename(str(path))

    def get(self, key: str) -> bytes:
        data: bytes = self.bucket.blob(key).download_as_bytes()
        return data

    def put(self, key: str, data: bytes) -> None:
        self.bucket.blob(key).upload_from_string(data)


class Gcsfs(Candidate):
    provider, name = "gcs", "gcsfs (put_file / cat)"

    def __init__(self, endpoint: str, bucket: str) -> None:
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        import gcsfs

        self.fs = gcsfs.GCSFileSystem(endpoint_url=endpoint, token="anon", project="bench")
        self.fs.mkdir(bucket)
        self.bucket = bucket

    def put_file(self, key: str, path: Path) -> None:
        self.fs.put_file(str(path), f"{self.bucket}/{key}")

    def get(self, key: str) -> bytes:
        data: bytes = self.fs.cat_file(f"{self.bucket}/{key}")
        return data

    def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.bucket}/{key}", data)


# --- weightvault's own backends (what the vault actually gets) ---------------------------------


class Weightvault(Candidate):
    def __init__(self, provider: str, url: str, **options: Any) -> None:
        from weightvault.storage.factory import open_backend

        self.provider, self.name = provider, f"weightvault {url.split(':')[0]}:// backend"
        self.backend = open_backend(url, create=True, **options)

    def put_file(self, key: str, path: Path) -> None:
        self.backend.put_file(key, path)

    def get(self, key: str) -> bytes:
        return self.backend.get(key)

    def put(self, key: str, data: bytes) -> None:
        self.backend.put(key, data)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--small-runs", type=int, default=50)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--only", default="s3,azure,gcs")
    parser.add_argument("--no-weightvault", action="store_true", help="measure the raw clients only")
    args = parser.parse_args()
    only = set(args.only.split(","))
    size = args.size_mib << 20

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))

        def run(make: Callable[[], Candidate]) -> None:
            try:
                cand = make()
            except ImportError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
                return
            rows.append(measure(cand, big, size, args.runs, args.small_runs))
            print(f"  {rows[-1][0]:6} {rows[-1][1]} done", file=sys.stderr)

        def bucket() -> str:
            return f"bench-{uuid.uuid4().hex[:12]}"

        if "s3" in only:
            srv = servers.moto_server().start()
            try:
                run(lambda: Boto3S3(srv.endpoint, bucket()))
                run(lambda: ObstoreS3(srv.endpoint, bucket()))
                if not args.no_weightvault:
                    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
                    run(lambda: Weightvault("s3", f"s3://{bucket()}/wv", endpoint_url=srv.endpoint))
            finally:
                srv.close()
        if "azure" in only:
            srv = servers.azurite_server().start()
            conn = servers.azurite_connection_string(srv.endpoint)
            try:
                run(lambda: AzureSDK(conn, bucket()))
                run(lambda: ObstoreAzure(srv.endpoint, bucket()))
                if not args.no_weightvault:
                    run(lambda: Weightvault("azure", f"az://{bucket()}/wv", connection_string=conn))
            finally:
                srv.close()
        if "gcs" in only:
            srv = servers.gcs_server().start()
            try:
                run(lambda: GoogleGCS(srv.endpoint, bucket()))
                run(lambda: Gcsfs(srv.endpoint, bucket()))
                if not args.no_weightvault:
                    run(
                        lambda: Weightvault(
                            "gcs",
                            f"gs://{bucket()}/wv",
                            endpoint_url=srv.endpoint,
                            project_id="bench",
                            anonymous=True,
                        )
                    )
            finally:
                srv.close()

    print(
        f"\n{args.size_mib} MiB object, medians of {args.runs} runs; 4 KiB object, medians of "
        f"{args.small_runs} ops; loopback emulators, {os.cpu_count()} cores\n"
    )
    print("| provider | client | put MB/s | get MB/s | small put ms | small get ms | client CPU s/GB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for prov, name, up, down, put_ms, get_ms, cpu_gb in rows:
        print(f"| {prov} | {name} | {up:.0f} | {down:.0f} | {put_ms:.2f} | {get_ms:.2f} | {cpu_gb:.2f} |")


if __name__ == "__main__":
    main()
