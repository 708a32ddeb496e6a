"""The operator's web view and API (aiohttp): everything reads LineStatus snapshots.

    GET  /                      the page (static/index.html): live frame, counts, latency, gallery
    GET  /healthz               200 while the process serves (liveness)
    GET  /readyz                200 when ready, else 503 with the reasons (see status.py)
    GET  /api/status            the line as JSON
    GET  /api/frame.jpg         the latest frame with heatmap and verdict; X-Decision, X-Frame-Id, ETag (304 when unchanged)
    GET  /api/gallery           recent NOK parts with their records, newest first (`id`: the decision's number)
    GET  /api/gallery/ID.jpg    one of them as an image
    POST /api/feedback          {"id": part id, "kind": "good"|"defect", "label": optional}: files the part
    POST /api/trigger           {"part_id": "4711"}: part trigger (`--trigger http`); 202 with the trigger, the
                                result goes to the sinks like every decision (docs/decision-record.md)
    GET  /metrics               Prometheus text format

Access: operator actions (POST) need `Authorization: Bearer $EDGEFREQ_HTTP_TOKEN`; viewing is open
to loopback peers (this machine, or a reverse proxy on it) and needs the token from anywhere else;
/healthz and /readyz are open to all. A client that does not take an image within `send_timeout_s`
is disconnected (counted in /api/status as http_clients_dropped): no client queues frames or holds
the line's state; each request reads the newest snapshot.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from concurrent.futures import Executor
from pathlib import Path

from aiohttp import web

from edgefreq.runtime.web import feedback, metrics
from edgefreq.runtime.web.render import JpegCache
from edgefreq.runtime.web.status import LineStatus

log = logging.getLogger("edgefreq")
STATIC = Path(__file__).resolve().parent / "static"
OPEN_PATHS = ("/healthz", "/readyz")


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def make_app(line: LineStatus, executor: Executor, token: str | None, feedback_dir: Path | None, send_timeout_s: float = 5.0,
             parts=lambda: None) -> web.Application:
    """`parts()`: the line's Triggers with `--trigger http`, else None."""
    cache = JpegCache(lambda: line.vmax)
    reg = metrics.registry(line)

    def authorized(request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return bool(token) and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode())

    @web.middleware
    async def access(request: web.Request, handler):
        if request.method == "POST":
            if not token:
                return web.json_response({"error": "operator actions are off: start edgefreq run with EDGEFREQ_HTTP_TOKEN set"}, status=403)
            if not authorized(request):
                return web.json_response({"error": "a valid operator token is needed (Authorization: Bearer TOKEN)"}, status=401)
        elif request.path not in OPEN_PATHS and not is_loopback(request.remote) and not authorized(request):
            return web.json_response({"error": "viewing from another machine needs the token (Authorization: Bearer TOKEN)"}, status=401)
        return await handler(request)

    async def send_image(request: web.Request, body: bytes, headers: dict[str, str]) -> web.StreamResponse:
        """Send `body`, or disconnect a client that does not take it within send_timeout_s."""
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg", "Cache-Control": "no-store", **headers})
        response.content_length = len(body)
        await response.prepare(request)
        try:
            await asyncio.wait_for(response.write(body), send_timeout_s)
        except asyncio.TimeoutError:
            line.http_clients_dropped += 1
            log.info("http: dropped a client that did not read its image within %g s (%s)", send_timeout_s, request.remote)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

    async def encode(kind: str, number: int, inspection) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(executor, cache.get, kind, number, inspection)

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def readyz(request: web.Request) -> web.Response:
        reasons = line.readiness()
        return web.json_response({"ready": not reasons, "not_ready": reasons}, status=200 if not reasons else 503)

    async def status(request: web.Request) -> web.Response:
        data = line.status()
        data["feedback"] = {"folder": str(feedback_dir) if feedback_dir else None, "token_set": bool(token)}
        data["http_clients_dropped"] = line.http_clients_dropped
        return web.json_response(data)

    async def frame(request: web.Request) -> web.StreamResponse:
        number, inspection = line.state.latest()
        if inspection is None:
            return web.json_response({"error": "no frame decided yet"}, status=503)
        d = inspection.decision
        etag = f'"{number}"'
        ids = {"ETag": etag, "X-Decision": str(number), "X-Frame-Id": "none" if d.frame_id is None else str(d.frame_id)}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=ids)
        body = await encode("live", number, inspection)
        return await send_image(request, body, {**ids, "X-Verdict": d.verdict})

    async def gallery(request: web.Request) -> web.Response:
        parts = [{"id": p.id, "record": p.record, "kept_at": p.kept_at, "has_image": p.inspection.frame.image is not None}
                 for p in line.state.gallery()]
        return web.json_response({"parts": parts})

    def part_of(request: web.Request):
        try:
            part_id = int(request.match_info["id"])
        except ValueError:
            raise web.HTTPBadRequest(text="the part id is an integer (the gallery's id)") from None
        part = line.state.part(part_id)
        if part is None:
            raise web.HTTPNotFound(text=f"part {part_id} is not in the gallery (any more)")
        return part

    async def gallery_image(request: web.Request) -> web.StreamResponse:
        part = part_of(request)
        body = await encode("part", part.id, part.inspection)
        return await send_image(request, body, {"X-Decision": str(part.id)})

    async def post_feedback(request: web.Request) -> web.Response:
        if feedback_dir is None:
            return web.json_response({"error": "no feedback folder: start edgefreq run with --feedback DIR"}, status=409)
        try:
            body = await request.json()
            part_id, kind = int(body["id"]), str(body["kind"])
            label = body.get("label")
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'send JSON {"id": PART_ID, "kind": "good" or "defect", "label": optional}'}, status=400)
        part = line.state.part(part_id)
        if part is None:
            return web.json_response({"error": f"part {part_id} is not in the gallery (any more)"}, status=404)
        try:
            path = await asyncio.get_running_loop().run_in_executor(executor, feedback.write, feedback_dir, part, kind, label)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except OSError as exc:
            log.error("feedback: could not write into %s: %s", feedback_dir, exc)
            return web.json_response({"error": f"could not write the feedback file: {exc.strerror or exc}"}, status=500)
        log.info("feedback: part %d (frame %s) filed as %s: %s", part_id, part.record["frame_id"], kind, path)
        return web.json_response({"id": part_id, "kind": kind, "path": str(path)})

    async def post_trigger(request: web.Request) -> web.Response:
        triggers = parts()
        if triggers is None:
            return web.json_response({"error": "part triggers are off: start edgefreq run with --trigger http"}, status=409)
        try:
            body = await request.json()
            part_id = body["part_id"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'send JSON {"part_id": "4711"}'}, status=400)
        try:  # in the executor: a camera's software trigger may take a while
            trigger = await asyncio.get_running_loop().run_in_executor(executor, triggers.fire, part_id, "http")
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except RuntimeError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response({"part_id": trigger.part_id, "trigger_ts": trigger.ts}, status=202)

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(reg), headers={"Content-Type": metrics.CONTENT_TYPE})

    app = web.Application(middlewares=[access], client_max_size=64 * 1024)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/status", status)
    app.router.add_get("/api/frame.jpg", frame)
    app.router.add_get("/api/gallery", gallery)
    app.router.add_get("/api/gallery/{id}.jpg", gallery_image)
    app.router.add_post("/api/feedback", post_feedback)
    app.router.add_post("/api/trigger", post_trigger)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_static("/static", STATIC)
    return app
