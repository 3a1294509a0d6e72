"""Sogni Intelligence worker: dials out to the platform, takes chat jobs, streams tokens back."""

__version__ = "0.1.0"
