"""Service definitions that keep the agent running after the ssh session or login ends (seed §3).

Linux: a systemd user unit (with ``loginctl enable-linger`` it runs without a login); macOS: a
launchd agent; Windows: a Task Scheduler task started at boot and restarted on failure (no extra
service wrapper needed). The token stays in its own file; the definitions only name the file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

NAME = "bi-ide-agent"
LABEL = "com.bi-ide.agent"
PLATFORMS = ("linux", "macos", "windows")


@dataclass(frozen=True)
class Service:
    """A service definition: where it goes, its text, and how to turn it on."""

    platform: str
    path: Path
    text: str
    enable: list[str]


def current_platform() -> str:
    return {"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux")


def agent_argv(hub: str, token_file: Path, worker_id: str | None, labels: dict[str, str]) -> list[str]:
    argv = [sys.executable, "-m", "bi_ide.cli", "agent", "run", "--hub", hub, "--token-file", str(token_file)]
    if worker_id:
        argv += ["--worker-id", worker_id]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    return argv


def service(platform: str, argv: list[str], workdir: Path, home: Path | None = None) -> Service:
    """The definition for ``platform`` that runs ``argv`` in ``workdir``."""
    home = home or Path.home()
    if platform == "linux":
        path = home / ".config" / "systemd" / "user" / f"{NAME}.service"
        return Service(platform, path, systemd_unit(argv, workdir),
                       ["systemctl --user daemon-reload", f"systemctl --user enable --now {NAME}",
                        "loginctl enable-linger $USER  # keep it running with nobody logged in"])
    if platform == "macos":
        path = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        return Service(platform, path, launchd_plist(argv, workdir), [f"launchctl load -w {path}"])
    if platform == "windows":
        path = home / ".bi-ide" / f"{NAME}.xml"
        return Service(platform, path, windows_task(argv, workdir), [f'schtasks /Create /TN {NAME} /XML "{path}" /F',
                                                                     f"schtasks /Run /TN {NAME}"])
    raise ValueError(f"platform {platform!r} is not one of {list(PLATFORMS)}")


def systemd_unit(argv: list[str], workdir: Path) -> str:
    command = " ".join(_systemd_quote(a) for a in argv)
    return (
        "[Unit]\nDescription=BI-IDE Workbench agent (reports this machine to the hub)\n"
        "After=network-online.target\nWants=network-online.target\n\n"
        f"[Service]\nType=simple\nWorkingDirectory={workdir}\nExecStart={command}\n"
        "Restart=always\nRestartSec=5\nKillSignal=SIGTERM\nTimeoutStopSec=20\n\n"
        "[Install]\nWantedBy=default.target\n"
    )


def _systemd_quote(arg: str) -> str:
    if arg and not any(c in arg for c in ' "\\\'$%;'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%") + '"'


def launchd_plist(argv: list[str], workdir: Path) -> str:
    args = "".join(f"\n    <string>{escape(a)}</string>" for a in argv)
    log = escape(str(workdir / "data" / "agent.log"))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
        '<plist version="1.0">\n<dict>\n'
        f"  <key>Label</key>\n  <string>{LABEL}</string>\n"
        f"  <key>ProgramArguments</key>\n  <array>{args}\n  </array>\n"
        f"  <key>WorkingDirectory</key>\n  <string>{escape(str(workdir))}</string>\n"
        "  <key>RunAtLoad</key>\n  <true/>\n  <key>KeepAlive</key>\n  <true/>\n"
        f"  <key>StandardOutPath</key>\n  <string>{log}</string>\n"
        f"  <key>StandardErrorPath</key>\n  <string>{log}</string>\n"
        "</dict>\n</plist>\n"
    )


def windows_task(argv: list[str], workdir: Path) -> str:
    arguments = " ".join(_windows_quote(a) for a in argv[1:])
    return (
        '<?xml version="1.0" encoding="UTF-16"?>\n'
        '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">\n'
        "  <RegistrationInfo><Description>BI-IDE Workbench agent (reports this machine to the hub)"
        "</Description></RegistrationInfo>\n"
        "  <Triggers><BootTrigger><Enabled>true</Enabled></BootTrigger>"
        "<LogonTrigger><Enabled>true</Enabled></LogonTrigger></Triggers>\n"
        "  <Settings>\n    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>\n"
        "    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>\n"
        "    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>\n"
        "    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>\n"
        "    <RestartOnFailure><Interval>PT1M</Interval><Count>999</Count></RestartOnFailure>\n"
        "  </Settings>\n"
        "  <Actions Context=\"Author\"><Exec>\n"
        f"    <Command>{escape(argv[0])}</Command>\n    <Arguments>{escape(arguments)}</Arguments>\n"
        f"    <WorkingDirectory>{escape(str(workdir))}</WorkingDirectory>\n"
        "  </Exec></Actions>\n</Task>\n"
    )


def _windows_quote(arg: str) -> str:
    return f'"{arg}"' if (not arg or any(c in arg for c in ' \t"')) else arg


def write(svc: Service) -> Path:
    """Write the definition atomically (a temporary file renamed into place)."""
    svc.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = svc.path.with_name(f".{svc.path.name}.{os.getpid()}.tmp")
    encoding = "utf-16" if svc.platform == "windows" else "utf-8"
    tmp.write_text(svc.text, encoding=encoding)
    os.replace(tmp, svc.path)
    return svc.path
