"""The live catalog without Ray: changes (upserts, deletes, stock) applied to a tiny index of real Games-6k
titles with the tiny random BERT must rank like an index rebuilt from scratch on the changed catalog;
the change log round-trips through a real embedded Valkey; bad rows name the field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.retrieval.artifacts import IndexArtifacts
from recsys.retrieval.build import item_text, scratch_artifacts
from recsys.retrieval.changes import ChangeError, ItemChange, fold, validate_change, validate_rows
from recsys.retrieval.delta import LiveCatalog, LiveSettings
from recsys.retrieval.sources import canonical_items
from recsys.search.stages import RetrieverCore

N_ITEMS = 250
FIELDS = ["title", "brand", "category"]
QUERIES = ["mario", "zelda", "racing game", "nintendo switch", "call of duty", "playstation controller",
           "fifa soccer", "minecraft", "star wars", "headset", "pokemon", "wireless", "xbox one",
           "final fantasy", "lego", "sonic", "halo", "battery charger", "dance", "puzzle"]  # fmt: skip


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir):
    from recsys.retrieval.encoder import TextEncoder

    return TextEncoder(str(tiny_bert_dir), max_length=32)


@pytest.fixture(scope="module")
def base_items(shared_data) -> pd.DataFrame:
    raw = pd.read_csv(shared_data / "amazon-games-6k/Games-6k.item", sep="\t", nrows=N_ITEMS, dtype=str)
    items = canonical_items(raw.set_axis(["item_id", "title"], axis=1), "Games-6k.item")
    return items.assign(popularity=np.arange(N_ITEMS, dtype=np.float64) % 7)


def build(items: pd.DataFrame, encoder, path) -> IndexArtifacts:
    """An index version built from scratch, in process (what the index job writes, minus Ray)."""
    emb = encoder.encode(item_text(items, FIELDS), kind="item")
    return scratch_artifacts(items, emb, FIELDS, path, {"version": "v", "model": {"sha256": "tiny"}})


def changes_for(items: pd.DataFrame) -> list[ItemChange]:
    """10 new items, 5 renamed / repriced, 5 deleted, 2 out of stock (4% of the catalog changed)."""
    ids = items["item_id"].tolist()
    out = [ItemChange("upsert", f"new{i}", title=t, brand="Acme", category="Games", price=20.0 + i, stock=5)
           for i, t in enumerate(["Mario Kart Live Racing", "Zelda Breath of the Wild Deluxe", "Wireless Headset Pro",
                                  "Pokemon Crystal Remaster", "Minecraft Dungeons Ultimate", "Sonic Racing Turbo",
                                  "Halo Infinite Steelbook", "FIFA Soccer Legends", "Lego Star Wars Saga",
                                  "Puzzle Quest Chronicles"])]  # fmt: skip
    for i in range(5):
        out.append(ItemChange("upsert", ids[i], title=f"{items['title'][i]} Remastered Edition", price=9.99))
    out += [ItemChange("delete", ids[10 + i]) for i in range(5)]
    out += [ItemChange("upsert", ids[20 + i], title=str(items["title"][20 + i]), stock=0) for i in range(2)]
    return [ItemChange(**{**c.__dict__, "seq": s + 1}) for s, c in enumerate(out)]


def retriever(a: IndexArtifacts, encoder) -> RetrieverCore:
    return RetrieverCore(a, encoder, ann_top_n=50, bm25_top_n=50, ann_weight=1.0, bm25_weight=1.0, rrf_k=60)


def top10(core: RetrieverCore, q: str, filters: dict | None = None) -> list[str]:
    return [c["item_id"] for c in core.retrieve(q, filters or {}, 10)]


@pytest.fixture(scope="module")
def both(base_items, encoder, tmp_path_factory):
    """(live: base + changes applied incrementally, scratch: rebuilt from the folded catalog)."""
    changes = changes_for(base_items)
    base = build(base_items, encoder, tmp_path_factory.mktemp("base"))
    live = LiveCatalog(base, LiveSettings(out_of_stock="filter", bm25_fields=tuple(FIELDS)))
    texts = {c.item_id: item_text(pd.DataFrame([{**c.record()}]), ["title", "brand", "category"])[0]
             for c in changes if c.op == "upsert"}  # fmt: skip
    for lo in range(0, len(changes), 7):  # in several batches, like replicas syncing between requests
        batch = changes[lo : lo + 7]
        vecs = [
            encoder.encode([texts[c.item_id]], kind="item")[0] if c.op == "upsert" else None for c in batch
        ]
        snap = live.apply(batch, vecs)
    scratch_items = fold(base_items, changes)
    scratch = build(scratch_items, encoder, tmp_path_factory.mktemp("scratch"))
    scratch_live = LiveCatalog(
        scratch, LiveSettings(out_of_stock="filter", bm25_fields=tuple(FIELDS))
    ).snapshot()
    return snap, scratch_live, changes


def test_incremental_equals_scratch_top10(both, encoder):
    live, scratch, _ = both
    a, b = retriever(live, encoder), retriever(scratch, encoder)
    agree = [top10(a, q) == top10(b, q) for q in QUERIES]
    assert all(agree), [q for q, ok in zip(QUERIES, agree) if not ok]
    assert top10(a, "racing", {"brand": "Acme"}) == top10(b, "racing", {"brand": "Acme"})
    assert a.suggest("lego st", 5) == b.suggest("lego st", 5)


def test_deleted_replaced_and_out_of_stock_items_never_return(both, encoder, base_items):
    live, _, changes = both
    core = retriever(live, encoder)
    gone = {c.item_id for c in changes if c.op == "delete"} | {c.item_id for c in changes if c.stock == 0}
    seen = {i for q in QUERIES for i in top10(core, q)}
    assert not seen & gone
    for c in changes:
        if c.op == "delete":
            title = str(base_items.loc[base_items["item_id"] == c.item_id, "title"].iloc[0])
            assert c.item_id not in top10(core, title) and c.item_id not in live.row_of
    renamed = changes[10]
    hits = core.retrieve(renamed.title or "", {}, 5)
    assert (
        hits[0]["item_id"] == renamed.item_id and hits[0]["text"] == renamed.title
    )  # one row, the new title
    assert live.items.iloc[live.row_of[renamed.item_id]]["price"] == 9.99
    assert "new0" in top10(core, "Mario Kart Live Racing")[:3]  # a new item is found by its title
    assert core.suggest("mario kart live", 3)[0]["text"] == "Mario Kart Live Racing"


def test_out_of_stock_demote_keeps_the_item_but_penalises_it(base_items, encoder, tmp_path):
    base = build(base_items.head(60), encoder, tmp_path)
    oos = ItemChange(
        "upsert", str(base_items["item_id"][3]), title=str(base_items["title"][3]), stock=0, seq=1
    )
    vec = encoder.encode([oos.title or ""], kind="item")[0]
    demoted = LiveCatalog(base, LiveSettings(out_of_stock="demote", demote=0.5)).apply([oos], [vec])
    shown = retriever(demoted, encoder).retrieve(oos.title or "", {}, 5)
    assert shown[0]["item_id"] == oos.item_id and demoted.demoted[demoted.row_of[oos.item_id]] == 0.5
    filtered = LiveCatalog(base, LiveSettings(out_of_stock="filter")).apply([oos], [vec])
    assert oos.item_id not in top10(retriever(filtered, encoder), oos.title or "")


def test_bad_rows_name_the_field():
    with pytest.raises(ChangeError, match="title"):
        validate_change(0, {"item_id": "a"})
    with pytest.raises(ChangeError, match="price"):
        validate_change(3, {"item_id": "a", "title": "t", "price": -1})
    with pytest.raises(ChangeError, match="stock"):
        validate_change(0, {"item_id": "a", "title": "t", "stock": 1.5})
    with pytest.raises(ChangeError, match="item_id"):
        validate_change(0, {"item_id": "a b", "title": "t"})
    ok, bad = validate_rows(
        [{"item_id": "a", "title": "t"}, {"op": "drop", "item_id": "b"}, {"op": "delete", "item_id": "c"}]
    )
    assert [c.item_id for c in ok] == ["a", "c"] and bad == [
        (1, "op", "must be upsert or delete, got 'drop'")
    ]


def test_the_change_log_round_trips_through_valkey(tmp_path, base_items, encoder):
    from recsys.online.catalog import CatalogFollower, CatalogLog
    from recsys.online.server import EmbeddedServer

    srv = EmbeddedServer(tmp_path / "valkey")
    srv.start()
    try:
        base = build(base_items.head(40), encoder, tmp_path)
        log = CatalogLog(srv.url, "t")
        up = ItemChange("upsert", "fresh", title="Brand New Racing Wheel", price=99.0, stock=3)
        vec = encoder.encode([up.title or ""], kind="item")[0]
        assert log.append([up], [{"tiny": vec}]) == (1, 1)
        assert log.append([ItemChange("delete", str(base_items["item_id"][0]))], [{}]) == (2, 2)
        follower = CatalogFollower(base, lambda: srv.url, "t")
        snap = follower.sync()
        assert snap is not None and snap.catalog_seq == 2 and follower.sync() is None  # nothing new: one GET
        assert "fresh" in snap.row_of and str(base_items["item_id"][0]) not in snap.row_of
        assert np.allclose(snap.embeddings[snap.row_of["fresh"]], vec)
        srv.kill()  # the store down: the replica keeps serving what it applied
        assert follower.sync() is None and follower.errors == 1
    finally:
        srv.stop()


@pytest.mark.slow
def test_catalog_job_then_the_index_job_folds_the_log(ray_session, tiny_bert_dir, project_root, tmp_path):
    """The index job (tiny config, tiny BERT) -> the catalog job on its tiny config appends the fixture's changes
    to a change log -> the live catalog over v1 following that log ranks like v2, which the index job built
    from scratch folding the same log (same top-10 on the fixed query set)."""
    from recsys.cli.entry import parse_job, run_parsed
    from recsys.online.catalog import CatalogFollower
    from recsys.retrieval.encoder import TextEncoder

    root, store = tmp_path / "index", tmp_path / "store"
    base = [f"output_dir={root}", f"embed.model.name_or_path={tiny_bert_dir}", "max_items=120"]
    run_parsed(*parse_job("index", str(project_root / "configs/index/tiny.yaml"), [*base, "version=v1"]))
    spec, cfg = parse_job(
        "catalog",
        str(project_root / "configs/catalog/tiny.yaml"),
        [f"output_dir={tmp_path / 'catalog'}", f"index={root}", f"log.dir={store}"],
    )
    rep = run_parsed(spec, cfg)
    assert rep["counts"] == {"rows": 7, "applied": 7, "upserts": 5, "deletes": 2, "first_seq": 1, "last_seq": 7,
                             "rejected": 0}  # fmt: skip
    v2 = [*base, "version=v2", f"changes={{log: {{dir: {store}}}}}"]
    run_parsed(*parse_job("index", str(project_root / "configs/index/tiny.yaml"), v2))
    scratch = IndexArtifacts.load(root, "v2")
    assert (
        scratch.manifest["catalog_seq"] == 7 and "new-kart-1" in scratch.row_of and "2" not in scratch.row_of
    )
    from recsys.online.server import EmbeddedServer

    srv = EmbeddedServer(store)
    srv.start()
    try:
        follower = CatalogFollower(IndexArtifacts.load(root, "v1"), lambda: srv.url, "rs")
        live = follower.sync()
        assert live is not None and live.catalog_seq == 7
        assert CatalogFollower(scratch, lambda: srv.url, "rs").sync() is None  # v2 folded it all already
    finally:
        srv.stop()
    enc = TextEncoder(str(tiny_bert_dir), max_length=32)
    a = retriever(live, enc)
    b = retriever(LiveCatalog(scratch).snapshot(), enc)
    assert [top10(a, q) for q in QUERIES] == [top10(b, q) for q in QUERIES]
    assert "3" not in {i for q in QUERIES for i in top10(a, q)}  # out of stock: filtered
    assert top10(a, "Mario Kart Live Home Circuit")[:3].count("new-kart-1") == 1


def test_the_ingress_catalog_service_checks_the_token_validates_and_logs(tmp_path, base_items, encoder):
    """CatalogService (what /catalog/* run): 401 logic, 422 naming the row's field, upsert -> searchable, delete ->
    gone, through a real embedded Valkey and a replica's follower."""
    import asyncio
    import hashlib

    from recsys.online.catalog import CatalogFollower
    from recsys.online.server import EmbeddedServer
    from recsys.search.pipeline import InProcess
    from recsys.serving.catalog import CatalogService
    from recsys.serving.specs import IngressSettings

    base = build(base_items.head(80), encoder, tmp_path)

    class Retriever:  # the Retriever deployment's embed_items, over this index's encoder
        def embed_items(self, ids: list[str], texts: list[str]) -> dict:
            return {"model": "tiny", "vectors": encoder.encode(texts, kind="item"), "reused": 0}

    srv = EmbeddedServer(tmp_path / "valkey")
    url = srv.start()
    try:
        settings = IngressSettings(
            {"A": 1.0}, "s", None, None, 10_000, None, hashlib.sha256(b"tok").hexdigest(), 10
        )

        async def url_source() -> str:
            return url

        async def invoke(method, *args):
            return await method.remote(*args)

        svc = CatalogService(settings, {"A": InProcess(Retriever())}, url_source, "c", invoke)
        assert svc.authorized("Bearer tok") and not svc.authorized("Bearer nope") and not svc.authorized(None)
        assert not svc.authorized("tok")  # not a bearer header
        with pytest.raises(ChangeError) as bad:
            asyncio.run(svc.upsert([{"item_id": "x", "title": "ok"}, {"item_id": "y", "title": " "}]))
        assert (bad.value.row, bad.value.field) == (1, "title")
        item = {"item_id": "sku-9", "title": "Zeppelin Racing Simulator", "brand": "Acme", "stock": 4}
        assert asyncio.run(svc.upsert([item])) == {
            "accepted": 1,
            "first_seq": 1,
            "last_seq": 1,
            "reused_vectors": 0,
        }
        follower = CatalogFollower(base, lambda: url, "c")
        core = retriever(follower.sync(), encoder)
        assert top10(core, "zeppelin racing")[0] == "sku-9"
        assert asyncio.run(svc.delete(["sku-9"]))["last_seq"] == 2
        core = core.with_artifacts(follower.sync())
        assert "sku-9" not in top10(core, "zeppelin racing") and not core.suggest("zeppelin", 3)
    finally:
        srv.stop()
