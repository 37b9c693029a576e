"""LIST with label selectors: the raw-bytes pre-check never changes the answer, only its cost."""

from __future__ import annotations

import itertools
from typing import Any

from kubelite.api.registry import resource
from kubelite.api.selectors import parse_label_selector
from kubelite.client import ApiClient

CONFIGMAPS = resource("", "configmaps")

LABEL_SETS: list[dict[str, str]] = [
    {},
    {"app": "web"},
    {"app": "db", "tier": "back"},
    {"app": "web", "tier": "front", "example.com/team": "a"},
    {"tier": ""},
    {"n": "5"},
]
SELECTORS = [
    "app=web", "app==db", "app!=web", "app in (web,db)", "app notin (web)", "app", "!app",
    "tier=", "example.com/team=a", "n>3", "n<3", "app=web,tier=front", "missing", "app=nope",
]  # fmt: skip


async def test_selected_lists_equal_matching_every_object(inproc_api: Any) -> None:
    client: ApiClient = inproc_api.client
    for i, labels in enumerate(LABEL_SETS):
        # The annotation mentions label keys/values too: the pre-check may let it through, never drop it.
        body = {"metadata": {"name": f"cm{i}", "labels": labels, "annotations": {"note": "app web tier"}}}
        await client.create(CONFIGMAPS, body, namespace="default")
    for text, limit in itertools.product(SELECTORS, (0, 2)):
        selector = parse_label_selector(text)
        expected = sorted(f"cm{i}" for i, labels in enumerate(LABEL_SETS) if selector.matches(labels))
        names: list[str] = []
        cont: str | None = None
        while True:
            page = await client.list(CONFIGMAPS, "default", label_selector=text, limit=limit or None, continue_=cont)
            # (kube-root-ca.crt, published in every namespace, has no labels: only "!app"-style selectors pick it)
            names += [o["metadata"]["name"] for o in page["items"] if o["metadata"]["name"].startswith("cm")]
            cont = page["metadata"].get("continue")
            if not cont:
                break
        assert sorted(names) == expected, text


def test_required_tokens_only_name_what_a_match_must_contain() -> None:
    assert parse_label_selector("app=web,tier!=x,!gone").required_tokens() == (b'"app"', b'"web"')
    assert parse_label_selector("a in (x,y),b notin (z),c").required_tokens() == (b'"a"', b'"c"')
    assert parse_label_selector("a in (x)").required_tokens() == (b'"a"', b'"x"')
