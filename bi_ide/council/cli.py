"""``bi-ide council`` commands; ``COMMANDS`` are added to the main group.

ask, decisions, show, resolve, veto, override, members, calibration, plan-training and serve-model.
Each works on the store file, or through the hub when BI_IDE_HUB is set (the hub deliberates).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from bi_ide import settings
from bi_ide.clikit import Group, db_option, open_store
from bi_ide.council import planning, report
from bi_ide.council.backends import KINDS
from bi_ide.council.deliberation import ask as ask_council
from bi_ide.council.language import for_terminal, say
from bi_ide.store.council import OUTCOMES, URGENCIES

API_KEY_ENV = "BI_IDE_COUNCIL_API_KEY"
ASK_TIMEOUT_S = 900  # a local-model session through the hub can take minutes


@click.group(cls=Group)
def council():
    """The council: ask it, resolve its decisions, see its members and calibration."""


def _backend(kind: str, model: str | None, base_url: str | None, timeout: float, max_tokens: int) -> dict:
    if kind == "grounded":
        return {"kind": "grounded"}
    if kind == "local":
        return {"kind": "local", "max_new_tokens": max_tokens} | ({"model": model} if model else {})
    return {"kind": "openai", "base_url": base_url or "", "model": model or "default", "timeout_s": timeout,
            "max_tokens": max_tokens} | ({"api_key": os.environ[API_KEY_ENV]} if os.environ.get(API_KEY_ENV) else {})


def _open_for_ask(db):
    """The store, or a HubClient that waits long enough for a model-backed session."""
    url = None if db else settings.hub_url()
    if url:
        from bi_ide.hub.client import HubClient

        return HubClient(url, settings.hub_token(), timeout_s=ASK_TIMEOUT_S)
    return open_store(db)


@council.command("ask")
@click.argument("question")
@click.option("--urgency", type=click.Choice(URGENCIES), default="normal", show_default=True)
@click.option("--backend", type=click.Choice(KINDS), default="grounded", show_default=True,
              help="How members reason: rules over the evidence, a local model, or an OpenAI-compatible server.")
@click.option("--model", default=None, help="local: a model folder or .gguf file (default SmolLM2-135M-Instruct); "
                                            "openai: the model name.")
@click.option("--base-url", default=None, help="openai: the server's URL, e.g. http://127.0.0.1:8080/v1 "
                                               f"(key from ${API_KEY_ENV}).")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=60.0, show_default=True,
              help="openai: seconds to wait for each member's answer.")
@click.option("--max-tokens", type=click.IntRange(1, 1024), default=96, show_default=True,
              help="Model backends: tokens per answer.")
@click.option("--rounds", type=click.IntRange(1, 2), default=2, show_default=True,
              help="2: an independent round and one feedback round.")
@click.option("--member", "members", multiple=True, help="Only these member ids answer (repeat; default all).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole decision as JSON.")
@db_option
def ask_command(question, urgency, backend, model, base_url, timeout, max_tokens, rounds, members, as_json, db):
    """Ask the council a question (Arabic or English).

    Example: bi-ide council ask "Should we train the xlarge preset on the 6 GB laptop?" --urgency high
    """
    spec = _backend(backend, model, base_url, timeout, max_tokens)
    with _open_for_ask(db) as store, click.progressbar(length=100, label="members answering", file=sys.stderr,
                                                       show_percent=False, show_pos=True) as bar:
        def progress(event: dict) -> None:
            bar.length = event["total"]
            bar.label = event["phase"]
            bar.pos = 0 if event["phase"] == "evidence" else event["done"]
            bar.render_progress()

        decision = ask_council(store, question, urgency=urgency, backend=spec, rounds=rounds,
                               members=list(members) or None, on_progress=progress)
    if as_json:
        return click.echo(json.dumps(decision, default=str, ensure_ascii=False, indent=2))
    click.echo(decision_text(decision))


def decision_text(decision: dict) -> str:
    """A decision for the terminal, in the language it was asked in; Arabic lines marked right to left."""
    lang = (decision.get("meta") or {}).get("language", "en")
    verdict = {"approved": "موافقة", "rejected": "رفض", "deferred": "إرجاء"}.get(decision["decision"], decision["decision"]) \
        if lang == "ar" else decision["decision"]
    lines = [say(lang, "Decision {i}: {d} (confidence {c:.0%}, probability of approval {p:.2f})",
                 "القرار {i}: {d} (الثقة {c:.0%}، احتمال الموافقة {p:.2f})", i=decision["id"], d=verdict,
                 c=decision["confidence"], p=decision["probability"]),
             decision["reasoning"],
             say(lang, "Shadow: {x}", "الظل: {x}", x=decision["shadow_analysis"]),
             say(lang, "Light: {x}", "النور: {x}", x=decision["light_suggestion"]),
             say(lang, "Later: bi-ide council resolve {i} --outcome right|wrong",
                 "لاحقًا: bi-ide council resolve {i} --outcome right|wrong", i=decision["id"])]
    return for_terminal("\n".join(lines), lang)


@council.command("decisions")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--unresolved", is_flag=True, help="Only decisions without an outcome.")
@db_option
def decisions_command(limit, unresolved, db):
    """List decisions, newest first.

    Example: bi-ide council decisions --unresolved
    """
    with open_store(db) as store:
        df = store.list_council_decisions(limit=limit, resolved=False if unresolved else None)
    for row in df.iter_rows(named=True):
        flags = " vetoed" if row["vetoed"] else ""
        flags += f" override:{row['override']}" if row["override"] else ""
        click.echo(f"{row['id']}  {row['decision']:<8} {row['confidence']:.2f}  {row['outcome'] or '-':<5}{flags}  "
                   f"{row['question'][:70]}")


@council.command("show")
@click.argument("decision_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole stored decision as JSON.")
@db_option
def show_command(decision_id, as_json, db):
    """Show a decision: the council beside its baselines (the round-0 majority and the best-calibrated
    member), the quorum, the reasoning, every vote of every round, the evidence and the time per stage.

    Example: bi-ide council show 3f2a9c1b7d4e
    """
    with open_store(db) as store:
        decision = store.get_council_decision(decision_id)
    if as_json:
        return click.echo(json.dumps(decision, default=str, ensure_ascii=False, indent=2))
    click.echo(report.show_text(decision))


@council.command("resolve")
@click.argument("decision_id")
@click.option("--outcome", type=click.Choice(OUTCOMES), required=True, help="Was the decision right?")
@click.option("--note", default=None, help="What happened.")
@click.option("--weighting", type=click.Choice(["hedge", "accuracy"]), default="hedge", show_default=True,
              help="How the members' new weights are computed from their records.")
@db_option
def resolve_command(decision_id, outcome, note, weighting, db):
    """Record whether a decision was right; members' records and weights update.

    Example: bi-ide council resolve 3f2a9c1b7d4e --outcome right
    """
    with open_store(db) as store:
        d = store.resolve_council_decision(decision_id, outcome, note=note, weighting=weighting)
    click.echo(f"Decision {d['id']} ({d['decision']}) resolved as {d['outcome']}.")


@council.command("veto")
@click.argument("decision_id")
@click.option("--reason", required=True, help="Why the President vetoes it.")
@db_option
def veto_command(decision_id, reason, db):
    """The President's veto of a decision (recorded with the reason).

    Example: bi-ide council veto 3f2a9c1b7d4e --reason "not this quarter"
    """
    with open_store(db) as store:
        store.veto_council_decision(decision_id, reason)
    click.echo(f"Decision {decision_id} vetoed.")


@council.command("override")
@click.argument("decision_id")
@click.option("--vote", type=click.Choice(["approve", "reject"]), required=True)
@click.option("--reason", required=True, help="Why the President decides otherwise.")
@db_option
def override_command(decision_id, vote, reason, db):
    """The President's override: approve or reject whatever the council said (recorded).

    Example: bi-ide council override 3f2a9c1b7d4e --vote approve --reason "deadline"
    """
    with open_store(db) as store:
        d = store.override_council_decision(decision_id, vote, reason)
    click.echo(f"Decision {decision_id}: the council said {d['decision']}, the President says {d['override']}.")


@council.command("members")
@click.option("--json", "as_json", is_flag=True)
@db_option
def members_command(as_json, db):
    """The council's members with their record and weight.

    Example: bi-ide council members
    """
    from bi_ide.council.members import MEMBERS

    with open_store(db) as store:
        if hasattr(store, "ensure_council_members"):
            store.ensure_council_members([m.record() for m in MEMBERS])
        df = store.list_council_members()
    if as_json:
        return click.echo(json.dumps(df.to_dicts(), default=str, ensure_ascii=False, indent=2))
    for row in df.iter_rows(named=True):
        click.echo(f"{row['id']:<36} {row['group']:<9} {row['correct']:>3} right {row['wrong']:>3} wrong  "
                   f"weight {row['weight']:.3f}  {row['name']}")


@council.command("calibration")
@db_option
def calibration_command(db):
    """Brier score, ECE and the reliability table over resolved decisions, and the council's Brier
    score beside its baselines' (the round-0 majority, the best-calibrated member).

    Example: bi-ide council calibration
    """
    with open_store(db) as store:
        c = store.council_calibration()
    if not c["resolved"]:
        return click.echo("No resolved decision yet: resolve some with `bi-ide council resolve ID --outcome ...`.")
    click.echo(f"{c['resolved']} resolved: Brier {c['brier']:.3f}, ECE {c['ece']:.3f}")
    for r in c["table"]:
        click.echo(f"  {r['low']:.1f}-{r['high']:.1f}: {r['count']:>3} decisions, predicted {r['predicted']:.2f}, "
                   f"observed {r['observed']:.2f}")
    for line in report.calibration_baselines_text(c):
        click.echo(line)


@council.command("plan-training")
@click.option("--recipe", "base_recipe", default=planning.BASE_RECIPE, show_default=True,
              help="The training recipe the plan starts from.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the plan as JSON here.")
@click.option("--launch", is_flag=True, help="Accept the plan: start `bi-ide train run` with it now.")
@db_option
def plan_training_command(base_recipe, out, launch, db):
    """Council-guided training: priorities, weaknesses, improvements and a proposed run.

    Example: bi-ide council plan-training --out plan.json
    """
    with open_store(db) as store:
        plan = planning.plan_training(store, base_recipe=base_recipe)
    for title, key in (("Priorities (weakest first)", "priorities"), ("Weaknesses (shadow)", "weaknesses"),
                       ("Improvements (light)", "improvements")):
        click.echo(f"{title}:")
        for item in plan[key] or ["none recorded yet"]:
            click.echo(f"  - {item['domain']}: bpb {item['bpb']:.3f}" if isinstance(item, dict) else f"  - {item}")
    click.echo(f"Proposed run: {planning.command_text(plan['command'])}")
    if out:
        _write_atomically(Path(out), json.dumps(plan, indent=2, ensure_ascii=False))
        click.echo(f"Plan written to {out}")
    if launch:
        cmd = [sys.executable, "-m", "bi_ide.cli", *plan["command"][1:]] + (["--db", str(db)] if db else [])
        raise SystemExit(subprocess.call(cmd))


@council.command("serve-model")
@click.option("--model", default=None, help="A model folder or .gguf file (default SmolLM2-135M-Instruct).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Requests answered together in one generate call.")
def serve_model_command(model, host, port, batch_size):
    """Serve a local model with an OpenAI-compatible /v1/chat/completions API.

    Example: bi-ide council serve-model --port 8080   (then: bi-ide council ask "..." --backend openai
    --base-url http://127.0.0.1:8080/v1)
    """
    from bi_ide.council.backends import LocalModelBackend
    from bi_ide.council.serve import ModelServer

    backend = LocalModelBackend(model, batch_size=batch_size)
    click.echo("loading the model…", err=True)
    backend.load()
    server = ModelServer(backend, host, port, model_name=model or "smollm2-135m-instruct").start()
    click.echo(f"serving {server.url}/chat/completions (Ctrl-C stops)", err=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


COMMANDS: list = [council]
