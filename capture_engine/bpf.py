"""Compile capture filters to a classic BPF program whose accept value is the snap length."""
from __future__ import annotations

import ipaddress
import itertools
from typing import Dict, List, Optional, Sequence, Tuple

from capture_engine.attach import MAX_INSNS, too_large
from capture_engine.filters import AddressSet, CaptureFilter, PortSet

Insn = Tuple[int, int, int, int]  # (code, jt, jf, k) as in struct sock_filter
WHOLE_PACKET = 262144  # tcpdump's default snap length
FILTER_READS = 128  # our programs read at most 14 + 60 (IPv4 options) + 4 bytes

LD_W, LD_H, LD_B = 0x20, 0x28, 0x30          # ld [k]
LD_H_IND, LDX_MSH = 0x48, 0xB1               # ldh [x + k]; ldx 4*([k]&0xf)
AND_K, RET_K, JA = 0x54, 0x06, 0x05
JEQ, JGT, JGE, JSET = 0x15, 0x25, 0x35, 0x45
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
IPPROTO = {"TCP": 6, "UDP": 17}
IPV6_FRAGMENT = 44

# Offsets from the start of the Ethernet frame.
V4 = {"proto": 23, "src": 26, "dst": 30, "frag": 20, "ihl": 14, "sport": 14, "dport": 16}
V6 = {"proto": 20, "src": 22, "dst": 38, "sport": 54, "dport": 56, "frag_next": 54}


class _Emitter:
    """Builds an instruction list with symbolic forward labels."""

    def __init__(self) -> None:
        self.ir: List[tuple] = []
        self._ids = itertools.count()

    def label(self) -> str:
        return f"L{next(self._ids)}"

    def place(self, name: str) -> None:
        self.ir.append(("label", name))

    def op(self, code: int, k: int = 0) -> None:
        self.ir.append(("op", code, k))

    def jump(self, code: int, k: int, jt: Optional[str], jf: Optional[str]) -> None:
        self.ir.append(("jmp", code, k, jt, jf))

    def goto(self, target: str) -> None:
        self.ir.append(("ja", target))


def assemble(ir: Sequence[tuple]) -> List[Insn]:
    """Resolve labels; a conditional jump further than 255 becomes cond + `ja` trampolines."""
    far: set = set()
    while True:
        pos, pc = _layout(ir, far)
        grown = False
        for i, item in enumerate(ir):
            if item[0] == "jmp" and i not in far:
                if any(t is not None and pos[t] - (pc[i] + 1) > 255 for t in item[3:5]):
                    far.add(i)
                    grown = True
        if not grown:
            break
    out: List[Insn] = []
    for i, item in enumerate(ir):
        kind = item[0]
        if kind == "op":
            out.append((item[1], 0, 0, item[2] & 0xFFFFFFFF))
        elif kind == "ja":
            out.append((JA, 0, 0, pos[item[1]] - (pc[i] + 1)))
        elif kind == "jmp" and i not in far:
            jt, jf = (0 if t is None else pos[t] - (pc[i] + 1) for t in item[3:5])
            out.append((item[1], jt, jf, item[2] & 0xFFFFFFFF))
        elif kind == "jmp":
            out.append((item[1], 0, 1, item[2] & 0xFFFFFFFF))
            for n, t in enumerate(item[3:5]):
                here = pc[i] + 1 + n
                out.append((JA, 0, 0, (pc[i] + 3 if t is None else pos[t]) - (here + 1)))
    return out


def _layout(ir: Sequence[tuple], far: set) -> Tuple[Dict[str, int], List[int]]:
    pos: Dict[str, int] = {}
    pcs: List[int] = []
    pc = 0
    for i, item in enumerate(ir):
        pcs.append(pc)
        if item[0] == "label":
            pos[item[1]] = pc
        else:
            pc += 3 if i in far else 1
    return pos, pcs


def _ranges_test(e: _Emitter, ranges: Sequence[Tuple[int, int]], fail: str) -> None:
    """Accumulator in one of the inclusive ranges -> fall through, else jump to `fail`."""
    ok = e.label()
    for n, (lo, hi) in enumerate(ranges):
        nxt = fail if n == len(ranges) - 1 else e.label()
        if lo == hi:
            e.jump(JEQ, lo, ok, nxt)
        else:
            e.jump(JGE, lo, None, nxt)
            e.jump(JGT, hi, nxt, ok)
        if nxt != fail:
            e.place(nxt)
    e.place(ok)


