"""A small fake of vLLM's OpenAI-compatible server for CPU tests of :mod:`policies.engine`.

It implements exactly the endpoints and fields the client relies on (see the module docstring
of :mod:`policies.engine`): ``GET /v1/models``, ``POST /v1/completions`` with token-id prompts,
``POST /v1/load_lora_adapter`` and ``POST /v1/unload_lora_adapter``, with vLLM's error shape
``{"error": {"message", "type", "param", "code"}}``.

Two modes:

* **model** (``FakeVLLM(model=...)``): a small Hugging Face causal LM samples each prompt with
  ``torch.multinomial`` over ``softmax(logits / temperature)`` (greedy at temperature 0), one full
  forward per token, from a ``torch.Generator`` seeded with the request's ``seed``, and returns
  the log-probs of that tempered distribution (vLLM's ``processed_logprobs``). A loaded "adapter"
  is a copy of the model with the request's ``lora_path`` applied: a PEFT adapter folder (holding
  ``adapter_config.json``, as vLLM reads it) merged into the copy with ``peft``, or a
  ``torch.save``-d full state dict loaded into it, so an update visibly changes what the
  adapter's name samples.
* **scripted** (``FakeVLLM(scripted=[(ids, logps), ...])``): choice ``i`` returns the scripted
  pair ``i % len(scripted)``, whatever the prompt.

Flags reproduce servers that answer without what the client needs: ``token_ids=False`` drops
``choices[*].token_ids`` (a vLLM older than 0.10.2), ``token_id_strings=False`` returns
``logprobs.tokens`` as text instead of ``"token_id:<id>"``, ``logprobs=False`` drops
``logprobs``, ``resets = n`` closes the next ``n`` connections without an answer. Every request is
recorded in :attr:`FakeVLLM.calls` as ``(method, path, body)``.

Use as a context manager: ``with FakeVLLM(model=m) as srv: VLLMEngine(srv.url, srv.name)``.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

__all__ = ["FakeVLLM"]


class _HTTPError(Exception):
    def __init__(self, code: int, message: str, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.code, self.message, self.kind = code, message, kind


def _error(code: int, message: str, kind: str) -> dict[str, Any]:
    """vLLM's error answer."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class FakeVLLM:
    """The fake server (see the module docstring); ``url`` is set while it runs."""

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        *,
        name: str = "base",
        scripted: list[tuple[list[int], list[float]]] | None = None,
        token_ids: bool = True,
        token_id_strings: bool = True,
        logprobs: bool = True,
        runtime_lora: bool = True,
    ) -> None:
        if (model is None) == (scripted is None):
            raise ValueError("give either a model or scripted answers")
        self.model = model
        self.name = name
        self.scripted = scripted
        self.token_ids = token_ids
        self.token_id_strings = token_id_strings
        self.logprobs = logprobs
        self.runtime_lora = runtime_lora
        self.resets = 0
        self.calls: list[tuple[str, str, Any]] = []
        self.adapters: dict[str, tuple[str, torch.nn.Module | None]] = {}
        self.url = ""
        self._lock = threading.Lock()
        self._rng = torch.Generator().manual_seed(12345)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> FakeVLLM:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(size) if size else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw.decode("utf-8", errors="replace")
                with fake._lock:
                    fake.calls.append((method, self.path, body))
                    reset = fake.resets > 0
                    fake.resets -= int(reset)
                if reset:  # close without an answer: the client sees a reset connection
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                try:
                    code, out = 200, fake._route(method, self.path, body)
                except _HTTPError as e:
                    code, out = e.code, _error(e.code, e.message, e.kind)
                except Exception as e:  # noqa: BLE001 - a bug here answers 500, as a server does
                    code, out = 500, _error(500, f"{type(e).__name__}: {e}", "InternalServerError")
                data = (out if isinstance(out, str) else json.dumps(out)).encode("utf-8")
                self.send_response(code)
                kind = "text/plain" if isinstance(out, str) else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def requests(self, path: str) -> list[Any]:
        """The bodies of the recorded requests to ``path``."""
        return [b for _, p, b in self.calls if p == path]

    # ------------------------------------------------------------------ endpoints
    def _route(self, method: str, path: str, body: Any) -> Any:
        if method == "GET" and path == "/v1/models":
            return self._models()
        if method == "POST" and path == "/v1/completions":
            return self._completions(body)
        if method == "POST" and path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
            if not self.runtime_lora:
                raise _HTTPError(404, "Not Found", "NotFoundError")
            if not isinstance(body, dict) or not body.get("lora_name"):
                raise _HTTPError(400, "lora_name is required")
            if path.endswith("/load_lora_adapter"):
                return self._load(str(body["lora_name"]), body.get("lora_path"))
            return self._unload(str(body["lora_name"]))
        raise _HTTPError(404, "Not Found", "NotFoundError")

    def _models(self) -> dict[str, Any]:
        cards = [{"id": self.name, "object": "model", "root": self.name, "parent": None}]
        for name, (path, _) in self.adapters.items():
            cards.append({"id": name, "object": "model", "root": path, "parent": self.name})
        return {"object": "list", "data": cards}

    def _load(self, name: str, path: Any) -> str:
        if name in self.adapters:
            raise _HTTPError(400, f"The lora adapter '{name}' has already been loaded.")
        if not isinstance(path, str) or not os.path.exists(path):
            raise _HTTPError(400, f"Loading lora {name} failed: No adapter found for {path}")
        model = None
        if self.model is not None:
            try:
                model = copy.deepcopy(self.model)
                if os.path.isdir(path):  # a PEFT adapter folder, as vLLM reads it
                    from peft import PeftModel

                    if not os.path.isfile(os.path.join(path, "adapter_config.json")):
                        raise ValueError(f"no adapter_config.json in {path}")
                    model = PeftModel.from_pretrained(model, path).merge_and_unload()
                else:
                    state = torch.load(path, map_location="cpu", weights_only=True)
                    model.load_state_dict(state, strict=True)
            except Exception as e:  # noqa: BLE001 - the server reports any failure
                raise _HTTPError(400, f"Loading lora {name} failed: {e}") from None
            model.eval()
        with self._lock:
            self.adapters[name] = (path, model)
        return f"Success: LoRA adapter '{name}' added successfully."

    def _unload(self, name: str) -> str:
        with self._lock:
            if self.adapters.pop(name, None) is None:
                raise _HTTPError(
                    404, f"The lora adapter '{name}' cannot be found.", "NotFoundError"
                )
        return f"Success: LoRA adapter '{name}' removed successfully."

    def _completions(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _HTTPError(400, "the body must be a JSON object")
        name = body.get("model")
        if name == self.name:
            model = self.model
        elif name in self.adapters:
            model = self.adapters[name][1]
        else:
            raise _HTTPError(404, f"The model `{name}` does not exist.", "NotFoundError")
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            prompts = [prompt]
        elif (
            isinstance(prompt, list)
            and prompt
            and all(
                isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt
            )
        ):
            prompts = prompt
        else:
            raise _HTTPError(400, "this fake server takes token-id prompts only")
        max_tokens = int(body.get("max_tokens") or 16)
        temp = float(body.get("temperature", 1.0))
        stop = {int(t) for t in body.get("stop_token_ids") or []}
        seed = body.get("seed")
        choices = []
        for i, p in enumerate(prompts):
            if self.scripted is not None:
                ids, lps = self.scripted[i % len(self.scripted)]
                ids, lps = list(ids), list(lps)
            else:
                assert model is not None
                ids, lps = self._generate(model, p, max_tokens, temp, stop, seed)
            choices.append(self._choice(i, p, ids, lps, stop, max_tokens, body))
        n_out = sum(len(c["_n"]) for c in choices)
        for c in choices:
            del c["_n"]
        return {
            "id": f"cmpl-fake-{len(self.calls)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": name,
            "choices": choices,
            "usage": {
                "prompt_tokens": sum(len(p) for p in prompts),
                "completion_tokens": n_out,
                "total_tokens": sum(len(p) for p in prompts) + n_out,
            },
        }

    def _choice(self, i, prompt, ids, lps, stop, max_tokens, body) -> dict[str, Any]:
        as_ids = bool(body.get("return_tokens_as_token_ids")) and self.token_id_strings
        tokens = [f"token_id:{t}" if as_ids else f"<t{t}>" for t in ids]
        last = ids[-1] if ids else None
        choice: dict[str, Any] = {
            "index": i,
            "text": "".join(f"<t{t}>" for t in ids),
            "finish_reason": "stop" if last in stop else "length",
            "stop_reason": last if last in stop else None,
            "_n": ids,
        }
        if body.get("logprobs") is not None and self.logprobs:
            choice["logprobs"] = {
                "text_offset": [4 * k for k in range(len(ids))],
                "token_logprobs": lps,
                "tokens": tokens,
                "top_logprobs": [{tok: lp} for tok, lp in zip(tokens, lps)],  # noqa: B905
            }
        else:
            choice["logprobs"] = None
        if body.get("return_token_ids") and self.token_ids:
            choice["token_ids"] = list(ids)
            choice["prompt_token_ids"] = list(prompt)
        return choice

    @torch.no_grad()
    def _generate(self, model, prompt, max_tokens, temp, stop, seed):
        """Sample up to ``max_tokens`` ids after ``prompt`` (a stop id ends and is kept)."""
        if seed is None:
            with self._lock:
                seed = int(torch.randint(0, 2**62, (1,), generator=self._rng))
        gen = torch.Generator().manual_seed(int(seed))
        seq = list(prompt)
        ids: list[int] = []
        lps: list[float] = []
        for _ in range(max_tokens):
            out = model(input_ids=torch.tensor([seq]), logits_to_keep=1)  # the last position
            logits = out.logits[0, -1].float()
            if temp == 0:
                lp = torch.log_softmax(logits, dim=-1)
                tok = int(lp.argmax())
            else:
                lp = torch.log_softmax(logits / temp, dim=-1)
                tok = int(torch.multinomial(lp.exp(), 1, generator=gen))
            ids.append(tok)
            lps.append(float(lp[tok]))
            seq.append(tok)
            if tok in stop:
                break
        return ids, lps
