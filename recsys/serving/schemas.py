"""HTTP request / response bodies. Every field is bounded, so bad input is a 4xx naming the field."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recsys.search import pipeline as search
from recsys.search.live import LiveContext

MAX_K = 100
MAX_PAGE = 20
MAX_QUERY_CHARS = 512
MAX_ID_CHARS = 128
MAX_RECENT_ITEMS = 200
MAX_FEEDBACK_EVENTS = 1000

Id = Field(min_length=1, max_length=MAX_ID_CHARS)
# user / session ids key the online store: printable, no whitespace or control characters
ID_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"


def _entity_id(description: str, required: bool = False) -> Any:
    return Field(
        ... if required else None,
        min_length=1,
        max_length=MAX_ID_CHARS,
        pattern=ID_PATTERN,
        description=f"{description} At most {MAX_ID_CHARS} characters, no spaces or control characters.",
    )


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(Strict):
    """Applied before truncation; only filters whose column the catalog has are accepted."""

    category: str | list[str] | None = Field(
        None, description="Category name (or any of several), case-insensitive."
    )
    brand: str | list[str] | None = Field(
        None, description="Brand name (or any of several), case-insensitive."
    )
    price_min: float | None = Field(None, ge=0, description="Lowest price, inclusive.")
    price_max: float | None = Field(None, ge=0, description="Highest price, inclusive.")

    @model_validator(mode="after")
    def _range(self) -> Filters:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min must be <= price_max")
        return self


class SearchRequest(Strict):
    query: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS, description="What the shopper typed.")
    user_id: str | None = _entity_id("Personalises and picks the A/B arm.")
    session_id: str | None = _entity_id("Anonymous session: its live events personalise too.")
    country: str | None = Field(
        None, min_length=1, max_length=64, description="Overrides the user's known country."
    )
    k: int = Field(10, ge=1, le=MAX_K, description="Results per page.")
    page: int = Field(0, ge=0, le=MAX_PAGE, description="0-based page.")
    filters: Filters = Field(default_factory=Filters, description="Category / brand / price range.")
    exact: bool = Field(
        False, description="true: search the query exactly as typed (no spelling / unit / synonym rewriting)."
    )
    explain: bool = Field(False, description="Every item carries `reasons`: score components and why.")

    @field_validator("query")
    @classmethod
    def _query_text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must contain non-space characters")
        return v

    def to_search(self, live: LiveContext | None = None) -> search.SearchRequest:
        """The pipeline's request (``recsys.search``): what the Ingress and the benchmark rank."""
        return search.SearchRequest(
            query=self.query,
            user_id=self.user_id,
            country=self.country,
            filters=self.filters.model_dump(),
            page=self.page,
            k=self.k,
            exact=self.exact,
            live=live,
            explain=self.explain,
        )


class RecommendRequest(Strict):
    user_id: str | None = _entity_id("Known user (history, country, live events).")
    session_id: str | None = _entity_id("Anonymous session: its live events are the history of a cold user.")
    item_ids: list[str] = Field(
        default_factory=list,
        max_length=MAX_RECENT_ITEMS,
        description="Recent item ids, oldest first (added to the user's history).",
    )
    country: str | None = Field(
        None, min_length=1, max_length=64, description="Country for cold-start popularity."
    )
    k: int = Field(10, ge=1, le=MAX_K, description="Number of recommendations.")
    exclude_purchased: bool = Field(True, description="Drop items the user already bought.")
    explain: bool = Field(False, description="Every item carries `reasons`: score components and why.")

    @field_validator("item_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        if any(not i or len(i) > MAX_ID_CHARS for i in v):
            raise ValueError(f"item_ids must be non-empty strings of at most {MAX_ID_CHARS} characters")
        return v


class FeedbackEvent(Strict):
    item_id: str = Id
    event_type: Literal["impression", "click", "cart", "buy"] = Field(
        ..., description="What happened to the item."
    )
    position: int | None = Field(None, ge=0, le=10_000, description="0-based rank at which it was shown.")
    price: float | None = Field(None, ge=0, description="Unit price (buys).")
    quantity: int | None = Field(None, ge=1, le=10_000, description="Units (carts / buys).")
    timestamp: dt.datetime | None = Field(None, description="When (ISO 8601); default: time received.")
    policy_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Impressions: the served item's `policy_id` (logged as is).",
    )
    propensity: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Impressions: the served item's `propensity` (P(this item at this position)), for "
        "off-policy evaluation and unbiased learning to rank.",
    )


