"""Rollout engine client: a vLLM server's OpenAI-compatible API, token ids in and out.

``policy.engine = "vllm"`` samples a language-model policy's responses on a vLLM server at
``policy.engine_url`` instead of the in-process sampler (``"hf"``, :mod:`policies.lm`). The
trainer still owns the weights: after each update it saves the role's LoRA adapter and reloads it
on the server (:meth:`VLLMEngine.load_adapter`). The engine's log-probs differ slightly from the
trainer's recomputation (other kernels, bf16, batch shapes), so the update recomputes the old
log-probs itself and corrects for the gap with :func:`truncated_is_weight`.

**API followed**: the vLLM 0.11 documentation, "OpenAI-Compatible Server"
(https://docs.vllm.ai/en/v0.11.0/serving/openai_compatible_server.html, Completions API and its
extra parameters) and "LoRA Adapters" (https://docs.vllm.ai/en/v0.11.0/features/lora.html,
dynamically serving LoRA adapters). The fields relied on, and nothing else:

* ``GET /v1/models`` -> ``{"data": [{"id": ...}, ...]}`` (the base model and loaded adapters).
* ``POST /v1/completions`` with ``model`` (the base model's served name or a LoRA adapter's
  name), ``prompt`` (token ids: ``list[int]``, or ``list[list[int]]`` for a batch), ``max_tokens``,
  ``temperature`` (0 = greedy), ``top_p = 1``, ``top_k = -1``, ``min_p = 0`` and
  ``repetition_penalty = 1`` (sent explicitly so that the model's ``generation_config.json``
  defaults do not apply), ``logprobs = 1`` (the sampled token's log-prob is always included),
  ``stop_token_ids``, ``ignore_eos = true`` (only ``stop_token_ids`` end a response, as in the
  in-process sampler), ``seed``, ``return_token_ids = true`` (vLLM >= 0.10.2: each choice carries
  ``token_ids``) and ``return_tokens_as_token_ids = true`` (older servers: ``logprobs.tokens``
  are ``"token_id:<id>"`` strings). From the answer: ``choices[*].index``, ``.token_ids`` (or
  ``.logprobs.tokens``), ``.logprobs.token_logprobs`` and ``.finish_reason``. A stop token ends
  the response and is part of it (its id and log-prob are returned, as vLLM does for
  ``stop_token_ids`` that are generated).
* ``POST /v1/unload_lora_adapter`` ``{"lora_name"}`` and ``POST /v1/load_lora_adapter``
  ``{"lora_name", "lora_path"}`` (``lora_path``: a PEFT adapter folder that the server can read);
  the server needs ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` and ``--enable-lora``.
* Errors: HTTP status >= 400 with ``{"error": {"message": ...}}`` (or the older
  ``{"message": ...}``, or plain text), whose message is passed on.

**Server**: start vLLM with ``--logprobs-mode processed_logprobs`` (vLLM >= 0.10.2); the default
``raw_logprobs`` are the log-probs of the untempered logits, which differ from the tempered
sampling distribution whenever ``policy.temperature != 1``. For example::

    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve /models/Qwen3-30B-A3B \\
        --served-model-name base --enable-lora --max-lora-rank 64 \\
        --logprobs-mode processed_logprobs --port 8000

**Seeds**: vLLM applies a request's ``seed`` to every prompt of that request, so the K identical
prompts of a GRPO group would be sampled identically. With a seed, :meth:`VLLMEngine.sample`
therefore sends one request per prompt, seeded ``seed + row``, concurrently (the server batches
them); without one, a single batched request.

Standard library only (``urllib.request``, ``json``). Tested against
``tests/policies/fake_vllm.py`` (exactly the endpoints above), never yet against a real vLLM.
"""

from __future__ import annotations

import http.client
import json
import math
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

__all__ = [
    "VLLM_DOCS",
    "EngineError",
    "EngineUnreachable",
    "VLLMEngine",
    "truncated_is_weight",
]

VLLM_DOCS = "vLLM 0.11 OpenAI-compatible server docs"
"""The documentation version the client follows (see the module docstring for the fields)."""

