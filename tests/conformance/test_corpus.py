"""corpus.json is exactly what the extractor draws from the seed copies, block for block."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

from tests.conformance.extract import CORPUS, FENCE, SEEDS, extract, fenced_blocks, render
from tests.conformance.powershell import comment_examples, single_quoted_json

TABLE = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"
SECTION = re.compile(r"<!-- section: conformance -->(.*?)<!-- /section: conformance -->", re.S)


def stored() -> Dict[str, Any]:
    corpus: Dict[str, Any] = json.loads(CORPUS.read_text(encoding="utf-8"))
    return corpus


def cases_by_id() -> Dict[str, Dict[str, Any]]:
    return {case["id"]: case for case in stored()["cases"]}


def test_the_stored_corpus_equals_a_fresh_extraction() -> None:
    assert CORPUS.read_text(encoding="utf-8") == render(extract(SEEDS)), \
        "corpus.json and seeds/ drifted: run `python -m tests.conformance.extract --write`"


def test_every_entry_points_at_the_opening_fence_of_a_block_in_its_seed() -> None:
    corpus = stored()
    for entry in corpus["cases"] + corpus["skipped"]:
        text = (SEEDS / entry["seed"]).read_text(encoding="utf-8")
        line = text.splitlines()[entry["line"] - 1]
        fence = FENCE.match(line.rstrip())
        assert fence, f"{entry['seed']}:{entry['line']} is {line!r}, not a fence"
        openings = {block.line for block in fenced_blocks(entry["seed"], text)}
        assert entry["line"] in openings, f"{entry['seed']}:{entry['line']} closes a block"


def test_every_fenced_block_is_a_case_or_skipped_with_a_reason() -> None:
    corpus = stored()
    blocks = {(path.name, block.line) for path in SEEDS.glob("*.txt")
              for block in fenced_blocks(path.name, path.read_text(encoding="utf-8"))}
    skipped = {(entry["seed"], entry["line"]) for entry in corpus["skipped"]}
    cased = {(case["seed"], case["line"]) for case in corpus["cases"]}
    assert skipped | cased == blocks and not skipped & cased, "each block once, none forgotten"
    assert all(entry["reason"] for entry in corpus["skipped"])
    kinds = {case["kind"] for case in corpus["cases"]}
    assert kinds == {"packetCapture", "connectivityCheck", "snapshot", "out-of-scope"}, kinds
    assert all(case["reason"] for case in corpus["cases"] if case["kind"] == "out-of-scope")


def test_the_put_here_string_is_resolved_as_powershell_and_arm_read_it() -> None:
    case = cases_by_id()["000:226"]
    properties = case["body"]["properties"]
    assert case["method"] == "PUT" and case["name"] == "TestPacketCapture5", case["url"]
    assert properties["timeLimitinSeconds"] == "60", "the seed's spelling and value, verbatim"
    assert properties["target"] == "/", "'/${targetUri}' with $targetUri = \"\""
    assert properties["storageLocation"]["filePath"] == "c:\\temp\\packetcapture.cap"
    assert "${" not in json.dumps(case["body"]), "every ${var} is substituted"
    check = cases_by_id()["001:241"]["body"]["destination"]
    assert check == {"address": "13.107.21.200", "port": 80}, "an unquoted ${var} is a number"


def test_comment_examples_become_variants_of_the_body() -> None:
    variants: List[str] = sorted(key.split(" ", 1)[1] for key in cases_by_id()
                                 if key.startswith("000:226 "))
    assert variants == sorted([
        "localPort=80", "localPort=80-120", "remotePort=80", "remotePort=80-120",
        "protocol=TCP", "protocol=UDP", "protocol=Any", "targetUri=example",
        "storageId=example", "storagePath=example", "localFilePath=example"]), variants
    assert comment_examples("Examples are: 80, or 80-120") == ["80", "80-120"]
    assert comment_examples("Valid values are TCP, UDP and Any.") == ["TCP", "UDP", "Any"]
    assert comment_examples('Example: "d:\\capture\\x.cap"') == ["d:\\capture\\x.cap"]
    assert comment_examples("the default is 60") == []


def test_single_quoted_json_keeps_backslashes_that_are_no_json_escape() -> None:
    body, notes = single_quoted_json(r"{'a': 'd:\capture', 'b': 'c:\\t', 'c': 'it\'s'}")
    assert body == {"a": "d:\\capture", "b": "c:\\t", "c": "it's"}, body
    assert len(notes) == 1 and "\\c" in notes[0], notes


def test_the_docs_table_names_every_case() -> None:
    found = SECTION.search(TABLE.read_text(encoding="utf-8"))
    assert found, "docs/conformance.md has its conformance table section"
    for case_id in cases_by_id():
        assert f"`{case_id}`" in found.group(1), f"{case_id} missing from the docs table"
