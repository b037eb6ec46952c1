"""The WSGI app of tests/gthread.rs: who answered, and how."""
import json
import os
import threading
import time

# What a thread keeps between requests (a database connection, say):
# requests served by one thread count up here.
_kept = threading.local()


def application(environ, start_response):
    """`?sleep=SECONDS` first; answers with the worker's pid, the thread and
    wsgi.multithread, as JSON with a Content-Length (keep-alive)."""
    query = environ.get("QUERY_STRING", "")
    if query.startswith("sleep="):
        time.sleep(float(query[len("sleep="):]))
    _kept.served = getattr(_kept, "served", 0) + 1
    body = json.dumps({
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "multithread": environ["wsgi.multithread"],
        "path": environ["PATH_INFO"],
        "served_by_thread": _kept.served,
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
