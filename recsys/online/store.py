"""The user-state store's one interface: :class:`UserStateStore` ``write`` / ``read`` / ``scan``,
over any Redis-protocol server (the embedded Valkey or the cluster's), with the ``redis`` asyncio
client: one round trip per call (a Lua script for writes, a pipeline for reads), timeouts on every
call, every list and profile capped and every key expiring.

Keys of one entity (``u`` = user, ``s`` = anonymous session) share a hash tag, so a Redis Cluster keeps
them in one slot and the write script stays atomic::

    <prefix>:{u:<id>}:ev     list   "ts|event_type|item_id", oldest first, the last max_events
    <prefix>:{u:<id>}:q      list   recent queries, newest first, the last max_queries
    <prefix>:{u:<id>}:buy    zset   item -> time of the last purchase, the last max_purchases
    <prefix>:{u:<id>}:cart   zset   item -> time of the last cart
    <prefix>:{u:<id>}:cat    zset   category -> decayed interest at time ``ref``, the top max_profile
    <prefix>:{u:<id>}:brand  zset   brand -> decayed interest at time ``ref``
    <prefix>:{u:<id>}:meta   hash   ref, last, country, pw / pm1 / pm2 (decayed price moments)

The profile is decayed to the newest event time ``ref``: ``sum_i w_i * 2^(-(ref - t_i) / half_life)``,
which does not depend on how events were batched or ordered (``recsys.online.batch`` computes the same
numbers from an events table: what the features job joins).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from recsys.online.settings import StoreSettings
from recsys.search.live import LiveContext

MAX_TEXT = 512  # queries / categories / brands longer than this are cut (keys stay bounded)

WRITE_LUA = r"""
local ev, q, buy, cart, cat, brand, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local max_ev, max_q, max_buy, max_prof = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl, hl = tonumber(ARGV[5]), tonumber(ARGV[6])
local country, query, n = ARGV[7], ARGV[8], tonumber(ARGV[9])
local function g(x) return string.format('%.17g', x) end  -- tostring keeps only 14 digits
local ref = tonumber(redis.call('HGET', meta, 'ref') or '-1e300')
local tmax, evs = ref, {}
for i = 1, n do  -- one argument per event: ts, type, item, category, brand, price, weight joined by \31
  local f, j = {}, 1
  for x in string.gmatch(ARGV[9 + i] .. '\31', '([^\31]*)\31') do f[j] = x; j = j + 1 end
  f[1], f[7] = tonumber(f[1]), tonumber(f[7])
  if f[1] > tmax then tmax = f[1] end
  evs[i] = f
end
local function rescale(key, f)
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for j = 1, #all, 2 do redis.call('ZADD', key, tonumber(all[j + 1]) * f, all[j]) end
end
local pw = tonumber(redis.call('HGET', meta, 'pw') or '0')
local pm1 = tonumber(redis.call('HGET', meta, 'pm1') or '0')
local pm2 = tonumber(redis.call('HGET', meta, 'pm2') or '0')
if tmax > ref and ref > -1e299 then
  local f = 2 ^ (-(tmax - ref) / hl)
  rescale(cat, f); rescale(brand, f)
  pw, pm1, pm2 = pw * f, pm1 * f, pm2 * f
end
local pushed = 0
for i = 1, n do
  local f = evs[i]
  local t, typ, item, c, br, price, w = f[1], f[2], f[3], f[4], f[5], f[6], f[7]
  if w > 0 then
    redis.call('RPUSH', ev, g(t) .. '|' .. typ .. '|' .. item)
    pushed = pushed + 1
    local d = w * 2 ^ (-(tmax - t) / hl)
    if c ~= '' then redis.call('ZINCRBY', cat, d, c) end
    if br ~= '' then redis.call('ZINCRBY', brand, d, br) end
    if price ~= '' and tonumber(price) > 0 then
      local lp = math.log(tonumber(price))
      pw, pm1, pm2 = pw + d, pm1 + d * lp, pm2 + d * lp * lp
    end
  end
  if typ == 'buy' then redis.call('ZADD', buy, t, item) end
  if typ == 'cart' then redis.call('ZADD', cart, t, item) end
end
redis.call('LTRIM', ev, -max_ev, -1)
redis.call('ZREMRANGEBYRANK', buy, 0, -(max_buy + 1))
redis.call('ZREMRANGEBYRANK', cart, 0, -(max_buy + 1))
redis.call('ZREMRANGEBYRANK', cat, 0, -(max_prof + 1))
redis.call('ZREMRANGEBYRANK', brand, 0, -(max_prof + 1))
if query ~= '' and max_q > 0 then
  redis.call('LREM', q, 0, query); redis.call('LPUSH', q, query); redis.call('LTRIM', q, 0, max_q - 1)
