"""Reasoning backends: grounded (rules, the default), a local model through transformers, or any
OpenAI-compatible endpoint (llama.cpp server, Ollama, vLLM, or ``bi-ide council serve-model``).

Every backend answers a list of members at once: ``answer(members, question, findings, feedback=,
previous=, on_answer=) -> list[Answer]``. A backend that fails or times out makes the members it
was answering abstain with the reason; the session goes on. ``make_backend(spec)`` builds one from
``"grounded"``, ``"local"``, ``"openai"`` or a dict ``{"kind": ..., options}``.
"""

from __future__ import annotations

import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from bi_ide.council.answers import ANSWER_PREFIX, Answer, Feedback, messages, parse_answer
from bi_ide.council.evidence import Finding, Question
from bi_ide.council.grounded import GroundedBackend
from bi_ide.council.members import Member
from bi_ide.errors import ConfigError

KINDS = ("grounded", "local", "openai")
LOCAL_OPTIONS = ("model", "max_new_tokens", "batch_size", "share_prefix", "device")
_MODELS: dict[tuple[str, str], tuple] = {}  # (model path, device) -> (model, tokenizer), loaded once per process
_LOADING = threading.Lock()
MIN_SHARED_TOKENS = 16  # a shorter shared start is not worth a separate forward pass
OPENAI_OPTIONS = ("base_url", "model", "api_key", "timeout_s", "max_tokens", "concurrency")


class _ModelBackend:
    """What the model backends share: prompts per member, answers parsed or abstained."""

    name = "model"
    prefixed = False  # whether replies continue ANSWER_PREFIX
    # Counters a session reads before and after each round: tokens generated, and replies whose
    # count the backend could not know (a server that reports no usage). Per backend object.
    generated_tokens = 0
    uncounted_replies = 0
    _counting = threading.Lock()

    def count_tokens(self, tokens: int | None, replies: int = 1) -> None:
        with self._counting:
            if tokens is None:
                self.uncounted_replies += replies
            else:
                self.generated_tokens += tokens

    def complete(self, chats: list[list[dict]]) -> list[str | Exception]:
        raise NotImplementedError

    def answer(self, members: list[Member], q: Question, findings: list[Finding], *, feedback: Feedback | None = None,
               previous: dict[str, Answer] | None = None, on_answer=None) -> list[Answer]:
        todo = [m for m in members if feedback is None or previous[m.id].probability is not None]
        chats = [messages(m, q.text, findings, feedback, previous[m.id] if feedback else None) for m in todo]
        replies = dict(zip((m.id for m in todo), self.complete(chats), strict=True))
        out = []
        for m in members:
            reply = replies.get(m.id)
            if reply is None:
                a = previous[m.id]  # abstained in round 0: nothing to revise
            elif isinstance(reply, Exception):
                a = Answer.abstain(m.id, f"abstained: {reply}", self.name, failed=True)
            else:
                a = parse_answer(reply, m.id, self.name, prefixed=self.prefixed)
                if feedback is not None:
                    a = _as_revision(previous[m.id], a)
            out.append(a)
            if on_answer:
                on_answer(a)
        return out


def _as_revision(prev: Answer, new: Answer) -> Answer:
    """A feedback-round reply: unchanged when it says the same; an unusable one keeps the first answer."""
    if new.probability is None or (new.vote == prev.vote and abs(new.probability - (prev.probability or 0)) < 0.01):
        return prev
    new.revision_reason = new.rationale or "revised after the feedback round"
    return new


