"""Open WebUI against the platform, driven through Open WebUI's own HTTP API as its browser app does:
sign up the first user (who becomes the admin), list the models it fetched from us, stream a chat."""

import json
import os
import secrets
from pathlib import Path

import httpx

from integrations.processes import ROOT, Process, free_port, start, wait_until

VENV = ROOT / ".integrations" / "open-webui"


def open_webui_env(*, data_dir: Path, base_url: str, api_key: str) -> dict[str, str]:
    """The connection to the platform plus what keeps Open WebUI offline and quiet (docs/integrations/open-webui.md)."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    return {
        **env,
        # The connection: one OpenAI-compatible provider, no Ollama.
        "OPENAI_API_BASE_URL": base_url,
        "OPENAI_API_KEY": api_key,
        "ENABLE_OLLAMA_API": "false",
        # Accounts on, its own data in a folder of its own.
        "WEBUI_AUTH": "true",
        "WEBUI_SECRET_KEY": secrets.token_urlsafe(32),
        "DATA_DIR": str(data_dir),
        # Offline: no version check, no embedding-model download, no telemetry.
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
        "RAG_RERANKING_MODEL_AUTO_UPDATE": "false",
        "SCARF_NO_ANALYTICS": "true",
        "DO_NOT_TRACK": "true",
        "ANONYMIZED_TELEMETRY": "false",
        # Title, tag and follow-up generation would each be one more request to the model per chat.
        "ENABLE_TITLE_GENERATION": "false",
        "ENABLE_TAGS_GENERATION": "false",
        "ENABLE_FOLLOW_UP_GENERATION": "false",
        "PYTHONUNBUFFERED": "1",
    }


def open_webui_start(*, work_dir: Path, base_url: str, api_key: str) -> tuple[Process, str]:
    port = free_port()
    env = open_webui_env(data_dir=work_dir / "open-webui-data", base_url=base_url, api_key=api_key)
    (work_dir / "open-webui-data").mkdir(exist_ok=True)
    process = start(
        "open-webui",
        [str(VENV / "bin" / "open-webui"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        log_path=work_dir / "open-webui.log",
        cwd=work_dir,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        process.check_alive()
        try:
            return httpx.get(f"{url}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=600, interval=2, what="Open WebUI's /health")
    return process, url


def open_webui_check(*, url: str, model: str) -> str:
    """Sign up the admin, see our model, stream a reply; the streamed text on success, else an exception."""
    with httpx.Client(base_url=url, timeout=300) as client:
        signup = client.post(
            "/api/v1/auths/signup",
            json={"name": "Admin", "email": "admin@example.com", "password": secrets.token_urlsafe(16)},
        )
        signup.raise_for_status()
        account = signup.json()
        if account.get("role") != "admin":
            raise AssertionError(f"the first user should be the admin, got role {account.get('role')!r}")
        headers = {"Authorization": f"Bearer {account['token']}"}

        models = client.get("/api/models", headers=headers)
        models.raise_for_status()
        ids = [item["id"] for item in models.json()["data"]]
        if model not in ids:
            raise AssertionError(f"{model} not among the models Open WebUI fetched from us: {ids}")

        body = {
            "model": model,
            "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
            "stream": True,
            "max_tokens": 48,
        }
        text, events = [], 0
        with client.stream("POST", "/api/chat/completions", json=body, headers=headers) as response:
            if response.status_code != 200:
                raise AssertionError(f"/api/chat/completions answered {response.status_code}: {response.read()!r}")
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line.removeprefix("data: "))
                if "error" in event:
                    raise AssertionError(f"error event on the stream: {event['error']}")
                events += 1
                for choice in event.get("choices") or []:
                    text.append((choice.get("delta") or {}).get("content") or "")
        reply = "".join(text)
        if not reply.strip():
            raise AssertionError(f"no text in {events} streamed events")
        return f"{events} streamed events, reply {reply.strip()[:60]!r}"
