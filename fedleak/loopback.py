"""Loopback by default: what keeps every process fedleak starts on 127.0.0.1, and what checks it.

Ray binds its GCS server, raylet, workers and drivers on the node's address; unless that address is 127.0.0.1 it
listens on every interface (``*:PORT``), and Ray's control service has no authentication. A Ray instance fedleak
starts itself therefore gets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in its environment (read when ``ray`` is
imported: the node address becomes 127.0.0.1) and ``_node_ip_address="127.0.0.1"`` in ``ray.init``. A cluster the
user names (``executor.address`` or ``RAY_ADDRESS``) is theirs and is joined as it is.

The socket readers below parse ``/proc/net/tcp`` and ``/proc/net/tcp6`` (Linux): the tests list what each way of
running listens on, and the deployment launcher checks that a port it is about to talk to is held by a process it
started, and by nothing else.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
#: Read by Ray at import: when false, Ray takes 127.0.0.1 as this node's address (see ray/_private/services.py).
RAY_LOCAL_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
_LISTEN = "0A"


def ray_loopback_env(cluster_address: str | None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Variables that keep a Ray instance started by fedleak on loopback; none when the user names a cluster, and
    none that the user has already set (their choice wins)."""
    environ = os.environ if environ is None else environ
    if cluster_address:
        return {}
    return {key: value for key, value in RAY_LOCAL_ONLY_ENV.items() if key not in environ}


def ray_init_loopback_args(init_args: dict) -> dict:
    """``ray.init`` keywords for a Ray instance this process starts itself: node address 127.0.0.1, no dashboard.
    Empty when ``init_args`` or ``RAY_ADDRESS`` name a cluster to join."""
    if "address" in init_args or os.environ.get("RAY_ADDRESS"):
        return {}
    return {"_node_ip_address": LOOPBACK, "include_dashboard": False}


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket: its address, port and the pids that hold it."""

    address: str
    port: int
    pids: frozenset[int]

    @property
    def loopback(self) -> bool:
        ip = ipaddress.ip_address(self.address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback


def _decode_address(hex_address: str) -> str:
    """``/proc/net/tcp*`` addresses: 32-bit words in host (little-endian) byte order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening_inodes() -> dict[int, tuple[str, int]]:
    """Socket inode → (address, port) of every listening TCP socket in this network namespace."""
    found: dict[int, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            hex_address, hex_port = fields[1].split(":")
            found[int(fields[9])] = (_decode_address(hex_address), int(hex_port, 16))
    return found


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open (empty when it is gone or not ours)."""
    inodes = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listeners(pids: set[int] | None = None) -> list[Listener]:
    """The listening sockets held by ``pids`` (default: by every process this user can inspect)."""
    table = listening_inodes()
    if pids is None:
        pids = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
    holders: dict[int, set[int]] = {}
    for pid in pids:
        for inode in socket_inodes(pid) & table.keys():
            holders.setdefault(inode, set()).add(pid)
    return [Listener(*table[inode], frozenset(owner)) for inode, owner in holders.items()]


def port_holders(port: int) -> tuple[set[int], bool]:
    """The pids that hold a listening socket on ``port``, and whether some listener on it has no visible holder
    (another user's process)."""
    wanted = {inode for inode, (_, where) in listening_inodes().items() if where == port}
    pids, held = set(), set()
    for pid in (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()):
        mine = socket_inodes(pid) & wanted
        if mine:
            pids.add(pid)
            held |= mine
    return pids, bool(wanted - held)


def foreign_holder(port: int, ours: set[int]) -> str | None:
    """Why ``port`` is not exclusively ours: None when only processes in ``ours`` listen on it, else one phrase."""
    pids, hidden = port_holders(port)
    if hidden:
        return f"port {port} is also held by a process of another user"
    if not pids:
        return f"nothing listens on port {port}"
    others = sorted(pids - ours)
    if others:
        return f"port {port} is also held by process(es) {', '.join(map(str, others))} that fedleak did not start"
    return None
