"""HTTP boundary of the query API: pydantic models for requests and responses.

Request models are built per app from `ServeConfig` (query length, largest k) and the profiles the
loaded service offers, so the OpenAPI document at /openapi.json states the real limits and a
client (or a fuzzer) can see exactly what is accepted. Unknown fields are rejected (extra=forbid).
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator,
                      model_validator)

from funnel.api.service import Hit
from funnel.core.config import ServeConfig


# JSON Schema patterns are ECMAScript regular expressions: their \s is this set, narrower than Python's
# str.isspace (which also counts U+0085 and U+001C..U+001F). Blank means what the documented pattern "\S"
# says, so every query the schema allows is accepted.
_ECMA_NOT_SPACE = re.compile("[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]")


MAX_ID_CHARS = 128  # a user or item id; MovieLens ids are a few digits


def _not_blank(value: str) -> str:
    if not _ECMA_NOT_SPACE.search(value):
        raise ValueError("query is empty (only whitespace); send at least one word")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("query is not valid Unicode (a lone surrogate code point)") from None
    return value


def search_request_model(serve: ServeConfig, profiles: tuple[str, ...], default_profile: str) -> type[BaseModel]:
    """The body of POST /search and the query string of GET /search (same fields, same limits)."""
    profile_type = Literal[profiles]  # type: ignore[valid-type]
    fields: dict[str, Any] = {
        "q": (str, Field(min_length=1, max_length=serve.max_query_chars,
                         # documented for clients and fuzzers; the validator below gives the message
                         json_schema_extra={"pattern": r"\S"},
                         description=f"the query text, 1 to {serve.max_query_chars} characters, "
                                     "not only whitespace")),
        "k": (int, Field(default=serve.default_k, ge=1, le=serve.max_k,
                         description=f"results wanted, 1 to {serve.max_k}")),
        "profile": (profile_type, Field(default=default_profile,
                                        description="ranking profile: " + ", ".join(profiles))),
        "explain": (bool, Field(default=False, description="include each stage's ranking and the features")),
    }
    return create_model(
        "SearchRequest",
        __config__=ConfigDict(extra="forbid", str_strip_whitespace=False),
        __validators__={"q_not_blank": field_validator("q")(classmethod(lambda cls, v: _not_blank(v)))},
        **fields,
    )


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # JSON true is no integer (JSON Schema), though Python's int would take it
        raise ValueError("expected an id (a string or an integer), not true/false")
    return value


# An id as the log spells it: MovieLens ids are numbers, so a JSON integer (1000 or 1000.0, both integers in
# JSON Schema) is taken as its decimal text.
ItemId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)] | Annotated[int, BeforeValidator(_not_bool)]


def _id_text(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def recommend_models(max_k: int, default_k: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """The query string of GET /recommend (a known user) and the body of POST /recommend (a history,
    optionally with a user id), with k limited by ``rec.max_k``."""
    common: dict[str, Any] = {
        "k": (int, Field(default=default_k, ge=1, le=max_k, description=f"items wanted, 1 to {max_k}")),
        "explain": (bool, Field(default=False, description="include every stage's items and the rerank trace")),
    }
    get_model = create_model(
        "RecommendQuery", __config__=ConfigDict(extra="forbid"),
        user=(str, Field(min_length=1, max_length=MAX_ID_CHARS, description="a user id of the interaction log")),
        **common)

    class _Body(BaseModel):
        # "user or history" stated in the schema too, so clients and fuzzers know {} is refused
        model_config = ConfigDict(extra="forbid",
                                  json_schema_extra={"anyOf": [{"required": ["user"]}, {"required": ["history"]}]})

        @field_validator("user", "history", mode="after", check_fields=False)
        @classmethod
        def _as_text(cls, v):
            return [str(i) for i in v] if isinstance(v, list) else _id_text(v)

        @model_validator(mode="after")
        def _user_or_history(self):
            if self.user is None and self.history is None:
                raise ValueError("send a history (item ids, oldest first), a known user, or both")
            return self

    # user and history default to None but are not nullable: an explicit null is a 422 like any bad value
    post_model = create_model(
        "RecommendBody", __base__=_Body,
        user=(ItemId, Field(default=None, description="a user id: with no history, that known user's history "
                            "from the log is used; with a history it only labels the answer (cold start)")),
        history=(list[ItemId], Field(default=None, min_length=1, description=(
            "item ids the user interacted with, oldest first (at least one, each a known item); omit it to "
            "serve a known `user` from the log"))),
        **common)
    return get_model, post_model


class RecItem(BaseModel):
    rank: int
    item_id: str
    title: str
    genres: list[str]
    score: float | None = Field(description="the fine stage's score; null for a pinned item that never reached it")


class RecommendResponse(BaseModel):
    user: str | None = Field(description="the user id asked for (null for an anonymous history)")
    k: int
    took_ms: float = Field(description="server time of the whole request")
    items: list[RecItem] = Field(description="the items to show, best first (never one of the history)")
    ms: dict[str, float] = Field(description="milliseconds per stage: recall, coarse, fine, rerank")
    stages: dict[str, list[str]] | None = Field(
        default=None, description="each stage's candidates (item ids, best first), in stage order (explain=true)")
    trace: list[Any] | None = Field(default=None, description="the rerank rules' decisions (explain=true)")


class StageRow(BaseModel):
    rank: int
    doc_id: str
    score: float
    prev_rank: int | None = Field(description="rank in the previous stage; null for the first stage or a newcomer")


class StageTable(BaseModel):
    stage: str
    ms: float
    n_candidates: int
    rows: list[StageRow]


class SearchResponse(BaseModel):
    query: str
    k: int
    profile: str
    took_ms: float
    hits: list[Hit]  # funnel.api.service.Hit, the one definition: pydantic validates and documents a dataclass like a model
    stages: list[StageTable] | None = Field(default=None, description="per-stage rankings (explain=true)")
    features: dict[str, list[float | None]] | None = Field(
        default=None, description="feature name -> value for each hit, in hit order; null where undefined "
                                  "(explain=true)")


class Link(BaseModel):
    url: str
    anchor: str


class DocResponse(BaseModel):
    doc_id: str
    url: str | None
    title: str
    text: str
    source: str
    fetched_at: float | None
    outlinks: list[Link]
    meta: dict[str, Any]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    docs: int
    index_generation: int | None = Field(description="the index generation being served (a newly published one "
                                                      "is swapped in within serve.reload_check_s)")
    profiles: list[str]
    stages: list[str] = Field(description="the stages of the default profile, in order")
    pipeline: bool = Field(description="true when a trained stage beyond BM25 recall is loaded")
    recommend: bool = Field(default=False, description="true when a fitted recommendation funnel is loaded "
                                                       "(GET and POST /recommend answer)")
    uptime_s: float


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong, in one sentence")
    detail: list[dict[str, Any]] | None = Field(default=None, description="one entry per invalid field")
