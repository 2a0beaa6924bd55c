"""includedDisks: which disk blobs a run snapshots, and which LUN each blob is (code 17)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from snapshot.errors import Code, DiskSelectionError
from snapshot.fields import FieldError, describe, flag, record

OS_LUN = -1  # the original's convention for the OS disk in its LUN list
MAX_LUN = 63  # Azure attaches at most 64 data disks, LUN 0..63
DISK_TYPE_KEY = "microsoftazurecompute_disktype"  # set by Azure compute on disk page blobs
_ROLE = {"osdisk": True, "datadisk": False}


@dataclass(frozen=True)
class IncludedDisks:
    """The parsed includedDisks object. `luns` None: no LUN list, every blob is snapshotted."""

    luns: Optional[tuple[int, ...]] = None
    os_included: bool = False
    any_excluded: bool = False

    @property
    def selects(self) -> bool:
        return self.luns is not None

    def described(self) -> str:
        parts = (["the OS disk"] if self.os_included else []) + [f"LUN {n}" for n in self.luns
                                                               or ()]
        return ", ".join(parts) or "no disk"


@dataclass(frozen=True)
class DiskTarget:
    """One blob the run snapshots: its index in blobSASUri, its URI, its LUN if known."""

    index: int
    uri: str
    lun: Optional[int] = None

    @property
    def lun_label(self) -> str:
        return "" if self.lun is None else str(self.lun)


def parse_included_disks(raw: Any) -> IncludedDisks:
    """IncludedDisks, or FieldError(17) naming the bad key."""
    code = Code.BAD_LUN_LIST
    value = record(raw, "includedDisks", code)
    luns = value.get("dataDiskLunList")
    os_included = flag(value.get("isOSDiskIncluded"), "includedDisks.isOSDiskIncluded",
                       code=code)
    any_excluded = flag(value.get("isAnyDiskExcluded"), "includedDisks.isAnyDiskExcluded",
                        code=code)
    if luns is None:
        return IncludedDisks(None, os_included, any_excluded)
    if not isinstance(luns, list) or len(luns) > MAX_LUN + 1:
        raise FieldError("includedDisks.dataDiskLunList must be a list of at most "
                         f"{MAX_LUN + 1} LUNs, not {describe(luns)}", code)
    seen: list[int] = []
    for index, lun in enumerate(luns):
        if isinstance(lun, bool) or not isinstance(lun, int) or not 0 <= lun <= MAX_LUN:
            raise FieldError(f"includedDisks.dataDiskLunList[{index}] must be a LUN, a whole "
                             f"number from 0 to {MAX_LUN}, not {describe(lun)}", code)
        if lun in seen:
            raise FieldError(f"includedDisks.dataDiskLunList[{index}] repeats LUN {lun}", code)
        seen.append(lun)
    if not seen and not os_included:
        raise FieldError("includedDisks selects no disk: dataDiskLunList is empty and "
                         "isOSDiskIncluded is not true", code)
    return IncludedDisks(tuple(seen), os_included, any_excluded)


def plan_disks(uris: Sequence[str], included: IncludedDisks) -> list[DiskTarget]:
    """The blobs to snapshot. blobSASUri lists the OS disk first, then the data disks in the
    order of dataDiskLunList; the service may leave the OS disk out or send it excluded."""
    if not included.selects:
        return [DiskTarget(i, uri) for i, uri in enumerate(uris)]
    luns = list(included.luns or ())
    wanted = ([OS_LUN] if included.os_included else []) + luns
    if len(uris) == len(wanted):
        return [DiskTarget(i, uri, lun) for i, (uri, lun) in enumerate(zip(uris, wanted))]
    if not included.os_included and len(uris) == len(luns) + 1:  # OS disk sent, not included
        return [DiskTarget(i + 1, uri, lun) for i, (uri, lun) in enumerate(zip(uris[1:], luns))]
    raise FieldError(f"includedDisks (dataDiskLunList, isOSDiskIncluded) names {len(wanted)} "
                     f"disk(s) ({included.described()}) but "
                     f"blobSASUri has {len(uris)} URI(s): "
                     + ("a listed LUN has no disk blob" if len(uris) < len(wanted)
                        else "there are disk blobs no LUN names"), Code.BAD_LUN_LIST)


def check_roles(targets: Sequence[DiskTarget], metadata: Sequence[Mapping[str, str]]) -> None:
    """A blob whose own metadata says OS or data disk must sit where the LUN plan puts it
    (metadata[i] belongs to targets[i]); without a LUN list there is nothing to check."""
    for target, own in zip(targets, metadata):
        if target.lun is None:
            continue
        kind = {k.lower(): v for k, v in own.items()}.get(DISK_TYPE_KEY, "")
        is_os = _ROLE.get(str(kind).strip().lower())
        if is_os is not None and is_os != (target.lun == OS_LUN):
            where = "the OS disk" if target.lun == OS_LUN else f"LUN {target.lun}"
            raise DiskSelectionError(
                f"blobSASUri[{target.index}] is {'an OS' if is_os else 'a data'} disk by its "
                f"own metadata ({DISK_TYPE_KEY}) but includedDisks places it as {where}: the "
                "LUN list does not match the disk blobs")
