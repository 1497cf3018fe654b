"""What decord's C++ code (and the ffmpeg inside it) prints straight to file descriptor 2, caught.

Its log lines (``[12:00:00] .../video_reader.cc:83: ERROR opening ...``, ``[h264 @ 0x55..] ...``,
"frames corrupted and recovered from nearest frames") would scribble over the TUI, which draws on
the same descriptor, or add noise beside the engine's own one-line messages. While a decord call
runs inside :func:`native_stderr`, fd 2 is a pipe: a thread forwards everything else written to it
(the TUI's drawing, another thread's output) to the real stderr as it arrives, and keeps decord's
lines for the caller to explain a failure or turn into a warning.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import threading
from collections.abc import Iterator

# decord's own log prefix, and ffmpeg's "[codec @ 0xADDRESS] " one.
NATIVE_LOG = re.compile(rb"^\[(\d\d:\d\d:\d\d|[\w,-]+ @ 0x[0-9a-f]+)\] ")
_LOCK = threading.RLock()  # one capture at a time: fd 2 is the process's
_JOIN_SECONDS = 2.0  # a child process that inherited the pipe keeps it open: do not wait for it forever


def _could_become_log(tail: bytes) -> bool:
    """Whether an unfinished line may still turn out to be a native log line (held until it ends)."""
    return tail.startswith(b"[") and b"\x1b" not in tail and len(tail) < 4096


def _forward(read_fd: int, target: int, lines: list[str]) -> None:
    """Copy the pipe to ``target`` as data arrives, keeping native log lines in ``lines`` instead."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            chunk = b""
        pending += chunk
        *complete, tail = pending.split(b"\n")
        out = b""
        for line in complete:
            if NATIVE_LOG.match(line):
                lines.append(line.decode("utf-8", "replace").rstrip())
            else:
                out += line + b"\n"
        if not chunk or not _could_become_log(tail):  # the end, or plain output: pass it on now
            if chunk or not NATIVE_LOG.match(tail):
                out += tail
            elif tail:
                lines.append(tail.decode("utf-8", "replace").rstrip())
            tail = b""
        pending = tail
        while out:
            try:
                out = out[os.write(target, out):]
            except OSError:  # the real stderr is gone: nothing can be shown
                break
        if not chunk:
            return


def sane_decord_environment() -> None:
    """decord parses its settings from the environment when it loads, with C++'s stoi/stof: an empty or
    malformed value aborts the whole process (``terminate called ... stof``). Such values are dropped.
    Its warning of frames it could not decode (and repeated from a neighbour) comes only past a share
    of the clip (its default: 0.25); 0 here: from the first, so the edit can say so."""
    for name, kind in (("DECORD_DUPLICATE_WARNING_THRESHOLD", float), ("DECORD_AVIO_BUFFER_SIZE", int),
                       ("DECORD_REWIND_RETRY_MAX", int), ("DECORD_EOF_RETRY_MAX", int)):
        value = os.environ.get(name)
        if value is None:
            continue
        try:
            ok = math.isfinite(kind(value.strip())) and abs(float(value)) < 2**31
        except ValueError:
            ok = False
        if not ok:
            del os.environ[name]
    os.environ.setdefault("DECORD_DUPLICATE_WARNING_THRESHOLD", "0")


@contextlib.contextmanager
def native_stderr() -> Iterator[list[str]]:
    """While inside, decord's lines written to fd 2 are collected into the yielded list (complete on
    exit); everything else goes on to the real stderr at once."""
    lines: list[str] = []
    with _LOCK:
        try:
            if sys.stderr:
                sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable fd 2 (a daemon, a closed stream): nothing to catch
            yield lines
            return
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)  # fd 2 is now the pipe's only write end
        forwarder = threading.Thread(target=_forward, args=(read_fd, saved, lines), name="cogedit-stderr",
                                     daemon=True)
        forwarder.start()
        try:
            yield lines
        finally:
            os.dup2(saved, 2)  # closes the pipe's write end: the forwarder reads to the end
            forwarder.join(_JOIN_SECONDS)
            if not forwarder.is_alive():  # else it still forwards (to ``saved``): both stay open
                os.close(read_fd)
                os.close(saved)
