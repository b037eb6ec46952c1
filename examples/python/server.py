#!/usr/bin/env python3
"""A hello-world HTTP server written for gunicornd's `command` worker kind,
with the Python standard library only. Run it with:

    gunicornd -w 2 -b 127.0.0.1:8000 -k command -- python3 examples/python/server.py

Each worker is this program, started by the master with the listening
sockets already open at fds 3, 4, ... (`LISTEN_FDS` of them). It serves
them with `http.server`, tells the master over `NOTIFY_SOCKET` (the sd_notify
protocol) when it serves (`READY=1`) and that it is alive (`WATCHDOG=1`),
and stops on the master's signals: TERM gracefully (no new connections, the
requests in hand finished, exit 0), INT and QUIT at once.

    GET /              200 "Hello, World!\\n"
    GET /sleep?ms=N    the same after N milliseconds (at most 10000): a slow
                       request, to watch a graceful stop finish it

See examples/README.md.
"""

import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BODY = b"Hello, World!\n"
# /sleep waits at most this long, so that it stays well under the master's
# default --graceful-timeout (30 s) and a stop never has to kill it.
MAX_SLEEP_MS = 10_000
# A client that sends nothing for this long is dropped, so that a stop never
# waits for it.
CLIENT_TIMEOUT_S = 30
# How often each accept loop comes round when idle (it then proves it is
# alive, see Listener.service_actions), unless the watchdog needs it sooner.
LOOP_PAUSE_S = 0.5


