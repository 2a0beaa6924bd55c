"""Just enough PowerShell for the seeds' armclient blocks: assignments, here-strings, $var."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

ASSIGNMENT = re.compile(r"""^\$(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)')\s*(?:#\s*(.*?))?\s*$""")
HERE_STRING_START = re.compile(r'^\$(\w+)\s*=\s*@"\s*$')
HERE_STRING_END = '"@'
ARMCLIENT = re.compile(r"""armclient\s+(\w+)\s+"?([^"\s]+)"?(?:\s+\$(\w+))?""", re.IGNORECASE)
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
# "# Examples are: 80, or 80-120", "# Valid values are TCP, UDP and Any.", "#Example "/x""
EXAMPLES = re.compile(r"^(?:Examples? are|Examples?|Valid values are)\s*:?\s*(.+)$",
                      re.IGNORECASE)
LIST_SEPARATOR = re.compile(r",\s*(?:or\s+|and\s+)?|\s+(?:or|and)\s+")
JSON_ESCAPES = set('"\\/bfnrtu')


@dataclass
class Script:
    """One powershell block: its variables (in order), here-strings and armclient call."""

    assignments: List[Tuple[str, str, bool, str]] = field(default_factory=list)
    here_strings: Dict[str, str] = field(default_factory=dict)
    verb: str = ""
    url: str = ""
    body_variable: str = ""

    def variables(self, override: Optional[Tuple[str, str]] = None) -> Dict[str, str]:
        """Variable values as PowerShell would hold them (names are case-insensitive)."""
        values: Dict[str, str] = {}
        for name, raw, expands, _ in self.assignments:
            value = expand(raw, values) if expands else raw
            if override is not None and name.lower() == override[0].lower():
                value = override[1]
            values[name.lower()] = value
        return values


def parse_script(text: str) -> Script:
    script = Script()
    here_name = ""
    here_lines: List[str] = []
    for line in text.splitlines():
        if here_name:
            if line.strip() == HERE_STRING_END:
                script.here_strings[here_name.lower()] = "\n".join(here_lines)
                here_name = ""
            else:
                here_lines.append(line)
            continue
        start, found = HERE_STRING_START.match(line), ASSIGNMENT.match(line)
        call = ARMCLIENT.search(line)
        if start:
            here_name, here_lines = start.group(1), []
        elif found:
            double = found.group(2) is not None
            raw = found.group(2) if double else found.group(3)
            script.assignments.append((found.group(1), raw, double, found.group(4) or ""))
        elif call:
            script.verb, script.url = call.group(1).upper(), call.group(2)
            script.body_variable = (call.group(3) or "").lower()
    return script


def expand(text: str, values: Dict[str, str]) -> str:
    """Double-quoted string expansion: $name and ${name}; an unset variable is empty."""
    return VARIABLE.sub(lambda m: values.get((m.group(1) or m.group(2)).lower(), ""), text)


def comment_examples(comment: str) -> List[str]:
    """The example values a comment names: quoted strings, else a list like "80, or 80-120"."""
    found = EXAMPLES.match(comment.strip())
    if not found:
        return []
    rest = found.group(1).strip()
    quoted = re.findall(r'"([^"]*)"', rest)
    if quoted:
        return quoted
    return [part.strip() for part in LIST_SEPARATOR.split(rest.rstrip(". ")) if part.strip()]


def single_quoted_json(text: str) -> Tuple[Any, List[str]]:
    """JSON with 'single-quoted' strings, as ARM's JSON reader takes it, and notes on any
    backslash that is no JSON escape (kept as a literal backslash, as the path means)."""
    out: List[str] = []
    notes: List[str] = []
    index = 0
    while index < len(text):
        if text[index] != "'":
            out.append(text[index])
            index += 1
            continue
        string, index = _single_quoted(text, index + 1, notes)
        out.append(string)
    return json.loads("".join(out), strict=False), notes


def _single_quoted(text: str, index: int, notes: List[str]) -> Tuple[str, int]:
    """One 'string' starting after its quote: the double-quoted JSON text, the next index."""
    chars = ['"']
    while text[index] != "'":
        char = text[index]
        if char == "\\":
            escaped = text[index + 1]
            if escaped == "'":
                chars.append("'")
            elif escaped in JSON_ESCAPES:
                chars.append(char + escaped)
            else:
                chars.append("\\\\" + escaped)
                notes.append(f"'\\{escaped}' is not a JSON escape: read as a backslash "
                             f"and '{escaped}'")
            index += 2
            continue
        chars.append('\\"' if char == '"' else char)
        index += 1
    chars.append('"')
    return "".join(chars), index + 1
