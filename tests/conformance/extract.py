"""Extract every request body and settings example of the seed documents as conformance cases.

`python -m tests.conformance.extract --write` regenerates corpus.json from seeds/; the tests
check that the committed corpus equals a fresh extraction. Every fenced block of every seed is
accounted for: a case (packetCapture, connectivityCheck, snapshot, out-of-scope), or a skipped
entry saying why it is no request to this handler.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from tests.conformance.powershell import (
    Script,
    comment_examples,
    expand,
    parse_script,
    single_quoted_json,
)

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
CORPUS = HERE / "corpus.json"
FENCE = re.compile(r"^```\s*([A-Za-z]*)\s*$")
CAPTURE_URL = re.compile(r"/packetCaptures/([^/?]*)(?:/(\w+))?\?", re.IGNORECASE)
CAPTURE, CHECK, SNAPSHOT, OUT_OF_SCOPE = ("packetCapture", "connectivityCheck", "snapshot",
                                          "out-of-scope")
SHORT_EXAMPLE = 16  # a longer single example is named "example" in the case id
RESTORE_REASON = ("a restore request to the Azure Backup REST API (management.azure.com, "
                  "restores/trigger, {kind}): Azure runs it, the guest agent never delivers it "
                  "to this handler; the in-guest equivalent of RestoreDisks is "
                  "`python -m snapshot restore`")
Entry = Dict[str, Any]


@dataclass(frozen=True)
class Block:
    seed: str
    line: int  # 1-based line of the opening fence
    lang: str  # the info string, lower case
    text: str  # the lines between the fences
    after: Tuple[str, ...]  # the seed's lines after the closing fence


def fenced_blocks(seed: str, text: str) -> List[Block]:
    lines = text.splitlines()
    blocks: List[Block] = []
    start, lang = 0, ""
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line.rstrip())
        if not start and fence:
            start, lang = number, fence.group(1).lower()
        elif start and fence and not fence.group(1):
            blocks.append(Block(seed, start, lang, "\n".join(lines[start:number - 1]),
                                tuple(lines[number:])))
            start = 0
    return blocks


def new_case(block: Block, kind: str, body: Any, suffix: str = "", **extra: Any) -> Entry:
    return {"id": f"{block.seed[:3]}:{block.line}{suffix}", "seed": block.seed,
            "line": block.line, "kind": kind, "body": body, **extra}


def skip(block: Block, reason: str) -> Entry:
    return {"seed": block.seed, "line": block.line, "lang": block.lang, "reason": reason}


# -- json blocks -------------------------------------------------------------------------
def json_block(block: Block) -> Tuple[List[Entry], List[Entry]]:
    try:
        doc = json.loads(block.text, strict=False)
    except ValueError:
        if "Microsoft.Compute/virtualMachines" in block.text:
            return [], [skip(block, "a fragment of the GET virtualMachines answer (not JSON on "
                                    "its own): an answer, not a request")]
        raise ValueError(f"{block.seed}:{block.line}: a json block that does not parse") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{block.seed}:{block.line}: a json block that is not an object")
    if isinstance(doc.get("value"), list):
        return [capture_resource(block, i, item) for i, item in enumerate(doc["value"])], []
    if "packetCaptureStatus" in doc:
        return [], [skip(block, "querystatus answer: the handler writes this shape as each "
                                "capture's substatus message")]
    if "connectionStatus" in doc:
        return [], [skip(block, "connectivity check answer: the handler writes this shape as "
                                "the connectivityCheck substatus message")]
    if (doc.get("properties") or {}).get("type") == "VMSnapshot":
        return [new_case(block, SNAPSHOT, doc, examples=table_after(block))], []
    restore = restore_kind(doc)
    if restore:
        return [new_case(block, OUT_OF_SCOPE, doc,
                         reason=RESTORE_REASON.format(kind=restore))], []
    raise ValueError(f"{block.seed}:{block.line}: an unrecognised json block")


def capture_resource(block: Block, index: int, item: Dict[str, Any]) -> Entry:
    notes = wrapped_lines(item)
    return new_case(block, CAPTURE, item, f"[{index}]", name=item.get("name"),
                    source="a packetCaptures resource of the GET (list) answer, as a client "
                           "echoes it back as the PUT body", **({"notes": notes} if notes else {}))


def restore_kind(doc: Dict[str, Any]) -> str:
    """recoveryType of an IaasVMRestoreRequest, at any depth; '' when the doc is none."""
    properties = doc.get("properties")
    if isinstance(properties, dict) and properties.get("objectType") == "IaasVMRestoreRequest":
        return str(properties.get("recoveryType"))
    for value in doc.values():
        found = restore_kind(value) if isinstance(value, dict) else ""
        if found:
            return found
    return ""


def table_after(block: Block) -> Dict[str, Any]:
    """The first markdown table after the block (the schema's property values): its rows
    under the header, cells verbatim, and the line of its first row."""
    first = block.line + len(block.text.splitlines()) + 2
    rows: Dict[str, str] = {}
    row_line, in_body = 0, False
    for offset, line in enumerate(block.after):
        if line.startswith("```") or (in_body and not line.startswith("|")):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2:
            continue
        if set(cells[0]) <= set("-: "):
            in_body = True  # the separator under the header row
        elif in_body:
            row_line = row_line or first + offset
            rows[cells[0]] = cells[1]
    return {"line": row_line, "values": rows}


def wrapped_lines(value: Any, path: str = "") -> List[str]:
    """Notes on string values that hold a line break: the seed wraps them over two lines."""
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in wrapped_lines(v, f"{path}.{k}".strip("."))]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in wrapped_lines(v, f"{path}[{i}]")]
    if isinstance(value, str) and "\n" in value:
        return [f"{path} holds a line break: the seed wraps the value over two lines"]
    return []


# -- powershell blocks -------------------------------------------------------------------
def powershell_block(block: Block) -> Tuple[List[Entry], List[Entry]]:
    script = parse_script(block.text)
    if not script.url:
        first = block.text.strip().splitlines()[0]
        return [], [skip(block, f"no request ({first[:60].strip()!r}): nothing is sent to "
                                "the handler")]
    url = expand(script.url, script.variables())
    if script.body_variable in script.here_strings:
        return body_cases(block, script), []
    found = CAPTURE_URL.search(url)
    action = {"POST": found.group(2), "DELETE": "delete"}.get(script.verb) if found else None
    if found and action in ("stop", "delete"):
        return [new_case(block, CAPTURE, None, method=script.verb, url=url,
                         name=found.group(1), action=action)], []
    if "/packetCaptures" in url:
        return [], [skip(block, f"a read ({script.verb} {read_target(url)}) with no body: the "
                                "handler reports every capture it knows in each status file's "
                                "substatus")]
    return [], [skip(block, f"a read of Azure Resource Manager ({script.verb} "
                            f"{read_target(url)}): no body, never sent to the handler")]


def read_target(url: str) -> str:
    path = url.split("?", 1)[0]
    return "/".join(part for part in path.rsplit("/", 3)[1:] if part)


def body_cases(block: Block, script: Script) -> List[Entry]:
    template = script.here_strings[script.body_variable]
    cases = [body_case(block, script, "", None)]
    for name, _, _, comment in script.assignments:
        if f"${{{name.lower()}}}" not in template.lower():
            continue  # an example for a variable the body does not use
        examples = comment_examples(comment)
        for example in examples:
            label = example if len(examples) > 1 or len(example) <= SHORT_EXAMPLE else "example"
            variant = {"variable": name, "example": example, "comment": "# " + comment}
            cases.append(body_case(block, script, f" {name}={label}", variant))
    return cases


def body_case(block: Block, script: Script, suffix: str,
              variant: Optional[Dict[str, str]]) -> Entry:
    values = script.variables()
    if variant is not None:
        values = script.variables((variant["variable"], expand(variant["example"], values)))
    body, notes = single_quoted_json(expand(script.here_strings[script.body_variable], values))
    url = expand(script.url, values)
    found = CAPTURE_URL.search(url)
    kind = CAPTURE if found and script.verb == "PUT" else CHECK
    if kind == CHECK and "/connectivityCheck?" not in url:
        raise ValueError(f"{block.seed}:{block.line}: a request body for {url}")
    extra: Dict[str, Any] = {"method": script.verb, "url": url}
    if found:
        extra["name"] = found.group(1)
    if variant is not None:
        extra["variant"] = variant
    if notes:
        extra["notes"] = notes
    return new_case(block, kind, body, suffix, **extra)


# -- other blocks and the whole corpus ---------------------------------------------------
def other_block(block: Block) -> Entry:
    first = block.text.strip().splitlines()[0] if block.text.strip() else ""
    if first.startswith("HTTP/"):
        return skip(block, f"an HTTP answer ({first}): not a request")
    if block.lang == "http":
        return skip(block, f"a request line without a body ({first.split()[0]} to the Azure "
                           "Backup REST API): Azure answers it, the handler never sees it")
    if block.lang == "azurecli":
        return skip(block, "an Azure CLI command run against Azure Resource Manager: it "
                           "enables backup or lists extensions, no settings body")
    return skip(block, f"console output or a path ({first[:40]!r}): not a request")


def extract(seeds: Path = SEEDS) -> Dict[str, Any]:
    cases: List[Entry] = []
    skipped: List[Entry] = []
    for path in sorted(seeds.glob("*.txt")):
        for block in fenced_blocks(path.name, path.read_text(encoding="utf-8")):
            if block.lang == "json":
                found, passed = json_block(block)
            elif block.lang == "powershell":
                found, passed = powershell_block(block)
            else:
                found, passed = [], [other_block(block)]
            cases += found
            skipped += passed
    return {"generated_by": "python -m tests.conformance.extract --write (do not edit)",
            "seeds": "tests/conformance/seeds", "cases": cases, "skipped": skipped}


def render(corpus: Dict[str, Any]) -> str:
    return json.dumps(corpus, indent=1, ensure_ascii=False) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {CORPUS.name}")
    args = parser.parse_args(argv)
    text = render(extract())
    if args.write:
        CORPUS.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