def log(message):
    # stderr is line-buffered (Python 3.9+), so each line reaches the
    # master's error log as it is written.
    print(f"server.py[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


# --- sd_notify ---------------------------------------------------------------


class Notifier:
    """The sending side of the sd_notify protocol: one datagram per
    message on the AF_UNIX socket named by NOTIFY_SOCKET (a path, or an
    abstract name written with a leading `@`). The receiver learns who sent
    it from the kernel (SCM_CREDENTIALS), so it must come from this very
    process, not a helper."""

    def __init__(self, address):
        self.address = address
        self.sock = None
        if address:
            if address.startswith("@"):
                address = "\0" + address[1:]
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # A master that stopped reading must not stall the server: a
            # message that cannot be sent within this time is dropped.
            self.sock.settimeout(2)
            self.sock.connect(address)

    def notify(self, message):
        if self.sock is None:
            return
        try:
            self.sock.send(message.encode())
        except OSError as e:
            log(f"cannot send {message!r} to {self.address}: {e}")


def watchdog_interval():
    """Seconds between WATCHDOG=1 messages: half of WATCHDOG_USEC, as
    sd_notify(3) advises, or None when no heartbeat is asked for (or it is
    meant for another process)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


# --- HTTP --------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: every connection closes after its response, so a graceful
    # stop never waits for an idle keep-alive connection.
    protocol_version = "HTTP/1.0"
    timeout = CLIENT_TIMEOUT_S

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/":
            self.answer(200, BODY)
        elif url.path == "/sleep":
            try:
                ms = min(int(parse_qs(url.query).get("ms", ["1000"])[0]), MAX_SLEEP_MS)
            except ValueError:
                ms = -1
            if ms < 0:
                self.answer(400, b"ms must be a number of milliseconds\n")
                return
            log(f"sleeping {ms} ms")
            time.sleep(ms / 1000)
            self.answer(200, BODY)
        else:
            self.answer(404, b"Not Found\n")

    def do_HEAD(self):
        self.do_GET()

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def address_string(self):
        # A unix socket's peer has no address (http.server assumes one).
        return self.client_address[0] if isinstance(self.client_address, tuple) else "unix"

    def log_message(self, format, *args):
        # No access log: gunicornd does not write one for command workers
        # either, and a line per request would flood the error log. Errors
        # (log_error) still go there.
        pass

    def log_error(self, format, *args):
        log(format % args)


class Listener(ThreadingHTTPServer):
    """One inherited listening socket, served by a thread per connection."""

    # The stop joins the threads of the requests in hand (server_close()).
    daemon_threads = False
    block_on_close = True

    def __init__(self, sock):
        super().__init__(sock.getsockname(), Handler, bind_and_activate=False)
        self.socket.close()  # the unbound socket the constructor made
        self.socket = sock
        self.last_pass = time.monotonic()

    def service_actions(self):
        # Called by serve_forever on every pass of its loop: the watchdog
        # vouches for this loop only while it keeps coming round.
        self.last_pass = time.monotonic()


def inherited_sockets():
    """The listening sockets the master passed, at fds 3 .. 3+LISTEN_FDS-1."""
    count = os.environ.get("LISTEN_FDS")
    pid = os.environ.get("LISTEN_PID")
    if not count:
        sys.exit("server.py: no LISTEN_FDS: run me as a worker of "
                 "`gunicornd -k command -- python3 server.py` (or under systemd socket activation)")
    if pid and int(pid) != os.getpid():
        sys.exit(f"server.py: LISTEN_PID is {pid}, not this process ({os.getpid()}): "
                 "the sockets were meant for another process")
    socks = []
    for fd in range(3, 3 + int(count)):
        # Family and type are read from the descriptor: TCP or unix.
        sock = socket.socket(fileno=fd)
        # Every worker accepts on the same socket: after select() says a
        # connection is waiting, another worker may take it first, and a
        # blocking accept() would then hang this loop until the next one.
        sock.setblocking(False)
        socks.append(sock)
    return socks


# --- lifecycle ---------------------------------------------------------------


def watchdog(notifier, listeners, interval, stopping):
    """Sends WATCHDOG=1 every `interval` seconds while every accept loop
    still comes round, so that a stuck loop stops the heartbeat and the
    master replaces this worker."""
    while not stopping.wait(interval):
        # A loop passes at least every LOOP_PAUSE_S; allow it one interval.
        now = time.monotonic()
        if all(now - listener.last_pass < interval + LOOP_PAUSE_S for listener in listeners):
            notifier.notify("WATCHDOG=1")
        else:
            log("an accept loop is stuck: no WATCHDOG=1")


def stop_gracefully(notifier, listeners, stopping):
    """TERM: stop accepting, finish the requests in hand, exit 0."""
    log("graceful stop: finishing the requests in hand")
    notifier.notify("STOPPING=1")
    stopping.set()
    for listener in listeners:
        listener.shutdown()  # returns once its loop has left serve_forever
    for listener in listeners:
        listener.server_close()  # closes the socket, joins the request threads
    log("stopped")
    os._exit(0)


def main():
    interval = watchdog_interval()
    pause = LOOP_PAUSE_S if interval is None else min(LOOP_PAUSE_S, interval / 4)
    notifier = Notifier(os.environ.get("NOTIFY_SOCKET"))
    listeners = [Listener(sock) for sock in inherited_sockets()]

    # The signals are taken by sigwait() below; blocked before any thread
    # starts, so that every thread inherits the mask and none of them runs
    # a handler in the middle of a request.
    signals = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)

    for listener in listeners:
        threading.Thread(target=listener.serve_forever, args=(pause,), daemon=True).start()
    stopping = threading.Event()
    if interval is not None:
        threading.Thread(target=watchdog, args=(notifier, listeners, interval, stopping),
                         daemon=True).start()
    notifier.notify(f"READY=1\nSTATUS=serving on {len(listeners)} socket(s)")
    log(f"pid {os.getpid()} serving (worker age {os.environ.get('GUNICORND_WORKER_AGE', '?')})")

    while True:
        sig = signal.sigwait(signals)
        if sig == signal.SIGTERM and not stopping.is_set():
            threading.Thread(target=stop_gracefully, args=(notifier, listeners, stopping),
                             daemon=True).start()
        elif sig == signal.SIGUSR1:
            log("USR1: no log files of my own to reopen")
        elif sig in (signal.SIGINT, signal.SIGQUIT):
            # Quick stop, also during a graceful one: the requests in hand
            # are cut.
            notifier.notify("STOPPING=1")
            log(f"{signal.Signals(sig).name}: stopping now")
            os._exit(0)


if __name__ == "__main__":
    main()
