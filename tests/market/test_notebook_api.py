"""What a notebook user reaches for: validated scenario changes (`with_values`, a guarded
`model_copy`), readable and escaped reprs of scenarios and results, plots that return their
labelled Axes."""

from __future__ import annotations

import re

import matplotlib
import pytest

from market import Market, RunResult, ScenarioError, batch_run, load_scenario
from market.experiments import labels
from market.observe.plots import metric_vs_parameter
from market.scenario import MarketRules

matplotlib.use("Agg")  # draw without a display
import matplotlib.pyplot as plt

# AEP-23's USD escrow and take rate: some of these tests vary the take rate.
SMALL = {"duration_days": 0.25, "tenants.arrivals_per_hour": 30, "providers.0.count": 8,
         "providers.1.count": 20, "providers.2.count": 1, "market.settlement": "aep23"}


@pytest.fixture(scope="module")
def small():
    return load_scenario("default").with_values(SMALL)


@pytest.fixture(scope="module")
def result(small) -> RunResult:
    return Market(small, seed=3).run()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------- with_values


def test_with_values_changes_a_copy_validated_like_set():
    default = load_scenario("default")
    changed = default.with_values({"market.take_rate": 0.1, "tenants.arrivals_per_hour": 60,
                                   "providers.1.gpu_mix.rtx4090": 0.9}, duration_days=1)
    assert (changed.market.take_rate, changed.tenants.arrivals_per_hour,
            changed.duration_days) == (0.1, 60, 1)
    assert changed.providers[1].gpu_mix["rtx4090"] == 0.9
    assert default.market.take_rate != 0.1 and default.duration_days == 7  # left as it was
    # the same scenario --set gives, field for field
    assert changed == load_scenario("default", ["market.take_rate=0.1",
                                                "tenants.arrivals_per_hour=60",
                                                "providers.1.gpu_mix.rtx4090=0.9",
                                                "duration_days=1"])


@pytest.mark.parametrize(("values", "message"), [
    ({"market.take_rate": 5.0}, r"^scenario 'default': field `market.take_rate`: expected a "
                                r"number >= 0 and < 1 \(got 5.0\)$"),
    ({"market.take_rat": 0.1}, r"^scenario 'default': field `market.take_rat`: Extra inputs "
                               r"are not permitted"),
    ({"providers.5.count": 1}, r"^scenario 'default': with_values providers.5.count: "
                               r"`providers.5`: expected an index from 0 to 2$"),
    ({"duration_days.x": 1}, r"^scenario 'default': with_values duration_days.x: "
                             r"`duration_days` is a value, not a table$"),
    ({"market.": 1}, r"^scenario 'default': with_values: 'market.': expected a dotted "),
    ({"market.mechanism": "auction"}, r"^scenario 'default': field `market.mechanism`: "
                                      r"unknown mechanism 'auction'; known: .*first_price"),
])
def test_with_values_refuses_bad_values_at_once_in_one_line(values, message):
    with pytest.raises(ScenarioError, match=message) as caught:
        load_scenario("default").with_values(values)
    assert "\n" not in str(caught.value)


def test_with_values_takes_a_dict():
    with pytest.raises(ScenarioError, match=r"^scenario 'default': with_values: expected a "
                                            r"dict of dotted path -> value, got list$"):
        load_scenario("default").with_values([("market.take_rate", 0.1)])


def test_model_copy_validates_its_update():
    default = load_scenario("default")
    assert default.model_copy(update={"duration_days": 2}).duration_days == 2
    assert default.model_copy() == default
    with pytest.raises(ScenarioError, match=r"^MarketRules.model_copy: field `take_rate`: "
                                            r"Input should be less than 1 \(got 5.0\)$"):
        default.market.model_copy(update={"take_rate": 5.0})
    with pytest.raises(ScenarioError, match=r"^Scenario.model_copy: field `duration_days`: "
                                            r"expected a number > 0 and <= 365 \(got -1\)$"):
        default.model_copy(update={"duration_days": -1})
    with pytest.raises(ScenarioError, match=r"^Scenario.model_copy: field `colour`: Extra "):
        default.model_copy(update={"colour": "red"})
    # a nested model built around validation is checked when it goes into a copy
    sneaky = MarketRules.model_construct(**{**dict(default.market), "take_rate": 5.0})
    with pytest.raises(ScenarioError, match=r"field `market.take_rate`: expected a number"):
        default.model_copy(update={"market": sneaky})


# ----------------------------------------------------------------------------- reprs

HOSTILE = '<script>alert("x")</script> & <b>'


def test_scenario_html_shows_the_scenario_and_escapes_its_text(small):
    hostile = small.with_values(name=HOSTILE, description=HOSTILE + " description")
    html = hostile._repr_html_()
    assert "<script>" not in html and "<b>" + HOSTILE not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in html
    text = re.sub(r"<[^>]+>", " ", html)
    for shown in ("0.25 simulated days", "tenant_pick", "20.0%", "datacenter", "home_rig",
                  "hyperscaler", "30.0 jobs per hour", "adaptive_margin",
                  "AEP-23 (USD escrow)"):
        assert shown in text, shown
    bme = re.sub(r"<[^>]+>", " ", small.with_values({"market.settlement": "bme"})._repr_html_())
    assert "settlement : BME (ACT escrow, paid in AKT)" in bme and "take rate : 0.0%" in bme