class LocalModelBackend(_ModelBackend):
    """A local causal LM (a directory or a .gguf file; default SmolLM2-135M-Instruct) on this machine.

    Members are batched into few ``generate`` calls (greedy); the question and evidence every
    member's prompt starts with run once per batch (a shared key/value cache), and prompts end with
    the start of the JSON answer so even a small model writes one.
    """

    name = "local"
    prefixed = True

    def __init__(self, model: str | None = None, *, max_new_tokens: int = 64, batch_size: int = 8,
                 share_prefix: bool = True, device: str = "auto", loaded: tuple | None = None):
        if not 1 <= max_new_tokens <= 1024 or not 1 <= batch_size <= 256:
            raise ConfigError(f"max_new_tokens must be 1..1024 and batch_size 1..256, got {max_new_tokens} and "
                              f"{batch_size}")
        if device not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"device must be auto, cpu, cuda or mps, got {device!r}")
        self.model_path = model
        self.device = device  # auto: a CUDA GPU (in bf16) when torch sees one, else the CPU
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.share_prefix = share_prefix
        self._loaded = loaded

    def load(self) -> tuple:
        """(model, tokenizer), loaded once per process and path (a hub answering many sessions
        loads it once); only local files are read."""
        with _LOADING:
            if self._loaded is None:
                key = (str(self.model_path or ""), self.device)
                if key not in _MODELS:
                    _MODELS[key] = _load_model(self.model_path, self.device)
                self._loaded = _MODELS[key]
            return self._loaded

    def generate(self, prompts: list[str], max_new_tokens: int | None = None) -> list[str]:
        """Greedy continuations of raw prompts, ``batch_size`` at a time.

        In a batch, the tokens every prompt starts with (the question and evidence) are run once
        and their key/value cache is shared by the batch; only each prompt's own tail is padded
        (on the left of the tail) and run per member.
        """
        _, tok = self.load()
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        out = []
        for start in range(0, len(ids), self.batch_size):
            out += self._generate_batch(ids[start:start + self.batch_size], max_new_tokens or self.max_new_tokens)
        return out

    def _generate_batch(self, batch: list[list[int]], max_new_tokens: int) -> list[str]:
        import torch
        from transformers import DynamicCache

        model, tok = self.load()
        shared = _common_prefix(batch) if self.share_prefix and len(batch) > 1 else 0
        shared = shared if shared >= MIN_SHARED_TOKENS else 0
        tails = [x[shared:] for x in batch]
        width = max(map(len, tails))
        pad = tok.pad_token_id
        ids = torch.tensor([batch[0][:shared] + [pad] * (width - len(t)) + t for t in tails],  # (B, shared + width)
                           device=model.device)
        mask = torch.tensor([[1] * shared + [0] * (width - len(t)) + [1] * len(t) for t in tails], device=model.device)
        kwargs = {}
        with torch.no_grad():
            if shared:
                cache = DynamicCache(config=model.config)
                name = _cache_argument(model)
                model(input_ids=ids[:1, :shared], use_cache=True, **{name: cache})  # the shared part, once
                cache.batch_repeat_interleave(len(batch))
                kwargs[name] = cache
            generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                       do_sample=False, pad_token_id=pad, **kwargs)
        new = generated[:, ids.shape[1]:]  # (B, new tokens), padded after each row's end
        self.count_tokens(int((new != pad).sum()))
        return tok.batch_decode(new, skip_special_tokens=True)

    def prompt(self, chat: list[dict], *, prefix: str = "") -> str:
        _, tok = self.load()
        return tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) + prefix

    def complete(self, chats: list[list[dict]]) -> list[str | Exception]:
        try:
            return self.generate([self.prompt(c, prefix=ANSWER_PREFIX) for c in chats])
        except (RuntimeError, ValueError, OSError, ConfigError) as e:
            return [RuntimeError(f"the local model failed: {e}") for _ in chats]


def _load_model(path: str | None, device: str = "cpu") -> tuple:
    from bi_ide.training.hf import hf_from_pretrained, smollm2_gguf

    model, tokenizer = hf_from_pretrained(path or smollm2_gguf())
    if tokenizer is None:
        raise ConfigError(f"{path} has no tokenizer files; a council model needs one")
    return on_device(model, tokenizer, device)


