"""The code table is the backup service's, number for number; nothing raises a number of its own."""
from __future__ import annotations

import ast
from pathlib import Path

from snapshot.errors import Code, all_codes

PACKAGE = Path(__file__).resolve().parents[2] / "snapshot"

# The backup service's "Error codes" table, as the original numbers it (docs/vmsnapshot.md).
SPEC = {
    0: "success app-consistent", 1: "success", 2: "error", 3: "already processed",
    4: "transitioning", 11: "parameter error", 12: "error 12", 13: "wrong time",
    14: "same taskId", 15: "HTTP failure", 16: "guest agent certificate not found",
    17: "invalid data disk LUN list", 76: "snapshot failed, no network",
    85: "snapshot count limit reached", 121: "freeze failed", 122: "freeze timeout",
    123: "unable to open a mount", 124: "freeze helper not found",
    173: "snapshot rate exceeded", 300: "pre-script failed", 301: "post-script failed",
    302: "pre-script not found", 303: "post-script not found",
    304: "plugin-host config parsing", 305: "plugin config parsing",
    306: "pre-script permission error", 307: "post-script permission error",
    308: "pre-script timeout", 309: "post-script timeout", 310: "plugin host pre timeout",
    311: "plugin host post timeout", 312: "checksum mismatch",
    313: "plugin-host config not found", 314: "plugin-host config permission error",
    315: "plugin-host config ownership error", 316: "plugin config not found",
    317: "plugin config permission error", 318: "plugin config ownership error",
    402: "command invoked too late", 500: "workload pre error",
    501: "workload.conf parsing", 502: "invalid role", 503: "invalid workload name",
    504: "workload post error", 505: "workload authorization missing",
    506: "workload connection error", 507: "IPC directory missing",
    508: "database status changed", 509: "quiescing error", 510: "quiescing timeout",
    511: "database in no-archive-log mode", 512: "log mode changed",
    556: "host snapshot: remote server error",
}

NAMED = {  # the rows the brief names, by the name the code uses
    "PRE_SCRIPT_TIMEOUT": 308, "POST_SCRIPT_TIMEOUT": 309, "PRE_SCRIPT_PERMISSION": 306,
    "POST_SCRIPT_PERMISSION": 307, "PRE_SCRIPT_NOT_FOUND": 302, "POST_SCRIPT_NOT_FOUND": 303,
    "PLUGIN_CONFIG_NOT_FOUND": 316, "PLUGIN_CONFIG_PERMISSION": 317,
    "PLUGIN_CONFIG_OWNERSHIP": 318, "PLUGIN_CONFIG_PARSE": 305, "WORKLOAD_CONF_PARSE": 501,
    "WORKLOAD_INVALID_NAME": 503, "WORKLOAD_PRE_ERROR": 500, "WORKLOAD_POST_ERROR": 504,
    "WORKLOAD_AUTH_MISSING": 505, "WORKLOAD_CONNECTION_ERROR": 506,
    "WORKLOAD_QUIESCE_TIMEOUT": 510, "BAD_LUN_LIST": 17, "TOO_LATE": 402,
}


def test_code_table_is_the_spec_table():
    numbers = sorted(all_codes().values())
    assert numbers == sorted(SPEC), f"Code must hold exactly the spec's numbers: {numbers}"
    assert len(set(numbers)) == len(numbers), "each number has one name"
    for name, number in NAMED.items():
        assert getattr(Code, name, None) == number, f"Code.{name} must be {number} ({SPEC[number]})"


def test_no_literal_code_numbers_in_the_package():
    """Every code comes from `Code`: a bare number passed as a code would escape the table."""
    offenders = []
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                args = list(node.args) + [k.value for k in node.keywords if k.arg == "code"]
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name.endswith("Error") or name in ("error_result", "PhaseResult"):
                    offenders += [f"{path.name}:{node.lineno}" for a in args
                                  if isinstance(a, ast.Constant) and isinstance(a.value, int)
                                  and not isinstance(a.value, bool) and a.value > 1]
    assert not offenders, f"literal code numbers (use Code.*): {offenders}"
