"""The WSGI app of tests/gthread.rs: who answered, and how."""
import json
import os
import threading
import time


def application(environ, start_response):
    """`?sleep=SECONDS` first; answers with the worker's pid, the thread and
    wsgi.multithread, as JSON with a Content-Length (keep-alive)."""
    query = environ.get("QUERY_STRING", "")
    if query.startswith("sleep="):
        time.sleep(float(query[len("sleep="):]))
    body = json.dumps({
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "multithread": environ["wsgi.multithread"],
        "path": environ["PATH_INFO"],
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
