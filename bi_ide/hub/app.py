"""The hub: the REST API served inside ``panel serve`` by the process that owns the store.

``panel serve apps/*.py --plugins bi_ide.hub.plugin`` imports ``bi_ide.hub.plugin``, which opens
the store and hands Tornado the ``ROUTES`` built here. Every route is under ``/api/v1/``; every
call but ``health`` needs a token (``Authorization: Bearer ...``) of the route's role. Store work
runs on a small thread pool so a large batch never blocks the dashboards' event loop.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pyarrow as pa
import tornado.web
from tornado.ioloop import IOLoop

import bi_ide
from bi_ide import settings
from bi_ide.errors import AuthError, PayloadTooLargeError, RateLimitError, ValidationError, WorkbenchError
from bi_ide.hub.auth import RateLimiter, require_role
from bi_ide.hub.wire import ARROW_STREAM, error_body, frame_to_json
from bi_ide.store import ROLES, Store

ID = r"([A-Za-z0-9_-]{1,64})"
# Each domain serves its own routes from its own module: ``routes(hub) -> list`` of Tornado rules
# and, optionally, ``start(hub)`` for work the hub process runs in the background (alert rules, ...).
DOMAINS = ("bi_ide.fleet.api", "bi_ide.council.api", "bi_ide.erp.api")
TOKEN_CACHE_S = 2.0  # a revoked token stops working within this time


class Hub:
    """The hub's state in its process: the store, the rate limiter and the request limits."""

    def __init__(self, store: Store, *, rate: float = 10.0, burst: int = 100, max_body_bytes: int = 16 << 20):
        self.store = store
        self.limiter = RateLimiter(rate, burst)
        self.max_body_bytes = max_body_bytes
        self.started = time.time()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bi-ide-hub")
        self._tokens: dict[str, tuple[float, dict]] = {}

    @classmethod
    def from_env(cls) -> Hub:
        env = os.environ
        return cls(
            Store.shared(settings.db_path()),
            rate=float(env.get("BI_IDE_RATE_LIMIT", 10)),
            burst=int(env.get("BI_IDE_RATE_BURST", 100)),
            max_body_bytes=int(float(env.get("BI_IDE_MAX_BODY_MB", 16)) * (1 << 20)),
        )

    def routes(self) -> list[tuple]:
        kw = {"hub": self}
        return [
            (r"/api/v1/health", HealthHandler, kw),
            (r"/api/v1/summary", SummaryHandler, kw),
            (r"/api/v1/runs", RunsHandler, kw),
            (rf"/api/v1/runs/{ID}", RunHandler, kw),
            (rf"/api/v1/runs/{ID}/metrics", MetricsHandler, kw),
            (rf"/api/v1/runs/{ID}/checkpoints", CheckpointsHandler, kw),
            (r"/api/v1/models", ModelsHandler, kw),
            (rf"/api/v1/models/{ID}", ModelHandler, kw),
            (r"/api/v1/tokens", TokensHandler, kw),
            (rf"/api/v1/tokens/{ID}", TokenHandler, kw),
            (r"/api/v1/admin/backup", BackupHandler, kw),
            # -- pipelines
            (r"/api/v1/pipeline-runs", PipelineRunsHandler, kw),
            (rf"/api/v1/pipeline-runs/{ID}", PipelineRunHandler, kw),
            (rf"/api/v1/pipeline-runs/{ID}/steps/{STEP}", PipelineStepHandler, kw),
            (r"/api/v1/schedules", SchedulesHandler, kw),
            (rf"/api/v1/schedules/{ID}", ScheduleHandler, kw),
        ] + [rule for module in self.domains() for rule in module.routes(self)]

    def domains(self) -> list:
        """The domain modules (``DOMAINS``), imported on first use."""
        return [importlib.import_module(name) for name in DOMAINS]

    def start_background(self) -> list:
        """Start every domain's background work in this process; returns what each started."""
        return [module.start(self) for module in self.domains() if hasattr(module, "start")]

    def authenticate(self, header: str | None) -> dict:
        """The token ``header`` carries (checked in the store at most every TOKEN_CACHE_S); AuthError if none."""
        cached = self._cached_token(header)
        if cached is not None:
            return cached
        secret = header[len("Bearer "):].strip()
        token = self.store.verify_token(secret)
        self.store.touch_token(token["id"])  # at most once per TOKEN_CACHE_S per token
        self._tokens[secret] = (time.monotonic(), token)
        return token

    async def authenticate_async(self, header: str | None) -> dict:
        """authenticate() without blocking the event loop: a cache hit answers here, a miss on the pool
        (the store lookup, and the last-use write), so a fleet with a token per machine never stalls it."""
        cached = self._cached_token(header)
        return cached if cached is not None else await self.call(self.authenticate, header)

    def _cached_token(self, header: str | None) -> dict | None:
        if not header or not header.startswith("Bearer "):
            raise AuthError("missing API token: send `Authorization: Bearer <token>` (see `bi-ide token create`)")
        hit = self._tokens.get(header[len("Bearer "):].strip())
        return hit[1] if hit and time.monotonic() - hit[0] < TOKEN_CACHE_S else None

    async def call(self, fn, *args, **kwargs):
        return await IOLoop.current().run_in_executor(self.pool, partial(fn, *args, **kwargs))


