"""Hostile stream records: one that names a file outside the capture root, one with the
wrong types, one left by an earlier capture of the same name - recovery sends none of them
anywhere it should not, and changes no file outside the capture root."""
from __future__ import annotations

import json
import os

from capture_engine.naming import ring_path
from capture_engine.pcapfile import file_header
from capture_engine.recovery import pending_uploads, recover_uploads
from capture_engine.settings import CaptureRequest, RingSettings
from capture_engine.streamstate import Journal, StreamRecord
from plumbing.blobstore import BlobStore
from tests.capture_engine.streamkit import records


def _blobs(azurite, container: str) -> list:
    client = azurite.service().get_container_client(container)
    if not client.exists():
        return []
    return sorted(b.name for b in client.list_blobs())


def test_a_record_naming_a_file_outside_the_capture_root_is_never_sent_nor_cut(tmp_path,
                                                                               azurite):
    path, token = azurite.blob_sas_uri("tamper", "vm/one.cap").split("?", 1)
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "shadow"  # stands for /etc/shadow: outside the capture root
    content = b"root:$6$salt$hash:19000:0:99999:7:::\n" * 40
    secret.write_bytes(content)
    request = CaptureRequest(name="one", storage_path=path, capture_root=str(root))
    Journal(str(root)).save(StreamRecord("one", str(secret), False, False, committed=30))
    linked = tmp_path / "gshadow"
    linked.write_bytes(content)
    os.symlink(linked, root / "one_00001.cap")  # inside by its name, outside by its target
    Journal(str(root)).save(StreamRecord("one", str(root / "one.cap"), True, False))
    pending = pending_uploads(request)
    recovered = recover_uploads(request, BlobStore(), token)
    assert secret.read_bytes() == content and linked.read_bytes() == content, \
        "recovery truncated a file outside the capture root"
    assert _blobs(azurite, "tamper") == [], "a file outside the capture root was uploaded"
    assert pending == [] and recovered.uploaded == (), (pending, recovered)


def test_a_record_with_wrong_types_is_ignored_not_a_traceback(tmp_path):
    root = tmp_path / "root"
    request = CaptureRequest(name="bad", storage_path="http://127.0.0.1:9/a/c/b.cap",
                             capture_root=str(root), ring=RingSettings(3, 10_000))
    folder = root / ".streams"
    folder.mkdir(parents=True)
    bad = [{"name": "bad", "base": 12, "ring": True, "pending_only": False,
            "uploaded_seq": 0, "committed": 0, "dropped": 0, "done": False},
           {"name": "bad", "base": str(root / "r.cap"), "ring": True, "pending_only": False,
            "uploaded_seq": "seven", "committed": 0, "dropped": 0, "done": False},
           {"name": "bad", "base": [str(root / "x.cap")], "ring": "yes",
            "pending_only": 0, "uploaded_seq": None, "committed": {}, "dropped": 0,
            "done": "no"}]
    (root / "r_00001.cap").write_bytes(file_header(65535))
    for number, data in enumerate(bad):
        (folder / f"{number:040d}.json").write_text(json.dumps(data))
    assert pending_uploads(request) == [], "a malformed record was taken as a real one"


def test_an_earlier_captures_record_never_goes_to_a_new_captures_blob(tmp_path, azurite):
    """Capture `same` once streamed to old.cap and left a file unsent (storage down); a new
    start of `same` streams to new.cap. Recovering the old file must not overwrite new.cap."""
    container, token = azurite.container_sas_uri("samename").split("?", 1)
    root = str(tmp_path)
    old_local, new_local = str(tmp_path / "a.cap"), str(tmp_path / "a~2.cap")
    old = file_header(65535) + records(0, 5)
    for local, data in ((old_local, old), (new_local, file_header(65535) + records(100, 3))):
        with open(local, "wb") as out:
            out.write(data)
    Journal(root).save(StreamRecord("same", old_local, False, False, committed=24,
                                    storage=f"{container}/vm/old.cap"))
    new_request = CaptureRequest(name="same", storage_path=f"{container}/vm/new.cap",
                                 file_path=new_local, capture_root=root)
    azurite.service().get_container_client("samename").upload_blob(
        "vm/new.cap", file_header(65535) + records(100, 3))
    recovered = recover_uploads(new_request, BlobStore(), token)
    assert recovered.error is None, recovered
    stored = azurite.read_blob("samename", "vm/new.cap")
    assert stored == file_header(65535) + records(100, 3), \
        "the earlier capture's file overwrote the new capture's blob"
    assert azurite.read_blob("samename", "vm/old.cap") == old, "the earlier file was not sent"


def test_a_ring_record_sends_its_files_to_the_blobs_it_streamed_to(tmp_path, azurite):
    container, token = azurite.container_sas_uri("samering").split("?", 1)
    base = str(tmp_path / "r.cap")
    with open(ring_path(base, 2), "wb") as out:
        out.write(file_header(65535) + records(0, 2))
    Journal(str(tmp_path)).save(StreamRecord("ring", base, True, False, uploaded_seq=1,
                                             storage=f"{container}/old/r.cap"))
    request = CaptureRequest(name="ring", storage_path=f"{container}/new/r.cap",
                             local_path=str(tmp_path / "r~2.cap"), capture_root=str(tmp_path),
                             ring=RingSettings(3, 10_000))
    recovered = recover_uploads(request, BlobStore(), token)
    assert recovered.error is None, recovered
    assert _blobs(azurite, "samering") == ["old/r_00002.cap"], _blobs(azurite, "samering")


def test_a_record_of_files_deleted_by_hand_is_not_a_later_local_captures(tmp_path):
    """Capture `again` streamed r.cap and left a record (storage down); its files were
    removed by hand; a new start of `again`, local only, took r.cap anew. Its files are not
    the record's: a worker death must not send them to the old capture's storage."""
    from capture_engine.owners import Owners

    root = str(tmp_path)
    base = str(tmp_path / "r.cap")
    owners = Owners(root)
    with owners.lock():
        old = owners.claim("again", base, ring=True)
    journal = Journal(root)
    journal.save(StreamRecord("again", base, True, False, uploaded_seq=0,
                              storage="http://127.0.0.1:9/devstoreaccount1/c/vm/r.cap"))
    record_file = os.path.join(journal.folder, os.listdir(journal.folder)[0])
    with open(record_file, encoding="utf-8") as source:
        data = json.load(source)
    data["claimed_ns"] = old.claimed_ns  # which start of the name streamed these files
    with open(record_file, "w", encoding="utf-8") as out:
        json.dump(data, out)
    with owners.lock():  # the files were removed by hand; a new start claims r.cap again
        owners.claim("again", base, ring=True)
    with open(ring_path(base, 1), "wb") as out:
        out.write(file_header(65535) + records(0, 2))
    local_only = CaptureRequest(name="again", local_path=base, capture_root=root,
                                ring=RingSettings(3, 10_000))
    assert pending_uploads(local_only) == [], "a later start's files taken for the record's"
