"""`make integrations`: start the platform as `make run` does (or use one already running), then drive real
clients against it and print PASS/FAIL per client; the exit status is 1 if any failed.

    python -m integrations.run                      # starts migrate + runlocal in a temporary data folder
    python -m integrations.run --base-url http://127.0.0.1:8000/v1 --api-key sk-sogni-...
    python -m integrations.run --only open-webui,agents-sdk
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from integrations.open_webui import open_webui_check, open_webui_start
from integrations.processes import (
    ROOT,
    Process,
    free_port,
    platform_api_key,
    platform_start,
    platform_wait_for_model,
)

MODEL = "smollm2-135m-instruct-q4_1"
CLIENTS_PYTHON = ROOT / ".integrations" / "clients" / "bin" / "python"
CLIENT_SCRIPTS = {
    "agents-sdk": "agents_sdk.py",
    "langchain": "langchain_chat.py",
    "litellm": "litellm_sdk.py",
}
ORDER = ["open-webui", "agents-sdk", "langchain", "litellm"]


def client_script_check(script: str, *, base_url: str, api_key: str, model: str) -> str:
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": api_key, "MODEL": model}
    done = subprocess.run(
        [str(CLIENTS_PYTHON), str(Path(__file__).parent / "clients" / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        lines = (done.stdout + done.stderr).strip().splitlines() or [f"exit status {done.returncode}"]
        raise AssertionError("\n      ".join([lines[-1], *lines[-12:-1]]))  # the error first, then its context
    return done.stdout.strip().splitlines()[-1]


def run_checks(checks: dict[str, Callable[[], str]]) -> bool:
    passed = True
    for name, check in checks.items():
        started = time.monotonic()
        try:
            detail = check()
        except Exception as error:  # one client's failure must not hide the others' results
            passed = False
            seconds = time.monotonic() - started
            reason = error if isinstance(error, AssertionError) else f"{type(error).__name__}: {error}"
            print(f"FAIL  {name:<11} ({seconds:.0f}s) {reason}", flush=True)
            if not isinstance(error, AssertionError):
                traceback.print_exc()
        else:
            print(f"PASS  {name:<11} ({time.monotonic() - started:.0f}s) {detail}", flush=True)
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="a running platform's /v1 URL (default: start one)")
    parser.add_argument("--api-key", help="with --base-url: an API key on that platform")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = parser.parse_args(argv)
    selected = args.only.split(",") if args.only else ORDER
    if unknown := set(selected) - set(ORDER):
        parser.error(f"unknown client(s): {', '.join(sorted(unknown))}")
    if args.base_url and not args.api_key:
        parser.error("--base-url needs --api-key")

    work_dir = Path(tempfile.mkdtemp(prefix="sogni-integrations-"))
    processes: list[Process] = []
    passed = False
    try:
        if args.base_url:
            base_url, api_key = args.base_url.rstrip("/"), args.api_key
        else:
            port = free_port()
            print(f"Starting the platform (migrate, runlocal --port {port}); logs in {work_dir}", flush=True)
            platform, env = platform_start(work_dir=work_dir, port=port)
            processes.append(platform)
            base_url, api_key = f"http://127.0.0.1:{port}/v1", platform_api_key(env, "integrations@example.com")
        platform_wait_for_model(base_url, api_key, args.model)

        checks: dict[str, Callable[[], str]] = {}
        for name in (name for name in ORDER if name in selected):
            if name == "open-webui":

                def open_webui() -> str:
                    print("Starting Open WebUI (its first start takes a minute or two)", flush=True)
                    process, url = open_webui_start(work_dir=work_dir, base_url=base_url, api_key=api_key)
                    processes.append(process)
                    return open_webui_check(url=url, model=args.model)

                checks[name] = open_webui
            else:
                script = CLIENT_SCRIPTS[name]
                checks[name] = lambda script=script: client_script_check(
                    script, base_url=base_url, api_key=api_key, model=args.model
                )
        passed = run_checks(checks)
    finally:
        for process in reversed(processes):
            process.stop()
        if args.keep or not passed:
            print(f"Logs kept in {work_dir}", flush=True)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
