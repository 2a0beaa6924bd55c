"""ctypes bindings to libpcap: the system's (libpcap.so.0.8, libpcap.so.1), else the bundled one."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import struct
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from capture_engine.attach import Insn
from capture_engine.errors import BackendUnavailableError, InvalidExpressionError

SONAMES = ("libpcap.so.0.8", "libpcap.so.1", "libpcap.so")
# The package carries libpcap for each CPU it supports (packaging/bundledpcap.py puts it
# there): a VM without a system libpcap still gets the C per-packet path.
BUNDLED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_libpcap")
BUNDLED_NAME = "libpcap.so.1"
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
ELF_MACHINES = {"x86_64": 62, "aarch64": 183}  # e_machine of each bundled build
ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr, little-endian
PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")      # Elf64_Phdr
PT_LOAD = 1
# Which libpcap to load: auto (the system's, else the bundled one), system, or bundled.
CHOICE_ENV = "CAPTURE_LIBPCAP"
CHOICES = ("auto", "system", "bundled")
DLT_EN10MB = 1
PCAP_ERRBUF_SIZE = 256
PCAP_DIRECTIONS = {"inout": 0, "in": 1, "out": 2}  # pcap_direction_t: tcpdump -Q


class BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(BpfInsn))]


class Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class PcapPkthdr(ctypes.Structure):
    _fields_ = [("ts", Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


class PcapStat(ctypes.Structure):
    _fields_ = [("ps_recv", ctypes.c_uint), ("ps_drop", ctypes.c_uint),
                ("ps_ifdrop", ctypes.c_uint)]


_P = ctypes.c_void_p
_SIGNATURES = {
    "pcap_create": (_P, [ctypes.c_char_p, ctypes.c_char_p]),
    "pcap_set_snaplen": (ctypes.c_int, [_P, ctypes.c_int]),
    "pcap_set_promisc": (ctypes.c_int, [_P, ctypes.c_int]),
    "pcap_set_timeout": (ctypes.c_int, [_P, ctypes.c_int]),
    "pcap_set_buffer_size": (ctypes.c_int, [_P, ctypes.c_int]),
    "pcap_set_immediate_mode": (ctypes.c_int, [_P, ctypes.c_int]),
    "pcap_setdirection": (ctypes.c_int, [_P, ctypes.c_int]),
    "pcap_activate": (ctypes.c_int, [_P]),
    "pcap_geterr": (ctypes.c_char_p, [_P]),
    "pcap_statustostr": (ctypes.c_char_p, [ctypes.c_int]),
    "pcap_datalink": (ctypes.c_int, [_P]),
    "pcap_setfilter": (ctypes.c_int, [_P, ctypes.POINTER(BpfProgram)]),
    "pcap_setnonblock": (ctypes.c_int, [_P, ctypes.c_int, ctypes.c_char_p]),
    "pcap_get_selectable_fd": (ctypes.c_int, [_P]),
    "pcap_dispatch": (ctypes.c_int, [_P, ctypes.c_int, _P, _P]),
    "pcap_breakloop": (None, [_P]),
    "pcap_stats": (ctypes.c_int, [_P, ctypes.POINTER(PcapStat)]),
    "pcap_close": (None, [_P]),
    "pcap_dump_open": (_P, [_P, ctypes.c_char_p]),
    "pcap_dump_fopen": (_P, [_P, _P]),
    "pcap_dump_flush": (ctypes.c_int, [_P]),
    "pcap_dump_ftell": (ctypes.c_long, [_P]),
    "pcap_dump_file": (_P, [_P]),
    "pcap_dump_close": (None, [_P]),
    "pcap_dump": (None, [_P, ctypes.POINTER(PcapPkthdr), ctypes.c_char_p]),
    "pcap_open_dead": (_P, [ctypes.c_int, ctypes.c_int]),
    "pcap_compile": (ctypes.c_int, [_P, ctypes.POINTER(BpfProgram), ctypes.c_char_p,
                                    ctypes.c_int, ctypes.c_uint32]),
    "pcap_freecode": (None, [ctypes.POINTER(BpfProgram)]),
    "pcap_offline_filter": (ctypes.c_int, [ctypes.POINTER(BpfProgram),
                                           ctypes.POINTER(PcapPkthdr), ctypes.c_char_p]),
    "pcap_lib_version": (ctypes.c_char_p, []),
}
# Newer than the rest (libpcap 1.9): set when the library has it, else None.
_OPTIONAL = {"pcap_set_protocol_linux": (ctypes.c_int, [_P, ctypes.c_int])}


@dataclass(frozen=True)
class Loaded:
    """The libpcap in use: its handle, where it came from (system or bundled) and its file."""

    lib: ctypes.CDLL
    origin: str
    name: str

    def describe(self) -> str:
        """e.g. `bundled _libpcap/x86_64/libpcap.so.1 (libpcap version 1.10.6 ...)`."""
        version = (self.lib.pcap_lib_version() or b"").decode(errors="replace")
        name = self.name
        if self.origin == "bundled":
            name = os.path.relpath(name, os.path.dirname(BUNDLED_DIR))
        return f"{self.origin} {name} ({version})"


_loaded: Optional[Loaded] = None


def bundled_path(machine: Optional[str] = None) -> Optional[str]:
    """The bundled libpcap for this CPU, or None for a CPU the package has none for."""
    arch = ARCHES.get((machine or platform.machine()).lower())
    return os.path.join(BUNDLED_DIR, arch, BUNDLED_NAME) if arch else None


def _choice() -> str:
    choice = os.environ.get(CHOICE_ENV, "").strip().lower() or "auto"
    if choice not in CHOICES:
        raise BackendUnavailableError(
            f"environment variable {CHOICE_ENV}={choice!r} is not one of "
            f"{', '.join(CHOICES)}: unset it, or pick one")
    return choice


def candidates(choice: str) -> list[tuple[str, str]]:
    """(origin, file name or path) to try in order for `choice` (auto, system, bundled)."""
    found: list[tuple[str, str]] = []
    if choice in ("auto", "system"):
        names = list(SONAMES)
        located = ctypes.util.find_library("pcap")
        if located and located not in names:
            names.append(located)
        found += [("system", name) for name in names]
    bundled = bundled_path()
    if choice in ("auto", "bundled") and bundled:
        found.append(("bundled", bundled))
    return found


def _typed(lib: ctypes.CDLL) -> ctypes.CDLL:
    for func, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, func)
        fn.restype, fn.argtypes = restype, argtypes
    for func, (restype, argtypes) in _OPTIONAL.items():
        fn = getattr(lib, func, None)
        if fn is not None:
            fn.restype, fn.argtypes = restype, argtypes
    return lib


def loaded() -> Loaded:
    """The libpcap in use, loaded on first call; BackendUnavailableError when none loads."""
    global _loaded
    if _loaded is not None:
        return _loaded
    choice = _choice()
    tried, broken, absent = candidates(choice), [], []
    for origin, name in tried:
        if origin == "bundled" and not os.path.isfile(name):
            absent.append(name)  # a source tree, or a CPU the package has no build for
            continue
        problem = _damaged(name) if origin == "bundled" else None
        if problem is None:
            try:  # a library that opens but lacks a function is not libpcap (or too old)
                _loaded = Loaded(_typed(ctypes.CDLL(name, use_errno=True)), origin, name)
                return _loaded
            except (OSError, AttributeError) as exc:
                problem = str(exc).split(": ", 1)[-1]  # dlerror: "<file>: <why>"
        if "No such file" in problem:
            absent.append(name)
        else:
            broken.append(f"{name} ({problem})")
    names = ", ".join(broken + absent) or "nothing for this CPU"  # what went wrong first
    raise BackendUnavailableError(
        f"libpcap is not available: tried {names} ({CHOICE_ENV}={choice}): install "
        "libpcap0.8 (Debian) or libpcap (RHEL), or use the raw-socket backend")


def _damaged(path: str) -> Optional[str]:
    """What makes the bundled file unloadable, or None: dlopen of an ELF file cut short
    maps past its end and the process dies of SIGBUS, so every loaded segment, the program
    and section headers must lie within the file (a zip unpacked on a full disk)."""
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            header = stream.read(ELF_HEADER.size)
            if len(header) < ELF_HEADER.size or header[:6] != b"\x7fELF\x02\x01":
                return "not a 64-bit little-endian ELF file"
            fields = ELF_HEADER.unpack(header)
            machine, phoff, shoff, phsize, phnum, shsize, shnum = \
                fields[2], fields[5], fields[6], fields[9], fields[10], fields[11], fields[12]
            if ELF_MACHINES.get(ARCHES.get(platform.machine().lower(), "")) != machine:
                return f"built for another CPU (ELF machine {machine})"
            if phoff + phsize * phnum > size or shoff + shsize * shnum > size:
                return f"truncated ({size} bytes)"
            stream.seek(phoff)
            for _ in range(phnum):
                kind, _flags, offset, _v, _p, filesz, _m, _a = \
                    PROGRAM_HEADER.unpack(stream.read(PROGRAM_HEADER.size))
                if kind == PT_LOAD and offset + filesz > size:
                    return f"truncated ({size} bytes, a segment ends at {offset + filesz})"
    except (OSError, struct.error) as exc:
        return f"unreadable: {exc}"
    return None


def load() -> ctypes.CDLL:
    """The libpcap in use with typed functions; BackendUnavailableError when absent."""
    return loaded().lib


def optional(lib: ctypes.CDLL, name: str) -> Optional[Callable[..., int]]:
    """A function of `_OPTIONAL`, or None when this libpcap is too old to have it."""
    return getattr(lib, name, None)


def available() -> bool:
    return unavailable_reason() is None


def unavailable_reason() -> Optional[str]:
    """Why no libpcap loads (what was wrong with each file tried first), or None."""
    try:
        load()
        return None
    except BackendUnavailableError as exc:
        return exc.message.replace("libpcap is not available: ", "", 1)


def make_program(insns: Sequence[Insn]) -> BpfProgram:
    """A struct bpf_program owning a copy of `insns` (kept alive by the returned object)."""
    array = (BpfInsn * len(insns))(*[BpfInsn(c, jt, jf, k) for c, jt, jf, k in insns])
    program = BpfProgram(len(insns), ctypes.cast(array, ctypes.POINTER(BpfInsn)))
    program._keep = array  # noqa: SLF001 - the array must outlive the struct
    return program


def compile_expression(expression: str, snaplen: int) -> list[Insn]:
    """Compile a tcpdump expression for Ethernet with libpcap; accept value = snaplen."""
    lib = load()
    dead = lib.pcap_open_dead(DLT_EN10MB, snaplen)
    program = BpfProgram()
    try:
        if lib.pcap_compile(dead, ctypes.byref(program), expression.encode(), 1,
                            0xFFFFFFFF) != 0:
            reason = (lib.pcap_geterr(dead) or b"").decode(errors="replace")
            raise InvalidExpressionError(f"cannot compile filter expression {expression!r}: "
                                         f"{reason}")
        insns = program.bf_insns
        result = [(insns[i].code, insns[i].jt, insns[i].jf, insns[i].k)
                  for i in range(program.bf_len)]
        lib.pcap_freecode(ctypes.byref(program))
        return result
    finally:
        lib.pcap_close(dead)


def offline_filter(program: BpfProgram, data: bytes, wire_length: int) -> int:
    """Run a program on one packet with libpcap's interpreter; returns the accept value."""
    header = PcapPkthdr(Timeval(0, 0), len(data), wire_length)
    accepted: int = load().pcap_offline_filter(ctypes.byref(program), ctypes.byref(header),
                                               data)  # c_int
    return accepted
