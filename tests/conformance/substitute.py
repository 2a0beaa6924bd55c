"""A case's body as the settings its caller would send, with ONLY what cannot exist here
substituted; every substitution is a named step, shown in the test id."""
from __future__ import annotations

import base64
import copy
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple
from urllib.parse import urlsplit, urlunsplit

Settings = Tuple[Dict[str, Any], Dict[str, Any]]  # (public, protected)
SHORT_LIMIT = 3  # seconds: the seeds' 60 s captures, shortened to keep the run short
BlobCount = re.compile(r"https:\\?/\\?/")


@dataclass
class Here:
    """What exists on this machine instead of the seeds' Azure resources."""

    azurite: Any
    capture_root: Path = Path("/var/captures")
    server: str = ""  # the connectivity lab's server address
    make_disks: Callable[[int], List[str]] = field(default=lambda count: [])


def key_of(obj: Dict[str, Any], name: str) -> str:
    """The key spelling `obj` uses for `name` (the seeds write `timeLimitinSeconds`)."""
    return next((key for key in obj if key.lower() == name.lower()), name)


def azurite_blob(here: Here, url: str) -> Tuple[str, str]:
    """The seed's blob URL on Azurite: same container and blob name, the account replaced;
    returns (URL without query, SAS token). The seeds' line wraps are not part of the URL."""
    path = urlsplit(re.sub(r"\s+", "", url)).path.lstrip("/")
    container, blob = path.split("/", 1)
    base, token = here.azurite.blob_sas_uri(container, blob).split("?", 1)
    return base, token


# -- packetCapture ---------------------------------------------------------------------
def capture_settings(case: Dict[str, Any], steps: Tuple[str, ...], here: Here) -> Settings:
    """{"commandToExecute": "packetCapture", "packetCapture": the resource}: a PUT body gets
    the capture's name from its URL (ARM's resource name), a stop/delete is its action."""
    body = copy.deepcopy(case["body"])
    if body is None:
        body = {"name": case["name"], "action": case["action"]}
    elif not any(key.lower() == "name" for key in body):
        body = {"name": case["name"], **body}
    protected: Dict[str, Any] = {}
    fields = body.get("properties", body)
    for step in steps:
        CAPTURE_STEPS[step](fields, protected, here)
    return {"commandToExecute": "packetCapture", "packetCapture": body}, protected


def _storage_to_azurite(fields: Dict[str, Any], protected: Dict[str, Any], here: Here) -> None:
    location = fields[key_of(fields, "storageLocation")]
    key = key_of(location, "storagePath")
    location[key], protected["storageSasToken"] = azurite_blob(here, location[key])


def _file_to_capture_root(fields: Dict[str, Any], _: Dict[str, Any], here: Here) -> None:
    location = fields[key_of(fields, "storageLocation")]
    key = key_of(location, "filePath")
    location[key] = str(here.capture_root / re.split(r"[\\/]", location[key])[-1])


def _short_time_limit(fields: Dict[str, Any], _: Dict[str, Any], here: Here) -> None:
    key = key_of(fields, "timeLimitInSeconds")
    fields[key] = type(fields[key])(SHORT_LIMIT)  # "60" stays a string, 60 a number


STORAGE, FILE, TIME = "storagePath->Azurite", "filePath->capture root", "timeLimit 60->3"
CAPTURE_STEPS = {STORAGE: _storage_to_azurite, FILE: _file_to_capture_root,
                 TIME: _short_time_limit}


# -- connectivityCheck -------------------------------------------------------------------
ADDRESS = "address->lab server"


def check_settings(case: Dict[str, Any], steps: Tuple[str, ...], here: Here) -> Settings:
    body = copy.deepcopy(case["body"])
    if ADDRESS in steps:
        destination = body["destination"]
        destination["address"] = lab_address(destination["address"], here.server)
    return {"commandToExecute": "connectivityCheck", "connectivityCheck": body}, {}


def lab_address(address: str, server: str) -> str:
    """An IP or host becomes the lab server; a URL keeps its scheme, port and path."""
    if "://" not in address:
        return server
    parts = urlsplit(address)
    netloc = server + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# -- VMSnapshot ----------------------------------------------------------------------------
TABLE, BLOBS, PUBLIC_OBJECT, NOW = ("values<-table", "storage->Azurite",
                                    "+public objectStr", "ticks->now")


def snapshot_settings(case: Dict[str, Any], steps: Tuple[str, ...], here: Here) -> Settings:
    """properties.settings and .protectedSettings of the ARM extension resource: what the
    agent hands the handler as public and protected settings."""
    public = copy.deepcopy(case["body"]["properties"]["settings"])
    protected = copy.deepcopy(case["body"]["properties"]["protectedSettings"])
    table = case["examples"]["values"]
    if TABLE in steps:
        public["taskId"] = table["taskId"]
        public["commandStartTimeUTCTicks"] = table["commandStartTimeUTCTicks"]
        public["locale"] = table["landinstellingen"]  # the translated name of `locale`
    if BLOBS in steps:
        disks = here.make_disks(len(BlobCount.findall(table["objectStr"])))
        protected["objectStr"] = b64({"blobSASUri": disks})
        for key in ("logsBlobUri", "statusBlobUri"):
            protected[key] = "?".join(azurite_blob(here, table[key]))
    if PUBLIC_OBJECT in steps:
        public["objectStr"] = b64({"backupMetadata": [{"Key": "TaskId",
                                                       "Value": public["taskId"]}]})
    if NOW in steps:
        public["commandStartTimeUTCTicks"] = str(now_ticks())
    return public, protected


def b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def now_ticks() -> int:
    epoch = datetime(1, 1, 1, tzinfo=timezone.utc)
    return int((datetime.now(timezone.utc) - epoch).total_seconds() * 10_000_000)
