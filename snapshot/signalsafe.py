"""Signals around freeze and thaw: helper threads that never see one, sections none can split."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator


def start_quiet_thread(target: Callable[..., object], *args: object) -> threading.Thread:
    """A daemon thread born with every signal blocked: signals land in the main thread (where
    Python runs its handlers) and an ioctl in this thread is never interrupted (EINTR)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()  # the new thread inherits the blocked mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return thread


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Python signal handlers (e.g. SIGTERM raising an exception) wait until the block is over,
    then run: a claim and its FIFREEZE thread, or a thaw and what we tell the watchdog, can
    never be split by an exception. No-op outside the main thread (handlers only run there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {}
    for sig in signal.valid_signals():
        handler = signal.getsignal(sig)
        if callable(handler):
            old[sig] = signal.signal(sig, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for signum in caught:
            signal.raise_signal(signum)
