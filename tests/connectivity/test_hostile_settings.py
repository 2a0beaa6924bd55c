"""Hostile values for every request field: a coded refusal naming the field, fast, never a crash."""
from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from connectivity import errors as E
from connectivity.request import parse_request

TCP = {"destination": {"address": "10.199.2.2", "port": 80}}
HTTP = {"destination": {"address": "http://10.199.2.2/"}, "protocol": "Http",
        "protocolConfiguration": {"HTTPConfiguration": {
            "method": "Get", "headers": [{"name": "X-A", "value": "1"}],
            "validStatusCodes": [200]}}}
CONFIG = ("protocolConfiguration", "HTTPConfiguration")
RESOURCE_ID = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v"

# (path, base settings, kind, expected code, required): every field a caller can send.
FIELDS: list[tuple[tuple[Any, ...], dict, str, int, bool]] = [
    (("destination",), TCP, "object", 11, True),
    (("destination", "address"), TCP, "address", 11, True),
    (("destination", "port"), TCP, "port", 12, True),
    (("destination", "resourceId"), TCP, "resourceId", 11, False),
    (("source",), TCP, "object", 10, False),
    (("source", "port"), TCP, "port", 12, False),
    (("source", "resourceId"), TCP, "resourceId", 10, False),
    (("protocol",), TCP, "enum", 13, False),
    (("preferredIPVersion",), TCP, "enum", 17, False),
    (("probes",), TCP, "probes", 14, False),
    (("protocolConfiguration",), HTTP, "object", 16, False),
    (CONFIG, HTTP, "object", 16, False),
    (CONFIG + ("method",), HTTP, "enum", 16, False),
    (CONFIG + ("headers",), HTTP, "list", 16, False),
    (CONFIG + ("headers", 0), HTTP, "object", 16, True),
    (CONFIG + ("headers", 0, "name"), HTTP, "token", 16, True),
    (CONFIG + ("headers", 0, "value"), HTTP, "header", 16, True),
    (CONFIG + ("validStatusCodes",), HTTP, "list", 16, False),
    (CONFIG + ("validStatusCodes", 0), HTTP, "status", 16, True),
] + [((name,), TCP, "readonly", 10, False)
     for name in ("id", "name", "etag", "type", "provisioningState")]

UNICODE_CLASSES = {           # code point ranges a generated character is drawn from
    "latin-1": (0xC0, 0xFF), "cyrillic": (0x430, 0x44F), "cjk": (0x4E00, 0x9FFF),
    "emoji": (0x1F600, 0x1F64F), "rtl": (0x5D0, 0x5EA), "bidi": (0x202A, 0x202E),
    "combining": (0x300, 0x36F), "zero-width": (0x200B, 0x200D), "surrogate": (0xD800, 0xDFFF),
    "private": (0xE000, 0xF8FF), "fullwidth-digit": (0xFF10, 0xFF19), "euro": (0x20AC, 0x20AC)}
CONTROLS = ["\x00", "\x01", "\x08", "\x0a", "\x0b", "\x0c", "\x0d", "\x1b", "\x1f", "\x7f",
            "\x85", "\x9f"]
MEGABYTE = 1 << 20
HUGE_DIGITS = 10 ** (10 ** 6)   # a number with a million digits


def deep(levels: int, container: str) -> Any:
    """A list or object nested `levels` deep, built without recursion."""
    value: Any = 1
    for _ in range(levels):
        value = [value] if container == "list" else {"a": value}
    return value


STRING_KINDS = ("address", "enum", "token", "header", "resourceId", "readonly")
INTEGER_KINDS = ("port", "probes", "status")


def wrong_types(kind: str, required: bool) -> Iterator[Any]:
    """Values of a JSON type the field does not take (and structures it must not descend)."""
    numbers = [True, False, 1.5, -0.0, 80.0, math.nan, math.inf, -math.inf, 1e308, 10 ** 30,
               -(10 ** 30), 2 ** 64, HUGE_DIGITS, -HUGE_DIGITS]
    structures = [[1], {"a": 1}, deep(10_000, "list"), deep(10_000, "object")]
    if kind in STRING_KINDS:
        yield from numbers + structures + [[], {}]
    elif kind in INTEGER_KINDS:
        yield from [v for v in numbers if isinstance(v, (bool, float))]
        yield from structures + [[], {}, "80", "\uff18\uff10", "x"]
    elif kind == "object":
        yield from numbers + structures + [[], "x"] + ([{}] if required else [])
        yield {f"field{i}": i for i in range(100_000)}   # many unknown fields
    else:  # a list
        yield from numbers + structures + [{}, "x"]