def test_result_repr_is_one_readable_line(result):
    text = repr(result)
    assert "object at 0x" not in text and "\n" not in text
    summary = result.summary
    assert text.startswith(f"<RunResult 'default' seed 3, 0.25 days: "
                           f"{summary['orders_posted']:,} orders, ")
    assert f"{summary['fill_rate'] * 100:.1f}% filled" in text


def test_result_html_has_headline_prices_and_welfare_escaped(result):
    html = result._repr_html_()
    text = re.sub(r"<[^>]+>", " ", html)
    summary = result.summary
    assert f"{summary['orders_posted']:,}" in text
    for model, prices in summary["price_usd_per_gpu_hour"].items():
        assert model in text and f"${prices['mean']:,.3f}" in text
    assert f"${summary['welfare']['consumer_surplus_usd']:,.2f}" in text
    assert "allocative efficiency" in text and "money conserved" in text
    result.summary["scenario"] = HOSTILE  # a name from a file, shown as text
    try:
        assert "<script>" not in result._repr_html_()
    finally:
        result.summary["scenario"] = "default"


# ----------------------------------------------------------------------------- plots


def labelled(ax) -> tuple[str, str]:
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    return ax.get_xlabel(), ax.get_ylabel()


def test_run_plots_return_labelled_axes_with_units(result):
    assert labelled(result.plot.prices()) == ("simulated time (days)",
                                              "price index (USD per GPU-hour)")
    ax = result.plot.utilization()
    assert labelled(ax) == ("simulated time (days)", "GPUs leased (% of the model's GPUs)")
    assert all(0 <= y <= 100 for line in ax.get_lines() for y in line.get_ydata())
    ax = result.plot.welfare()
    assert labelled(ax) == ("USD (work decided by the end of the run)",
                            "share of the potential welfare")
    widths = [bar.get_width() for bar in ax.patches]
    assert widths[0] == pytest.approx(result.summary["welfare"]["consumer_surplus_usd"])
    assert plt.get_fignums()  # drawn, not shown


def test_price_plot_draws_traded_models_only_and_on_given_axes(result):
    _figure, mine = plt.subplots()
    ax = result.plot.prices(ax=mine, gpu_models=["h100", "l40s"], list_prices=True)
    assert ax is mine
    traded = [line.get_label() for line in ax.get_lines()
              if len(line.get_xdata()) and not line.get_label().startswith("_")]
    assert set(traded) <= {"h100", "l40s"} and traded
    with pytest.raises(ValueError, match=r"^gpu_models: 'h200x' is not in this run; its GPU "
                                         r"models are h100, "):
        result.plot.prices(gpu_models=["h200x"])


def test_plots_need_no_recording_but_a_run_of_at_least_one_bucket(small):
    unrecorded = Market(small, seed=3, record=False).run()
    assert unrecorded.plot.utilization().get_lines()
    assert unrecorded.prices.num_rows > 0  # the price series is kept without record
    with pytest.raises(RuntimeError, match=r"^leases: this market was made with "
                                           r"record=False"):
        _ = unrecorded.leases
    early = Market(small, seed=3, record=False)
    early.run(until=60)
    with pytest.raises(ValueError, match=r"ended before its first price-index bucket"):
        early.run(until=60).plot.prices()


def test_metric_vs_parameter_plots_means_with_intervals(small):
    runs = batch_run(small, {"market.take_rate": [0.0, 0.2],
                             "market.mechanism": ["tenant_pick", "second_price"]},
                     replications=2)
    ax = metric_vs_parameter(runs, "market.take_rate", "allocative_efficiency",
                             by="market.mechanism")
    # titled in words with units, as the sweep report titles them
    assert labelled(ax) == (labels.parameter("market.take_rate").title,
                            labels.metric("allocative_efficiency").title)
    assert labelled(ax) == ("Take rate (%)", "Allocative efficiency (%)")
    assert len(ax.get_lines()) == 2 and len(ax.collections) == 2  # a line and a band each
    for line in ax.get_lines():  # shown in percent: take rates 0 and 20, efficiency 0..100
        assert list(line.get_xdata()) == [0.0, 20.0]
        assert all(0 <= y <= 100 for y in line.get_ydata())
    means = runs[(runs["market.mechanism"] == "second_price")
                 & (runs["market.take_rate"] == 0.2)]["allocative_efficiency"].mean()
    assert (ax.get_lines()[0].get_ydata()[1]) == pytest.approx(means * 100)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "Mechanism second_price", "Mechanism tenant_pick"]
    ax = metric_vs_parameter(runs, "market.mechanism", "welfare.consumer_surplus_usd")
    assert labelled(ax) == ("Mechanism", "Consumer surplus (USD)")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["second_price", "tenant_pick"]
    with pytest.raises(ValueError, match=r"^metrics: 'efficiency' is not a column"):
        metric_vs_parameter(runs, "market.take_rate", "efficiency")