class ApiHandler(tornado.web.RequestHandler):
    """JSON in, JSON out; ``roles`` maps each HTTP method to the least role it needs."""

    roles: dict[str, str] = {}

    def initialize(self, hub: Hub) -> None:
        self.hub = hub
        self.token: dict | None = None

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:
        """Token-authenticated API: no cookies are trusted, so there is no XSRF to check."""

    async def prepare(self) -> None:
        declared = self.request.headers.get("Content-Length")
        size = max(int(declared) if declared and declared.isdigit() else 0, len(self.request.body or b""))
        if size > self.hub.max_body_bytes:
            raise PayloadTooLargeError(
                f"request body of {size} bytes is over the hub's limit of {self.hub.max_body_bytes} bytes; "
                "send smaller batches"
            )
        needed = self.roles.get(self.request.method)
        if needed is None and self.request.method not in ("GET", "HEAD", "OPTIONS"):
            raise tornado.web.HTTPError(405)
        if needed:
            self.token = await self.hub.authenticate_async(self.request.headers.get("Authorization"))
            require_role(self.token, needed)
            self.hub.limiter.take(self.token["id"])

    def body(self, allowed: dict[str, tuple[type, ...]], required: tuple[str, ...] = ()) -> dict:
        """The JSON object in the body, with only ``allowed`` keys of the allowed types."""
        try:
            obj = json.loads(self.request.body or b"{}")
        except ValueError as e:
            raise ValidationError(f"the body is not valid JSON: {e}", field="body") from e
        if not isinstance(obj, dict):
            raise ValidationError("the body must be a JSON object", field="body")
        unknown = sorted(set(obj) - set(allowed))
        if unknown:
            raise ValidationError(f"unknown field(s) {unknown}; allowed: {sorted(allowed)}", field=unknown[0])
        for name in required:
            if name not in obj:
                raise ValidationError(f"field '{name}' is required", field=name)
        for name, value in obj.items():
            types = allowed[name]
            if value is not None and (type(value) not in types):
                kinds = " or ".join(t.__name__ for t in types)
                raise ValidationError(f"field '{name}' must be {kinds}, got {type(value).__name__}", field=name)
        return obj

    def send(self, obj, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(obj, default=_jsonable))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, WorkbenchError):
            if self._finished:
                return
            self.clear()
            self.set_default_headers()
            if isinstance(e, RateLimitError):
                self.set_header("Retry-After", f"{max(1, round(e.retry_after_s))}")
            self.send(error_body(e), e.status)
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs) -> None:
        # Unexpected errors: a short JSON body; the trace goes to the hub's log, not the client.
        self.finish(json.dumps({"error": "HTTPError", "message": self._reason}))


class HealthHandler(ApiHandler):
    async def get(self):
        self.send({"status": "ok", "version": bi_ide.__version__, "uptime_s": round(time.time() - self.hub.started, 1)})


class SummaryHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        self.send(await self.hub.call(self.hub.store.summary))


RUN_BODY = {
    "name": (str,), "kind": (str,), "config": (dict,), "preset": (str,),
    "worker_id": (str,), "device": (str,), "status": (str,), "id": (str,),
}
RUN_PATCH = {"status": (str,), "error": (str,), "params_count": (int,), "step": (int,), "total_steps": (int,),
             "stop_requested": (bool,), **{
    k: RUN_BODY[k] for k in ("name", "config", "preset", "worker_id", "device")
}}


class RunsHandler(ApiHandler):
    roles = {"GET": "viewer", "POST": "developer"}

    async def get(self):
        status = self.get_query_argument("status", None)
        kind = self.get_query_argument("kind", None)
        limit = _int_arg(self, "limit", 100)
        df = await self.hub.call(self.hub.store.list_runs, status=status, kind=kind, limit=limit)
        self.send(frame_to_json(df))

    async def post(self):
        fields = self.body(RUN_BODY)
        self.send(await self.hub.call(self.hub.store.create_run, **fields), 201)


