"""The council tables: council members, decisions, votes and outcomes.

A mixin of Store: the methods use its cursor and transactions. A decision and all its votes are
written in one transaction (and the time that took, when the session asks for it in the meta's
``stages_ms``); resolving a decision updates every member's record (right/wrong, Brier
loss, weight) in the same transaction as the outcome. The council's reads of fleet and training
data for its evidence are here too, so the evidence providers never write SQL.
"""

from __future__ import annotations

import json
import time

import polars as pl

from bi_ide.council import aggregate, report
from bi_ide.errors import ConflictError, NotFoundError, ValidationError
from bi_ide.store.values import check_text, new_id, to_json

URGENCIES = ("low", "normal", "high", "critical")
VOTES = ("approve", "reject", "abstain")
OUTCOMES = ("right", "wrong")
QUESTION_MAX = 5_000
NOTE_MAX = 2_000  # a reason or an outcome note
TEXT_MAX = 20_000  # reasoning, rationale and reasons: enough for a long model answer, bounded
PRESIDENT_ROUND = 2  # the President's override is stored as a vote of its own round
DECISION_FIELDS = ("decision", "confidence", "probability", "reasoning", "shadow_analysis", "light_suggestion",
                   "evidence", "backend", "rounds", "blocker", "meta", "elapsed_ms")
VOTE_FIELDS = ("member_id", "round", "vote", "probability", "rationale", "evidence", "risks", "opportunities",
               "weight", "backend", "revision_reason", "weight_factor", "weight_reason", "failed")
VOTE_DEFAULTS = {"round": 0, "failed": False}
JSON_COLUMNS = ("evidence", "meta", "risks", "opportunities")


def check_question(question, urgency: str = "normal") -> None:
    """The seed's rules for a question: 1 to 5,000 characters, urgency one of URGENCIES."""
    if not isinstance(question, str) or not question.strip() or len(question) > QUESTION_MAX:
        size = len(question) if isinstance(question, str) else type(question).__name__
        raise ValidationError(f"a question is 1 to {QUESTION_MAX:,} characters of text, got {size}"
                              + (" (blank)" if isinstance(question, str) and question and not question.strip() else ""),
                              field="question")
    if urgency not in URGENCIES:
        raise ValidationError(f"urgency {urgency!r} is not one of {list(URGENCIES)}", field="urgency")


def _check_vote(vote: dict) -> None:
    unknown = set(vote) - set(VOTE_FIELDS)
    if unknown:
        raise ValidationError(f"unknown vote field(s) {sorted(unknown)}; allowed: {list(VOTE_FIELDS)}",
                              field=sorted(unknown)[0])
    check_text("member_id", vote.get("member_id"), 64)
    if vote.get("vote") not in VOTES:
        raise ValidationError(f"vote {vote.get('vote')!r} of {vote['member_id']} is not one of {list(VOTES)}",
                              field="vote")
    p = vote.get("probability")
    if p is not None and not (isinstance(p, int | float) and 0 <= p <= 1):
        raise ValidationError(f"probability {p!r} of {vote['member_id']} is not in [0, 1]", field="probability")
    if len(vote.get("rationale") or "") > TEXT_MAX:
        raise ValidationError(f"the rationale of {vote['member_id']} is over {TEXT_MAX} characters", field="rationale")
    factor = vote.get("weight_factor")
    if factor is not None and report.probability(factor) is None:
        raise ValidationError(f"weight_factor {factor!r} of {vote['member_id']} is not in [0, 1]", field="weight_factor")
    if len(vote.get("weight_reason") or "") > NOTE_MAX:
        raise ValidationError(f"the weight_reason of {vote['member_id']} is over {NOTE_MAX} characters",
                              field="weight_reason")