_RESET = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
"""connection failures retried once (``http.client.RemoteDisconnected`` is a reset too)"""

_NO_IDS_HINT = (
    "start vLLM with a version that supports return_token_ids / return_tokens_as_token_ids "
    "(vLLM >= 0.10.2 returns choices[*].token_ids)"
)


class EngineError(ValueError):
    """The rollout engine answered, but not with what the client needs (an HTTP error with the
    server's message, no token ids, no log-probs, mismatched counts)."""


class EngineUnreachable(ConnectionError):
    """The rollout engine could not be reached (refused, reset twice, timed out)."""


class VLLMEngine:
    """A client of a vLLM server's OpenAI-compatible API (see the module docstring).

    Args:
        url: the server's base URL (``policy.engine_url``; a trailing ``/v1`` is accepted).
        model: the base model's served name (``--served-model-name``), used when no adapter is
            given and checked by :meth:`check`.
        timeout_s: seconds to wait for each HTTP answer.
        api_key: sent as ``Authorization: Bearer`` when the server was started with
            ``--api-key`` (else nothing is sent).
        max_concurrency: requests in flight at once for per-row (seeded) sampling.
    """

    def __init__(
        self,
        url: str,
        model: str,
        timeout_s: float = 60.0,
        *,
        api_key: str | None = None,
        max_concurrency: int = 64,
    ) -> None:
        base = str(url).rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"rollout engine URL {url!r} must start with http:// or https://")
        if not float(timeout_s) > 0:
            raise ValueError(f"timeout_s = {timeout_s} must be > 0")
        self.url = base
        self.model = str(model)
        self.timeout_s = float(timeout_s)
        self.api_key = api_key
        self.max_concurrency = max(1, int(max_concurrency))
        # direct connections: an http_proxy meant for the internet must not carry engine traffic
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One HTTP exchange; the parsed JSON answer (or its text when it is not JSON).

        Retries once on a reset connection; never on an HTTP error status (raised as
        :class:`EngineError` with the server's message).
        """
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        where = f"rollout engine at {self.url}"
        for attempt in (0, 1):
            req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
            try:
                with self._opener.open(req, timeout=self.timeout_s) as resp:
                    raw = resp.read()
                break
            except urllib.error.HTTPError as e:
                msg = _error_message(e.read())
                raise EngineError(
                    f"{where}: {method} {path} failed with HTTP {e.code}: {msg}"
                ) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                reason = e.reason if isinstance(e, urllib.error.URLError) else e
                if isinstance(reason, _RESET) and attempt == 0:
                    continue
                if isinstance(reason, TimeoutError):
                    why = f"no answer within {self.timeout_s:g} s ({method} {path})"
                else:
                    why = f"{type(reason).__name__}: {reason}"
                raise EngineUnreachable(f"{where} is not reachable: {why}") from e
        text = raw.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    # ------------------------------------------------------------------ API
    def models(self) -> list[str]:
        """The ids the server serves (``GET /v1/models``): the base model and loaded adapters."""
        out = self._request("GET", "/v1/models")
        try:
            return [str(m["id"]) for m in out["data"]]
        except (TypeError, KeyError) as e:
            raise EngineError(
                f"rollout engine at {self.url}: GET /v1/models answered {str(out)[:200]!r}, not "
                "an OpenAI model list"
            ) from e

    def check(self) -> list[str]:
        """Health and identity check: the server answers and serves :attr:`model`.

        Returns the served ids; raises :class:`EngineUnreachable` ("rollout engine at URL is not
        reachable: ...") or :class:`EngineError` ("... serves models [...], not M").
        """
        ids = self.models()
        if self.model not in ids:
            raise EngineError(
                f"rollout engine at {self.url} serves models {ids}, not {self.model!r} (set the "
                "served model name with vllm serve --served-model-name)"
            )
        return ids

    def sample(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        stop_ids: list[int],
        seed: int | None = None,
        adapter: str | None = None,
    ) -> list[tuple[list[int], list[float]]]:
        """Sample one response per prompt.

        Args:
            prompts: ``B`` prompts, each a list of token ids (already chat-templated).
            max_new_tokens: response tokens at most (>= 1).
            temperature: > 0 samples from ``softmax(logits / temperature)``; 0 is greedy.
            stop_ids: token ids that end a response (included in it).
            seed: row ``i`` is sampled with seed ``seed + i`` (one request per row); ``None``:
                the server's own randomness (one batched request).
            adapter: the LoRA adapter's name (a role's), or ``None`` for the base model.

        Returns:
            ``B`` pairs ``(response_ids, logps)``: ``R_i`` token ids and their ``R_i``
            log-probs under the engine (at ``temperature`` when the server runs with
            ``--logprobs-mode processed_logprobs``).

        Raises:
            EngineError: the server answered without token ids or log-probs, with counts that
                do not match, or with an HTTP error (its message included).
            EngineUnreachable: the server could not be reached.
        """
        if int(max_new_tokens) < 1:
            raise ValueError(f"max_new_tokens = {max_new_tokens} must be >= 1")
        if not float(temperature) >= 0:
            raise ValueError(f"temperature = {temperature} must be >= 0")
        rows = [[int(t) for t in p] for p in prompts]
        if any(len(p) == 0 for p in rows):
            raise ValueError("every prompt needs at least one token id")
        if not rows:
            return []
        body: dict[str, Any] = {
            "model": adapter or self.model,
            "max_tokens": int(max_new_tokens),
            "temperature": float(temperature),
            "top_p": 1.0,
            "top_k": -1,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "logprobs": 1,
            "stop_token_ids": [int(t) for t in stop_ids],
            "ignore_eos": True,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            "n": 1,
            "stream": False,
        }
        if seed is None:
            return self._complete(body | {"prompt": rows}, len(rows))
        seeds = [(int(seed) + i) % (1 << 63) for i in range(len(rows))]
        if len(rows) == 1:
            return self._complete(body | {"prompt": rows[0], "seed": seeds[0]}, 1)
        with ThreadPoolExecutor(min(self.max_concurrency, len(rows))) as pool:
            futures = [
                pool.submit(self._complete, body | {"prompt": p, "seed": s}, 1)
                for p, s in zip(rows, seeds, strict=True)
            ]
            return [f.result()[0] for f in futures]

    def _complete(self, body: dict[str, Any], n: int) -> list[tuple[list[int], list[float]]]:
        """``POST /v1/completions`` and the ``n`` choices' token ids and log-probs, in order."""
        out = self._request("POST", "/v1/completions", body)
        where = f"rollout engine at {self.url} (model {body['model']!r})"
        choices = out.get("choices") if isinstance(out, dict) else None
        if not isinstance(choices, list) or len(choices) != n:
            got = len(choices) if isinstance(choices, list) else str(out)[:200]
            raise EngineError(f"{where} answered {got} choices for {n} prompts")
        choices = sorted(choices, key=lambda c: int(c.get("index", 0)))
        return [_parse_choice(c, where) for c in choices]

    def unload_adapter(self, name: str, missing_ok: bool = True) -> bool:
        """``POST /v1/unload_lora_adapter``; ``False`` when the adapter was not loaded (an error
        unless ``missing_ok``)."""
        try:
            self._request("POST", "/v1/unload_lora_adapter", {"lora_name": str(name)})
        except EngineError as e:
            text = str(e).lower()
            if missing_ok and ("not found" in text or "cannot be found" in text or "404" in text):
                return False
            raise EngineError(f"could not unload LoRA adapter {name!r}: {e}") from None
        return True

    def load_adapter(self, name: str, path: str) -> None:
        """(Re)load LoRA adapter ``name`` from ``path`` (a folder the server can read): unload
        it if loaded, then ``POST /v1/load_lora_adapter``. Later requests with
        ``adapter=name`` use the new weights. Raises :class:`EngineError` with the server's
        message (e.g. runtime LoRA updating disabled, an adapter that does not fit the base
        model)."""
        self.unload_adapter(name, missing_ok=True)
        try:
            self._request(
                "POST", "/v1/load_lora_adapter", {"lora_name": str(name), "lora_path": str(path)}
            )
        except EngineError as e:
            raise EngineError(
                f"could not load LoRA adapter {name!r} from {path}: {e} (the server needs "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora, and the adapter must "
                "match its base model)"
            ) from None


def _error_message(raw: bytes) -> str:
    """The message of an error answer: ``{"error": {"message"}}``, ``{"message"}`` or text."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return text[:500] or "(empty answer)"
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        if isinstance(err, str):
            return err
        for key in ("message", "detail"):
            if key in obj:
                return str(obj[key])
    return text[:500]


def _token_id(tok: Any) -> int | None:
    """The id of a ``"token_id:<id>"`` string (``return_tokens_as_token_ids``), else None."""
    if isinstance(tok, str) and tok.startswith("token_id:"):
        try:
            return int(tok[len("token_id:") :])
        except ValueError:
            return None
    return None


def _parse_choice(choice: dict[str, Any], where: str) -> tuple[list[int], list[float]]:
    """``(token ids, log-probs)`` of one completion choice, checked."""
    lp = choice.get("logprobs")
    values = lp.get("token_logprobs") if isinstance(lp, dict) else None
    if not isinstance(values, list):
        raise EngineError(
            f"{where} returned no log-probs (choices[{choice.get('index')}].logprobs."
            "token_logprobs); the request asks for logprobs = 1"
        )
    ids = choice.get("token_ids")
    strings = lp.get("tokens") if isinstance(lp, dict) else None
    from_strings = None
    if isinstance(strings, list):
        parsed = [_token_id(t) for t in strings]
        if all(t is not None for t in parsed):
            from_strings = parsed
    if ids is None:
        if from_strings is None:
            raise EngineError(f"{where} returned no token ids: {_NO_IDS_HINT}")
        ids = from_strings
    elif from_strings is not None and list(from_strings) != list(ids):
        raise EngineError(
            f"{where}: choices[*].token_ids {list(ids)[:8]} and logprobs.tokens "
            f"{list(from_strings)[:8]} disagree"
        )
    if len(ids) != len(values):
        raise EngineError(
            f"{where} returned {len(ids)} token ids but {len(values)} log-probs for one response"
        )
    if any(v is None for v in values) or not all(math.isfinite(float(v)) for v in values):
        raise EngineError(f"{where} returned missing or non-finite log-probs: {values[:8]}")
    return [int(t) for t in ids], [float(v) for v in values]


@torch.no_grad()
def truncated_is_weight(
    logp_trainer_old: torch.Tensor, logp_engine: torch.Tensor, cap: float
) -> torch.Tensor:
    """Truncated importance weights ``min(exp(logp_trainer_old - logp_engine), cap)``.

    The engine samples from ``pi_engine``, which differs slightly from the trainer's own
    ``pi_old`` (same weights, other kernels and precision). The update's clipped ratio is taken
    against the trainer's recomputed ``pi_old``, and each token's policy-gradient term is
    weighted by ``pi_old / pi_engine``, truncated at ``cap`` to bound its variance: "truncated
    importance sampling" (TIS), F. Yao, L. Liu et al., "Your Efficient RL Framework Secretly
    Brings You Off-Policy RL Training" (blog, 2025), as implemented in verl
    (``tis_imp_ratio_cap``).

    Args:
        logp_trainer_old: ``(num_rows, seq_len)`` the trainer's log-probs of the sampled
            tokens under the parameters that sampled them (recomputed before the update).
        logp_engine: ``(num_rows, seq_len)`` the engine's log-probs of the same tokens.
        cap: the truncation (``policy.is_cap``, > 0).

    Returns:
        ``(num_rows, seq_len)`` weights in ``(0, cap]``, no gradient (padding positions where
        both inputs are 0 get 1).
    """
    if not float(cap) > 0:
        raise ValueError(f"is cap = {cap} must be > 0")
    if logp_trainer_old.shape != logp_engine.shape:
        raise ValueError(
            f"trainer log-probs {tuple(logp_trainer_old.shape)} and engine log-probs "
            f"{tuple(logp_engine.shape)} differ in shape"
        )
    diff = logp_trainer_old.detach() - logp_engine.detach().to(logp_trainer_old.dtype)
    return torch.exp(diff).clamp(max=float(cap))  # exp overflow -> inf -> cap
