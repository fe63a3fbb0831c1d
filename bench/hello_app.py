"""The ceiling for the ingest benchmark: Flask "hello world" on the same gunicorn settings."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.post("/webhooks/dataverse")
def hello():
    return jsonify(status="accepted"), 202
