"""The council dashboard: ask (Arabic or English), progress while members answer, the decision
beside its baselines (the round-0 majority, the best-calibrated member) with its quorum and the
time per stage, a member grid coloured by vote, shadow and light panels, evidence, history, the
leaderboard and the calibration plot with each baseline's Brier score beside the council's.

Every tab follows the process's one ``Council`` state (``council_state()``); a tab only tells it
which decision it shows. The question goes into the page with ``dir="auto"``, so it reads in its
own direction. The decision card (reasoning, shadow analysis, light suggestion, evidence) follows
the decision's language (``meta["language"]``): right to left for "ar", else left to right.
Asking and recording an outcome are allowed per ``control_refusal``; the President's veto and
override need an admin there, as they do through the API.
"""

from __future__ import annotations

import asyncio
import html

import panel as pn
import param
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from bi_ide.council import report
from bi_ide.council.backends import KINDS
from bi_ide.council.language import RTL
from bi_ide.council.members import BY_ID, GROUPS, voting_members
from bi_ide.dashboards.council_state import Council
from bi_ide.dashboards.overview import _table
from bi_ide.dashboards.poller import POLLER, dashboard_store
from bi_ide.dashboards.template import ControlledPage, served
from bi_ide.errors import ValidationError, WorkbenchError
from bi_ide.store.council import NOTE_MAX, QUESTION_MAX, URGENCIES

VOTE_COLOURS = {"approve": "#15803d", "reject": "#b91c1c", "abstain": "#6b7280"}
DECISION_COLOURS = {"approved": "#15803d", "rejected": "#b91c1c", "deferred": "#b45309"}
GROUP_TITLES = {"high": "High council", "shadow": "Shadow", "light": "Light", "scout": "Scouts", "domain": "Domain experts"}
HISTORY_TITLES = {"created_at": "asked (UTC)", "decision": "decision", "confidence": "confidence", "urgency": "urgency",
                  "outcome": "outcome", "vetoed": "vetoed", "override": "President", "question": "question", "id": "id"}
BOARD_TITLES = {"name": "member", "group": "group", "expertise": "expertise", "correct": "right", "wrong": "wrong",
                "accuracy": "accuracy", "weight": "weight", "id": "id"}
COUNCIL_CSS = """
.council-grid { display: flex; flex-wrap: wrap; gap: 6px; margin: 4px 0 10px; }
.council-cell { width: 150px; padding: 6px 8px; border-radius: 6px; color: white; font-size: 12px;
                overflow-wrap: anywhere; }
.council-cell b { display: block; font-size: 13px; }
.council-cell.revised { outline: 3px dashed #facc15; }
.council-group { margin: 6px 0 0; font-weight: 600; }
.council-decision { padding: 10px 14px; border-radius: 8px; color: white; font-size: 18px; font-weight: 600; }
.council-cell.down-weighted { opacity: 0.7; border: 2px dotted white; }
.council-question, .council-text { unicode-bidi: plaintext; white-space: pre-wrap; }
.council-rtl, .council-rtl .council-text { direction: rtl; text-align: right; unicode-bidi: isolate; }
.council-ltr, .council-ltr .council-text { direction: ltr; text-align: left; unicode-bidi: isolate; }
.council-evidence li.cited { font-weight: 600; }
.council-baselines { display: flex; flex-wrap: wrap; gap: 8px; margin: 6px 0 2px; }
.council-baseline { flex: 1 1 200px; padding: 6px 10px; border-radius: 6px; background: #f3f4f6;
                    border-left: 6px solid #9ca3af; font-size: 13px; }
.council-baseline b { display: block; font-size: 14px; }
.council-quorum { font-size: 13px; margin: 2px 0; }
.council-quorum.unmet { color: #b45309; font-weight: 600; }
.council-stages { color: #6b7280; font-size: 11px; }
.council-baseline-scores { font-size: 12px; border-collapse: collapse; margin-top: 4px; }
.council-baseline-scores td, .council-baseline-scores th { padding: 2px 8px; text-align: left; }
"""
TEXTAREA_CSS = ":host textarea { unicode-bidi: plaintext; text-align: start; font-size: 15px; }"


