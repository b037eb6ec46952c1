"""The hello-world WSGI app of bench/wsgi.sh: the same response as
gunicornd's builtin:hello (200, text/plain, "Hello, World!\n"), served by
every server the bench compares."""

BODY = b"Hello, World!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
