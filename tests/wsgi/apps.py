"""WSGI apps for tests/wsgi.rs: one per behaviour, selected by name."""
import io
import json
import os


def environ(environ, start_response):
    """The environ as JSON (what is JSON-able)."""
    out = {}
    for k, v in environ.items():
        if isinstance(v, (str, bool, int)) or v is None:
            out[k] = v
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = type(v).__name__
    out["has_file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
    body = json.dumps(out, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def input_methods(environ, start_response):
    """Each wsgi.input method, as the query string names it."""
    inp = environ["wsgi.input"]
    how = environ["QUERY_STRING"]
    if how == "read":
        parts = [inp.read()]
    elif how == "read3":
        parts = []
        while True:
            chunk = inp.read(3)
            if not chunk:
                break
            parts.append(chunk)
    elif how == "readline":
        parts = []
        while True:
            line = inp.readline()
            if not line:
                break
            parts.append(line)
    elif how == "readline2":
        parts = [inp.readline(2), inp.readline(), inp.read()]
    elif how == "readlines":
        parts = inp.readlines()
    elif how == "iter":
        parts = list(inp)
    else:
        parts = [b"?"]
    body = json.dumps([p.decode("latin-1") for p in parts]).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def file_wrapper(environ, start_response):
    path = os.path.join(os.path.dirname(__file__), "apps.py")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return environ["wsgi.file_wrapper"](open(path, "rb"), 1024)


def write_callable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    return [b"and returned"]


class Closing:
    """A response iterable whose close() leaves a mark on disk."""

    def __init__(self, marker, fail):
        self.marker = marker
        self.fail = fail

    def __iter__(self):
        yield b"one "
        if self.fail:
            raise RuntimeError("failed in the middle")
        yield b"two"

    def close(self):
        with open(self.marker, "w") as f:
            f.write("closed")


def closing(environ, start_response):
    marker = environ["QUERY_STRING"].split("=", 1)[1]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing(marker, fail=environ["PATH_INFO"] == "/fail")


def exc_info(environ, start_response):
    """Headers sent, then an error reported through start_response."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial")
    try:
        raise ValueError("late failure")
    except ValueError:
        import sys
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"never"]


def exc_info_early(environ, start_response):
    """An error reported before anything was sent: the new status wins."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("early failure")
    except ValueError:
        import sys
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"sorry"]


def raises(environ, start_response):
    raise RuntimeError("the app failed")


def head(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def large(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    block = b"x" * 65536
    return (block for _ in range(64))


def longer_than_declared(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello, and more"]


def shorter_than_declared(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "50")])
    return [b"short"]


def hop_by_hop(environ, start_response):
    start_response("200 OK", [("Connection", "keep-alive")])
    return [b"x"]


def make(greeting="hello", punctuation="."):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [(greeting + punctuation).encode()]
    return app


application = make("default", "!")


def sleepy(environ, start_response):
    """Hangs: the heartbeat timeout kills the worker."""
    import time
    time.sleep(600)
    start_response("200 OK", [])
    return [b"too late"]


def spinning(environ, start_response):
    """Busy in Python for good (never returns to the worker's loop); says
    it started in the file `entered`."""
    with open("entered", "w") as f:
        f.write("in the app\n")
    while True:
        pass


class _Unreadable(io.FileIO):
    """A file whose read() fails: only sendfile(2) can send it."""

    def read(self, *args):
        raise RuntimeError("read() called: the file was not sent with sendfile")


def sendfile(environ, start_response):
    """apps.py from ?offset= through file_wrapper, with ?length= as its
    Content-Length if given; ?kind=bytes wraps a BytesIO (iterated)."""
    from urllib.parse import parse_qs
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    path = os.path.join(os.path.dirname(__file__), "apps.py")
    if query.get("kind") == "bytes":
        with open(path, "rb") as f:
            filelike = io.BytesIO(f.read())
    else:
        filelike = _Unreadable(path, "rb")
    filelike.seek(int(query.get("offset", "0")))
    headers = [("Content-Type", "text/plain")]
    if "length" in query:
        headers.append(("Content-Length", query["length"]))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](filelike)
