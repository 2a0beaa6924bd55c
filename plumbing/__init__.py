"""Shared plumbing: blob I/O over SAS URIs, subprocesses, retries, redaction, clocks."""