def _loads(text):
    """JSON text as a value; None for anything that is not JSON (a score must not fail on one bad row)."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return None


def _decode(row: dict) -> dict:
    for key in JSON_COLUMNS:
        if key in row and isinstance(row[key], str):
            row[key] = json.loads(row[key])
    return row


class CouncilTables:
    """Store methods for council members, decisions, votes and outcomes."""

    # -- members ---------------------------------------------------------------------------
    def ensure_council_members(self, members: list[dict]) -> int:
        """Add the members (id, name, group, expertise, focus) not in the store yet; return how many."""
        with self.transaction() as cur:
            known = {r[0] for r in cur.execute("SELECT id FROM council_members").fetchall()}
            new = [m for m in members if m["id"] not in known]
            for m in new:
                cur.execute('INSERT INTO council_members (id, name, "group", expertise, focus) VALUES (?, ?, ?, ?, ?)',
                            [m["id"], m["name"], m["group"], m["expertise"], m.get("focus")])
        return len(new)

    def list_council_members(self) -> pl.DataFrame:
        """Members with their record: right, wrong, Laplace-smoothed accuracy, Brier loss and weight."""
        return self.sql(
            'SELECT id, name, "group", expertise, focus, correct, wrong, (correct + 1) / (correct + wrong + 2) '
            "AS accuracy, brier_sum, weight, updated_at FROM council_members "
            "ORDER BY list_position(['president', 'high', 'shadow', 'light', 'scout', 'meta', 'domain'], \"group\"), "
            "created_at, id"
        )

    # -- decisions ---------------------------------------------------------------------------
    def record_council_decision(self, question: str, *, urgency: str = "normal", votes: list[dict],
                                **fields) -> dict:
        """Store a decision and all its members' votes (every round) in one transaction; all or nothing.

        When ``meta["stages_ms"]`` has a ``store`` key, it is set to the milliseconds writing the
        votes took: they are written first, and the decision row, last in the same transaction,
        carries the figure (the commit after it is not in it).
        """
        check_question(question, urgency)
        unknown = set(fields) - set(DECISION_FIELDS)
        if unknown:
            raise ValidationError(f"unknown decision field(s) {sorted(unknown)}; allowed: {list(DECISION_FIELDS)}",
                                  field=sorted(unknown)[0])
        if fields.get("decision") not in aggregate.DECISIONS:
            raise ValidationError(f"decision {fields.get('decision')!r} is not one of {list(aggregate.DECISIONS)}",
                                  field="decision")
        for vote in votes:
            _check_vote(vote)
        decision_id = new_id()
        meta = fields.get("meta")
        timed = isinstance(meta, dict) and isinstance(meta.get("stages_ms"), dict) and "store" in meta["stages_ms"]
        row = {**fields, "evidence": to_json(fields.get("evidence")), "meta": to_json(meta)}
        with self.transaction() as cur:
            started = time.perf_counter()
            if votes:  # one statement for all the votes: a row at a time costs a round trip each
                row_marks = f"(?, {', '.join('?' for _ in VOTE_FIELDS)})"
                params = [x for vote in votes for x in (decision_id, *(
                    to_json(vote.get(k)) if k in JSON_COLUMNS else vote.get(k, VOTE_DEFAULTS.get(k)) for k in VOTE_FIELDS))]
                cur.execute(f"INSERT INTO council_votes (decision_id, {', '.join(VOTE_FIELDS)}) VALUES "
                            + ", ".join(row_marks for _ in votes), params)
            if timed:
                store_ms = round((time.perf_counter() - started) * 1000, 1)
                row["meta"] = to_json({**meta, "stages_ms": {**meta["stages_ms"], "store": store_ms}})
            cur.execute(
                f"INSERT INTO council_decisions (id, question, urgency, {', '.join(row)}) "
                f"VALUES (?, ?, ?, {', '.join('?' for _ in row)})", [decision_id, question, urgency, *row.values()])
        return self.get_council_decision(decision_id)

    def get_council_decision(self, decision_id: str) -> dict:
        """A decision with its decoded evidence and meta, and its votes (every round) in council order."""
        df = self.sql("SELECT * FROM council_decisions WHERE id = ?", [decision_id])
        if df.is_empty():
            raise NotFoundError(f"no council decision with id {decision_id!r}; `bi-ide council decisions` lists them")
        row = _decode(df.row(0, named=True))
        votes = self.sql(
            'SELECT v.* EXCLUDE (decision_id), m.name, m."group" FROM council_votes v '
            "LEFT JOIN council_members m ON m.id = v.member_id WHERE v.decision_id = ? "
            "ORDER BY v.round, list_position(['president', 'high', 'shadow', 'light', 'scout', 'meta', 'domain'], "
            'm."group"), m.created_at, v.member_id', [decision_id]).to_dicts()
        row["votes"] = [_decode(v) for v in votes]
        return row

    def list_council_decisions(self, *, limit: int = 100, offset: int = 0, resolved: bool | None = None) -> pl.DataFrame:
        """Decisions, newest first (``resolved``: only those with, or without, an outcome)."""
        if not 1 <= limit <= 10_000 or offset < 0:
            raise ValidationError(f"limit must be 1..10000 and offset ≥ 0, got {limit} and {offset}", field="limit")
        return self.sql(
            "SELECT id, question, urgency, decision, confidence, probability, vetoed, override, outcome, backend, "
            "rounds, blocker, elapsed_ms, created_at, resolved_at FROM council_decisions "
            "WHERE ? IS NULL OR (outcome IS NOT NULL) = ? ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            [resolved, resolved, limit, offset])

    # -- the President ---------------------------------------------------------------------------
    def veto_council_decision(self, decision_id: str, reason: str) -> dict:
        """The President's veto: recorded with its reason and time; the decision is not carried out."""
        check_text("reason", reason, NOTE_MAX)
        with self.transaction() as cur:
            found = cur.execute("SELECT vetoed FROM council_decisions WHERE id = ?", [decision_id]).fetchall()
            if not found:
                raise NotFoundError(f"no council decision with id {decision_id!r}")
            if found[0][0]:
                raise ConflictError(f"council decision {decision_id} is already vetoed")
            cur.execute("UPDATE council_decisions SET vetoed = TRUE, veto_reason = ?, vetoed_at = now() WHERE id = ?",
                        [reason, decision_id])
        return self.get_council_decision(decision_id)

    def override_council_decision(self, decision_id: str, vote: str, reason: str) -> dict:
        """The President's override (vote approve or reject): recorded as the decision's final word."""
        if vote not in ("approve", "reject"):
            raise ValidationError(f"the President's vote {vote!r} is not approve or reject", field="vote")
        check_text("reason", reason, NOTE_MAX)
        with self.transaction() as cur:
            if not cur.execute("SELECT 1 FROM council_decisions WHERE id = ?", [decision_id]).fetchall():
                raise NotFoundError(f"no council decision with id {decision_id!r}")
            cur.execute("DELETE FROM council_votes WHERE decision_id = ? AND member_id = 'president'", [decision_id])
            cur.execute("INSERT INTO council_votes (decision_id, member_id, round, vote, probability, rationale) "
                        "VALUES (?, 'president', ?, ?, ?, ?)",
                        [decision_id, PRESIDENT_ROUND, vote, 1.0 if vote == "approve" else 0.0, reason])
            cur.execute("UPDATE council_decisions SET override = ?, override_reason = ? WHERE id = ?",
                        ["approved" if vote == "approve" else "rejected", reason, decision_id])
        return self.get_council_decision(decision_id)

    # -- outcomes ------------------------------------------------------------------------------
    def resolve_council_decision(self, decision_id: str, outcome: str, *, note: str | None = None,
                                 weighting: str = "hedge") -> dict:
        """Record whether the decision was right, and update each voting member's record and weight.

        A member's last answer (its feedback-round answer if it revised) counts: right when its vote
        was on the side that was right, and its Brier loss grows by (p − y)²; abstentions do not count.
        """
        if outcome not in OUTCOMES:
            raise ValidationError(f"outcome {outcome!r} is not one of {list(OUTCOMES)}", field="outcome")
        if weighting not in aggregate.WEIGHTINGS:
            raise ValidationError(f"weighting {weighting!r} is not one of {list(aggregate.WEIGHTINGS)}",
                                  field="weighting")
        if note is not None:
            check_text("note", note, NOTE_MAX)
        with self.transaction() as cur:
            found = cur.execute("SELECT decision, probability, outcome FROM council_decisions WHERE id = ?",
                                [decision_id]).fetchall()
            if not found:
                raise NotFoundError(f"no council decision with id {decision_id!r}")
            decision, probability, previous = found[0]
            if previous is not None:
                raise ConflictError(f"council decision {decision_id} is already resolved as {previous}")
            approve = aggregate.approval_was_right(decision, outcome, probability if probability is not None else 0.5)
            answers = cur.execute(
                "SELECT member_id, vote, probability FROM council_votes WHERE decision_id = ? AND round < ? "
                "QUALIFY row_number() OVER (PARTITION BY member_id ORDER BY round DESC) = 1",
                [decision_id, PRESIDENT_ROUND]).fetchall()
            for member_id, vote, p in answers:
                if vote == "abstain" or p is None:
                    continue
                right = (vote == "approve") == approve
                record = cur.execute("SELECT correct, wrong, brier_sum FROM council_members WHERE id = ?",
                                     [member_id]).fetchall()
                if not record:
                    continue
                correct, wrong, brier_sum = record[0]
                new = {"correct": correct + right, "wrong": wrong + (not right),
                       "brier_sum": (brier_sum or 0.0) + (p - float(approve)) ** 2}
                cur.execute("UPDATE council_members SET correct = ?, wrong = ?, brier_sum = ?, weight = ?, "
                            "updated_at = now() WHERE id = ?",
                            [*new.values(), aggregate.member_weight(new, weighting), member_id])
            cur.execute("UPDATE council_decisions SET outcome = ?, outcome_note = ?, resolved_at = now() WHERE id = ?",
                        [outcome, note, decision_id])
        return self.get_council_decision(decision_id)

    def council_outcomes(self) -> pl.DataFrame:
        """Resolved decisions: the pooled probability, the decision, the outcome and the meta (JSON text),
        oldest first."""
        return self.sql("SELECT id, probability, decision, outcome, resolved_at, meta FROM council_decisions "
                        "WHERE outcome IS NOT NULL AND probability IS NOT NULL ORDER BY resolved_at, id")

    def council_calibration(self) -> dict:
        """Brier score, ECE and the reliability table of the pooled probability over resolved decisions,
        and ``baselines``: each baseline's Brier score beside the council's over the resolved decisions
        that carry baselines ({name: {brier, resolved, abstained}}; see ``aggregate.baseline_scores``)."""
        rows = self.council_outcomes()
        probs = rows["probability"].to_list()
        truths = [aggregate.approval_was_right(d, o, p) for d, o, p in
                  zip(rows["decision"], rows["outcome"], probs, strict=True)]
        carried, outcomes = [], []
        for p, truth, text in zip(probs, truths, rows["meta"], strict=True):
            answers = report.stored_probabilities(_loads(text))
            if answers:  # a decision resolved before baselines existed has none
                carried.append({**answers, "council": p})
                outcomes.append(truth)
        return {"resolved": len(probs), "brier": aggregate.brier(probs, truths), "ece": aggregate.ece(probs, truths),
                "table": aggregate.reliability(probs, truths),
                "baselines": aggregate.baseline_scores(outcomes, carried)}

    def council_status(self) -> dict:
        """Counts for the council's status: members per group, decisions per kind, open and resolved."""
        groups = dict(self._rows('SELECT "group", count(*) FROM council_members GROUP BY ALL'))
        kinds = dict(self._rows("SELECT decision, count(*) FROM council_decisions GROUP BY ALL"))
        (total, resolved, vetoed, last), = self._rows(
            "SELECT count(*), count(outcome), count(*) FILTER (vetoed), max(created_at) FROM council_decisions")
        return {"members": groups, "decisions": {k: kinds.get(k, 0) for k in aggregate.DECISIONS},
                "decisions_total": total, "resolved": resolved, "vetoed": vetoed, "last_decision_at": last}

    # -- what the evidence providers read --------------------------------------------------------
    def council_fleet_facts(self) -> dict:
        """Workers (with their GPUs as registered) and each GPU's latest sample."""
        workers = self.sql("SELECT id, hostname, os, platform, ram_bytes, gpus, labels, last_seen_at FROM workers "
                           "ORDER BY id")
        gpus = self.sql(
            "SELECT worker_id, gpu_index, time, utilization, memory_used_bytes, memory_total_bytes, temperature_c "
            "FROM gpu_samples QUALIFY row_number() OVER (PARTITION BY worker_id, gpu_index ORDER BY time DESC) = 1 "
            "ORDER BY worker_id, gpu_index")
        return {"workers": workers, "gpus": gpus}

    def council_fleet_usage(self, days: int = 7) -> dict:
        """Each GPU's mean utilisation over the last ``days`` days (from samples), and the runs waiting."""
        if not 1 <= days <= 365:
            raise ValidationError(f"days must be 1..365, got {days}", field="days")
        usage = self.sql(
            "SELECT worker_id, gpu_index, avg(utilization) AS utilization, count(utilization) AS samples "
            "FROM gpu_samples WHERE time >= now() - INTERVAL (?) DAY GROUP BY ALL ORDER BY ALL", [days])
        (queued,), = self._rows("SELECT count(*) FROM runs WHERE status = 'queued'")
        return {"usage": usage, "queued_runs": queued}

    def council_training_facts(self, limit: int = 50) -> dict:
        """The newest runs, and per run and bpb metric its first and last value (the trend)."""
        runs = self.sql("SELECT id, name, status, preset, worker_id, error, created_at FROM runs "
                        "ORDER BY created_at DESC, id LIMIT ?", [limit])
        bpb = self.sql(
            "SELECT run_id, name, arg_min(value, step) AS first, arg_max(value, step) AS last, count(*) AS points "
            "FROM metrics WHERE name LIKE 'val_bpb%' AND list_contains(?, run_id) GROUP BY run_id, name "
            "ORDER BY run_id, name", [runs["id"].to_list()])
        models = self.sql("SELECT id, name, version, run_id, status FROM models ORDER BY created_at DESC LIMIT ?",
                          [limit])
        return {"runs": runs, "bpb": bpb, "models": models}

    # -- the council's index of the store's facts ------------------------------------------------
    # One cheap fingerprint per group of tables: the index reloads a group only when it changed.
    ENTITY_SIGNATURES = {
        "fleet": "SELECT count(*), coalesce(sum(hash(id, hostname, gpus, labels)), 0) FROM workers",
        "models": "SELECT count(*), coalesce(sum(hash(id, status, metrics)), 0) FROM models",
        "runs": "SELECT count(*), coalesce(sum(hash(id, status, name)), 0) FROM runs",
        "corpora": "SELECT count(*), coalesce(sum(hash(id, name)), 0) FROM corpora",
        "pipelines": "SELECT (SELECT count(*) FROM schedules) + (SELECT count(DISTINCT pipeline) FROM pipeline_runs), "
                     "coalesce((SELECT sum(hash(id, pipeline, cron, paused)) FROM schedules), 0)",
        "erp": "SELECT (SELECT count(*) FROM erp_products) + (SELECT count(*) FROM erp_customers), "
               "coalesce((SELECT sum(hash(sku, name, category)) FROM erp_products), 0) + "
               "coalesce((SELECT sum(hash(code, name)) FROM erp_customers), 0) + "
               "coalesce((SELECT sum(hash(category, vendor)) FROM (SELECT DISTINCT category, vendor FROM erp_expenses)), 0) "
               "+ coalesce((SELECT sum(hash(supplier)) FROM (SELECT DISTINCT supplier FROM erp_purchase_orders)), 0)",
        "decisions": "SELECT count(*), coalesce(sum(hash(id, outcome)), 0) FROM council_decisions",
    }

    def council_entity_signatures(self) -> dict[str, tuple]:
        """A fingerprint of each group of tables the council's index reads (see ENTITY_SIGNATURES)."""
        return {group: tuple(self._rows(query)[0]) for group, query in self.ENTITY_SIGNATURES.items()}

    def council_entity_rows(self, group: str) -> dict[str, pl.DataFrame]:
        """The rows the council's index makes entities of, for one group of tables."""
        if group == "fleet":
            return {"workers": self.sql("SELECT id, hostname, os, gpus, labels FROM workers ORDER BY id")}
        if group == "models":
            return {"models": self.sql("SELECT m.id, m.name, m.version, m.status, m.run_id, m.metrics, m.created_at, "
                                       "r.config AS run_config, r.status AS run_status FROM models m "
                                       "LEFT JOIN runs r ON r.id = m.run_id ORDER BY m.name, m.version")}
        if group == "runs":
            return {"runs": self.sql("SELECT id, name, status, preset, worker_id, error, created_at FROM runs "
                                     "ORDER BY created_at DESC, id LIMIT 500")}
        if group == "corpora":
            return {"corpora": self.sql("SELECT id, name, path, vocab_size FROM corpora ORDER BY created_at DESC")}
        if group == "pipelines":
            return {"pipelines": self.sql(
                "SELECT pipeline, count(*) AS runs, count(*) FILTER (WHERE status = 'failed') AS failed, "
                "arg_max(status, created_at) AS last_status, max(created_at) AS last_at FROM pipeline_runs "
                "GROUP BY pipeline ORDER BY pipeline"),
                "schedules": self.sql("SELECT id, pipeline, cron, paused, next_run_at FROM schedules ORDER BY pipeline")}
        if group == "erp":
            return {
                "products": self.sql("SELECT sku, name, category FROM erp_products ORDER BY sku"),
                "customers": self.sql("SELECT code, name, segment FROM erp_customers ORDER BY code"),
                "expenses": self.sql("SELECT category, list(DISTINCT vendor ORDER BY vendor) AS vendors "
                                     "FROM erp_expenses GROUP BY category ORDER BY category"),
                "suppliers": self.sql("SELECT supplier, list(DISTINCT p.category ORDER BY p.category) AS categories "
                                      "FROM erp_purchase_orders o LEFT JOIN erp_products p ON p.sku = o.product "
                                      "GROUP BY supplier ORDER BY supplier"),
            }
        if group == "decisions":
            return {"decisions": self.sql("SELECT id, question, decision, probability, outcome, created_at "
                                          "FROM council_decisions ORDER BY created_at DESC, id LIMIT 500")}
        raise ValidationError(f"unknown entity group {group!r}; one of {list(self.ENTITY_SIGNATURES)}", field="group")