class RunHandler(ApiHandler):
    roles = {"GET": "viewer", "PATCH": "developer"}

    async def get(self, run_id):
        self.send(await self.hub.call(self.hub.store.get_run, run_id))

    async def patch(self, run_id):
        fields = self.body(RUN_PATCH)
        self.send(await self.hub.call(self.hub.store.update_run, run_id, **fields))


class MetricsHandler(ApiHandler):
    roles = {"GET": "viewer", "POST": "developer"}

    async def get(self, run_id):
        names = self.get_query_arguments("name") or None
        points = _int_arg(self, "points", None)
        df = await self.hub.call(self.hub.store.read_metrics, run_id, names, points=points)
        self.send(frame_to_json(df))

    async def post(self, run_id):
        """A batch as JSON columns (``{"step": [...], "name": [...], "value": [...], "time": [...]}``)
        or, for bulk writers, an Arrow IPC stream with those columns; header Idempotency-Key."""
        if self.request.headers.get("Content-Type", "").startswith(ARROW_STREAM):
            columns = await self.hub.call(read_arrow_batch, self.request.body)
        else:
            columns = self.body({"step": (list,), "name": (list,), "value": (list,), "time": (list,)},
                                required=("step", "name", "value"))
        key = self.request.headers.get("Idempotency-Key")
        result = await self.hub.call(self.hub.store.write_metrics, columns, run_id=run_id, idempotency_key=key)
        self.send(result, 200 if result["duplicate"] else 201)


def read_arrow_batch(body: bytes) -> pa.Table:
    try:
        table = pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, OSError) as e:
        raise ValidationError(f"the body is not an Arrow IPC stream: {e}", field="body") from e
    if "run_id" in table.column_names:
        raise ValidationError("the run is named by the URL; drop the run_id column", field="run_id")
    return table


class CheckpointsHandler(ApiHandler):
    roles = {"GET": "viewer", "POST": "developer"}

    async def get(self, run_id):
        self.send(frame_to_json(await self.hub.call(self.hub.store.list_checkpoints, run_id)))

    async def post(self, run_id):
        fields = self.body({"step": (int,), "path": (str,), "kind": (str,), "sha256": (str,), "size_bytes": (int,),
                            "loss": (float, int), "epoch": (int,)}, required=("step", "path"))
        self.send(await self.hub.call(self.hub.store.add_checkpoint, run_id, **fields), 201)


class ModelsHandler(ApiHandler):
    roles = {"GET": "viewer", "POST": "developer"}

    async def get(self):
        status = self.get_query_argument("status", None)
        self.send(frame_to_json(await self.hub.call(self.hub.store.list_models, status=status)))

    async def post(self):
        fields = self.body({"name": (str,), "run_id": (str,), "checkpoint_id": (str,), "params_count": (int,),
                            "metrics": (dict,)}, required=("name",))
        self.send(await self.hub.call(self.hub.store.register_model, fields.pop("name"), **fields), 201)


class ModelHandler(ApiHandler):
    roles = {"GET": "viewer", "PATCH": "developer"}

    async def get(self, model_id):
        self.send(await self.hub.call(self.hub.store.get_model, model_id))

    async def patch(self, model_id):
        status = self.body({"status": (str,)}, required=("status",))["status"]
        self.send(await self.hub.call(self.hub.store.set_model_status, model_id, status))


class TokensHandler(ApiHandler):
    roles = {"GET": "admin", "POST": "admin"}

    async def get(self):
        self.send(frame_to_json(await self.hub.call(self.hub.store.list_tokens)))

    async def post(self):
        fields = self.body({"name": (str,), "role": (str,)}, required=("name", "role"))
        if fields["role"] not in ROLES:
            raise ValidationError(f"role {fields['role']!r} is not one of {list(ROLES)}", field="role")
        token_id, secret = await self.hub.call(self.hub.store.create_token, fields["name"], fields["role"])
        self.send({"id": token_id, "token": secret, "role": fields["role"]}, 201)


class TokenHandler(ApiHandler):
    roles = {"DELETE": "admin"}

    async def delete(self, token_id):
        await self.hub.call(self.hub.store.revoke_token, token_id)
        self.hub._tokens.clear()  # revocation takes effect now, not after the cache expires
        self.send({"id": token_id, "revoked": True})


class BackupHandler(ApiHandler):
    """Writes a backup beside the store, in ``backups/``; a client names the file, not a path."""

    roles = {"POST": "admin"}

    async def post(self):
        name = self.body({"name": (str,)}, required=("name",))["name"]
        if not name or "/" in name or "\\" in name or name.startswith(".") or len(name) > 120:
            raise ValidationError("name must be a plain file name such as 2026-11-25.duckdb", field="name")
        store = self.hub.store
        folder = (store.path.parent if store.path else settings.data_dir()) / "backups"
        dest = await self.hub.call(store.backup, folder / name)
        self.send({"path": str(dest), "size_bytes": dest.stat().st_size}, 201)


