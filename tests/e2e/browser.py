"""Headless Chromium for tests of the HTML report: the command line (``--screenshot``, ``--dump-dom``)
and a small DevTools-protocol client over ``--remote-debugging-pipe`` (no port, no network) to type
into a page, open its <details> and read its layout.

CSP violations are caught two ways: Chromium's console log on stderr (``--enable-logging=stderr``
prints a CONSOLE line naming the Content Security Policy directive it enforced), and, in a page opened
through the protocol, the ``securitypolicyviolation`` events the document fires.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BASE_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--hide-scrollbars"]
CSP_LINE = re.compile(r"CONSOLE.*Content Security Policy|Refused to", re.IGNORECASE)


@dataclass
class Run:
    stdout: str
    stderr: str

    @property
    def csp_violations(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if CSP_LINE.search(line)]


def run_chromium(*args: str, width: int = 1280, height: int = 1600, timeout: float = 120) -> Run:
    """One headless Chromium run (its own profile, console messages on stderr)."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(
            [CHROMIUM, *BASE_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             f"--window-size={width},{height}", *args],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
    return Run(proc.stdout, proc.stderr)


def screenshot(url: str, out: Path, width: int = 1280, height: int = 1600) -> Run:
    return run_chromium(f"--screenshot={out}", url, width=width, height=height)


def dump_dom(url: str) -> Run:
    return run_chromium("--dump-dom", url)


@dataclass
class PNG:
    width: int
    height: int
    colours: set[tuple[int, int, int]] = field(default_factory=set)  # of every 4th pixel of each row


def read_png(path: Path) -> PNG:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) enough to see its colours."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert header is not None
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    png = PNG(width, height)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a, b, c = (line[i - bpp] if i >= bpp else 0), prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        png.colours.update((line[i], line[i + 1], line[i + 2]) for i in range(0, stride, bpp * 4))
        prev = line
    return png


class Page:
    """A tab driven through the DevTools protocol over a pipe: ``evaluate`` runs JavaScript in the page
    (as a debugger does: not subject to the page's CSP) and returns its JSON value."""

    def __init__(self, width: int = 1280, height: int = 1600) -> None:
        assert CHROMIUM is not None
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def fds() -> None:  # the protocol pipe: Chromium reads fd 3 and writes fd 4
            # either end may itself be 3 or 4: move both out of the way first
            high_in, high_out = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *BASE_FLAGS, f"--user-data-dir={self._profile.name}", "--remote-debugging-pipe",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self._send("Page.enable", session=True)
        self._send("Log.enable", session=True)
        self._send("Runtime.enable", session=True)
        self._send("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)
        # before any script of the page: keep every CSP violation the document reports
        self._send("Page.addScriptToEvaluateOnNewDocument", {"source": (
            "window.__violations = [];"
            "document.addEventListener('securitypolicyviolation', function (e) {"
            " window.__violations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || '')); });")},
            session=True)

    def _message(self, timeout: float = 90) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._read], [], [], timeout)
            if not ready:
                raise TimeoutError(f"no word from chromium in {timeout} s")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the DevTools pipe")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(line))

    def _send(self, method: str, params: dict[str, Any] | None = None, session: bool = False) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result") or {})
            self.events.append(reply)

    def _wait_for(self, method: str) -> dict[str, Any]:
        while True:
            event = self._message()
            self.events.append(event)
            if event.get("method") == method:
                return event

    def open(self, url: str) -> None:
        """Load ``url`` afresh (by way of about:blank: a URL that differs from the current one only in its
        fragment would otherwise be a same-document navigation, with no load)."""
        for target in ("about:blank", url):
            self._send("Page.navigate", {"url": target}, session=True)
            self._wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self._send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                  "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def disable_scripts(self) -> None:
        """From now on the page's scripts do not run (a viewer that blocks them)."""
        self._send("Emulation.setScriptExecutionDisabled", {"value": True}, session=True)

    def html(self) -> str:
        """The document as it is now (read through the DOM domain: works with scripts disabled)."""
        root = self._send("DOM.getDocument", {"depth": 0}, session=True)["root"]["nodeId"]
        return str(self._send("DOM.getOuterHTML", {"nodeId": root}, session=True)["outerHTML"])

    def insert_text(self, text: str) -> None:
        """Type ``text`` into the focused element, as a keyboard would (input events fire)."""
        self._send("Input.insertText", {"text": text}, session=True)

    def violations(self) -> list[str]:
        """CSP violations: those the document fired, and the console's security messages."""
        found = list(self.evaluate("window.__violations || []"))
        for event in self.events:
            entry = (event.get("params") or {}).get("entry") or {}
            if event.get("method") == "Log.entryAdded" and "Content Security Policy" in str(entry.get("text")):
                found.append(str(entry.get("text")))
        return found

    def errors(self) -> list[str]:
        """Uncaught JavaScript exceptions of the page so far."""
        return [str((e.get("params") or {}).get("exceptionDetails")) for e in self.events
                if e.get("method") == "Runtime.exceptionThrown"]

    def close(self) -> None:
        with contextlib.suppress(EOFError, OSError, RuntimeError):
            self._send("Browser.close")
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)
        os.close(self._read)
        self._profile.cleanup()

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
