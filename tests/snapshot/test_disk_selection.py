"""includedDisks picks the disk blobs; each snapshot keeps its blob's metadata; TTL and retries."""
from __future__ import annotations

import fcntl
import os
from urllib.parse import parse_qs, urlsplit

import pytest

from snapshot.fields import FieldError
from snapshot.result import Consistency
from snapshot.selection import DiskTarget, IncludedDisks, parse_included_disks, plan_disks
from snapshot.watchdog import FIFREEZE, FITHAW
from tests.snapshot.conftest import make_disks, write_vmbackup_conf
from tests.snapshot.test_runner import do_run

OS_META = {"MicrosoftAzureCompute_DiskType": "OSDisk", "Owner": "alice"}
DATA_META = {"MicrosoftAzureCompute_DiskType": "DataDisk", "Owner": "bob"}


@pytest.mark.parametrize(("raw", "words"), [
    ({"dataDiskLunList": [1, 1]}, "repeats LUN 1"),
    ({"dataDiskLunList": [-1]}, "dataDiskLunList[0]"),
    ({"dataDiskLunList": [64]}, "from 0 to 63"),
    ({"dataDiskLunList": ["1"]}, "dataDiskLunList[0]"),
    ({"dataDiskLunList": [True]}, "dataDiskLunList[0]"),
    ({"dataDiskLunList": "1,2"}, "must be a list"),
    ({"dataDiskLunList": []}, "selects no disk"),
    ({"isOSDiskIncluded": "yes"}, "isOSDiskIncluded"),
    ([1, 2], "includedDisks must be an object"),
])
def test_invalid_lun_lists_are_17(raw, words):
    with pytest.raises(FieldError) as info:
        parse_included_disks(raw)
    assert info.value.code == 17 and words in info.value.message, info.value.message


def test_plan_maps_blobs_to_luns_in_order():
    both = IncludedDisks((2, 5), os_included=True)
    assert plan_disks(["os", "a", "b"], both) == [DiskTarget(0, "os", -1), DiskTarget(1, "a", 2),
                                                  DiskTarget(2, "b", 5)]
    data_only = IncludedDisks((5,), os_included=False)
    assert plan_disks(["os", "a"], data_only) == [DiskTarget(1, "a", 5)], \
        "the OS disk sent but not included is left out"
    assert plan_disks(["a"], data_only) == [DiskTarget(0, "a", 5)], "only the included sent"
    assert [t.lun for t in plan_disks(["x", "y"], IncludedDisks())] == [None, None], \
        "no LUN list: every blob"
    for uris, words in ((["os"], "a listed LUN has no disk blob"),
                        (["os", "a", "b", "c"], "disk blobs no LUN names")):
        with pytest.raises(FieldError) as info:
            plan_disks(uris, both)
        assert info.value.code == 17 and words in info.value.message, info.value.message


def snapshot_metadata(azurite, uri: str, snapshot_uri: str) -> dict:
    container, blob = urlsplit(uri).path.split("/")[-2:]
    when = parse_qs(urlsplit(snapshot_uri).query)["snapshot"][0]
    client = azurite.service().get_blob_client(container, blob, snapshot=when)
    return {k.lower(): v for k, v in client.get_blob_properties().metadata.items()}


def snapshot_count(azurite, uri: str) -> int:
    container, blob = urlsplit(uri).path.split("/")[-2:]
    listing = azurite.service().get_container_client(container).list_blobs(
        name_starts_with=blob, include=["snapshots"])
    return sum(1 for b in listing if b.snapshot)


