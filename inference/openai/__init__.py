"""OpenAI's wire surface: request parsing, reply and stream-chunk builders, reasoning split.

Pure functions and small classes; no ORM and no I/O, so views, consumers and tests share them.
"""
