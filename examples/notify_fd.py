#!/usr/bin/env python3
"""Runs a program with the sd_notify socket already opened for it, for
languages that cannot open an AF_UNIX datagram socket themselves (Node.js,
the shell) but can write to a file descriptor:

    gunicornd -w 2 -b 127.0.0.1:8000 -k command -- \\
        python3 examples/notify_fd.py node examples/node/server.js

It connects an AF_UNIX datagram socket to NOTIFY_SOCKET (a path, or an
abstract name written with a leading `@`), leaves it open across the exec
and names it in NOTIFY_FD, then execs PROGRAM ARGS in its own place. A
write(2) on a connected datagram socket sends one datagram, so the program
notifies the master with a plain write of `READY=1` to that fd (in Node:
`fs.writeSync(fd, 'READY=1')`; in a shell: `printf READY=1 >&"$NOTIFY_FD"`).

The exec is what makes this work: the master accepts a notification only
from the worker's own pid (the kernel tells it the sender's pid), so the
program must send it itself. A helper process that sent messages on the
program's behalf would have another pid and be ignored, and so would
`systemd-notify`. The worker's pid, its listening sockets at fds 3.. and
every variable stay as the master made them.

The socket is non-blocking: a write that would block (the master not
reading) fails with EAGAIN rather than stalling the program's event loop.

Without NOTIFY_SOCKET it execs the program as it is. See examples/README.md.
"""

import os
import socket
import sys


def main():
    argv = sys.argv[1:]
    if not argv:
        sys.exit("usage: notify_fd.py PROGRAM [ARGS...]")
    address = os.environ.get("NOTIFY_SOCKET")
    if address:
        if address.startswith("@"):
            address = "\0" + address[1:]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(address)
        except OSError as e:
            sys.exit(f"notify_fd.py: cannot connect to NOTIFY_SOCKET={os.environ['NOTIFY_SOCKET']}: {e}")
        sock.setblocking(False)
        fd = sock.detach()
        os.set_inheritable(fd, True)
        os.environ["NOTIFY_FD"] = str(fd)
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        sys.exit(f"notify_fd.py: cannot run {argv[0]}: {e}")


if __name__ == "__main__":
    main()
