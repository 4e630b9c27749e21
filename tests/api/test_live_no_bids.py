"""A live market tells a tenant why nobody bid on its own expired orders (`/me`'s
`expired_orders`), and keeps the reasons off the public event stream."""

from __future__ import annotations

from types import SimpleNamespace

from api.live import views
from api.live.commands import JoinTenant, PostOrder
from api.live.session import Session
from market.core.no_bids import REASONS, dominant
from market.scenario import load_scenario

SCENARIO = load_scenario("default", ["duration_days=0.5", "tenants.arrivals_per_hour=30"])


def test_a_tenant_reads_why_its_own_order_expired_and_nobody_else_does():
    session = Session(SCENARIO, seed=2)
    for name in ("alice", "bob"):
        session.apply("join_tenant", JoinTenant(role="tenant", name=name), None)
    alice, bob = session.participants
    session.advance(600.0)
    # Far below every provider's ask: it expires, priced out (and other models' providers).
    posted = session.apply("post_order", PostOrder(gpu_models=["h100"], gpus=1,
                                                   max_price_usd_per_gpu_hour=0.01,
                                                   auto_select=True), alice)
    order_id = posted["order_id"]
    session.advance(session.market.now + 3_600.0)

    live = SimpleNamespace(session=session)
    mine = views.me(live, alice)["expired_orders"]
    (expired,) = [o for o in mine if o["order_id"] == order_id]
    assert expired["bids"] == 0
    reasons = expired["no_bids"]
    assert set(reasons) <= set(REASONS) and reasons.get("price", 0) > 0
    assert sum(reasons.values()) == session.market.pool.n
    assert "no_model" in reasons  # the default market has other GPU models
    assert expired["dominant"] == dominant([reasons.get(r, 0) for r in REASONS])
    assert views.me(live, bob)["expired_orders"] == []

    events = [e for e in session.history if e.get("order_id") == order_id]
    assert [e["kind"] for e in events][-1] == "order_expired"
    assert all("no_bids" not in e for e in session.history)