def council_state() -> Council:
    """This process's Council state, kept fresh by the shared poller (the hub's own store inside the hub)."""
    return POLLER.shared("council", _new_council)


def _new_council() -> Council:
    store, _, error = dashboard_store()
    return Council(error=error) if error else Council(store=store)


def _esc(text) -> str:
    return html.escape(str(text if text is not None else ""))


def member_grid(decision: dict) -> str:
    """The members as cells coloured by their final vote, grouped; a revised answer is outlined."""
    final: dict[str, dict] = {}
    for v in decision["votes"]:
        if v["round"] < 2:
            final[v["member_id"]] = v  # votes come in round order: round 1 replaces round 0
    revised = {v["member_id"] for v in decision["votes"] if v["round"] == 1}
    parts = []
    for group in GROUPS:
        cells = []
        for mid, v in final.items():
            member = BY_ID.get(mid)
            if member is None or member.group != group:
                continue
            p = "—" if v["probability"] is None else f"{v['probability']:.2f}"
            title = v["rationale"] or ""
            down = report.down_weighted(v)
            marks = (" revised" if mid in revised else "") + (" down-weighted" if down else "")
            said = " · failed" if v.get("failed") else ""
            if down:
                said += f" · ×{down[0]:.2f}"
                title += f"\nDown-weighted ×{down[0]:.2f}" + (f": {down[1]}" if down[1] else "")
            cells.append(f'<div class="council-cell{marks}" data-member="{_esc(mid)}" '
                         f'data-vote="{v["vote"]}" title="{_esc(title)}" style="background:{VOTE_COLOURS[v["vote"]]}">'
                         f'<b dir="auto">{_esc(member.name)}</b>{_esc(member.expertise)}<br>{v["vote"]} · {p}{said}'
                         '</div>')
        if cells:
            parts.append(f'<div class="council-group">{GROUP_TITLES[group]}</div><div class="council-grid">'
                         + "".join(cells) + "</div>")
    return "".join(parts)


def card_direction(decision: dict) -> str:
    """The direction the decision card's texts read in: "rtl" for an Arabic decision, else "ltr"."""
    return "rtl" if report.language(decision) in RTL else "ltr"


def _card_attributes(decision: dict, classes: str) -> str:
    direction = card_direction(decision)
    lang = ' lang="ar"' if direction == "rtl" else ""
    return f'class="{classes} council-{direction}" dir="{direction}"{lang}'


def decision_header(decision: dict) -> str:
    colour = DECISION_COLOURS[decision["decision"]]
    quorum = report.quorum(decision)
    extra = " · no quorum" if quorum and not quorum["met"] else ""
    if decision.get("vetoed"):
        extra += f" · vetoed by the President: {_esc(decision['veto_reason'])}"
    if decision.get("override"):
        extra += f" · the President says {decision['override']}: {_esc(decision['override_reason'])}"
    if decision.get("outcome"):
        extra += f" · resolved: {decision['outcome']}"
    return (f'<div class="council-question" dir="auto">{_esc(decision["question"])}</div>'
            f'<div class="council-decision" style="background:{colour}">{decision["decision"]} · confidence '
            f'{decision["confidence"]:.0%} · p(approve) {decision["probability"]:.2f}{extra}</div>'
            f'<div {_card_attributes(decision, "council-text council-reasoning")}>{_esc(decision["reasoning"])}</div>')


def side_panel(decision: dict, title: str, text: str, css: str) -> str:
    """The shadow's risks or the light's opportunities, in the decision card's direction."""
    return f'<div {_card_attributes(decision, css)}><h4>{_esc(title)}</h4><div class="council-text">{_esc(text)}</div></div>'


def evidence_list(decision: dict) -> str:
    items = [f'<li class="{"cited" if f.get("cited") else ""}">[{_esc(f["id"])}] <i>{_esc(f["source"])}'
             f'</i> {_esc(f["text"])} <small>({f["effect"]:+.1f})</small></li>' for f in decision["evidence"] or []]
    inner = '<ul class="council-evidence">' + "".join(items) + "</ul>" if items else "<p>No evidence was found.</p>"
    return f'<div {_card_attributes(decision, "council-evidence-list")}><h4>Evidence</h4>{inner}</div>'