# -- pipelines: runs of notebook pipelines, their steps, and cron schedules (bi_ide.pipelines) ------
STEP = r"([A-Za-z0-9_.-]{1,100})"
PIPELINE_RUN_BODY = {"pipeline": (str,), "steps": (list,), "params": (dict,), "trigger": (str,), "worker_id": (str,),
                     "schedule_id": (str,), "archive_path": (str,), "host": (str,), "pid": (int,)}
PIPELINE_RUN_PATCH = {"status": (str,), "archive_path": (str,), "error": (str,), "worker_id": (str,), "host": (str,),
                      "pid": (int,)}
PIPELINE_STEP_PATCH = {"status": (str,), "duration_s": (float, int), "output_path": (str,), "failed_cell": (int,),
                       "error": (str,)}
SCHEDULE_BODY = {"pipeline": (str,), "cron": (str,), "params": (dict,), "missed": (str,), "next_run_at": (str,)}
SCHEDULE_PATCH = {"paused": (bool,), "cron": (str,), "params": (dict,), "missed": (str,), "next_run_at": (str,),
                  "last_run_at": (str,), "last_run_id": (str,), "last_outcome": (str,), "skipped_runs": (int,)}


class PipelineRunsHandler(ApiHandler):
    roles = {"GET": "viewer", "POST": "developer"}

    async def get(self):
        pipeline = self.get_query_argument("pipeline", None)
        status = self.get_query_argument("status", None)
        limit = _int_arg(self, "limit", 100)
        df = await self.hub.call(self.hub.store.list_pipeline_runs, pipeline=pipeline, status=status, limit=limit)
        self.send(frame_to_json(df))

    async def post(self):
        fields = self.body(PIPELINE_RUN_BODY, required=("pipeline", "steps"))
        self.send(await self.hub.call(self.hub.store.create_pipeline_run, fields.pop("pipeline"), **fields), 201)


class PipelineRunHandler(ApiHandler):
    roles = {"GET": "viewer", "PATCH": "developer"}

    async def get(self, run_id):
        self.send(await self.hub.call(self.hub.store.get_pipeline_run, run_id))

    async def patch(self, run_id):
        fields = self.body(PIPELINE_RUN_PATCH)
        self.send(await self.hub.call(self.hub.store.update_pipeline_run, run_id, **fields))


class PipelineStepHandler(ApiHandler):
    roles = {"PATCH": "developer"}

    async def patch(self, run_id, name):
        fields = self.body(PIPELINE_STEP_PATCH)
        self.send(await self.hub.call(self.hub.store.update_pipeline_step, run_id, name, **fields))


class SchedulesHandler(ApiHandler):
    roles = {"GET": "viewer", "POST": "developer"}

    async def get(self):
        self.send(frame_to_json(await self.hub.call(self.hub.store.list_schedules)))

    async def post(self):
        fields = _schedule_fields(self.body(SCHEDULE_BODY, required=("pipeline", "cron", "next_run_at")))
        self.send(await self.hub.call(self.hub.store.create_schedule, fields.pop("pipeline"), fields.pop("cron"),
                                      **fields), 201)


class ScheduleHandler(ApiHandler):
    roles = {"GET": "viewer", "PATCH": "developer", "DELETE": "developer"}

    async def get(self, schedule_id):
        self.send(await self.hub.call(self.hub.store.get_schedule, schedule_id))

    async def patch(self, schedule_id):
        fields = _schedule_fields(self.body(SCHEDULE_PATCH))
        self.send(await self.hub.call(self.hub.store.update_schedule, schedule_id, **fields))

    async def delete(self, schedule_id):
        await self.hub.call(self.hub.store.delete_schedule, schedule_id)
        self.send({"id": schedule_id, "deleted": True})


def _schedule_fields(fields: dict) -> dict:
    """Check the cron expression and turn ISO times into datetimes."""
    from datetime import datetime

    from bi_ide.pipelines.schedule import check_cron

    if fields.get("cron") is not None:
        check_cron(fields["cron"])
    for key in ("next_run_at", "last_run_at"):
        if fields.get(key) is not None:
            try:
                fields[key] = datetime.fromisoformat(fields[key])
            except ValueError as e:
                raise ValidationError(f"{key} must be an ISO 8601 time, got {fields[key]!r}", field=key) from e
    return fields


def _jsonable(value):
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _int_arg(handler: ApiHandler, name: str, default):
    raw = handler.get_query_argument(name, None)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise ValidationError(f"query parameter {name} must be an integer, got {raw!r}", field=name) from e