def on_device(model, tokenizer, device: str = "auto") -> tuple:
    """(model, tokenizer) ready to answer: the model on ``device`` (bf16 on a CUDA GPU), in eval mode,
    and a pad token for batches."""
    from bi_ide.training.hardware import pick_device, pick_precision

    target = pick_device(device)
    if target.type == "cuda":
        model = model.to(target, dtype=pick_precision(target, "auto"))  # bf16 where the card has it, else fp16
    elif target.type != "cpu":
        model = model.to(target)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def _cache_argument(model) -> str:
    """What the model's forward calls its key/value cache: ``cache`` from transformers 5.2x on,
    ``past_key_values`` before (and deprecated after)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _common_prefix(rows: list[list[int]]) -> int:
    """How many leading tokens every row shares, leaving each row at least one of its own."""
    n = 0
    limit = min(map(len, rows)) - 1
    while n < limit and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


class OpenAIBackend(_ModelBackend):
    """An OpenAI-compatible ``/chat/completions`` endpoint: one request per member, a few at a time."""

    name = "openai"

    def __init__(self, base_url: str, model: str = "default", *, api_key: str | None = None, timeout_s: float = 60.0,
                 max_tokens: int = 160, concurrency: int = 4):
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL such as http://127.0.0.1:8080/v1, got {base_url!r}")
        if not 0 < timeout_s <= 600 or not 1 <= concurrency <= 64 or not 1 <= max_tokens <= 4096:
            raise ConfigError("timeout_s must be in (0, 600], concurrency 1..64 and max_tokens 1..4096")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.concurrency = concurrency

    def complete(self, chats: list[list[dict]]) -> list[str | Exception]:
        with requests.Session() as session, ThreadPoolExecutor(self.concurrency) as pool:
            if self.api_key:
                session.headers["Authorization"] = f"Bearer {self.api_key}"
            return list(pool.map(lambda chat: self._one(session, chat), chats))

    def _one(self, session: requests.Session, chat: list[dict]) -> str | Exception:
        url = f"{self.base_url}/chat/completions"
        body = {"model": self.model, "messages": chat, "max_tokens": self.max_tokens, "temperature": 0}
        try:
            r = session.post(url, json=body, timeout=self.timeout_s)
        except requests.Timeout:
            return TimeoutError(f"the openai backend at {self.base_url} did not answer within {self.timeout_s:g} s")
        except requests.ConnectionError as e:
            return ConnectionError(f"the openai backend at {self.base_url} cannot be reached ({type(e).__name__})")
        if r.status_code >= 400:
            return RuntimeError(f"the openai backend at {self.base_url} answered HTTP {r.status_code}: "
                                f"{r.text[:160]!r}")
        try:
            reply = r.json()
            content = str(reply["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            return RuntimeError(f"the openai backend at {self.base_url} sent no chat completion: {r.text[:160]!r}")
        self.count_tokens(_completion_tokens(reply))
        return content


def _completion_tokens(reply: dict) -> int | None:
    """``usage.completion_tokens`` of a chat completion, when the server reports it."""
    usage = reply.get("usage") if isinstance(reply, dict) else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0 else None


def make_backend(spec=None):
    """A backend from a name or ``{"kind": name, options...}``; None means grounded."""
    if spec is None or isinstance(spec, GroundedBackend | _ModelBackend):
        return spec or GroundedBackend()
    options = dict(spec) if isinstance(spec, dict) else {"kind": spec}
    kind = options.pop("kind", None)
    allowed = {"grounded": (), "local": LOCAL_OPTIONS, "openai": OPENAI_OPTIONS}.get(kind)
    if allowed is None:
        raise ConfigError(f"backend {kind!r} is not one of {list(KINDS)}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for the {kind} backend; allowed: {list(allowed)}")
    if kind == "grounded":
        return GroundedBackend()
    if kind == "local":
        return LocalModelBackend(**options)
    if "base_url" not in options:
        raise ConfigError("the openai backend needs base_url (e.g. http://127.0.0.1:8080/v1)")
    return OpenAIBackend(options.pop("base_url"), **options)
