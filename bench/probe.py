#!/usr/bin/env python3
"""A client that records every failed request and the longest time without
an answer. See bench/README.md.

Usage: probe.py PORT READY_FILE MAX_SECONDS

Sends `GET /` to 127.0.0.1:PORT over a new connection each time
(`Connection: close`, as the servers' sync workers want), one request after
the other, until it gets SIGTERM or MAX_SECONDS have passed. A request
succeeds when the whole response arrived with status 200 and the hello body;
anything else (refused or reset connection, timeout, short or wrong answer)
is a failure. READY_FILE is created after the first success, so the caller
knows the server answers before it starts what it measures.

On exit it prints one line:

    REQUESTS FAILED LONGEST_GAP_SECONDS REASONS

LONGEST_GAP_SECONDS is the longest time between two successful answers,
counted from the first success to the moment the probe was stopped (a
server that stops answering before the end shows up in it too). REASONS is
`-` or `reason:count,...`.

Standard library only: it runs with whatever python3 the machine has.
"""

import collections
import signal
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
BODY = b"Hello, World!\n"
# A request unanswered for this long is a failure ("timeout"). Far above
# what a queued connection waits during an upgrade, far below the run.
REQUEST_TIMEOUT_S = 5.0


class Stop(Exception):
    """Raised by the SIGTERM handler to leave the loop at once, even in the
    middle of a request (which then counts neither way)."""


def on_term(_signum, _frame):
    raise Stop


def request(port):
    """One request; returns None on success, else why it failed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT_S) as sock:
            sock.sendall(REQUEST)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return type(e).__name__
    response = b"".join(chunks)
    if not response:
        return "empty response"
    head, _, body = response.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        return "status " + (status[1].decode("latin-1") if len(status) > 1 else "missing")
    if body != BODY:
        return "wrong body"
    return None


def main():
    port, ready_file, max_seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    signal.signal(signal.SIGTERM, on_term)
    requests = 0
    failures = collections.Counter()
    last_success = None
    longest_gap = 0.0
    deadline = time.monotonic() + max_seconds
    try:
        while time.monotonic() < deadline:
            reason = request(port)
            requests += 1
            if reason is not None:
                failures[reason] += 1
                continue
            now = time.monotonic()
            if last_success is None:
                open(ready_file, "w").close()
            else:
                longest_gap = max(longest_gap, now - last_success)
            last_success = now
    except Stop:
        pass
    if last_success is not None:
        longest_gap = max(longest_gap, time.monotonic() - last_success)
    reasons = ",".join(f"{r.replace(' ', '_')}:{n}" for r, n in sorted(failures.items())) or "-"
    print(requests, sum(failures.values()), f"{longest_gap:.6f}", reasons, flush=True)


if __name__ == "__main__":
    main()
