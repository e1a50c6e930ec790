import pytest

from smppengine.config import RouteConfig
from smppengine.router import NoRoute, Router

SMSCS = ["carrier-a", "carrier-b", "carrier-c", "backup"]


def r(prefix: str, *smsc: str) -> RouteConfig:
    return RouteConfig(prefix=prefix, smsc=tuple(smsc))


@pytest.fixture
def router() -> Router:
    return Router(
        [
            r("+44", "carrier-a", "carrier-b"),
            r("+447", "carrier-b", "carrier-a"),
            r("+4477009", "carrier-c"),
            r("1", "carrier-c", "backup"),
            r("", "backup"),
        ],
        SMSCS,
    )


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("+447700900123", ["carrier-c"]),                # longest prefix wins
        ("+447800900123", ["carrier-b", "carrier-a"]),   # failover order as configured
        ("+441632960000", ["carrier-a", "carrier-b"]),
        ("447800900123", ["carrier-b", "carrier-a"]),    # "+447" matches without '+'
        ("447700900123", ["carrier-c"]),
        ("+15550100", ["carrier-c", "backup"]),          # "1" matches "+1..."
        ("15550100", ["carrier-c", "backup"]),
        ("+33612345678", ["backup"]),                    # default route
        ("4", ["backup"]),
    ],
)
def test_longest_prefix(router: Router, to: str, expected: list[str]) -> None:
    assert router.candidates(to) == expected


def test_override(router: Router) -> None:
    assert router.candidates("+447700900123", "carrier-a") == ["carrier-a"]
    assert router.candidates("+33612345678", override="carrier-c") == ["carrier-c"]
    with pytest.raises(NoRoute):
        router.candidates("+447700900123", "nope")


def test_no_match_without_default_route() -> None:
    router = Router([r("+44", "carrier-a")], SMSCS)
    assert router.candidates("+4420") == ["carrier-a"]
    with pytest.raises(NoRoute, match=r"\+33"):
        router.candidates("+33612345678")
    with pytest.raises(NoRoute):
        router.candidates("4")          # shorter than the prefix


def test_no_routes_one_smsc() -> None:
    assert Router([], ["only"]).candidates("+33612345678") == ["only"]


def test_no_routes_several_smscs_in_config_order() -> None:
    assert Router([], ["z", "a", "m"]).candidates("+1") == ["z", "a", "m"]
    assert Router([], ["z", "a"]).candidates("+1", "a") == ["a"]


def test_nothing_configured() -> None:
    with pytest.raises(NoRoute):
        Router([], []).candidates("+1")


def test_written_form_breaks_ties_then_config_order() -> None:
    router = Router([r("44", "carrier-a"), r("+44", "carrier-b"), r("44", "carrier-c")], SMSCS)
    assert router.candidates("+447700") == ["carrier-b"]
    assert router.candidates("447700") == ["carrier-a"]


def test_plus_alone_matches_only_international() -> None:
    router = Router([r("+", "carrier-a"), r("", "carrier-b")], SMSCS)
    assert router.candidates("+447700") == ["carrier-a"]
    assert router.candidates("12345") == ["carrier-b"]


def test_duplicate_targets_collapsed() -> None:
    router = Router([r("", "carrier-a", "carrier-b", "carrier-a")], SMSCS)
    assert router.candidates("1") == ["carrier-a", "carrier-b"]


def test_route_to_unknown_smsc_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="ghost"):
        Router([r("+44", "carrier-a", "ghost")], SMSCS)
    with pytest.raises(ValueError):
        Router([r("+44")], SMSCS)


def test_candidates_returns_a_fresh_list(router: Router) -> None:
    first = router.candidates("+447800")
    first.append("mutated")
    assert router.candidates("+447800") == ["carrier-b", "carrier-a"]
