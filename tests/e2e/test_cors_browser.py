"""A page served from another origin calls /v1/chat/completions with `fetch` in headless Chromium and
reads the stream: the preflight and the streamed answer pass the browser's CORS checks."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.workers import SMOLLM2, account_create

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]

PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>another origin</title></head>
<body><pre id="out"></pre></body></html>"""

# Runs in the page: a streamed chat completion read chunk by chunk, as a browser app would.
STREAM_CHAT = """async ([url, key, model]) => {
  const response = await fetch(url + "/v1/chat/completions", {
    method: "POST",
    headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    body: JSON.stringify({model, stream: true, max_tokens: 4,
                          messages: [{role: "user", content: "cors reaches the worker"}]}),
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "", reads = 0;
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    reads += 1;
    text += decoder.decode(value, {stream: true});
  }
  return {status: response.status, type: response.headers.get("content-type"), text, reads,
          requestId: response.headers.get("x-request-id")};
}"""


@pytest.fixture
def other_origin():
    """A page on another port: another origin than the platform's."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_page_on_another_origin_streams_a_chat_completion(workers, other_origin, page):
    workers.start("cors", engine="scripted", models=[SMOLLM2])
    customer = account_create(email="browser@example.com")
    page.goto(other_origin + "/")
    result = page.evaluate(STREAM_CHAT, [workers.url, customer.key, SMOLLM2])
    assert result["status"] == 200
    assert result["type"].startswith("text/event-stream")
    assert result["requestId"]  # exposed to the page
    assert '"content":"cors"' in result["text"]  # the scripted engine opens with the prompt's first word
    assert result["text"].rstrip().endswith("data: [DONE]")