def chars(rng: random.Random, name: str, count: int = 3) -> str:
    low, high = UNICODE_CLASSES[name]
    return "".join(chr(rng.randint(low, high)) for _ in range(count))


def hostile_strings(kind: str, rng: random.Random) -> Iterator[str]:
    """Strings that are wrong for `kind`, from every hostile class that applies to it."""
    for name in UNICODE_CLASSES:
        if (kind == "header" and name == "latin-1") or (kind == "readonly"
                                                        and name != "surrogate"):
            continue  # a valid header value; printable text is a fine resource name
        text = chars(rng, name)
        yield {"address": f"web{text}.example", "token": f"X-{text}"}.get(kind, text)
        if kind == "address":
            yield f"http://ex{text}ample/"
    for control in CONTROLS:
        yield {"address": f"10.199.2.2{control}", "header": f"a{control}b",
               "token": f"X{control}A", "resourceId": f"{RESOURCE_ID}{control}",
               "readonly": f"n{control}"}.get(kind, f"Tcp{control}")
        if kind == "address":
            yield f"http://10.199.2.2/{control}"
    yield "a" * MEGABYTE
    if kind == "address":
        yield from ["[10.199.2.2", "[]", "[::1", "::1]", "[[::1]]", "http://[::1/",
                    "[web.cc.test]", "http://[10.199.2.2]/", "http://10.199.2.2:0/",
                    "web cc.test", "http://" + "a" * MEGABYTE, "a" * 64 + ".test",
                    "http://10.199.2.2/a b", "1" * MEGABYTE]
    if kind in ("enum", "token", "resourceId"):
        yield from ["[Tcp]", "{Tcp}", "Tcp ", " ", "()"]


def hostile_values(kind: str, required: bool, rng: random.Random) -> Iterator[Any]:
    yield from wrong_types(kind, required)
    if required:
        yield None
        if kind != "header":
            yield ""
    if kind in ("port", "probes", "status"):
        yield from {"port": [-1, 65536, 10 ** 30, -HUGE_DIGITS, HUGE_DIGITS],
                    "probes": [0, -1, 101, 10 ** 30, HUGE_DIGITS],
                    "status": [0, 99, 600, HUGE_DIGITS]}[kind]
    if kind in STRING_KINDS:
        yield from hostile_strings(kind, rng)
    if kind == "list":   # too many entries, each valid for either list
        yield [200] * 100_000
        yield [{"name": "X-A", "value": "1"}] * 100_000


def with_value(base: dict, path: tuple[Any, ...], value: Any) -> dict:
    settings = copy.deepcopy(base)
    target = settings
    for step in path[:-1]:
        target = target.setdefault(step, {}) if isinstance(step, str) else target[step]
    target[path[-1]] = value
    return settings


def dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}" if out else step
    return out


def describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:40]) + (f"... ({len(value)} chars)" if len(value) > 40 else "")
    if isinstance(value, int) and abs(value) > 10 ** 40:
        return f"int with {value.bit_length()} bits"
    return type(value).__name__ if isinstance(value, (list, dict)) else repr(value)


def refusal_problem(settings: dict, field: str, code: int) -> str:
    """Empty when parse_request refused as it should; else what went wrong."""
    started = time.monotonic()
    try:
        parse_request(settings)
    except E.ConnectivityRequestError as exc:
        took = time.monotonic() - started
        paths = [p for p, _ in exc.problems]
        if exc.code != code:
            return f"code {exc.code}, want {code}: {exc.message[:300]}"
        if not paths or not all(p == field or p.startswith((field + ".", field + "["))
                                for p in paths):
            return f"problems name {paths}, want {field}"
        if took >= 1.0:
            return f"took {took:.2f} s"
        if len(exc.message) > 20_000:
            return f"a {len(exc.message)}-character message"
        return ""
    except Exception as exc:  # noqa: BLE001 - any other exception is the finding
        return f"raised {type(exc).__name__}: {str(exc)[:200]}"
    return "accepted"


@pytest.mark.parametrize("path, base, kind, code, required",
                         [pytest.param(*f, id=dotted(f[0])) for f in FIELDS])
def test_hostile_values_are_refused_with_the_fields_code(path, base, kind, code, required):
    rng = random.Random(f"{dotted(path)}-20240601")   # deterministic per field
    failures = []
    for value in hostile_values(kind, required, rng):
        problem = refusal_problem(with_value(base, path, value), dotted(path), code)
        if problem:
            failures.append(f"{describe(value)}: {problem}")
    assert not failures, f"{len(failures)} hostile values for {dotted(path)}:\n" + \
        "\n".join(failures[:20])
