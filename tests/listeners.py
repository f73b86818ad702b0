"""The TCP sockets that processes listen on, read from Linux's /proc: what a test's processes expose."""

import os
import socket
import struct
from pathlib import Path

LISTEN = "0A"  # the TCP state in /proc/net/tcp


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:  # the thread or the process ended meanwhile (or the kernel lacks the file)
                continue
    return found


def socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # ended meanwhile
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:  # this one closed meanwhile: the process's other sockets still count
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    return inodes


def listening_addresses(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that one of ``pids`` holds."""
    inodes = socket_inodes(pids)
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                address, port = fields[1].split(":")
                found.add((_address(address, family), int(port, 16)))
    return found


def _address(hexadecimal: str, family: int) -> str:
    raw = bytes.fromhex(hexadecimal)
    # /proc prints each 32-bit word in the host's byte order
    words = struct.unpack(f"<{len(raw) // 4}I", raw)
    return socket.inet_ntop(family, struct.pack(f">{len(words)}I", *words))


def exposed(addresses: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """The addresses that are not on loopback."""
    import ipaddress

    return {
        (address, port)
        for address, port in addresses
        if not ipaddress.ip_address(address).is_loopback
        and not (address.startswith("::ffff:") and ipaddress.ip_address(address[7:]).is_loopback)
    }
