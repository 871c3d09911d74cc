"""The HTTP API over a run bundle (FastAPI): recommendations, similar items, cross-modal search,
live feedback, new items, and the facts behind a recommendation with their explanation in a
sentence (opt-in: written by a language model off the request path, or by the template), with
Prometheus metrics.

Write endpoints need the API key (header `X-API-Key`) unless the app was built with
`api_key=None` for local use. Unknown ids answer 404 naming the id; unusable input answers 4xx
with the reason; no user-supplied path or URL is ever opened (media arrive as uploads only).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.routing import Match

from crossrec.encoders.base import BadInput
from crossrec.errors import CrossrecError
from crossrec.llm.explain import Explainer
from crossrec.serve.content import ContentEncoders
from crossrec.serve.events import FeedbackEvent as LoggedFeedback
from crossrec.serve.events import ItemRecord
from crossrec.serve.explanations import ExplanationService, template_explainer
from crossrec.serve.facts import recommendation_facts
from crossrec.serve.page import add_page
from crossrec.serve.schemas import (
    NEEDS_KEY,
    Explained,
    ExplanationOut,
    Facts,
    FeedbackAck,
    FeedbackBatch,
    Health,
    ItemAck,
    ItemList,
    Recommendations,
    Recommended,
    Removed,
    Scored,
    TextQuery,
    WaitSeconds,
    problems,
)
from crossrec.serve.state import Feedback, NewItem, ServingState, UnknownId
from crossrec.serve.store import EventStore

MEDIA_TYPES = {
    "image": {
        "image/png": [b"\x89PNG"],
        "image/jpeg": [b"\xff\xd8\xff"],
        "image/gif": [b"GIF8"],
        "image/webp": [b"RIFF"],
    },
    "audio": {
        "audio/ogg": [b"OggS"],
        "audio/wav": [b"RIFF"],
        "audio/x-wav": [b"RIFF"],
        "audio/flac": [b"fLaC"],
        "audio/mpeg": [b"ID3", b"\xff\xfb", b"\xff\xf3"],
    },
}


def create_app(
    state: ServingState,
    *,
    api_key: str | None,
    store: EventStore | None = None,
    max_body_bytes: int = 1 << 20,
    max_upload_bytes: int = 8 << 20,
    explainer: Explainer | None = None,
    explain_queue: int = 16,
    explain_wait_s: float = 3.0,
    explain_nice: int = 10,
) -> FastAPI:
    """`api_key=None` turns authentication off: only for local use, and only when asked for. With a
    `store`, every feedback batch and item write is committed to it before it is applied and
    acknowledged, and every request first applies what the log holds beyond the state
    (`ServingState.catch_up`): several servers over one store are replicas that see each other's
    writes, in log order.

    `explainer` writes the explanations (default: the template); one with a language model runs on
    one worker thread behind a queue of `explain_queue` jobs, and a request waits up to
    `explain_wait_s` for its explanations before the template answers; the worker runs `explain_nice`
    below the server's CPU priority. The service is
    `app.state.explanations`: close it when the server stops (it frees the model)."""
    # Bodies that declare a length are refused below (JSON 413, tighter for non-upload bodies);
    # FastAPI's own limit, set above ours, counts the bytes of bodies sent without a length.
    streamed_limit = 2 * (max_upload_bytes + 65536)

    def in_step_with_the_log() -> None:
        if store is not None:
            state.catch_up(store)

    app = FastAPI(
        title="crossrec",
        version="1",
        description=__doc__,
        max_body_size=streamed_limit,
        dependencies=[Depends(in_step_with_the_log)],
    )
    encoders = ContentEncoders(state.bundle)
    registry = CollectorRegistry()
    requests = Counter("crossrec_requests", "HTTP requests", ["endpoint", "status"], registry=registry)
    latency = Histogram("crossrec_request_seconds", "request latency", ["endpoint"], registry=registry)
    index_size = Gauge("crossrec_index_items", "items in the ANN index", registry=registry)
    lag = Gauge(
        "crossrec_feedback_lag_seconds",
        "seconds from a feedback request to its users' refold",
        registry=registry,
    )
    explanations = ExplanationService(
        state,
        explainer if explainer is not None else template_explainer(state),
        queue_size=explain_queue,
        wait_s=explain_wait_s,
        registry=registry,
        nice=explain_nice,
    )
    app.state.explanations = explanations

    @app.middleware("http")
    async def limits_and_metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        declared = request.headers.get("content-length")
        limit = (
            max_upload_bytes + 65536
            if request.headers.get("content-type", "").startswith("multipart/")
            else max_body_bytes
        )
        if (
            api_key is not None
            and request.headers.get("x-api-key") != api_key
            and _writes(app, request, writer)
        ):
            # Before the body is read or parsed: without the key a write learns nothing but 401.
            response: Response = JSONResponse({"detail": NEEDS_KEY}, 401)
        elif declared is not None and (not declared.isdigit() or int(declared) > limit):
            response = JSONResponse({"detail": f"request body over the {limit:,}-byte limit"}, 413)
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        requests.labels(endpoint, str(response.status_code)).inc()
        latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(UnknownId)
    async def not_found(request: Request, exc: UnknownId) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 404)

    @app.exception_handler(CrossrecError)
    async def unusable(request: Request, exc: CrossrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    def writer(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if api_key is not None and x_api_key != api_key:
            raise HTTPException(401, NEEDS_KEY)

    def scored(pairs: list[tuple[int, float]], kind: type[Scored] = Scored) -> list[Any]:
        return [
            kind(
                item_id=state.item_ids[i],
                score=s if np.isfinite(s) else 0.0,
                title=state.items[i].get("title"),
                image=bool(state.items[i].get("image")),
            )
            for i, s in pairs
        ]

    def listed(pairs: list[tuple[int, float]]) -> ItemList:
        return ItemList(items=scored(pairs))

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(
            status="ok", model=state.bundle.label, users=len(state.user_ids), items=len(state.item_ids)
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        index_size.set(len(state.index))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/users/{user_id}/recommendations",
        response_model=Recommendations,
        response_model_exclude_unset=True,
        responses=problems(404, 422),
    )
    def recommendations(
        user_id: str,
        k: Annotated[int, Query(ge=1, le=200)] = 10,
        exclude_seen: bool = True,
        exclude: Annotated[list[str], Query(max_length=200)] = [],  # noqa: B006 (FastAPI query list)
        filter: Annotated[
            list[str], Query(max_length=10, description="field=value, e.g. genres=Comedy")
        ] = [],  # noqa: B006
        explain: Annotated[
            bool, Query(description="add each recommendation's explanation (slower with a language model)")
        ] = False,
        explain_wait_s: WaitSeconds = None,
    ) -> Recommendations:
        where = {}
        for item in filter:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise HTTPException(422, f"filter '{item}' must look like field=value")
            where[name] = value
        pairs = state.recommend(user_id, k, exclude_seen=exclude_seen, exclude_ids=exclude, where=where)
        items: list[Recommended] = scored(pairs, Recommended)
        if explain:
            said = explanations.explain_many(user_id, [r.item_id for r in items], explain_wait_s)
            for item, explanation in zip(items, said, strict=True):
                item.explanation = ExplanationOut.of(explanation)
        return Recommendations(items=items)

    @app.get(
        "/users/{user_id}/recommendations/{item_id}/facts",
        response_model=Facts,
        responses=problems(404, 422),
    )
    def facts(user_id: str, item_id: str) -> dict[str, Any]:
        return recommendation_facts(state, user_id, item_id)

    @app.get(
        "/users/{user_id}/recommendations/{item_id}/explanation",
        response_model=Explained,
        responses=problems(404, 422),
    )
    def explanation(user_id: str, item_id: str, explain_wait_s: WaitSeconds = None) -> Explained:
        """The facts behind recommending the item to the user, and the sentence that explains it."""
        found, said = explanations.explain(user_id, item_id, explain_wait_s)
        return Explained(facts=Facts(**found), explanation=ExplanationOut.of(said))

    @app.get("/items/{item_id}", responses=problems(404, 422))
    def item(item_id: str) -> dict[str, Any]:
        row = dict(state.items[state.item(item_id)])
        row["image"], row["audio"] = bool(row.get("image")), bool(row.get("audio"))  # never a server path
        return row

    @app.get("/items/{item_id}/similar", response_model=ItemList, responses=problems(404, 422))
    def similar(
        item_id: str, k: Annotated[int, Query(ge=1, le=200)] = 10, modality: str | None = None
    ) -> ItemList:
        return listed(state.similar(item_id, k, modality))

    def search_vector(source: str, vectors: dict[str, np.ndarray], target: str | None, k: int) -> ItemList:
        heads = state.bundle.heads
        target = target or source
        query = vectors[source]
        if target != source:
            if heads is None:
                raise HTTPException(
                    422, "cross-modal search needs a bundle with shared-space heads (an align section)"
                )
            shared = f"{target}_shared"
            if shared not in state.features:
                raise HTTPException(422, f"the bundle has no aligned {target} features")
            source_input = np.hstack([vectors[n] for n in _head_inputs(state, source) if n in vectors])
            return listed(state.nearest_by_feature(shared, heads.transform(source, source_input[None])[0], k))
        return listed(state.nearest_by_feature(source, query, k))

    @app.post("/search/text", response_model=ItemList, responses=problems(400, 404, 413, 422))
    def search_text(body: TextQuery) -> ItemList:
        try:
            vectors = encoders.encode("text", body.query)
        except BadInput as exc:
            raise HTTPException(422, f"query: {exc.reason}") from None
        return search_vector("text", vectors, body.target, body.k)

    @app.post("/search/media", response_model=ItemList, responses=problems(400, 404, 413, 415, 422))
    async def search_media(
        file: Annotated[UploadFile, File()],
        modality: Annotated[Literal["image", "audio"], Form()],
        k: Annotated[int, Form(ge=1, le=200)] = 10,
        target: Annotated[str | None, Form()] = None,
    ) -> ItemList:
        path = await _upload(file, modality, max_upload_bytes)
        try:
            vectors = encoders.encode(modality, path)
        except BadInput as exc:
            raise HTTPException(422, _refused(modality, exc, path)) from None
        finally:
            path.unlink(missing_ok=True)
        return search_vector(modality, vectors, target, k)

    @app.post(
        "/feedback",
        response_model=FeedbackAck,
        dependencies=[Depends(writer)],
        responses=problems(400, 401, 404, 413, 422),
    )
    def feedback(batch: FeedbackBatch) -> FeedbackAck:
        started = time.perf_counter()
        events = [Feedback(e.user_id, e.item_id, e.kind, e.value) for e in batch.events]
        for event in events:
            state.item(event.item_id)  # every id checked before anything changes
        if store is not None:  # logged first, then applied in log order with other replicas' writes
            store.append_feedback([LoggedFeedback(e.user_id, e.item_id, e.kind, e.value) for e in events])
            state.catch_up(store)
            touched = {e.user_id for e in events}
        else:
            touched = state.apply_feedback(events)
        lag.set(time.perf_counter() - started)
        return FeedbackAck(accepted=len(events), users=sorted(touched))

    @app.put(
        "/items/{item_id}",
        response_model=ItemAck,
        dependencies=[Depends(writer)],
        responses=problems(400, 401, 413, 415, 422),
    )
    async def put_item(
        item_id: str,
        metadata: Annotated[
            str, Form(max_length=20_000, description="JSON object: title, genres, tags, overview, ...")
        ],
        image: Annotated[UploadFile | None, File()] = None,
        audio: Annotated[UploadFile | None, File()] = None,
    ) -> ItemAck:
        try:
            row = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise HTTPException(422, f"metadata is not JSON: {exc}") from None
        if not isinstance(row, dict) or not all(isinstance(v, str | None) for v in row.values()):
            raise HTTPException(422, "metadata must be a JSON object of text fields (strings)")
        row.pop("image", None), row.pop("audio", None)  # media arrive as uploads, never as paths
        row["id"] = item_id
        vectors: dict[str, np.ndarray | None] = {}
        if "text" in encoders.modalities and (text := encoders.text_of(row)):
            vectors.update(encoders.encode("text", text))
        for modality, upload in (("image", image), ("audio", audio)):
            if upload is None:
                continue
            path = await _upload(upload, modality, max_upload_bytes)
            try:
                vectors.update(encoders.encode(modality, path))
            except BadInput as exc:
                raise HTTPException(422, _refused(modality, exc, path)) from None
            finally:
                path.unlink(missing_ok=True)
            row[modality] = True
        new_item = NewItem(item_id, row, dict(vectors))
        state.check_new_item(new_item)
        if store is not None:
            store.upsert_item(ItemRecord(item_id, row, {k: v for k, v in vectors.items() if v is not None}))
            state.catch_up(store)
            index = state.item_index[item_id]
        else:
            index = state.add_item(new_item)
        index_size.set(len(state.index))
        return ItemAck(item_id=item_id, index=index, modalities=sorted(vectors))

    @app.delete(
        "/items/{item_id}",
        response_model=Removed,
        dependencies=[Depends(writer)],
        responses=problems(401, 404),
    )
    def delete_item(item_id: str) -> Removed:
        """Take an item out of recommendations, similar items and search (logged like any write)."""
        state.item(item_id)  # 404 before anything is logged
        if store is not None:
            store.delete_item(item_id)
            state.catch_up(store)
        else:
            state.remove_item(item_id)
        index_size.set(len(state.index))
        return Removed(item_id=item_id, removed=True)

    add_page(app, state)  # GET / (the web page), /static, GET /users, GET /items/{item_id}/poster
    return app


def _writes(app: FastAPI, request: Request, writer: Callable[..., None]) -> bool:
    """Whether the request goes to a write endpoint (a route that depends on `writer`, the key check)."""
    return any(
        isinstance(route, APIRoute)
        and any(d.dependency is writer for d in route.dependencies)
        and route.matches(request.scope)[0] is Match.FULL
        for route in app.router.routes
    )


def _head_inputs(state: ServingState, modality: str) -> list[str]:
    align = state.bundle.config.align
    return align.inputs.get(modality, [modality]) if align is not None else [modality]


def _refused(modality: str, exc: BadInput, path: Path) -> str:
    """Why an upload cannot be used, without the server's temporary file name in it."""
    return f"{modality} upload: {exc.reason.replace(str(path), 'the upload')}"


async def _upload(file: UploadFile, modality: str, limit: int) -> Path:
    """The upload in a temporary file, after checking its size and that its bytes are what its
    content type claims (a lying or missing type is refused)."""
    types = MEDIA_TYPES[modality]
    declared = (file.content_type or "").split(";")[0].strip().lower()
    if declared not in types:
        raise HTTPException(
            415, f"{modality} upload: content type '{declared}' is not one of {', '.join(types)}"
        )
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"{modality} upload over the {limit:,}-byte limit")
    if not any(data.startswith(magic) for magic in types[declared]):
        raise HTTPException(415, f"{modality} upload: its bytes are not {declared}")
    with tempfile.NamedTemporaryFile(suffix=f".{declared.split('/')[1]}", delete=False) as fh:
        fh.write(data)
    return Path(fh.name)
