"""The pool's pages (``/nodes``, ``/labels``, ``/images``, ``/providers``) and
Nodepool's list endpoints (``/node-list``, ``/label-list``, ``/image-list``,
``/dib-image-list``).

The pages read the same rows as ``gatekeeper nodes list``, ``images list``
and ``pool status`` (:mod:`gatekeeper.db.pool_view`). The endpoints answer
as Nodepool's web app does: JSON when the ``Accept`` header asks for it (or
``?format=json``), else a plain-text table; ``?fields=a,b`` picks columns;
``Access-Control-Allow-Origin: *``; cached for a second. A node or label
name is someone else's text: the pages escape it (Jinja2's autoescape), the
text tables write control characters as escapes (``shown``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from gatekeeper.db.images import ImageStore
from gatekeeper.db.nodes import NodeStore
from gatekeeper.db.pool_view import (
    ImageRow,
    NodeRow,
    age,
    image_rows,
    label_rows,
    node_rows,
    provider_rows,
)
from gatekeeper.model.node import NodeState
from gatekeeper.model.outside import shown
from gatekeeper.web.context import WebContext
from gatekeeper.web.templating import templates

#: The node states in the order the pages count them.
STATES = [s.value for s in NodeState]
#: Nodepool's lower-case names for our states (``USED``: a build runs on it).
NODEPOOL_STATE = {
    NodeState.BUILDING: "building",
    NodeState.READY: "ready",
    NodeState.USED: "in-use",
    NodeState.HOLD: "hold",
    NodeState.DELETE: "deleting",
    NodeState.DELETING: "deleting",
}
#: A text table's cell never grows past this (a comment may be long).
CELL_LIMIT = 200


def routes(ctx: WebContext) -> list[BaseRoute]:
    nodes = NodeStore(ctx.db)
    images = ImageStore(ctx.db)

    async def run(fn: Callable[[], Any]) -> Any:
        # The database is synchronous: off the event loop.
        return await asyncio.to_thread(fn)

    async def nodes_page(request: Request) -> Response:
        label = request.query_params.get("label") or None
        provider = request.query_params.get("provider") or None
        state = (request.query_params.get("state") or "").upper() or None
        rows = await run(lambda: node_rows(nodes, label, provider, state))
        return templates.TemplateResponse(
            request,
            "nodes.html",
            {"nodes": rows, "age": age, "filters": {"label": label, "provider": provider}},
        )

    async def labels_page(request: Request) -> Response:
        rows = await run(lambda: label_rows(ctx.site, nodes))
        return templates.TemplateResponse(
            request, "labels.html", {"labels": rows, "states": STATES}
        )

    async def images_page(request: Request) -> Response:
        rows = await run(lambda: image_rows(images))
        return templates.TemplateResponse(request, "images.html", {"images": rows, "age": age})

    async def providers_page(request: Request) -> Response:
        backoff = ctx.pool_backoff() if ctx.pool_backoff is not None else None
        rows = await run(lambda: provider_rows(ctx.site, nodes, backoff))
        return templates.TemplateResponse(
            request,
            "providers.html",
            {"providers": rows, "states": STATES, "knows_backoff": backoff is not None},
        )

    async def node_list(request: Request) -> Response:
        node_id = request.query_params.get("node_id")
        rows = await run(lambda: node_rows(nodes))
        if node_id:
            rows = [r for r in rows if str(r.id) == node_id or r.name == node_id]
        return _listing(request, NODE_FIELDS, [_node_record(r) for r in rows])

    async def label_list(request: Request) -> Response:
        rows = await run(lambda: label_rows(ctx.site, nodes))
        return _listing(request, ["label"], [{"label": r.name} for r in rows])

    async def image_list(request: Request) -> Response:
        rows = await run(lambda: image_rows(images))
        return _listing(request, IMAGE_FIELDS, [_image_record(r) for r in rows])

    async def dib_image_list(request: Request) -> Response:
        # Nodepool's disk-image builds: here an image is built on its provider
        # (a snapshot, a copied directory), so each is one build.
        rows = await run(lambda: image_rows(images))
        return _listing(request, DIB_FIELDS, [_dib_record(r) for r in rows])

    return [
        Route("/nodes", nodes_page),
        Route("/labels", labels_page),
        Route("/images", images_page),
        Route("/providers", providers_page),
        Route("/node-list", node_list),
        Route("/label-list", label_list),
        Route("/image-list", image_list),
        Route("/dib-image-list", dib_image_list),
    ]


# -- Nodepool's endpoints -------------------------------------------------------

NODE_FIELDS = [
    "id",
    "provider",
    "label",
    "server_id",
    "public_ipv4",
    "state",
    "age",
    "hostname",
    "username",
    "connection_port",
    "allocated_to",
    "hold_until",
    "comment",
]
IMAGE_FIELDS = ["build_id", "upload_id", "provider", "image", "external_id", "state", "age"]
DIB_FIELDS = ["id", "image", "builder", "formats", "state", "age"]


def _node_record(row: NodeRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "provider": row.provider,
        "label": [row.label],
        "server_id": row.external_id,
        "public_ipv4": row.address,
        "state": NODEPOOL_STATE.get(NodeState(row.state), row.state.lower()),
        "age": int(row.age),
        "hostname": row.name,
        "username": "",
        "connection_port": row.port,
        "allocated_to": row.build_uuid,
        "hold_until": row.hold_until,
        "comment": row.comment,
        # gatekeeper's own, beside Nodepool's names.
        "gatekeeper_state": row.state,
    }


def _image_record(row: ImageRow) -> dict[str, Any]:
    return {
        "build_id": str(row.id),
        "upload_id": str(row.id),
        "provider": row.provider,
        "image": row.label,
        "external_id": row.external_id,
        "external_name": row.name,
        "state": row.state.lower(),
        "age": int(row.age),
        "current": row.current,
    }


def _dib_record(row: ImageRow) -> dict[str, Any]:
    return {
        "id": row.name,
        "image": row.label,
        "builder": row.provider,
        "formats": [],
        "state": row.state.lower(),
        "age": int(row.age),
    }


def wants_json(request: Request) -> bool:
    """JSON when ``?format=json``, or when ``Accept`` ranks application/json
    above text/plain (as Nodepool's web app decides)."""
    fmt = request.query_params.get("format")
    if fmt:
        return fmt.lower() == "json"
    best: dict[str, float] = {}
    for part in request.headers.get("accept", "").split(","):
        media, *params = [p.strip() for p in part.split(";")]
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        best[media.lower()] = max(quality, best.get(media.lower(), 0.0))
    json_q = best.get("application/json", 0.0)
    text_q = max(best.get("text/plain", 0.0), best.get("text/*", 0.0), best.get("*/*", 0.0))
    return json_q > 0 and json_q >= text_q


def _listing(request: Request, fields: list[str], records: list[dict[str, Any]]) -> Response:
    wanted = request.query_params.get("fields")
    if wanted:
        fields = [f for f in (w.strip() for w in wanted.split(",")) if f in fields] or fields
    headers = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=1"}
    if wants_json(request):
        if wanted:
            records = [{f: r.get(f) for f in fields} for r in records]
        return JSONResponse(records, headers=headers)
    return PlainTextResponse(text_table(fields, records), headers=headers)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    return shown(value, CELL_LIMIT)


def text_table(fields: Sequence[str], records: Sequence[Mapping[str, Any]]) -> str:
    """A boxed table as Nodepool prints it; every cell on one line."""
    cells = [[_cell(r.get(f)) for f in fields] for r in records]
    widths = [max([len(f), *(len(row[i]) for row in cells)]) for i, f in enumerate(fields)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: Sequence[str]) -> str:
        return "|" + "|".join(f" {v.ljust(w)} " for v, w in zip(values, widths, strict=True)) + "|"

    out = [rule, line(fields), rule, *(line(row) for row in cells), rule]
    return "\n".join(out) + "\n"
