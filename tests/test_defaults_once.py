"""Each default is declared once, in its capability's settings module: no shipped module holds
a copy of its number, and the tables in docs/ state the values the code declares."""
from __future__ import annotations

import ast
import operator
import re
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("handler", "capture_engine", "connectivity", "snapshot", "plumbing", "bin")


class Declared(NamedTuple):
    """A default (or limit): its value, where it is declared, and where a copy is looked for."""

    value: object
    declarations: Tuple[str, ...]  # "path/module.py:NAME", each a module-level assignment
    scope: Tuple[str, ...] = SHIPPED
    floats_only: bool = False  # small timeouts: an int of that value is something else


DECLARED = [
    Declared(1_073_741_824, ("capture_engine/settings.py:DEFAULT_TOTAL_BYTES",)),
    Declared(104_857_600, ("capture_engine/settings.py:DEFAULT_FILE_SIZE",)),
    Declared(18_000, ("capture_engine/settings.py:DEFAULT_TIME_LIMIT",)),
    Declared(86_400, ("capture_engine/settings.py:DEFAULT_SESSION_TIME_LIMIT",)),
    Declared("/var/captures", ("capture_engine/settings.py:CAPTURE_ROOT",)),
    Declared(6.0, ("connectivity/dns.py:DNS_BUDGET",), ("connectivity",), floats_only=True),
    Declared(1800, ("snapshot/scripts.py:MAX_TIMEOUT",), ("snapshot", "handler")),
    Declared(30.0, ("snapshot/scripts.py:DEFAULT_TIMEOUT",
                    "snapshot/config.py:DEFAULT_SNAPSHOT_TIMEOUT"), ("snapshot",),
             floats_only=True),
    Declared(60.0, ("snapshot/config.py:DEFAULT_FREEZE_TIMEOUT",), ("snapshot",),
             floats_only=True),
    Declared(600.0, ("snapshot/config.py:MAX_FREEZE_TIMEOUT",
                     "snapshot/config.py:MAX_SNAPSHOT_TIMEOUT", "snapshot/restore.py:COPY_TIMEOUT"),
             ("snapshot",), floats_only=True),
    Declared(90.0, ("snapshot/workload.py:DEFAULT_TIMEOUT",), ("snapshot", "handler"),
             floats_only=True),
]
# Constants that happen to have a default's value and mean something else.
COINCIDENCES = {"plumbing/netns.py:CLONE_NEWNET"}  # the kernel's 0x40000000, not 1 GiB
_FOLD: Dict[type, Callable[[object, object], object]] = {
    ast.Mult: operator.mul, ast.Pow: operator.pow, ast.LShift: operator.lshift,
    ast.Add: operator.add}


def _value(node: ast.AST) -> Optional[object]:
    """A literal's value, `1 << 30` and `100 * 1024 * 1024` folded too; None for the rest."""
    if isinstance(node, ast.Constant) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLD:
        left, right = _value(node.left), _value(node.right)
        small = isinstance(node.op, (ast.Mult, ast.Add)) or (isinstance(right, int)
                                                             and 0 <= right < 64)
        if isinstance(left, int) and isinstance(right, int) and small:
            return _FOLD[type(node.op)](left, right)
    return None


def _matches(value: object, declared: Declared) -> bool:
    if isinstance(declared.value, str) or isinstance(value, str):
        return value == declared.value
    if declared.floats_only and not isinstance(value, float):
        return False
    return isinstance(value, (int, float)) and value == declared.value


def _assigned_name(node: ast.Assign) -> str:
    """NAME of a module-level `NAME = value` ("" for any other assignment)."""
    target = node.targets[0] if len(node.targets) == 1 else None
    return target.id if isinstance(target, ast.Name) else ""


def _assigned_names(tree: ast.Module) -> List[str]:
    return [_assigned_name(node) for node in tree.body if isinstance(node, ast.Assign)]


def copies(source: str, path: str) -> List[str]:
    """`path:line value` for each literal of a declared default in `source` that is not the
    default's own declaration."""
    tree = ast.parse(source)
    declared_here = {f"{path}:{name}" for name in _assigned_names(tree)} & ({
        where for declared in DECLARED for where in declared.declarations} | COINCIDENCES)
    allowed = {id(node.value) for node in tree.body if isinstance(node, ast.Assign)
               and f"{path}:{_assigned_name(node)}" in declared_here}
    found = []
    for node in ast.walk(tree):
        value = _value(node)
        if value is None or id(node) in allowed:
            continue
        for declared in DECLARED:
            if path.split("/")[0] in declared.scope and _matches(value, declared):
                found.append(f"{path}:{getattr(node, 'lineno', '?')} {value!r} "
                             f"(declared as {' or '.join(declared.declarations)})")
    return found


def _shipped_files() -> List[Path]:
    return sorted(path for package in SHIPPED for path in (ROOT / package).rglob("*.py"))


