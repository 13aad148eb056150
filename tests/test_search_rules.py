# ruff: noqa: E501  (the tables of rules and items read best one per line)
"""Merchandising rules (recsys.search.rules) without Ray: every rule kind applied to one fixed response
(exact expected order), the k contract's edge cases, validation errors naming the rule and the field,
the pipeline stage (pins retrieval missed, pages, the response cache) and a hot reload under
concurrent requests with zero failures."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from recsys.search import InProcess, RerankSettings, SearchPipeline, SearchRequest, SearchResult
from recsys.search.rules import CatalogInfo, RulesError, RuleSet, RulesSource, normalize_query

ROOT = Path(__file__).parents[1]

# the fixed response: best first, scores 6..1
# fmt: off
RESPONSE = [
    {"item_id": "a", "title": "Cordless Drill 18V", "brand": "Acme", "category": "Tools", "price": 99.0, "in_stock": True, "score": 6.0},
    {"item_id": "b", "title": "Drill Bit Set", "brand": "Bolt", "category": "Tools", "price": 15.0, "in_stock": False, "score": 5.0},
    {"item_id": "c", "title": "Hammer Drill", "brand": "Acme", "category": "Tools", "price": 149.0, "in_stock": True, "score": 4.0},
    {"item_id": "d", "title": "Safety Glasses", "brand": "Clear", "category": "Safety", "price": 9.0, "in_stock": True, "score": 3.0},
    {"item_id": "e", "title": "Drill Case", "brand": "Bolt", "category": "Storage", "price": None, "in_stock": None, "score": 2.0},
    {"item_id": "f", "title": "Work Gloves", "brand": "Clear", "category": "Safety", "price": 12.0, "in_stock": True, "score": 1.0},
]
# fmt: on


def _apply(rules_yaml: str, query: str = "cordless drill", category=None, items=RESPONSE, fetched=()):
    rs = RuleSet.from_text(rules_yaml)
    out, fired = rs.apply([dict(i) for i in items], [query], category, set(fetched))
    ids = [i["item_id"] for i in out]
    assert len(ids) == len(set(ids)), "a rule duplicated an item"
    return ids, fired, out


# fmt: off
CASES = [
    # (id, rules, query, request category, expected order, expected rules_fired (rule, action, items, skipped?))
    ("no rule matches", "rules: [{name: r, when: {query: {exact: hammer}}, boost: [{items: {brand: Clear}, amount: 9}]}]",
     "drill", None, list("abcdef"), []),
    ("boost by brand (exact query)", "rules: [{name: r, when: {query: {exact: 'Cordless  DRILL'}}, boost: [{items: {brand: clear}, amount: 2.5}]}]",
     "cordless drill", None, list("adbcfe"), [("r", "boost", ["d", "f"], None)]),
    ("bury by item id (contains, whole words)", "rules: [{name: r, when: {query: {contains: drill}}, bury: [{items: {item_ids: [a, c]}, amount: 10}]}]",
     "cordless drill", None, list("bdefac"), [("r", "bury", ["a", "c"], None)]),
    ("contains is whole words", "rules: [{name: r, when: {query: {contains: dril}}, bury: [{items: {item_ids: [a]}, amount: 10}]}]",
     "cordless drill", None, list("abcdef"), []),
    ("regex trigger, boost by title", "rules: [{name: r, when: {query: {regex: '^cord.*'}}, boost: [{items: {title_contains: case}, amount: 4.5}]}]",
     "cordless drill", None, list("eabcdf"), [("r", "boost", ["e"], None)]),
    ("pin to a position", "rules: [{name: r, pin: [{item_id: f, position: 1}]}]",
     "x", None, list("afbcde"), [("r", "pin", ["f"], None)]),
    ("pin past the end goes last", "rules: [{name: r, pin: [{item_id: a, position: 500}]}]",
     "x", None, list("bcdefa"), [("r", "pin", ["a"], None)]),
    ("filter in stock + price range", "rules: [{name: r, filter: {in_stock: true, price_min: 10, price_max: 120}}]",
     "x", None, list("af"), [("r", "filter", ["b", "c", "d", "e"], None)]),
    ("filter by brand and category", "rules: [{name: r, filter: {brand: [acme, bolt], category: tools}}]",
     "x", None, list("abc"), [("r", "filter", ["d", "e", "f"], None)]),
    ("filter emptying the list is not applied", "rules: [{name: r, filter: {brand: nobody}}]",
     "x", None, list("abcdef"), [("r", "filter", [], "would remove every result: not applied")]),
    ("category trigger: top results' category", "rules: [{name: r, when: {category: tools}, bury: [{items: {category: tools}, amount: 5}]}]",
     "x", None, list("deafbc"), [("r", "bury", ["a", "b", "c"], None)]),
    ("category trigger: the request's filter wins", "rules: [{name: r, when: {category: tools}, bury: [{items: {category: tools}, amount: 5}]}]",
     "x", "Safety", list("abcdef"), []),
    ("two pins to one slot: the first rule wins", "rules: [{name: r1, pin: [{item_id: e, position: 0}]}, {name: r2, pin: [{item_id: d, position: 0}, {item_id: e, position: 3}]}]",
     "x", None, list("eabcdf"), [("r1", "pin", ["e"], None), ("r2", "pin", [], "position 0 already taken by rule 'r1'"),
                                ("r2", "pin", [], "product 'e' already pinned by rule 'r1'")]),
    ("pin of a filtered item is skipped", "rules: [{name: f, filter: {in_stock: true}}, {name: p, pin: [{item_id: b, position: 0}]}]",
     "x", None, list("acdf"), [("f", "filter", ["b", "e"], None), ("p", "pin", [], "product 'b' removed by filter rule 'f'")]),
    ("pin of a product not retrieved nor in the catalog", "rules: [{name: p, pin: [{item_id: zz, position: 0}]}]",
     "x", None, list("abcdef"), [("p", "pin", [], "product 'zz' is not in the catalog or not among the filtered results")]),
    ("every kind at once, in order filter -> boost/bury -> pin", """
