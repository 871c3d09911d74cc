"""The HTTP API's wire schema: the request and response bodies, the 4xx each route declares, and
the shared query parameters, so the OpenAPI schema (and the fuzz test that reads it) says exactly
what the routes in `app.py` accept and answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from crossrec.llm.explain import Explanation


class Problem(BaseModel):
    """Every 4xx: the reason as text (FastAPI's own 422s: the list of validation errors)."""

    detail: str | list[Any]


_WHY = {
    400: "the body could not be parsed",
    401: "the API key is missing or wrong (X-API-Key header)",
    404: "an unknown user id, item id or modality, named",
    413: "request body or upload over the limit",
    415: "an upload's content type is missing, not accepted, or not what its bytes are",
    422: "unusable input, with the reason",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the 4xx it can answer, so the OpenAPI schema declares them."""
    return {code: {"model": Problem, "description": _WHY[code]} for code in codes}


NEEDS_KEY = "this endpoint needs the API key in the X-API-Key header"
WaitSeconds = Annotated[
    float | None,
    Query(
        ge=0,
        le=60,
        description="seconds to wait for a language model's explanation before the template answers "
        "(default: the server's, `crossrec serve --explain-wait`)",
    ),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scored(BaseModel):
    item_id: str
    score: float
    title: str | None = None
    image: bool = False


class ItemList(BaseModel):
    items: list[Scored]


class ExplanationOut(BaseModel):
    """A recommendation in a sentence, every title, genre and tag in it rendered from the facts."""

    text: str
    source: Literal["llm", "cache", "template"] = Field(
        description="who wrote it: the language model now, its cached answer, or the template"
    )
    cites: list[str] = Field(description="the ids of the facts the sentence names (G1, T1, L1, P)")
    reason: str | None = Field(
        None, description="why the template was sent: 'queue full', 'still generating', a model failure"
    )

    @classmethod
    def of(cls, explanation: Explanation) -> ExplanationOut:
        return cls(
            text=explanation.text,
            source=explanation.source,
            cites=list(explanation.cites),
            reason=explanation.reason,
        )


class Recommended(Scored):
    explanation: ExplanationOut | None = Field(None, description="only with explain=true")


class Recommendations(BaseModel):
    items: list[Recommended]


class FeedbackEvent(Body):
    user_id: str = Field(min_length=1, max_length=200)
    item_id: str = Field(min_length=1, max_length=200)
    kind: Literal["click", "rating", "play"] = "click"
    value: float = Field(1.0, ge=-1e6, le=1e6)


class FeedbackBatch(Body):
    events: list[FeedbackEvent] = Field(min_length=1, max_length=1000)


class FeedbackAck(BaseModel):
    accepted: int
    users: list[str]


class TextQuery(Body):
    query: str = Field(min_length=1, max_length=2000)
    k: int = Field(10, ge=1, le=200)
    target: str | None = None  # a modality to search in (default: the query's own)


class ItemAck(BaseModel):
    item_id: str
    index: int
    modalities: list[str]


class Removed(BaseModel):
    item_id: str
    removed: bool


class Health(BaseModel):
    status: str
    model: str
    users: int
    items: int


class Facts(BaseModel):
    model_config = ConfigDict(extra="allow")
    user_id: str
    item_id: str


class Explained(BaseModel):
    facts: Facts
    explanation: ExplanationOut