@pytest.mark.root
def test_excluded_os_disk_is_not_snapshotted_and_metadata_is_kept(loopfs, azurite, confdir):
    write_vmbackup_conf(confdir, [loopfs("ext4").mountpoint])
    uris = make_disks(azurite, 3, metadata={0: OS_META, 1: DATA_META, 2: DATA_META})
    included = {"isOSDiskIncluded": False, "isAnyDiskExcluded": True, "dataDiskLunList": [4, 0]}
    result, log = do_run(confdir, uris, objects={"includedDisks": included})
    assert result.ok and result.consistency is Consistency.FILE_SYSTEM, result.message
    assert [d.blob_uri for d in result.disks] == [u.split("?")[0] for u in uris[1:]], \
        "snapshotInfo lists the included disks only"
    assert snapshot_count(azurite, uris[0]) == 0, "the excluded OS disk got no snapshot"
    for uri, disk, lun in zip(uris[1:], result.disks, ("4", "0")):
        meta = snapshot_metadata(azurite, uri, disk.snapshot_uri)
        assert meta.get("owner") == "bob" and meta.get(
            "microsoftazurecompute_disktype") == "DataDisk", f"the blob's own metadata: {meta}"
        assert meta.get("backupjob") == "job-1", f"backupMetadata beside it: {meta}"
        assert meta.get("vmsnapshotlun") == lun, f"the LUN it was taken as: {meta}"
    assert "1 excluded by includedDisks" in log.text(), log.text()


@pytest.mark.root
def test_blob_metadata_contradicting_the_lun_list_is_17(loopfs, azurite, confdir):
    write_vmbackup_conf(confdir, [loopfs("ext4").mountpoint])
    uris = make_disks(azurite, 2, metadata={0: DATA_META, 1: OS_META})  # listed the wrong way
    included = {"isOSDiskIncluded": True, "dataDiskLunList": [0]}
    result, _ = do_run(confdir, uris, objects={"includedDisks": included})
    assert (result.status, result.code) == ("error", 17), result.message
    assert "blobSASUri[0] is a data disk by its own metadata" in result.message, result.message
    assert result.freeze_window is None and not result.disks, "refused before any freeze"


@pytest.mark.root
@pytest.mark.parametrize(("retries", "expected"), [(1, ("success", 1)), (0, ("error", 121))])
def test_crash_consistent_fallback_counts_the_selected_disks(retries, expected, loopfs, azurite,
                                                             confdir):
    """Two blobs, one included: a single-disk backup, so a failed freeze may fall back to a
    crash-consistent snapshot, but only while the service has retries left."""
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount])
    uris = make_disks(azurite, 2)
    included = {"isOSDiskIncluded": False, "dataDiskLunList": [0]}
    custom = {"isManagedVm": True, "canTakeCrashConsistentSnapshot": True,
              "backupRetryCount": retries}
    held = os.open(mount, os.O_RDONLY)
    fcntl.ioctl(held, FIFREEZE, 0)  # someone else froze it: our FIFREEZE gets EBUSY
    try:
        result, _ = do_run(confdir, uris, custom=custom, objects={"includedDisks": included})
    finally:
        fcntl.ioctl(held, FITHAW, 0)
        os.close(held)
    assert (result.status, result.code) == expected, result.message
    if result.ok:
        assert result.consistency is Consistency.CRASH and len(result.disks) == 1, result


@pytest.mark.root
def test_snapshot_ttl_is_not_sent_on_the_guest_path(loopfs, azurite, confdir, hanging_proxy):
    """As the original since 2023 (#1781): isSnapshotTtlEnabled is the host path's business;
    the guest snapshot request carries no x-ms-snapshot-ttl-expiry-hours header."""
    write_vmbackup_conf(confdir, [loopfs("ext4").mountpoint])
    hanging_proxy.hold = False
    uris = [hanging_proxy.route(u) for u in make_disks(azurite, 1)]
    configs = [{"Key": "isSnapshotTtlEnabled", "Value": True},
               {"Key": "useMccfForLad", "Value": "false"}]
    result, log = do_run(confdir, uris, objects={"dynamicConfigsFromCRP": configs,
                                                 "snapshotTaskToken": "tok-123456"})
    assert result.ok, result.message
    assert len(hanging_proxy.snapshots) == 1, "one snapshot request went through the proxy"
    assert not [h for h in hanging_proxy.snapshots[0] if "ttl" in h], hanging_proxy.snapshots
    assert "not passing a TTL header" in log.text(), log.text()
    assert "tok-123456" not in log.text(), "the task token is not logged"
