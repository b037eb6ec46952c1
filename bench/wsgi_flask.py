"""The Flask app of bench/wsgi.sh: a JSON route, to measure a server with a
real framework's per-request cost on top of its own."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/json")
def hello_json():
    return jsonify({"hello": "world"})