rules:
  - {name: stock, filter: {in_stock: true}}
  - name: drills
    when: {query: {contains: [drill, hammer]}}
    boost: [{items: {brand: clear}, amount: 2.5}]
    bury: [{items: {item_ids: [a]}, amount: 10}]
    pin: [{item_id: c, position: 0}]
  - {name: disabled, enabled: false, pin: [{item_id: f, position: 0}]}
""", "cordless drill", None, list("cdfa"),
     [("stock", "filter", ["b", "e"], None), ("drills", "boost", ["d", "f"], None), ("drills", "bury", ["a"], None),
      ("drills", "pin", ["c"], None)]),
]
# fmt: on


@pytest.mark.parametrize("name,rules,query,category,order,fired", CASES, ids=[c[0] for c in CASES])
def test_every_rule_kind_on_a_fixed_response(name, rules, query, category, order, fired):
    ids, got, _ = _apply(rules, query, category)
    assert ids == order
    assert [(f["rule"], f["action"], f["items"], f["skipped"]) for f in got] == fired


def test_boosted_scores_are_reported_and_pinned_fetched_items_only_when_placed():
    _, _, out = _apply("rules: [{name: r, boost: [{items: {brand: clear}, amount: 2.5}]}]")
    assert [(i["item_id"], i["score"]) for i in out][:2] == [("a", 6.0), ("d", 5.5)]
    extra = [*RESPONSE, {"item_id": "z", "title": "Pinned", "score": -1.0}]
    # z came only because a rule pins it: placed when the rule fires, dropped when it does not
    ids, _, _ = _apply("rules: [{name: r, when: {query: {exact: drill}}, pin: [{item_id: z, position: 2}]}]", "drill", items=extra, fetched={"z"})  # fmt: skip
    assert ids == list("abzcdef")
    ids, _, _ = _apply("rules: [{name: r, when: {category: safety}, pin: [{item_id: z, position: 2}]}]", "drill", items=extra, fetched={"z"})  # fmt: skip
    assert ids == list("abcdef")


def test_filter_on_a_column_the_catalog_lacks_is_a_reported_skip():
    items = [{k: v for k, v in i.items() if k != "in_stock"} for i in RESPONSE]
    ids, fired, _ = _apply("rules: [{name: r, filter: {in_stock: true}}]", items=items)
    assert ids == list("abcdef") and fired[0]["skipped"] == "the catalog has no ['in_stock'] column(s)"


def test_load_checks_against_the_catalog_are_counted_skips():
    cat = CatalogInfo(frozenset("abcdef"), frozenset({"item_id", "title", "brand", "price"}))
    rs = RuleSet.from_text(
        "rules: [{name: p, pin: [{item_id: gone, position: 0}, {item_id: a, position: 1}]},"
        " {name: f, filter: {in_stock: true, brand: acme}}]",
        catalog=cat,
    )
    assert [(s["rule"], s["field"]) for s in rs.report.skipped] == [("p", "pin[0].item_id"), ("f", "filter")]
    assert rs.pins_to_fetch(["x"]) == ["a"]  # the missing product is never fetched
    out, fired = rs.apply([dict(i) for i in RESPONSE], ["x"])
    pins = [(f["items"], f["skipped"]) for f in fired if f["action"] == "pin"]
    assert pins == [([], "product 'gone' is not in the catalog"), (["a"], None)]
    assert [i["item_id"] for i in out] == ["c", "a"]  # acme and in stock, a pinned at 1


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "rules: [{name: r, boost: [{items: {brand: x}, amount: 1, colour: red}]}]",
            "rule 'r' (rules[0]) field boost[0].colour: Extra inputs are not permitted",
        ),  # fmt: skip
        (
            "rules: [{name: ok, pin: [{item_id: a, position: 0}]}, {name: r2, pin: [{item_id: a, position: -1}]}]",
            "rule 'r2' (rules[1]) field pin[0].position",
        ),  # fmt: skip
        (
            "rules: [{name: r, when: {query: {exact: a, regex: b}}, pin: [{item_id: a, position: 0}]}]",
            "give exactly one of exact / contains / regex",
        ),  # fmt: skip
        (
            "rules: [{name: r, when: {query: {regex: '('}}, pin: [{item_id: a, position: 0}]}]",
            "field when.query.regex: Value error, not a valid regular expression",
        ),  # fmt: skip
        ("rules: [{name: r}]", "a rule needs at least one action"),
        ("rules: [{name: r, filter: {price_min: 5, price_max: 1}}]", "price_min must be <= price_max"),
        (
            "rules: [{name: r, pin: [{item_id: a, position: 0}]}, {name: r, pin: [{item_id: b, position: 1}]}]",
            "rule names must be unique",
        ),  # fmt: skip
        ("rulez: []", "field rulez: Extra inputs are not permitted"),
        ("[1, 2]", "expected a mapping with a `rules:` list"),
        ("rules: [", "not valid YAML/JSON"),
    ],
)
def test_bad_rules_files_name_the_rule_and_the_field(text, message):
    with pytest.raises(RulesError, match=None) as e:
        RuleSet.from_text(text, "shop.yaml")
    assert message in str(e.value) and "rules file shop.yaml" in str(e.value)


def test_normalised_query_and_json_files(tmp_path):
    assert normalize_query("  Cordless\tDRILL ") == "cordless drill"
    p = tmp_path / "r.json"
    p.write_text('{"rules": [{"name": "j", "pin": [{"item_id": "f", "position": 0}]}]}')
    assert RuleSet.load(p).apply([dict(i) for i in RESPONSE], ["q"])[0][0]["item_id"] == "f"


def test_shipped_rules_examples_parse():
    for path in sorted((ROOT / "configs" / "serve" / "rules").glob("*.yaml")):
        assert RuleSet.load(path).report.rules > 0, path


# --- the pipeline stage ------------------------------------------------------------------------------


class Retriever:
    def retrieve(self, query, filters, n):
        rows = [dict(i, row=j, text=i["title"], fused=i["score"]) for j, i in enumerate(RESPONSE[:4])][:n]
        return {"version": "v1", "candidates": rows}

    def served_version(self):
        return "v1"


class Personalizer:
    """Orders by relevance; records like the deployment; drops ids its catalog lacks."""

    CATALOG = {i["item_id"]: i for i in RESPONSE}

    def personalize(self, candidates, user_id, country, offset, k):
        known = [c for c in candidates if c["item_id"] in self.CATALOG]
        ranked = sorted(known, key=lambda c: -c["relevance"])[offset : offset + k]
        items = [
            dict(
                {x: v for x, v in self.CATALOG[c["item_id"]].items() if x != "score"},
                score=round(c["relevance"], 6),
                position=offset + i,
            )  # fmt: skip
            for i, c in enumerate(ranked)
        ]
        return {"items": items, "cold_start": True, "version": "v1"}


def _pipeline(rules: RulesSource | None, cache=None) -> SearchPipeline:
    rr = RerankSettings(None, 32, 4, 0.0, "auto", "auto", 0, False)
    return SearchPipeline(
        InProcess(Retriever()), InProcess(object()), InProcess(Personalizer()), rr, cache=cache, rules=rules
    )


def test_pipeline_applies_rules_before_the_page_and_fetches_pins(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text("rules: [{name: pin-f, when: {query: {contains: drill}}, pin: [{item_id: f, position: 1}]}]")
    pipe = _pipeline(RulesSource(p))
    # retrieval returns a, b, c, d; f (not retrieved) is fetched and pinned at position 1 (page 0)
    res = pipe.search_sync(SearchRequest(query="Drill ", k=2))
    assert isinstance(res, SearchResult)
    assert [(i["item_id"], i["position"]) for i in res.items] == [("a", 0), ("f", 1)]
    assert res.rules_fired == ({"rule": "pin-f", "action": "pin", "items": ["f"], "skipped": None},)
    page1 = pipe.search_sync(SearchRequest(query="drill", k=2, page=1))
    assert [(i["item_id"], i["position"]) for i in page1.items] == [("b", 2), ("c", 3)]
    # with request filters nothing outside the filtered retrieval is brought in
    res = pipe.search_sync(SearchRequest(query="drill", k=2, filters={"category": "Tools"}))
    assert [i["item_id"] for i in res.items] == ["a", "b"] and res.rules_fired[0]["skipped"]
    # no rule triggered: the plain ranking, nothing reported
    res = pipe.search_sync(SearchRequest(query="gloves", k=3))
    assert [i["item_id"] for i in res.items] == ["a", "b", "c"] and res.rules_fired == ()
    assert [i["item_id"] for i in _pipeline(None).search_sync(SearchRequest(query="drill", k=2)).items] == [
        "a",
        "b",
    ]


def test_response_cache_keys_on_the_rules(tmp_path):
    from recsys.search.cache import CountingCache

    p = tmp_path / "rules.yaml"
    p.write_text("rules: [{name: one, pin: [{item_id: d, position: 0}]}]")
    clock = [0.0]
    src = RulesSource(p, poll_s=1.0, clock=lambda: clock[0])
    pipe = _pipeline(src, cache=CountingCache(16))
    assert pipe.search_sync(SearchRequest(query="q", k=1)).items[0]["item_id"] == "d"
    p.write_text("rules: [{name: two, pin: [{item_id: c, position: 0}]}]")
    assert pipe.search_sync(SearchRequest(query="q", k=1)).cached  # not polled yet: the old rules, cached
    clock[0] = 5.0
    res = pipe.search_sync(SearchRequest(query="q", k=1))
    assert not res.cached and res.items[0]["item_id"] == "c" and res.rules_fired[0]["rule"] == "two"


def test_hot_reload_under_concurrent_requests_fails_none(tmp_path):
    """250 concurrent requests while the file is rewritten (good, broken, good, good): every request succeeds
    with one consistent rule set, a broken file keeps the old rules and is reported."""
    p = tmp_path / "rules.yaml"
    good = [f"rules: [{{name: v{v}, pin: [{{item_id: {i}, position: 0}}]}}]" for v, i in ((1, "d"), (2, "c"))]
    p.write_text(good[0])
    src = RulesSource(p, poll_s=0.0)
    pipe = _pipeline(src)
    versions = [good[1], "rules: [{name: bad, pin: [{item_id: c, position: zero}]}]", good[0], good[1]]

    async def one():
        res = await pipe.search(SearchRequest(query="q", k=2))
        assert isinstance(res, SearchResult) and len(res.items) == 2
        rule = res.rules_fired[0]["rule"]
        assert res.items[0]["item_id"] == {"v1": "d", "v2": "c"}[rule]
        return rule

    async def main():
        tasks = [asyncio.create_task(one()) for _ in range(50)]
        for i, text in enumerate(versions):  # each write lands while earlier requests are in flight
            await asyncio.sleep(0.005)
            p.write_text(text)
            os.utime(p, ns=(10**9 * (i + 10), 10**9 * (i + 10)))  # a new mtime even within the clock's tick
            tasks += [asyncio.create_task(one()) for _ in range(50)]
        return await asyncio.gather(*tasks)

    seen = asyncio.run(main())
    assert len(seen) == 250 and seen[-1] == "v2"
    assert src.reload_errors == 1 and src.reloads == 3 and src.last_error is None
    with pytest.raises(RulesError):  # a broken file at start-up is an error, not a silent empty rule set
        p.write_text("rules: [{name: x}]")
        RulesSource(p)


def test_serve_config_checks_the_rules_file_at_deploy_time(tmp_path):
    from recsys.config.loader import ConfigError
    from recsys.serving.launch import read_serve_config, validate_args

    app = read_serve_config(ROOT / "configs" / "serve" / "tiny.yaml")["applications"][0]
    args = validate_args(app, "tiny")
    spec = args.arm_spec(args.arms[0])
    assert spec.rules is not None and spec.rules.path.endswith("configs/serve/rules/tiny.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [{name: r, pin: [{item_id: a, position: 0, slot: 2}]}]")
    for rules, needle in (
        ({"path": str(bad)}, "rule 'r' (rules[0]) field pin[0].slot: Extra inputs are not permitted"),
        ({"path": str(tmp_path / "none.yaml")}, "does not exist"),
        ({"path": str(bad), "poll": 1}, "rules.poll"),
    ):
        with pytest.raises(ConfigError) as e:
            validate_args({**app, "args": {**app["args"], "rules": rules}}, "t.yaml")
        assert "rules" in e.value.render() and needle in e.value.render(), e.value.render()
