"""Faults on the wire, made to happen: a TCP proxy on loopback whose connections a test can cut.

``TcpProxy(target_port)`` listens on 127.0.0.1 (a port of its own) and forwards each connection to
127.0.0.1:target_port. ``cut()`` closes every open connection at once (both ends, as a dropped link or
a killed middlebox would) and stops accepting new ones. ``silence()`` is the link that goes quiet
instead (a partition, a dead NIC, a firewall dropping): nothing is forwarded any more in either
direction, but both sockets stay open, so neither end hears a FIN or a RST; TCP on each side sees
only a peer that stopped reading.

``through_proxy(host, proxy, directory)`` gives a stand-in for a fleet host that ``write_inventory``
accepts: same key and name, the proxy's port, and a known_hosts file naming the host at that port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.bytes_up = 0  # controller -> host
        self._lock = threading.Lock()
        self._cut = False
        self._silent = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut:
                    client.close()
                    continue
                if self._silent.is_set():  # taken in and never answered, as a listener that never speaks
                    self.connections.append(client)
                    continue
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
                self.connections += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(65536):
                if self._silent.is_set():
                    return  # dropped, and nothing more is read: the sender's window closes
                if up:
                    self.bytes_up += len(data)
                dst.sendall(data)
        except OSError:
            pass
        if not self._silent.is_set():  # an end that came before any silence passes on
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def silence(self) -> None:
        """Stop forwarding in both directions and never tell either end: no FIN, no RST, no ICMP.

        Bytes already in flight are dropped; the sockets stay open until ``cut()``/``close()``, so
        each side's kernel acknowledges what fits in its receive buffer and then advertises a zero
        window, as a peer that stopped reading does. A new connection is accepted and never answered."""
        self._silent.set()

    def cut(self) -> None:
        """Close every connection now (RST where possible) and refuse new ones."""
        with self._lock:
            self._cut = True
            for s in self.connections:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                # close() alone leaves the socket open while a _pipe thread is blocked in recv() on it (the
                # kernel keeps it for that call): the link then went silent, and the controller saw the
                # reset only when its next keepalive reached the proxy, ~25 s later. shutdown() wakes
                # those threads; the socket's last close then resets the connection at once.
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
            self.connections.clear()
        self.listener.close()

    def close(self) -> None:
        self.cut()


@dataclass
class ProxiedHost:
    name: str
    address: str
    port: int
    key_file: Path
    known_hosts: Path


def through_proxy(host: Any, proxy: TcpProxy, directory: Path) -> ProxiedHost:
    """``host`` as reached through ``proxy``: its known_hosts line re-keyed to the proxy's port."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for line in Path(host.known_hosts).read_text().splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and (f":{host.port}" in parts[0] or parts[0] == host.address):
            lines.append(f"[127.0.0.1]:{proxy.port} {parts[1]}")
    assert lines, f"no known_hosts line for {host.name} in {host.known_hosts}"
    known = directory / f"known_hosts-{host.name}"
    known.write_text("\n".join(lines) + "\n")
    return ProxiedHost(host.name, "127.0.0.1", proxy.port, Path(host.key_file), known)


def proxied_host(host: Any, proxy: TcpProxy, directory: Path, link_timeout: float) -> tuple[Any, Any]:
    """The fleet ``host``'s driftctl Host reached through ``proxy`` with ``link_timeout``, and the transport
    options of a test (its own known_hosts, no connect retry): for tests that drive a transport."""
    import dataclasses

    from driftctl.transport import TransportOptions

    via = through_proxy(host, proxy, directory / "kh")
    plain = host.host()
    proxied = dataclasses.replace(plain, connection=dataclasses.replace(
        plain.connection, address=via.address, port=via.port, known_hosts=str(via.known_hosts),
        link_timeout=link_timeout))
    return proxied, TransportOptions(own_known_hosts=str(directory / "own_known_hosts"), connect_retries=0)
