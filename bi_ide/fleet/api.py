"""The hub's fleet routes, served by ``bi_ide.hub.app.Hub.routes``, and its background watch.

Agents use a developer token: register, send samples, fetch their next command and report it.
Reading is for viewers; queueing a command is for developers; removing a worker is for admins.
``/metrics`` (Prometheus text) is open to requests from the hub's own machine (loopback) and
needs a viewer token from anywhere else.
"""

from __future__ import annotations

import asyncio
import ipaddress

from bi_ide.errors import ValidationError
from bi_ide.fleet import prometheus, slo
from bi_ide.fleet.alerts import Watch
from bi_ide.fleet.commands import check_payload
from bi_ide.fleet.ingest import SampleWriter
from bi_ide.hub.app import ID, ApiHandler, _int_arg
from bi_ide.hub.auth import require_role
from bi_ide.hub.wire import frame_to_json

REGISTER_BODY = {"id": (str,), "hostname": (str,), "os": (str,), "platform": (str,), "cpu_count": (int,),
                 "ram_bytes": (int,), "gpus": (list,), "labels": (dict,), "agent_version": (str,)}


def routes(hub) -> list[tuple]:
    kw = {"hub": hub}
    writer = SampleWriter(hub.store)  # one per hub: concurrent sample requests share a transaction
    return [
        (r"/api/v1/workers", WorkersHandler, kw),
        (rf"/api/v1/workers/{ID}", WorkerHandler, kw),
        (rf"/api/v1/workers/{ID}/samples", SamplesHandler, {**kw, "writer": writer}),
        (rf"/api/v1/workers/{ID}/commands", WorkerCommandsHandler, kw),
        (rf"/api/v1/workers/{ID}/commands/next", NextCommandHandler, kw),
        (r"/api/v1/commands", CommandsHandler, kw),
        (rf"/api/v1/commands/{ID}", CommandHandler, kw),
        (r"/api/v1/alerts", AlertsHandler, kw),
        (rf"/api/v1/alerts/{ID}/ack", AckHandler, kw),
        (r"/api/v1/fleet/resources", ResourcesHandler, kw),
        (r"/api/v1/fleet/gpus", GpusHandler, kw),
        (r"/api/v1/fleet/gpu-series", GpuSeriesHandler, kw),
        (r"/api/v1/slos", SlosHandler, kw),
        (rf"/api/v1/runs/{ID}/process", RunProcessHandler, kw),
        (rf"/api/v1/runs/{ID}/throttles", RunThrottlesHandler, kw),
        (r"/metrics", MetricsHandler, {**kw, "writer": writer}),
    ]


def start(hub) -> Watch:
    """Evaluate alert rules, the thermal guard and rollups in the hub process (a daemon thread)."""
    return Watch(hub.store).start()


class WorkersHandler(ApiHandler):
    roles = {"GET": "viewer", "POST": "developer"}

    async def get(self):
        self.send(frame_to_json(await self.hub.call(self.hub.store.list_workers)))

    async def post(self):
        fields = self.body(REGISTER_BODY, required=("id", "hostname"))
        self.send(await self.hub.call(self.hub.store.register_worker, fields.pop("id"), **fields), 201)


class WorkerHandler(ApiHandler):
    roles = {"GET": "viewer", "DELETE": "admin"}

    async def get(self, worker_id):
        self.send(await self.hub.call(self.hub.store.get_worker, worker_id))

    async def delete(self, worker_id):
        await self.hub.call(self.hub.store.remove_worker, worker_id)
        self.send({"id": worker_id, "removed": True})


class WriterHandler(ApiHandler):
    """A handler that also gets the hub's SampleWriter, for the routes every agent calls each second."""

    def initialize(self, hub, writer: SampleWriter) -> None:
        super().initialize(hub)
        self.writer = writer


class SamplesHandler(WriterHandler):
    roles = {"GET": "viewer", "POST": "developer"}

    async def get(self, worker_id):
        self.send(await self.hub.call(self.hub.store.count_samples, worker_id))

    async def post(self, worker_id):
        """Keyed batches of samples; the answer says how many were new and whether commands wait."""
        body = self.body({"batches": (list,), "reconnect": (dict,)}, required=("batches",))
        future = self.writer.submit(worker_id, body["batches"], body.get("reconnect"))
        self.send(await asyncio.wrap_future(future))