def test_no_shipped_module_copies_a_declared_default() -> None:
    found = [line for path in _shipped_files()
             for line in copies(path.read_text(encoding="utf-8"),
                                path.relative_to(ROOT).as_posix())]
    assert not found, "use the declared constant, not a copy of its number:\n" + \
        "\n".join(found)


def test_every_declaration_exists_with_its_value() -> None:
    for declared in DECLARED:
        for where in declared.declarations:
            path, name = where.split(":")
            module = path[:-3].replace("/", ".")
            value = getattr(__import__(module, fromlist=[name]), name)
            assert value == declared.value, f"{where} is {value!r}, not {declared.value!r}"


@pytest.mark.parametrize("source", [
    "LIMIT = 1_073_741_824\n",  # the right value under another name
    "def f(size=1 << 30):\n    return size\n",
    "ROOT = '/var/captures/'.rstrip('/') or '/var/captures'\n",
    "x = 100 * 1024 * 1024\n",
])
def test_the_scan_finds_a_copy(source: str) -> None:
    assert copies(source, "handler/example.py"), f"a copy went unnoticed: {source!r}"


def test_the_scan_accepts_the_declaration_and_ints_for_float_timeouts() -> None:
    assert not copies("DEFAULT_TOTAL_BYTES = 1_073_741_824\n", "capture_engine/settings.py")
    assert not copies("MAX_DIGITS = 30\n", "snapshot/fields.py"), "30 digits is no timeout"
    assert copies("TIMEOUT = 30.0\n", "snapshot/other.py"), "a float copy of a timeout"


# -- the docs' tables state the declared values -------------------------------------------
def _doc(name: str) -> str:
    return (ROOT / "docs" / name).read_text(encoding="utf-8")


def _row_default(page: str, field: str) -> int:
    match = re.search(rf"^\| `{re.escape(field)}` \| ([\d,]+) \|", page, re.MULTILINE)
    assert match, f"no `{field}` row with a default in the table"
    return int(match.group(1).replace(",", ""))


def test_packet_capture_docs_state_the_declared_defaults() -> None:
    from capture_engine import settings as S

    page = _doc("packet-capture.md")
    for field, value in (("totalBytesPerSession", S.DEFAULT_TOTAL_BYTES),
                         ("timeLimitInSeconds", S.DEFAULT_TIME_LIMIT),
                         ("captureSettings.fileCount", S.DEFAULT_FILE_COUNT),
                         ("captureSettings.fileSizeInBytes", S.DEFAULT_FILE_SIZE),
                         ("captureSettings.sessionTimeLimitInSeconds",
                          S.DEFAULT_SESSION_TIME_LIMIT)):
        assert _row_default(page, field) == value, f"docs/packet-capture.md: {field}"
    assert f'capture_root="{S.CAPTURE_ROOT}"' in page
    assert f"| `PACKET_CAPTURE_ROOT` | capture root (default `{S.CAPTURE_ROOT}`) |" in \
        _doc("agent-protocol.md")


def test_vmsnapshot_docs_state_the_declared_defaults() -> None:
    from snapshot import config, scripts, workload

    page = _doc("vmsnapshot.md")
    stated = {
        "freeze timeout s (default {:g}, ≤ {:g})": (config.DEFAULT_FREEZE_TIMEOUT,
                                                   config.MAX_FREEZE_TIMEOUT),
        "`SnapshotTimeout` per blob request s (default {:g})": (config.DEFAULT_SNAPSHOT_TIMEOUT,),
        "`SnapshotParallelism` (default {})": (config.DEFAULT_SNAPSHOT_PARALLELISM,),
        "`timeoutInSeconds` (1–{}, default {:g},": (scripts.MAX_TIMEOUT, scripts.DEFAULT_TIMEOUT),
        "`preScriptNoOfRetries`/`postScriptNoOfRetries` (0–{})": (scripts.MAX_RETRIES,),
        "`credString`, `timeout` ({:g})": (workload.DEFAULT_TIMEOUT,),
    }
    for text, values in stated.items():
        assert text.format(*values) in page, f"docs/vmsnapshot.md must say {text.format(*values)!r}"


def test_connectivity_docs_state_the_check_settings() -> None:
    from connectivity.check import CheckSettings
    from connectivity.hops import windows

    settings, page = CheckSettings(), _doc("connectivity-check.md")
    trace = settings.trace
    stated = [
        f"D + N × (P + {settings.interval:g} s) + H + L",
        f"else {settings.dns_budget:g} s",
        f"P  one probe, every phase included: {settings.probe_timeout:g} s for Tcp/Icmp; "
        f"{settings.probe_timeout + settings.http_timeout:g} s for Http(s)",
        f"H  hop discovery: {windows(trace)} windows × {trace.timeout:g} s = "
        f"{settings.hops_budget():g} s",
        f"iptables-save): {settings.local_budget:g} s",
    ]
    for text in stated:
        assert text in page, f"docs/connectivity-check.md must say {text!r}"