end
local fields = {'ref', g(tmax), 'pw', g(pw), 'pm1', g(pm1), 'pm2', g(pm2)}
if country ~= '' then table.insert(fields, 'country'); table.insert(fields, country) end
local last = tonumber(redis.call('HGET', meta, 'last') or '-1e300')
if tmax > last then table.insert(fields, 'last'); table.insert(fields, g(tmax)) end
redis.call('HSET', meta, unpack(fields))
for k = 1, 7 do redis.call('EXPIRE', KEYS[k], ttl) end
return pushed
"""

SUFFIXES = ("ev", "q", "buy", "cart", "cat", "brand", "meta")


@dataclass(frozen=True)
class StoreEvent:
    """One interaction with the item attributes the profile needs (from the catalog; '' = unknown)."""

    item_id: str
    event_type: str
    ts: float  # unix seconds
    category: str = ""
    brand: str = ""
    price: float | None = None


@dataclass(frozen=True)
class WriteBatch:
    """One entity's events of one request: ``kind`` "u" (user) or "s" (session)."""

    kind: str
    id: str
    events: tuple[StoreEvent, ...]
    query: str | None = None
    country: str | None = None


@dataclass(frozen=True)
class EntityState:
    """Everything the store holds for one user or session (decayed to its own ``ref`` time)."""

    kind: str  # "u" | "s"
    id: str
    events: tuple[tuple[float, str, str], ...] = ()  # (ts, event_type, item_id), oldest first
    queries: tuple[str, ...] = ()
    purchased: tuple[str, ...] = ()  # oldest purchase first
    carted: tuple[str, ...] = ()
    categories: tuple[tuple[str, float], ...] = ()  # (category, decayed weight at ref), largest first
    brands: tuple[tuple[str, float], ...] = ()
    country: str | None = None
    ref: float | None = None
    last: float | None = None
    price_moments: tuple[float, float, float] = (0.0, 0.0, 0.0)  # decayed (sum w, sum w log p, sum w log^2 p)

    @property
    def empty(self) -> bool:
        return not (self.events or self.queries or self.purchased or self.carted)


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def unix_seconds(ts: Any) -> float:
    """Event time as unix seconds from a number, a datetime or a pandas Timestamp (whole microseconds,
    so the feedback path and the batch path of the same event agree to the bit)."""
    if isinstance(ts, (int, float)):
        return float(ts)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    return int((ts - EPOCH) // dt.timedelta(microseconds=1)) / 1e6


SEP = "\x1f"  # between the fields of one event in the write script's arguments


def clip_text(s: Any) -> str:
    """A bounded text field ('' for None / NaN: pandas' missing values)."""
    return s[:MAX_TEXT] if isinstance(s, str) else ""


def price_band(moments: tuple[float, float, float]) -> tuple[float | None, float | None, float | None]:
    """(low, geometric mean, high) of the decayed log-price distribution: exp(mean -/+ std)."""
    w, m1, m2 = moments
    if w <= 0:
        return None, None, None
    mean = m1 / w
    std = math.sqrt(max(m2 / w - mean * mean, 0.0))
    return math.exp(mean - std), math.exp(mean), math.exp(mean + std)


def _shares(pairs: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    total = sum(w for _, w in pairs)
    if total <= 0:
        return ()
    return tuple(sorted(((k, w / total) for k, w in pairs), key=lambda kv: -kv[1]))


def live_context(states: Sequence[EntityState], s: StoreSettings) -> LiveContext:
    """A user's and / or session's state merged into what the rankers take: events by time, profiles
    summed after decaying both to the newer ``ref`` (the session is usually the same person's newest)."""
    country = next((st.country for st in states if st.country), None)
    states = [st for st in states if not st.empty]
    if not states:
        return LiveContext(policy=s.policy, country=country)
    events = list(dict.fromkeys(e for st in states for e in st.events))  # /feedback writes both: dedupe
    events.sort(key=lambda e: e[0])  # stable: events of one time keep their arrival order
    recent = list(dict.fromkeys(i for _, _, i in reversed(events)))[: s.recent_for_ranking][::-1]
    ref = max(st.ref or -math.inf for st in states)
    cats: dict[str, float] = {}
    brands: dict[str, float] = {}
    moments = [0.0, 0.0, 0.0]
    for st in states:
        f = 2 ** (-(ref - st.ref) / s.half_life_s) if st.ref is not None else 0.0
        for k, w in st.categories:
            cats[k] = cats.get(k, 0.0) + w * f
        for k, w in st.brands:
            brands[k] = brands.get(k, 0.0) + w * f
        for j in range(3):
            moments[j] += st.price_moments[j] * f
    lo, mean, hi = price_band((moments[0], moments[1], moments[2]))
    return LiveContext(
        recent=tuple(recent),
        purchased=tuple(dict.fromkeys(i for st in states for i in st.purchased)),
        carted=tuple(dict.fromkeys(i for st in states for i in st.carted)),
        queries=tuple(dict.fromkeys(q for st in states for q in st.queries)),
        country=country,
        categories=_shares(list(cats.items())),
        brands=_shares(list(brands.items())),
        price_mean=mean,
        price_lo=lo,
        price_hi=hi,
        policy=s.policy,
    )


class UserStateStore:
    """The async client of the store (one per process; the connection pool is shared by requests)."""

    def __init__(self, url: str, settings: StoreSettings, max_connections: int = 64):
        import redis.asyncio as aioredis  # lazy: only processes that talk to the store import it

        self.s, self.url = settings, url
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=settings.timeout_s,
            socket_connect_timeout=settings.connect_timeout_s,
            max_connections=max_connections,
            decode_responses=True,
            retry_on_timeout=False,
        )
        self._write = self.client.register_script(WRITE_LUA)

    def keys(self, kind: str, id: str) -> list[str]:
        return [f"{self.s.key_prefix}:{{{kind}:{id}}}:{sfx}" for sfx in SUFFIXES]

    def _argv(
        self, kind: str, events: Sequence[StoreEvent], query: str | None, country: str | None
    ) -> list[Any]:
        s = self.s
        argv: list[Any] = [
            s.max_events, s.max_queries, s.max_purchases, s.max_profile,
            s.ttl_s if kind == "u" else s.session_ttl_s, s.half_life_s,
            clip_text(country), clip_text(query).strip(), len(events),
        ]  # fmt: skip
        for e in events:
            price = "" if e.price is None or not math.isfinite(e.price) else repr(float(e.price))
            fields = (
                repr(float(e.ts)),
                e.event_type,
                e.item_id,
                clip_text(e.category),
                clip_text(e.brand),
                price,
            )
            argv.append(SEP.join(f.replace(SEP, " ") for f in fields) + SEP + repr(s.weight(e.event_type)))
        return argv

    async def write(
        self,
        kind: str,
        id: str,
        events: Sequence[StoreEvent],
        *,
        query: str | None = None,
        country: str | None = None,
    ) -> int:
        """Apply a batch of one entity's events atomically; returns the interactions recorded. The reply
        comes after the server's fsync (embedded: appendfsync always), so a returned write is durable."""
        return int(await self._write(keys=self.keys(kind, id), args=self._argv(kind, events, query, country)))

    async def write_many(self, batches: Sequence[WriteBatch]) -> int:
        """Several entities' batches in one pipelined round trip (one fsync for all of them)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for b in batches:
                args = self._argv(b.kind, b.events, b.query, b.country)
                await self._write(keys=self.keys(b.kind, b.id), args=args, client=pipe)
            out = await pipe.execute()
        return int(sum(int(x) for x in out))

    async def read(self, *entities: tuple[str, str]) -> list[EntityState]:
        """The states of ``(kind, id)`` entities (empty states for unknown ones), one round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            for kind, id in entities:
                ev, q, buy, cart, cat, brand, meta = self.keys(kind, id)
                pipe.lrange(ev, 0, -1)
                pipe.lrange(q, 0, -1)
                pipe.zrange(buy, 0, -1)
                pipe.zrange(cart, 0, -1)
                pipe.zrange(cat, 0, -1, desc=True, withscores=True)
                pipe.zrange(brand, 0, -1, desc=True, withscores=True)
                pipe.hgetall(meta)
            raw = await pipe.execute()
        return [_state(kind, id, raw[i * 7 : i * 7 + 7]) for i, (kind, id) in enumerate(entities)]

    async def context(self, user_id: str | None, session_id: str | None) -> LiveContext | None:
        """The merged live context of a user and / or session (None: neither given)."""
        entities = [("u", user_id)] if user_id else []
        entities += [("s", session_id)] if session_id else []
        if not entities:
            return None
        ctx = live_context(await self.read(*entities), self.s)
        # nothing live: None, so the request is ranked exactly as from the snapshot (and as offline)
        return None if ctx.empty and ctx.country is None else ctx

    async def scan(self, batch: int = 500) -> AsyncIterator[EntityState]:
        """Every entity in the store (SCAN: never blocks the server), for the Parquet snapshot."""
        pattern = f"{self.s.key_prefix}:{{*}}:meta"
        cursor: int | str = 0
        while True:
            cursor, keys = await self.client.scan(cursor=int(cursor), match=pattern, count=batch)
            ids = []
            for raw in keys:
                k = raw if isinstance(raw, str) else raw.decode()
                tag = k[len(self.s.key_prefix) + 2 : -len("}:meta")]
                kind, _, id = tag.partition(":")
                ids.append((kind, id))
            if ids:
                for st in await self.read(*ids):
                    yield st
            if int(cursor) == 0:
                break

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def aclose(self) -> None:
        await self.client.aclose()


def _state(kind: str, id: str, raw: list[Any]) -> EntityState:
    ev, q, buy, cart, cat, brand, meta = raw
    events = []
    for e in ev:
        ts, typ, item = e.split("|", 2)
        events.append((float(ts), typ, item))
    return EntityState(
        kind=kind,
        id=id,
        events=tuple(events),
        queries=tuple(q),
        purchased=tuple(buy),
        carted=tuple(cart),
        categories=tuple((k, float(w)) for k, w in cat),
        brands=tuple((k, float(w)) for k, w in brand),
        country=meta.get("country"),
        ref=float(meta["ref"]) if "ref" in meta else None,
        last=float(meta["last"]) if "last" in meta else None,
        price_moments=(float(meta.get("pw", 0)), float(meta.get("pm1", 0)), float(meta.get("pm2", 0))),
    )