class WorkerCommandsHandler(ApiHandler):
    roles = {"POST": "developer"}

    async def post(self, worker_id):
        fields = self.body({"kind": (str,), "payload": (dict,)}, required=("kind",))
        payload = check_payload(fields["kind"], fields.get("payload"))
        command = await self.hub.call(self.hub.store.queue_command, worker_id, fields["kind"], payload,
                                      created_by=self.token["name"])
        self.send(command, 201)


class NextCommandHandler(ApiHandler):
    roles = {"POST": "developer"}

    async def post(self, worker_id):
        self.send({"command": await self.hub.call(self.hub.store.next_command, worker_id)})


class CommandsHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        df = await self.hub.call(self.hub.store.list_commands, worker_id=self.get_query_argument("worker_id", None),
                                 status=self.get_query_argument("status", None), limit=_int_arg(self, "limit", 100))
        self.send(frame_to_json(df))


class CommandHandler(ApiHandler):
    roles = {"GET": "viewer", "PATCH": "developer", "DELETE": "developer"}

    async def get(self, command_id):
        self.send(await self.hub.call(self.hub.store.get_command, command_id))

    async def patch(self, command_id):
        """The agent reports how a command ended: status done or failed, with a result or an error."""
        fields = self.body({"status": (str,), "result": (dict,), "error": (str,)}, required=("status",))
        self.send(await self.hub.call(self.hub.store.finish_command, command_id, fields.pop("status"), **fields))

    async def delete(self, command_id):
        self.send(await self.hub.call(self.hub.store.cancel_command, command_id))


class AlertsHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        active = self.get_query_argument("active", "false").lower()
        if active not in ("true", "false"):
            raise ValidationError(f"active must be true or false, got {active!r}", field="active")
        df = await self.hub.call(self.hub.store.list_alerts, status=self.get_query_argument("status", None),
                                 worker_id=self.get_query_argument("worker_id", None), active=active == "true",
                                 limit=_int_arg(self, "limit", 200))
        self.send(frame_to_json(df))


class AckHandler(ApiHandler):
    roles = {"POST": "developer"}

    async def post(self, alert_id):
        self.send(await self.hub.call(self.hub.store.acknowledge_alert, alert_id, self.token["name"]))


class ResourcesHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        self.send(await self.hub.call(self.hub.store.resources))


class GpusHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        df = await self.hub.call(self.hub.store.gpu_latest, self.get_query_argument("worker_id", None))
        self.send(frame_to_json(df))


class GpuSeriesHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        df = await self.hub.call(self.hub.store.gpu_series, _int_arg(self, "window_s", 900),
                                 self.get_query_argument("worker_id", None))
        self.send(frame_to_json(df))


class SlosHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self):
        window = _int_arg(self, "window_s", slo.WINDOW_S)
        if not 60 <= window <= 366 * 86_400:
            raise ValidationError(f"window_s must be 60..31622400 seconds, got {window}", field="window_s")
        self.send({"objectives": await self.hub.call(self.hub.store.slos, window)})


class RunProcessHandler(ApiHandler):
    roles = {"PUT": "developer"}

    async def put(self, run_id):
        fields = self.body({"host": (str,), "pid": (int,)}, required=("host", "pid"))
        self.send(await self.hub.call(self.hub.store.record_run_process, run_id, **fields))


class RunThrottlesHandler(ApiHandler):
    roles = {"GET": "viewer"}

    async def get(self, run_id):
        self.send(frame_to_json(await self.hub.call(self.hub.store.run_throttles, run_id)))


class MetricsHandler(WriterHandler):
    """Prometheus scrapes this; open on loopback, a viewer token (Bearer) from elsewhere."""

    async def get(self):
        if not ipaddress.ip_address(self.request.remote_ip.split("%")[0]).is_loopback:
            self.token = await self.hub.authenticate_async(self.request.headers.get("Authorization"))
            require_role(self.token, "viewer")
            self.hub.limiter.take(self.token["id"])
        text = await self.hub.call(prometheus.exposition, self.hub.store, self.writer)
        self.set_header("Content-Type", prometheus.CONTENT_TYPE)
        self.finish(text)
