//! Error log and access log in gunicorn's formats.
