"""A remote bot prices the take rate in as the market's own providers do: the live snapshot
says whether bids are net of the fee, and the bot's `RemoteView` grosses up by 1 / (1 − t)
exactly like `MarketView`."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from agents.equilibrium import Truthful
from agents.markups import CostPlus
from api.live.driver import Limits
from api.live.server import create_app
from api.remote.bot import Bot
from api.remote.view import RemoteView
from market import Market, load_scenario
from market.strategy import ProviderView

ME = ProviderView(7, "h100", 8, 8, 3.0, 1.0, 2.0)
LIST = {"h100": 12.29, "a10": 0.75}


@pytest.mark.parametrize(("net_of_fee", "gross_up"), [(True, 1.25), (False, 1.0)])
def test_remote_view_grosses_up_like_the_market_view(net_of_fee, gross_up):
    view = RemoteView(ME, ("h100", "a10"), 0.2, LIST, bids_net_of_fee=net_of_fee)
    assert view.bids_net_of_fee is net_of_fee
    assert view.fee_gross_up() == pytest.approx(gross_up)
    market = Market(load_scenario("default", ['market.settlement="aep23"', "market.take_rate=0.2",
                                              f"market.bids_net_of_fee={str(net_of_fee).lower()}"]),
                    populate=False, record=False)
    market.add_providers([], None)
    offline = market.views[0]
    assert offline.fee_gross_up() == pytest.approx(view.fee_gross_up())
    # The same strategy class prices the bot's provider at cost basis 2.0 × gross-up.
    me = np.array([7])
    assert Truthful().asks(me, view) == pytest.approx([2.0 * gross_up])
    assert CostPlus(markup=0.5).asks(me, view) == pytest.approx([3.0 * gross_up])
    assert RemoteView(ME, ("h100",), 0.2, LIST).fee_gross_up() == pytest.approx(1.25)


@pytest.mark.parametrize("switch", [True, False])
def test_the_snapshot_carries_the_switch_to_the_bot(tmp_path, switch):
    with TestClient(create_app(tmp_path / "sessions.db", Limits())) as client:
        created = client.post("/api/markets", json={
            "speed": 1, "overrides": [f"market.bids_net_of_fee={str(switch).lower()}"]},
            headers={"Authorization": f"Bearer {client.app.state.operator_token}"}).json()
        market_id = created["market_id"]
        joined = client.post(f"/api/markets/{market_id}/participants", json={
            "role": "provider", "name": "bob", "gpu_model": "h100", "gpus": 8}).json()
        snapshot = client.get(f"/api/markets/{market_id}").json()
        me = client.get(f"/api/markets/{market_id}/me",
                        headers={"Authorization": f"Bearer {joined['token']}"}).json()
    assert snapshot["bids_net_of_fee"] is switch
    bot = Bot("http://unused", market_id, Truthful(), log=lambda _line: None)
    bot._take_facts(snapshot, me)
    assert bot.view.bids_net_of_fee is switch
    take_rate = snapshot["take_rate"]
    assert bot.view.fee_gross_up() == pytest.approx(1 / (1 - take_rate) if switch else 1.0)
