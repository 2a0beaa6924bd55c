"""Blob I/O against a real Azurite: round trips, snapshots, and coded failures."""
from __future__ import annotations

import socket
import time

import pytest

from plumbing.blobstore import STALL_FACTOR, BlobError, BlobErrorKind, BlobStore
from plumbing.retry import RetryPolicy

NO_WAIT = dict(sleep=lambda seconds: None)


def test_put_read_and_snapshot_round_trip(azurite, tmp_path):
    uri = azurite.blob_sas_uri("plumbing", "dir/file.bin")
    store = BlobStore(**NO_WAIT)
    payload = bytes(range(256)) * 4096
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    seen = []
    assert store.upload_file(uri, str(path), progress=lambda cur, tot: seen.append(cur)) \
        == len(payload)
    assert store.read_bytes(uri) == payload
    assert seen and seen[-1] == len(payload), f"progress ended at {seen[-1:]}"
    snapshot_id = store.create_snapshot(uri, {"taskId": "t-1"})
    assert snapshot_id and store.properties(uri)["size"] == len(payload)


def test_chunked_upload_uses_blocks(azurite, tmp_path):
    uri = azurite.blob_sas_uri("plumbing", "chunked.bin")
    path = tmp_path / "big.bin"
    path.write_bytes(b"z" * (3 * 1024 * 1024 + 17))
    BlobStore(chunk_size=1024 * 1024, **NO_WAIT).upload_file(uri, str(path))
    blocks = azurite.service().get_blob_client("plumbing", "chunked.bin").get_block_list()[0]
    assert len(blocks) == 4, f"expected 4 committed blocks, got {len(blocks)}"


def test_expired_sas_is_its_own_kind_and_not_retried(azurite):
    store = BlobStore(**NO_WAIT)
    with pytest.raises(BlobError) as caught:
        store.put_bytes(azurite.expired_blob_sas_uri("plumbing", "late.txt"), b"x")
    assert caught.value.kind is BlobErrorKind.EXPIRED and caught.value.attempts == 1
    assert "sig=" not in str(caught.value)


def test_bad_signature_is_forbidden(azurite):
    uri = azurite.blob_sas_uri("plumbing", "forged.txt")
    forged = uri.split("sig=")[0] + "sig=Zm9yZ2Vk"
    with pytest.raises(BlobError) as caught:
        BlobStore(**NO_WAIT).put_bytes(forged, b"x")
    assert caught.value.kind is BlobErrorKind.FORBIDDEN and caught.value.status == 403
    assert "Zm9yZ2Vk" not in str(caught.value)


def test_unreachable_storage_is_retried_by_the_declared_policy():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once we leave: connection refused
    retries = []
    store = BlobStore(policy=RetryPolicy(attempts=3, base_delay=0.01,
                                         retry_on=lambda e: e.kind is BlobErrorKind.UNREACHABLE),
                      on_retry=lambda n, exc, wait: retries.append(n), **NO_WAIT)
    with pytest.raises(BlobError) as caught:
        store.put_bytes(f"http://127.0.0.1:{port}/devstoreaccount1/c/b?sig=c2VjcmV0", b"x")
    assert caught.value.kind is BlobErrorKind.UNREACHABLE and caught.value.attempts == 3
    assert retries == [1, 2], f"retry hook saw {retries}"


@pytest.mark.parametrize("uri", ["", "ftp://host/c/b", "not a url", "https://host.example"])
def test_malformed_uris_are_rejected_before_any_request(uri):
    with pytest.raises(BlobError) as caught:
        BlobStore(**NO_WAIT).put_bytes(uri, b"x")
    assert caught.value.kind is BlobErrorKind.INVALID_URI


def test_a_file_upload_to_storage_that_trickles_ends_at_the_stall_bound(tmp_path):
    """Each read gets a byte in time, so no socket timeout fires: only a bound on progress
    ends the upload (a capture's worker would otherwise upload forever)."""
    from tests.hunt.trickle import TrickleServer

    capture = tmp_path / "c.cap"
    capture.write_bytes(b"\0" * 100_000)
    store = BlobStore(policy=RetryPolicy(attempts=2, base_delay=0.01, retry_on=lambda e: True),
                      timeout=2.0)
    with TrickleServer(interval=0.25, limit=60.0) as server:
        started = time.monotonic()
        with pytest.raises(BlobError) as failed:
            store.upload_file(server.uri("caps", "c.cap"), str(capture))
        took = time.monotonic() - started
    assert failed.value.kind == BlobErrorKind.TIMEOUT, failed.value
    assert took < 2 * (STALL_FACTOR * 2.0 + 2), f"the upload went on for {took:.0f}s"
