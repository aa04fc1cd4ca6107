"""The one page template every dashboard uses: title, a sidebar of the dashboards, dark/light.

The theme switch reloads the page with ``?theme=dark`` (or ``default``); the sidebar links carry
the theme on, so the whole workbench stays in the theme the user picked. Everything is served by
``panel serve`` itself: no font or script comes from the internet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import panel as pn
import param
from panel.theme import fast

from bi_ide import settings
from bi_ide.dashboards.training_state import control_refusal

TITLE = "BI-IDE Workbench"
ACCENT = "#0f766e"
# Dashboards in the order the sidebar shows them; an app in apps/ not listed here comes after.
KNOWN = {
    "overview": ("Overview", "hub health, store size and counts"),
    "training": ("Training", "runs, loss curves and checkpoints"),
    "pipelines": ("Pipelines", "notebook pipeline runs, failed steps and schedules"),
    "gpu": ("GPUs", "utilisation, memory and temperature per GPU"),
    "workers": ("Workers", "the fleet: machines, heartbeats, commands"),
    "council": ("Council", "decisions, votes and members"),
    "erp": ("ERP", "business numbers, reports and forecasts"),
}
# System fonts: the Fast design's default (Open Sans) would be fetched from Google Fonts.
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', 'Noto Sans Arabic', sans-serif"


class Fast(fast.Fast):
    """Panel's Fast design without its Google Fonts stylesheet, so a page needs no internet.

    Named ``Fast`` on purpose: Panel finds a design's bundled files by its lower-cased class name.
    """

    _resources = {kind: res for kind, res in fast.Fast._resources.items() if kind != "font"}


@dataclass(frozen=True)
class Dashboard:
    """One app in apps/: its route (the file's stem), title and a line on what it shows."""

    name: str
    title: str
    about: str

    def href(self, theme: str = "default") -> str:
        # Relative: right at / (the index) and at /overview, and under a --prefix too.
        return f"./{self.name}" + ("?theme=dark" if theme == "dark" else "")


def dashboards(apps_dir: Path | None = None) -> list[Dashboard]:
    """The dashboards whose app file exists, known ones first."""
    folder = apps_dir or settings.project_root() / "apps"
    stems = {p.stem for p in folder.glob("*.py") if not p.name.startswith("_")}
    known = [Dashboard(n, *KNOWN[n]) for n in KNOWN if n in stems]
    extra = [Dashboard(s, s.replace("_", " ").title(), "") for s in sorted(stems - set(KNOWN))]
    return known + extra


def current_theme() -> str:
    """'dark' when the page was asked for with ?theme=dark, else 'default'."""
    arg = pn.state.session_args.get("theme", [b""])[0].decode().strip("'\"")
    return "dark" if arg == "dark" else "default"


def nav(active: str, apps_dir: Path | None = None, theme: str = "default") -> pn.pane.HTML:
    """The sidebar: a link per dashboard, the current one marked."""
    items = []
    for d in dashboards(apps_dir):
        mark = ' aria-current="page" class="bi-nav-active"' if d.name == active else ""
        items.append(f'<li><a href="{d.href(theme)}"{mark} title="{d.about}">{d.title}</a></li>')
    return pn.pane.HTML(
        f'<nav class="bi-nav" aria-label="dashboards"><ul>{"".join(items)}</ul></nav>',
        stylesheets=[NAV_CSS], sizing_mode="stretch_width",
    )


def page(*main, title: str, active: str, apps_dir: Path | None = None) -> pn.template.FastListTemplate:
    """Wrap a dashboard's views in the workbench's template."""
    theme = current_theme()
    return pn.template.FastListTemplate(
        site=TITLE, title=title, site_url="./", design=Fast, theme=theme, theme_toggle=True,
        accent=ACCENT, font=FONT, font_url="", sidebar=[nav(active, apps_dir, theme)],
        sidebar_width=220, main=list(main), main_layout=None,
    )


NAV_CSS = """
.bi-nav ul { list-style: none; margin: 0; padding: 0; }
.bi-nav li { margin: 2px 0; }
.bi-nav a { display: block; padding: 8px 12px; border-radius: 6px; text-decoration: none;
            color: var(--panel-on-background-color, inherit); font-size: 15px; }
.bi-nav a:hover { background: var(--panel-surface-color, rgba(127, 127, 127, 0.12)); }
.bi-nav a.bi-nav-active { background: var(--panel-primary-color, #0f766e); color: white; font-weight: 600; }
"""


def served() -> bool:
    """True inside a page that `panel serve` is serving (a browser session), False in tests and notebooks."""
    return pn.state.curdoc is not None and pn.state.curdoc.session_context is not None


class ControlledPage(pn.viewable.Viewer):
    """A page with buttons that change things: it knows who is logged in and why they may not act.

    ``refusal`` is "" when the user may press them, else the reason to show (``control_refusal``);
    ``admin_refusal`` the same for the buttons that need an admin.
    """

    user = param.String(default=None, allow_None=True, doc="""
        The logged-in dashboard user (pn.state.user); None when no login is configured.""")

    def __init__(self, **params):
        if served():
            params.setdefault("user", pn.state.user)
        super().__init__(**params)
        self.refusal = control_refusal(self.user)
        self.admin_refusal = control_refusal(self.user, role="admin")

    def _say(self, text: str, kind: str) -> None:
        """Show ``text`` in the page's message box (``self.message``, a pn.pane.Alert) as ``kind``."""
        self.message.param.update(object=text, alert_type=kind, visible=True)
