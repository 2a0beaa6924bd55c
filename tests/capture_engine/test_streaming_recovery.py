"""What a dead worker left unsent goes up after a restart: ring files after the last uploaded
one, a single file cut after its last complete record; then the record is gone."""
from __future__ import annotations

import os

from capture_engine.naming import ring_path
from capture_engine.owners import Owners
from capture_engine.pcapfile import file_header
from capture_engine.recovery import pending_uploads, recover_uploads
from capture_engine.settings import CaptureRequest, RingSettings
from capture_engine.streamstate import Journal, StreamRecord
from plumbing.blobstore import BlobStore
from tests.capture_engine.streamkit import records


def test_ring_files_after_the_last_uploaded_one_go_up_each_to_its_blob(tmp_path, azurite):
    container, token = azurite.container_sas_uri("recover").split("?", 1)
    base = str(tmp_path / "r.cap")
    request = CaptureRequest(name="rec", storage_path=f"{container}/vm/r.cap", local_path=base,
                             capture_root=str(tmp_path), ring=RingSettings(3, 10_000))
    for seq in (2, 3, 4):  # 1 went out and was let go; 2 went out; 3 and 4 did not
        with open(ring_path(base, seq), "wb") as out:
            out.write(file_header(65535) + records(seq * 10, 3))
    Journal(str(tmp_path)).save(StreamRecord("rec", base, True, False, uploaded_seq=2))
    assert pending_uploads(request) == [ring_path(base, 3), ring_path(base, 4)]
    recovered = recover_uploads(request, BlobStore(), token)
    assert recovered.error is None and not recovered.pending, recovered
    assert [url.rsplit("/", 1)[1] for url in recovered.uploaded] == ["r_00003.cap",
                                                                     "r_00004.cap"]
    names = sorted(b.name for b in azurite.service().get_container_client(
        "recover").list_blobs())
    assert names == ["vm/r_00003.cap", "vm/r_00004.cap"], "only the files never sent, once"
    with open(ring_path(base, 4), "rb") as local:
        assert azurite.read_blob("recover", "vm/r_00004.cap") == local.read()
    assert Journal(str(tmp_path)).records("rec") == [] and pending_uploads(request) == []


def test_a_single_file_is_cut_after_its_last_record_and_a_pending_copy_goes(tmp_path, azurite):
    path, token = azurite.blob_sas_uri("recover", "vm/one.cap").split("?", 1)
    request = CaptureRequest(name="one", storage_path=path, capture_root=str(tmp_path))
    local = request.output_path()  # only a storagePath: <root>/.pending/one.cap
    os.makedirs(os.path.dirname(local))
    owners = Owners(str(tmp_path))
    with owners.lock():
        owners.claim("one", local, ring=False)
    whole = file_header(65535) + records(0, 20)
    with open(local, "wb") as out:
        out.write(whole + records(20, 1)[:500])  # the worker died mid-record
    Journal(str(tmp_path)).save(StreamRecord("one", os.path.abspath(local), False, True,
                                             committed=len(whole) - 1016 * 5))
    recovered = recover_uploads(request, BlobStore(), token)
    assert recovered.error is None and recovered.uploaded == (path,), recovered
    assert azurite.read_blob("recover", "vm/one.cap") == whole, "not cut at the last record"
    assert not os.path.exists(local), "a storage-only capture's copy stays after its upload"
    assert owners.claims("one") == [], "its claim stays after its upload"
