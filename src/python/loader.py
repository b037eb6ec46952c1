# gunicornd's Python side: what is easier to say in Python than through the
# C API. Run once per worker (or in the master with --preload); nothing here
# runs per request except FileWrapper.
import ast
import importlib
import sys


def load(module, expression):
    """gunicorn's `import_app`: `module`, `module:name`, `module:a.b`,
    `module:factory()` or `module:factory(literal, key=literal)`."""
    mod = importlib.import_module(module)
    expression = expression or "application"
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        raise ValueError("Failed to parse %r as an attribute name or function call." % expression)
    args, kwargs = None, None
    if isinstance(node, ast.Call):
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise ValueError("Failed to parse arguments as literal values: %r" % expression)
        node = node.func
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ValueError("Failed to parse %r as an attribute name or function call." % expression)
    names.append(node.id)
    names.reverse()
    app = mod
    for name in names:
        try:
            app = getattr(app, name)
        except AttributeError:
            raise AttributeError("Failed to find attribute %r in %r." % (name, module))
    if args is not None:
        app = app(*args, **kwargs)
    if app is None:
        raise ValueError("The function %r in %r returned None." % (expression, module))
    if not callable(app):
        raise TypeError("Application object must be callable.")
    return app


class FileWrapper:
    """`wsgi.file_wrapper`: iterates a file-like object in blocks."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def sendfile_range(self):
        """(fd, offset, length) of the rest of a regular file, for
        sendfile(2); None for anything else (then it is iterated)."""
        import os
        import stat
        try:
            fd = self.filelike.fileno()
            size = os.fstat(fd)
        except Exception:
            return None
        if not stat.S_ISREG(size.st_mode):
            return None
        try:
            offset = self.filelike.tell()
        except Exception:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        return fd, offset, max(size.st_size - offset, 0)


def traceback_text(exc, tb):
    import traceback
    return "".join(traceback.format_exception(type(exc), exc, tb))


def config_settings(path):
    """Run a gunicorn Python config file; return its module-level names with
    plain values (what a setting can be), as gunicorn reads them."""
    import runpy
    import types
    settings = {}
    for name, value in runpy.run_path(path).items():
        if name.startswith("_") or isinstance(value, types.ModuleType) or callable(value):
            continue
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, (str, int, float, bool, list, dict)) or value is None:
            continue
        if name == "bind" and isinstance(value, str):
            value = [value]
        settings[name] = value
    return settings


def config_hook(path, name):
    """The callable `name` of a gunicorn Python config file, or None."""
    import runpy
    hook = runpy.run_path(path).get(name)
    return hook if callable(hook) else None


class WorkerInfo:
    """What gunicorn's server hooks get as `worker`: the parts apps use."""

    def __init__(self, age):
        import logging
        import os
        self.pid = os.getpid()
        self.ppid = os.getppid()
        self.age = age
        self.log = logging.getLogger("gunicornd.error")


class RequestInfo:
    """What gunicorn's pre_request/post_request hooks get as `req`."""

    def __init__(self, method, uri, path, query, version, headers):
        self.method = method
        self.uri = uri
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers


class ResponseInfo:
    """What gunicorn's post_request hook gets as `resp`."""

    def __init__(self, status, sent):
        self.status = status
        self.status_code = status
        self.headers_sent = sent
