"""What customers are told when a job fails: the platform's own words for each error code.

A worker's `error` text is its operator's to read (logs, the console's job page), never the customer's:
it could say anything.
"""

MESSAGES = {
    "engine_error": "The worker serving this request failed while generating the answer.",
    "context_length_exceeded": "The messages and max_tokens of this request exceed the model's context window.",
    "invalid_request": "This request cannot be served by this model; check its parameters.",
    "overloaded": "Every worker serving this model is busy right now. Please retry shortly.",
    "cancelled": "The request was cancelled.",
    "worker_error": "The worker serving this request stopped before finishing it.",
}


def error_message(code: str) -> str:
    return MESSAGES.get(code, MESSAGES["worker_error"])
