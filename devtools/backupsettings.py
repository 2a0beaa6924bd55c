"""Backup-service settings and disk blobs for tests and benchmarks: page blobs in Azurite that
stand in for a VM's disks, and VMSnapshot settings as the service sends them."""
from __future__ import annotations

import base64
import json
import os
import uuid


def b64(obj) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def make_disks(azurite, count: int, size: int = 64 * 1024, container: str = "",
               metadata=None) -> list:
    """Page blobs standing in for disks, with distinct content; returns their SAS URIs.
    `metadata[i]`, when given, is disk i's own blob metadata (as Azure compute sets it)."""
    container = container or "disks" + uuid.uuid4().hex[:8]
    uris = []
    for index in range(count):
        uri = azurite.blob_sas_uri(container, f"disk{index}.vhd")
        client = azurite.service().get_blob_client(container, f"disk{index}.vhd")
        client.create_page_blob(size, metadata=(metadata or {}).get(index))
        client.upload_page(bytes([index + 1]) * 4096 + os.urandom(4096), offset=0, length=8192)
        uris.append(uri)
    return uris


def settings_dicts(uris, task_id: str = "", ticks: str = "", logs: str = "",
                   status: str = "", custom=None, objects=None):
    """(public, protected) settings as the backup service sends them; `objects` updates the
    public objectStr (includedDisks, dynamicConfigsFromCRP...)."""
    from datetime import datetime, timezone

    if not ticks:
        now = datetime.now(timezone.utc)
        epoch = datetime(1, 1, 1, tzinfo=timezone.utc)
        ticks = str(int((now - epoch).total_seconds() * 10_000_000))
    public = {"taskId": task_id or str(uuid.uuid4()) + "_1", "commandToExecute": "snapshot",
              "commandStartTimeUTCTicks": ticks, "locale": "en-us",
              "vmType": "microsoft.compute/virtualmachines",
              "objectStr": b64(dict({"backupMetadata": [{"Key": "BackupJob", "Value": "job-1"}],
                                     "includedDisks": {"isOSDiskIncluded": True}},
                                    **(objects or {}))),
              "customSettings": json.dumps(custom or {"isManagedVm": True})}
    protected = {"objectStr": b64({"blobSASUri": list(uris)})}
    if logs:
        protected["logsBlobUri"] = logs
    if status:
        protected["statusBlobUri"] = status
    return public, protected
