"""A small Flask app for tests/wsgi.rs."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/form", methods=["POST"])
def form():
    return "hello " + request.form["name"]


@app.route("/json")
def json_route():
    return jsonify(hello="world", answer=42)