def baselines_view(decision: dict) -> str:
    """The council beside its baselines, side by side; the quorum; the time per stage (small)."""
    parts = []
    q = report.quorum(decision)
    if q:
        voting = q["answered"] + q["abstained"] + q["failed"]
        parts.append(f'<div class="council-quorum{"" if q["met"] else " unmet"}">Quorum: {q["answered"]} of {voting} '
                     f'voting members answered · {q["abstained"]} abstained · {q["failed"]} failed · {q["needed"]} '
                     f'needed — {"met" if q["met"] else "not met: no verdict"}</div>')
    found = report.baselines(decision)
    if found is None:
        parts.append('<div class="council-baselines"><i>No baselines: the decision predates them.</i></div>')
    else:
        cards = []
        for name in report.SHOWN:
            entry = found.get(name)
            if entry is None:
                continue
            outcome = entry["decision"] or "—"
            p = "—" if entry["probability"] is None else f"{entry['probability']:.2f}"
            colour = DECISION_COLOURS.get(entry["decision"], "#9ca3af")
            note = _esc(report.baseline_note(name, entry))
            if name == "best_member" and isinstance(entry.get("name"), str):
                note = f'<span dir="auto">{_esc(entry["name"])}</span> · {note}'
            cards.append(f'<div class="council-baseline" data-baseline="{name}" style="border-left-color:{colour}">'
                         f'<b>{report.BASELINE_TITLES[name]}: {_esc(outcome)}</b>p(approve) {p}<br><small>{note}'
                         '</small></div>')
        parts.append('<div class="council-baselines">' + "".join(cards) + "</div>")
    timing = report.stages_text(decision)
    if timing:
        parts.append(f'<div class="council-stages">{_esc(timing)}</div>')
    return "".join(parts)


def baseline_scores(calibration: dict) -> str:
    """Each baseline's Brier score beside the council's, over the resolved decisions that carry them."""
    scores = calibration.get("baselines") if isinstance(calibration, dict) else None
    if not isinstance(scores, dict) or not (scores.get("council") or {}).get("resolved"):
        return '<p class="council-stages">Baselines: no resolved decision carries them yet.</p>'
    rows = []
    for name in report.SHOWN:
        entry = scores.get(name) if isinstance(scores.get(name), dict) else {}
        brier = report.probability(entry.get("brier"))
        note = f" ({entry['abstained']} abstained, as 0.5)" if entry.get("abstained") else ""
        rows.append(f'<tr data-baseline="{name}"><td>{report.BASELINE_TITLES[name]}</td>'
                    f'<td>{"—" if brier is None else f"{brier:.3f}"}</td><td>{entry.get("resolved", 0)}{note}</td></tr>')
    return ('<table class="council-baseline-scores"><tr><th>beside its baselines</th><th>Brier</th>'
            "<th>resolved</th></tr>" + "".join(rows) + "</table>")


def calibration_figure(calibration: dict):
    """The reliability diagram: predicted probability against the observed rate, sized by count."""
    fig = figure(height=280, width=360, x_range=(-0.03, 1.03), y_range=(-0.03, 1.03), x_axis_label="predicted p(approve)",
                 y_axis_label="observed approval rate", toolbar_location=None, title=_calibration_title(calibration))
    fig.title.text_font_size = "11px"
    fig.line([0, 1], [0, 1], line_dash="dashed", color="#9ca3af")
    rows = calibration.get("table") or []
    source = ColumnDataSource({"x": [r["predicted"] for r in rows], "y": [r["observed"] for r in rows],
                               "size": [6 + 2 * min(r["count"], 10) for r in rows]})
    fig.scatter("x", "y", size="size", source=source, color="#0f766e")
    fig.line("x", "y", source=source, color="#0f766e")
    return fig


def _calibration_title(calibration: dict) -> str:
    if not calibration.get("resolved"):
        return "Calibration: nothing resolved yet"
    return f"{calibration['resolved']} resolved · Brier {calibration['brier']:.3f} · ECE {calibration['ece']:.3f}"