def _v6_test(e: _Emitter, field: AddressSet, offset: int, fail: str) -> None:
    ok = e.label()
    nets = [net for lo, hi in field.of_version(6)
            for net in ipaddress.summarize_address_range(lo, hi)]
    for n, net in enumerate(nets):
        nxt = fail if n == len(nets) - 1 else e.label()
        value = int(net.network_address)
        for word in range(4):
            bits = min(max(net.prefixlen - 32 * word, 0), 32)
            if bits == 0:
                continue
            mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
            e.op(LD_W, offset + 4 * word)
            if bits < 32:
                e.op(AND_K, mask)
            e.jump(JEQ, (value >> (96 - 32 * word)) & mask, None, nxt)
        e.goto(ok)
        if nxt != fail:
            e.place(nxt)
    e.place(ok)


def _address_test(e: _Emitter, field: Optional[AddressSet], version: int, side: str,
                  fail: str) -> None:
    if field is None:
        return
    if version == 6:
        _v6_test(e, field, V6[side], fail)
        return
    e.op(LD_W, V4[side])
    _ranges_test(e, [(int(lo), int(hi)) for lo, hi in field.of_version(4)], fail)


def _port_test(e: _Emitter, field: Optional[PortSet], version: int, side: str,
               fail: str) -> None:
    if field is None:
        return
    e.op(LD_H_IND if version == 4 else LD_H, V4[side] if version == 4 else V6[side])
    _ranges_test(e, field.ranges, fail)


def _protocol_test(e: _Emitter, f: CaptureFilter, version: int, fail: str) -> None:
    protos = ([IPPROTO[f.protocol]] if f.protocol in IPPROTO
              else [6, 17] if f.has_ports else [])
    if not protos:
        return
    table = V4 if version == 4 else V6
    e.op(LD_B, table["proto"])
    ok = e.label()
    # libpcap's `ip6 proto` also accepts a fragment header followed by the protocol.
    frag = version == 6 and not f.has_ports
    for n, proto in enumerate(protos):
        last = n == len(protos) - 1
        e.jump(JEQ, proto, ok, fail if last and not frag else None)
    if frag:
        e.jump(JEQ, IPV6_FRAGMENT, None, fail)
        e.op(LD_B, V6["frag_next"])
        for n, proto in enumerate(protos):
            e.jump(JEQ, proto, ok, fail if n == len(protos) - 1 else None)
    e.place(ok)
    if version == 4 and f.has_ports:
        e.op(LD_H, V4["frag"])
        e.jump(JSET, 0x1FFF, fail, None)  # ports exist only in a first fragment
        e.op(LDX_MSH, V4["ihl"])


def _filter(e: _Emitter, f: CaptureFilter, version: int, accept: str, fail: str) -> None:
    _protocol_test(e, f, version, fail)
    if not f.has_endpoints:
        e.goto(accept)
        return
    incoming = e.label()
    for local, remote, miss in (("src", "dst", incoming), ("dst", "src", fail)):
        _address_test(e, f.local_ip, version, local, miss)
        _address_test(e, f.remote_ip, version, remote, miss)
        _port_test(e, f.local_port, version, local[0] + "port", miss)
        _port_test(e, f.remote_port, version, remote[0] + "port", miss)
        e.goto(accept)
        if miss == incoming:
            e.place(incoming)


def compile_filters(filters: Sequence[CaptureFilter], snaplen: int) -> List[Insn]:
    """A program accepting matching packets with `snaplen` bytes (0 = whole packet)."""
    accept_value = snaplen or WHOLE_PACKET
    if not filters or any(f.unconstrained for f in filters):
        return [(RET_K, 0, 0, accept_value)]
    e = _Emitter()
    accept, reject = e.label(), e.label()
    families = [(4, ETH_IPV4), (6, ETH_IPV6)]
    entry = {v: e.label() for v, _ in families}
    e.op(LD_H, 12)
    for version, ethertype in families:
        e.jump(JEQ, ethertype, entry[version], None)
    e.goto(reject)
    for version, _ in families:
        e.place(entry[version])
        for f in filters:
            if version in f.versions():
                nxt = e.label()
                _filter(e, f, version, accept, nxt)
                e.place(nxt)
        e.goto(reject)
    e.place(accept)
    e.op(RET_K, accept_value)
    e.place(reject)
    e.op(RET_K, 0)
    program = assemble(e.ir)
    if len(program) > MAX_INSNS:
        raise too_large(len(program))
    return program


def render(program: Sequence[Insn]) -> str:
    """The program in `tcpdump -dd` notation, for debugging and the CLI."""
    return "\n".join("{ 0x%x, %d, %d, 0x%08x }," % insn for insn in program)