class FeedbackRequest(Strict):
    user_id: str = _entity_id("Who acted (keys the online store).", required=True)
    arm: str | None = Field(
        None, min_length=1, max_length=64, description="A/B arm the results came from (default: the user's)."
    )
    session_id: str | None = _entity_id("Anonymous session (its own live state).")
    query: str | None = Field(
        None, max_length=MAX_QUERY_CHARS, description="The search that produced the results."
    )
    request_id: str | None = Field(
        None, max_length=MAX_ID_CHARS, description="request_id of the search / recommend response."
    )
    country: str | None = Field(None, min_length=1, max_length=64)
    events: list[FeedbackEvent] = Field(..., min_length=1, max_length=MAX_FEEDBACK_EVENTS)


class Item(BaseModel):
    item_id: str
    title: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    score: float
    position: int
    policy_id: str | None = Field(None, description="The arm's serving policy; send it back with /feedback.")
    propensity: float | None = Field(
        None, description="P(the policy shows this item at this position); send it back with /feedback."
    )
    reasons: dict[str, Any] | None = Field(
        None, description="explain=true: `components` (summing to score), `text`, retrieval detail."
    )


class RuleFired(BaseModel):
    rule: str = Field(..., description="The rule's name in the rules file.")
    action: Literal["filter", "boost", "bury", "pin"]
    items: list[str] = Field(
        ..., description="Items it removed (filter), moved (boost / bury) or placed (pin)."
    )
    skipped: str | None = Field(
        None, description="Why this action did nothing (e.g. a pin to a missing product)."
    )


class SearchResponse(BaseModel):
    request_id: str
    arm: str
    version: str
    query: str
    page: int
    k: int
    cold_start: bool
    items: list[Item]
    rewritten_query: str | None = Field(
        None,
        description='What was searched for when query understanding changed the query ("showing results for").',
    )
    query_changes: list[str] = Field(
        default_factory=list, description="Each rewrite made, e.g. spelling: a -> b."
    )
    degraded: bool = Field(False, description="The online store did not answer: snapshot features only.")
    rules_fired: list[RuleFired] = Field(
        default_factory=list, description="Merchandising rules whose trigger matched, and what each did."
    )


class RecommendResponse(BaseModel):
    request_id: str
    arm: str
    version: str
    cold_start: bool
    strategy: str
    unknown_items: list[str]
    items: list[Item]
    degraded: bool = Field(False, description="The online store did not answer: snapshot features only.")


class Suggestion(BaseModel):
    text: str
    score: float
    corrected: bool
    personal: bool = Field(False, description="One of the user's / session's recent queries.")


class SuggestResponse(BaseModel):
    arm: str
    q: str
    suggestions: list[Suggestion]
    degraded: bool = False


class FeedbackResponse(BaseModel):
    accepted: int
    arm: str
    live: int = Field(0, description="Interactions recorded in the online store (durable when returned).")
    degraded: bool = Field(
        False, description="The online store did not answer: events kept for the batch only."
    )


class ErrorResponse(BaseModel):
    error: str
    field: str | None = None
    message: str
    errors: list[dict[str, Any]] | None = None


# --- the live catalog (docs/ONLINE.md, "Live catalog") -----------------------------------------------
MAX_CATALOG_ITEMS = 10_000  # hard cap; the serve config's catalog.max_items is the limit enforced


class CatalogItem(Strict):
    """One item, whole (an upsert replaces every field; fields left out become unknown)."""

    item_id: str = _entity_id("The item's id (new or known).", required=True)
    title: str = Field(..., min_length=1, max_length=1000, description="Indexed and embedded.")
    category: str | None = Field(None, min_length=1, max_length=1000)
    brand: str | None = Field(None, min_length=1, max_length=1000)
    price: float | None = Field(None, ge=0, allow_inf_nan=False)
    stock: int | None = Field(
        None, ge=0, description="Units in stock; 0 = out of stock (catalog.out_of_stock)."
    )


class CatalogUpsertRequest(Strict):
    items: list[CatalogItem] = Field(..., min_length=1, max_length=MAX_CATALOG_ITEMS)


class CatalogDeleteRequest(Strict):
    item_ids: list[str] = Field(..., min_length=1, max_length=MAX_CATALOG_ITEMS)

    @field_validator("item_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        import re

        for i, x in enumerate(v):
            if not (1 <= len(x) <= MAX_ID_CHARS) or not re.match(ID_PATTERN, x):
                raise ValueError(
                    f"item_ids[{i}]: 1-{MAX_ID_CHARS} characters, no spaces or control characters"
                )
        return v


class CatalogResponse(BaseModel):
    accepted: int  # changes appended to the log (acknowledged = durable, visible to the next request)
    first_seq: int
    last_seq: int  # the log position of the last change: /healthz shows each replica's applied seq
    reused_vectors: int = 0  # upserts whose text was unchanged: the served vector was kept, nothing embedded


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of an endpoint that reads its body itself (after checking a token)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:  # no $defs in an openapi_extra: the document has its own components
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}