class CouncilPage(ControlledPage):
    """The ask box, the selected decision in full, the history, the leaderboard and calibration."""

    council = param.ClassSelector(class_=Council, doc="The shared state, usually council_state().")

    selected = param.String(default=None, allow_None=True, doc="The id of the decision this tab shows.")

    def __init__(self, **params):
        super().__init__(**params)
        self._ids: list[str] = []
        self._syncing = False
        self._build_widgets()
        c = self.council
        self._watchers = [
            c.param.watch(lambda *_: self._show_history(), ["decisions"]),
            c.param.watch(lambda *_: self._show_decision(), ["details"]),
            c.param.watch(lambda *_: self._show_board(), ["leaderboard", "calibration"]),
            c.param.watch(lambda *_: self._on_error(), ["error"]),
        ]
        self.param.watch(self._on_selected, ["selected"])
        self._show_history()
        self._show_board()
        self._on_error()
        if self.selected is None and self._ids:
            self.selected = self._ids[0]
        else:
            self._on_selected()
        if served():
            pn.state.on_session_destroyed(lambda _ctx: self.close())

    def close(self) -> None:
        for w in self._watchers:
            self.council.param.unwatch(w)
        self._watchers = []
        self.council.unwatch(self)

    # -- widgets -----------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.question = pn.widgets.TextAreaInput(
            placeholder="Ask the council… اسأل المجلس…", max_length=QUESTION_MAX, rows=3, auto_grow=True,
            sizing_mode="stretch_width", stylesheets=[TEXTAREA_CSS], css_classes=["council-ask"])
        self.urgency = pn.widgets.Select(label="Urgency", options=list(URGENCIES), value="normal", width=120)
        self.backend = pn.widgets.Select(label="Backend", options=list(KINDS), value="grounded", width=120)
        self.base_url = pn.widgets.TextInput(label="Server (openai)", placeholder="http://127.0.0.1:8080/v1",
                                             width=260, visible=False)
        self.backend.param.watch(lambda e: setattr(self.base_url, "visible", e.new == "openai"), "value")
        self.ask_button = pn.widgets.Button(label="Ask the council", color="primary", width=160,
                                            align="end", css_classes=["council-ask-button"],
                                            disabled=bool(self.refusal), description=self.refusal or None)
        self.ask_button.on_click(self._on_ask)
        # On the decision shown: its outcome (developers) and the President's word (admins).
        self.outcome = pn.widgets.Select(label="Outcome", options=["right", "wrong"], value="right", width=100)
        self.note = pn.widgets.TextInput(label="Note", placeholder="what happened", max_length=NOTE_MAX, width=240)
        self.resolve_button = pn.widgets.Button(label="Record outcome", width=140, align="end",
                                                css_classes=["council-resolve"])
        self.president_vote = pn.widgets.Select(label="President", options=["approve", "reject"], value="reject",
                                                width=110)
        self.reason = pn.widgets.TextInput(label="Reason", placeholder="why (recorded)", max_length=NOTE_MAX,
                                           width=260)
        self.override_button = pn.widgets.Button(label="Override", width=110, align="end",
                                                 css_classes=["council-override"])
        self.veto_button = pn.widgets.Button(label="Veto", color="danger", width=90, align="end",
                                             css_classes=["council-veto"])
        self.resolve_button.on_click(lambda _e: self.resolve_now())
        self.override_button.on_click(lambda _e: self.override_now())
        self.veto_button.on_click(lambda _e: self.veto_now())
        self.actions = pn.FlexBox(pn.Row(self.outcome, self.note, self.resolve_button, margin=(0, 30, 0, 0)),
                                  pn.Row(self.president_vote, self.reason, self.override_button, self.veto_button),
                                  flex_wrap="wrap", visible=False, sizing_mode="stretch_width",
                                  css_classes=["council-actions"])
        self.progress = pn.indicators.Progress(value=0, max=len(voting_members()), visible=False,
                                               sizing_mode="stretch_width", bar_color="primary")
        self.progress_text = pn.pane.Markdown("", visible=False, css_classes=["council-progress"])
        self.message = pn.pane.Alert("", alert_type="info", visible=False, sizing_mode="stretch_width")
        html_pane = {"sizing_mode": "stretch_width", "stylesheets": [COUNCIL_CSS]}
        self.header = pn.pane.HTML("", css_classes=["council-header"], **html_pane)
        self.baselines = pn.pane.HTML("", css_classes=["council-baselines-pane"], **html_pane)
        self.grid = pn.pane.HTML("", css_classes=["council-members"], **html_pane)
        self.shadow = pn.pane.HTML("", css_classes=["council-shadow"], **html_pane)
        self.light = pn.pane.HTML("", css_classes=["council-light"], **html_pane)
        self.evidence = pn.pane.HTML("", css_classes=["council-evidence-pane"], **html_pane)
        table = {"disabled": True, "show_index": False, "layout": "fit_data_stretch", "sizing_mode": "stretch_width"}
        self.history = pn.widgets.Tabulator(None, selectable=1, max_height=320, titles=HISTORY_TITLES,
                                            css_classes=["council-history"], **table)
        self.history.param.watch(self._on_history_row, "selection")
        self.board = pn.widgets.Tabulator(None, selectable=False, max_height=320, titles=BOARD_TITLES,
                                          css_classes=["council-leaderboard"], **table)
        self.plot = pn.pane.Bokeh(calibration_figure({}), css_classes=["council-calibration"])
        self.scores = pn.pane.HTML("", css_classes=["council-scores"], **html_pane)

    # -- asking --------------------------------------------------------------------------------
    def _spec(self):
        if self.backend.value == "openai":
            return {"kind": "openai", "base_url": self.base_url.value.strip()}
        return self.backend.value

    def ask_now(self) -> dict | None:
        """Ask the question in the box here and now (blocking); show the decision."""
        if self.refusal:
            return self._say(self.refusal, "warning")
        try:
            decision, values = self.council.ask(self.question.value, urgency=self.urgency.value,
                                                backend=self._spec(), on_progress=self._progress)
        except WorkbenchError as e:
            return self._say(f"**The council could not answer.** {e}", "danger")
        self._show_new(decision, values)
        return decision

    async def _on_ask(self, _event) -> None:
        """The button: the session runs on a thread; progress and the decision come back to this loop."""
        if self.refusal:
            return self._say(self.refusal, "warning")
        loop = asyncio.get_running_loop()
        self.ask_button.disabled = True
        self.progress.param.update(value=0, visible=True)
        self.progress_text.param.update(object="Gathering evidence…", visible=True)
        question, urgency, spec = self.question.value, self.urgency.value, self._spec()
        try:
            decision, values = await loop.run_in_executor(None, lambda: self.council.ask(
                question, urgency=urgency, backend=spec,
                on_progress=lambda e: loop.call_soon_threadsafe(self._progress, e)))
        except WorkbenchError as e:
            self._say(f"**The council could not answer.** {e}", "danger")
        else:
            self._show_new(decision, values)
        finally:
            self.ask_button.disabled = False
            self.progress.visible = False
            self.progress_text.visible = False

    def _progress(self, event: dict) -> None:
        self.progress.max = max(1, event["total"])
        self.progress.value = min(event["done"], event["total"])
        who = f" — {BY_ID[event['member_id']].name}: {event['vote']}" if event.get("member_id") else ""
        self.progress_text.object = f"{event['phase']}: {event['done']} of {event['total']} members{who}"

    def _show_new(self, decision: dict, values: dict) -> None:
        self.selected = decision["id"]
        self.council.apply(values)
        self._show_decision()
        self._say(f"The council {decision['decision']} (confidence {decision['confidence']:.0%}).", "success")

    # -- outcomes and the President ---------------------------------------------------------------
    def resolve_now(self) -> dict | None:
        """Record the outcome chosen for the decision shown; members' weights update."""
        return self._act(self.refusal, "recorded the outcome", lambda d: self.council.resolve(
            d, self.outcome.value, self.note.value.strip() or None))

    def override_now(self) -> dict | None:
        """The President's vote on the decision shown, with the reason typed."""
        return self._act(self.admin_refusal, "recorded the President's word",
                         lambda d: self.council.override(d, self.president_vote.value, self._reason()))

    def veto_now(self) -> dict | None:
        """The President's veto of the decision shown, with the reason typed."""
        return self._act(self.admin_refusal, "recorded the veto", lambda d: self.council.veto(d, self._reason()))

    def _reason(self) -> str:
        reason = self.reason.value.strip()
        if not reason:
            raise ValidationError("the President's word needs a reason: type it in Reason", field="reason")
        return reason

    def _act(self, refusal: str, done: str, action) -> dict | None:
        if refusal:
            return self._say(refusal, "warning")
        if self.selected is None:
            return self._say("Select a decision first.", "warning")
        try:
            decision, values = action(self.selected)
        except WorkbenchError as e:
            return self._say(f"**Nothing was recorded.** {e}", "danger")
        self.council.apply(values)
        self._show_decision()
        self.note.value = self.reason.value = ""
        self._say(f"The council {done} for this decision.", "success")
        return decision

    # -- following the state ---------------------------------------------------------------------
    def _show_history(self) -> None:
        df = self.council.decisions
        if df is None:
            return
        self._ids = df["id"].to_list()
        table = _table(df.with_columns(df["confidence"].round(2)))
        self._syncing = True
        try:
            if self.history.value is None or not table.equals(self.history.value):
                self.history.value = table
            wanted = [self._ids.index(self.selected)] if self.selected in self._ids else []
            if list(self.history.selection) != wanted:
                self.history.selection = wanted
        finally:
            self._syncing = False

    def _on_history_row(self, event) -> None:
        if not self._syncing and event.new and event.new[0] < len(self._ids):
            self.selected = self._ids[event.new[0]]

    def _on_selected(self, *_events) -> None:
        self.council.watch_decision(self, self.selected)
        self._show_history()
        self._show_decision()

    def _show_decision(self) -> None:
        d = self.council.details.get(self.selected) if self.selected else None
        self.actions.visible = d is not None
        if d is None:
            self.header.object = "<p>No decision yet: ask the council a question.</p>"
            for pane in (self.baselines, self.grid, self.shadow, self.light, self.evidence):
                pane.object = ""
            return
        self.header.object = decision_header(d)
        self.baselines.object = baselines_view(d)
        self._enable_actions(d)
        self.grid.object = member_grid(d)
        self.shadow.object = side_panel(d, "Shadow: risks", d["shadow_analysis"], "council-shadow-card")
        self.light.object = side_panel(d, "Light: opportunities", d["light_suggestion"], "council-light-card")
        self.evidence.object = evidence_list(d)

    def _enable_actions(self, d: dict) -> None:
        """Each button enabled only when this user may press it and the decision still allows it."""
        resolved = f"resolved as {d['outcome']}" if d.get("outcome") else ""
        for button, why in ((self.resolve_button, self.refusal or resolved),
                            (self.override_button, self.admin_refusal),
                            (self.veto_button, self.admin_refusal or ("already vetoed" if d.get("vetoed") else ""))):
            button.param.update(disabled=bool(why), description=why or None)

    def _show_board(self) -> None:
        board = self.council.leaderboard
        if board is not None:
            table = _table(board.with_columns(board["accuracy"].round(3), board["weight"].round(3)))
            if self.board.value is None or not table.equals(self.board.value):
                self.board.value = table
        self.plot.object = calibration_figure(self.council.calibration)
        self.scores.object = baseline_scores(self.council.calibration)

    def _on_error(self) -> None:
        if self.council.error:
            self._say(f"**The store could not be read.** {self.council.error}", "danger")

    # -- layout ------------------------------------------------------------------------------
    def __panel__(self) -> pn.viewable.Viewable:
        title = {"margin": (0, 10)}
        return pn.Column(
            self.message,
            pn.Row(self.question, sizing_mode="stretch_width"),
            pn.Row(self.urgency, self.backend, self.base_url, self.ask_button),
            self.progress_text, self.progress,
            self.header,
            self.baselines,
            self.actions,
            pn.pane.Markdown("### Members (coloured by vote; dashed: revised in the feedback round)", **title),
            self.grid,
            pn.Row(self.shadow, self.light, sizing_mode="stretch_width"),
            self.evidence,
            pn.pane.Markdown("### Decisions", **title),
            self.history,
            pn.Row(pn.Column(pn.pane.Markdown("### Leaderboard", **title), self.board, sizing_mode="stretch_width"),
                   pn.Column(self.plot, self.scores), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
