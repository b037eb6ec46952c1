#!/usr/bin/env python3
"""A command worker for gunicornd's tests (Python standard library only).

Run as `gunicornd -k command -- python3 tests/command/worker.py`: it serves
HTTP on the listener it inherits at fd 3 (LISTEN_FDS, checked against
LISTEN_PID) once it is ready, answers every request with `hello from PID` and closes, tells
the master through NOTIFY_SOCKET that it is starting (STATUS=), ready
(READY=1) and alive (WATCHDOG=1 at a third of WATCHDOG_USEC), and keeps a
STATUS= line with the requests it served.

Signals, as gunicornd sends them: TERM stops accepting, finishes the
request in hand and exits 0; QUIT and INT exit at once; USR1 (reopen logs)
is logged and ignored.

Knobs to misbehave, from the environment:
  WORKER_PROTOCOL=0           never send anything on NOTIFY_SOCKET
  WORKER_READY_DELAY=S        send READY=1 only S seconds after starting
  WORKER_NEVER_READY=1        never send READY=1 (the rest as usual)
  WORKER_WATCHDOG_STOP_AFTER=S  stop sending WATCHDOG=1 after S seconds
  WORKER_FLOOD_BYTES=N        write N bytes a second of lines to stdout
  WORKER_EXIT=CODE            exit with CODE right after starting
  WORKER_FOREIGN_READY=1      have a child process send READY=1 (a pid
                              that is not the worker's) before the worker
                              says anything else than STATUS=
  WORKER_STOPPING_AFTER=S     send STOPPING=1 after S seconds, then exit
                              0 a second later
"""

import os
import selectors
import signal
import socket
import sys
import time


def env_float(name, default=None):
    value = os.environ.get(name)
    return float(value) if value else default


PROTOCOL = os.environ.get("WORKER_PROTOCOL", "1") != "0"
READY_DELAY = env_float("WORKER_READY_DELAY", 0.0)
NEVER_READY = os.environ.get("WORKER_NEVER_READY") == "1"
WATCHDOG_STOP_AFTER = env_float("WORKER_WATCHDOG_STOP_AFTER")
FLOOD_BYTES = env_float("WORKER_FLOOD_BYTES", 0.0)
STOPPING_AFTER = env_float("WORKER_STOPPING_AFTER")

started = time.monotonic()
pid = os.getpid()


def log(text):
    print(f"worker.py: {text}", file=sys.stderr, flush=True)


class Notifier:
    """sd_notify(3) over NOTIFY_SOCKET: a path, or @name for the abstract
    namespace."""

    def __init__(self):
        address = os.environ.get("NOTIFY_SOCKET") if PROTOCOL else None
        self.address = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, message):
        if self.address is None:
            return
        try:
            self.sock.sendto(message.encode(), self.address)
        except OSError as e:
            log(f"cannot notify {message!r}: {e}")


def main():
    exit_code = os.environ.get("WORKER_EXIT")
    if exit_code:
        log(f"exiting with {exit_code} as told")
        sys.exit(int(exit_code))
    if os.environ.get("LISTEN_PID") != str(pid):
        log(f"LISTEN_PID is {os.environ.get('LISTEN_PID')}, not {pid}")
        sys.exit(1)
    count = int(os.environ.get("LISTEN_FDS", "0"))
    if count < 1:
        log("no listener (LISTEN_FDS)")
        sys.exit(1)
    listener = socket.socket(fileno=3)
    # The listener is non-blocking, as gunicornd holds it: several workers
    # race for each connection.
    listener.setblocking(False)

    notifier = Notifier()
    notifier.send("STATUS=starting")
    if os.environ.get("WORKER_FOREIGN_READY") == "1" and notifier.address:
        child = os.fork()
        if child == 0:
            notifier.send("READY=1")
            os._exit(0)
        os.waitpid(child, 0)
        notifier.send("STATUS=a child of mine sent READY=1")

    stop = {"graceful": False}

    def graceful(signum, frame):
        stop["graceful"] = True

    def quick(signum, frame):
        os._exit(0)

    def reopen(signum, frame):
        log("reopening logs (USR1)")

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGQUIT, quick)
    signal.signal(signal.SIGINT, quick)
    signal.signal(signal.SIGUSR1, reopen)

    watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    ping_every = watchdog_usec / 3e6 if watchdog_usec else None
    last_ping = 0.0
    ready = False
    served = 0
    flood_line = ("x" * 99 + "\n").encode()
    flood_sent = 0
    stopping_sent = None

    # The listener is watched only once the worker is ready, as a program
    # that boots slowly accepts nothing before it has booted.
    sel = selectors.DefaultSelector()
    log(f"serving on fd 3 ({count} listener(s)), pid {pid}")
    while not stop["graceful"]:
        now = time.monotonic()
        age = now - started
        if not ready and not NEVER_READY and age >= READY_DELAY:
            sel.register(listener, selectors.EVENT_READ)
            notifier.send(f"READY=1\nSTATUS=served {served} requests")
            ready = True
        if ping_every and now - last_ping >= ping_every:
            if WATCHDOG_STOP_AFTER is None or age < WATCHDOG_STOP_AFTER:
                notifier.send("WATCHDOG=1")
            last_ping = now
        if STOPPING_AFTER is not None and age >= STOPPING_AFTER:
            if stopping_sent is None:
                notifier.send("STOPPING=1")
                stopping_sent = now
            elif now - stopping_sent >= 1.0:
                break
        if FLOOD_BYTES:
            due = int(age * FLOOD_BYTES) - flood_sent
            if due > 0:
                lines = flood_line * max(1, due // len(flood_line))
                os.write(1, lines)
                flood_sent += len(lines)
        timeout = 0.005 if FLOOD_BYTES else 0.1
        try:
            events = sel.select(timeout) if ready else time.sleep(timeout) or []
        except InterruptedError:
            continue
        for _ in events:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            with conn:
                serve(conn)
            served += 1
            if ready:
                notifier.send(f"STATUS=served {served} requests")
    log(f"stopping after {served} requests")
    listener.close()
    sys.exit(0)


def serve(conn):
    conn.setblocking(True)
    conn.settimeout(10)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        body = f"hello from {pid}\n".encode()
        head = (
            "HTTP/1.1 200 OK\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Content-Type: text/plain\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        conn.sendall(head + body)
    except OSError as e:
        log(f"client: {e}")


if __name__ == "__main__":
    main()
