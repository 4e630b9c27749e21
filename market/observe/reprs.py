"""Scenarios and run results as people read them in a notebook: compact HTML and one-line text.

Everything shown comes from the scenario's fields or the run's JSON summary, and every piece of
text is escaped: a scenario's name and description come from whoever wrote the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any, Protocol


class Summarized(Protocol):
    """A run as shown here: its JSON summary (`market.observe.result.RunResult` is one)."""

    summary: dict[str, Any]

#: One style for every table, inline: notebooks strip <style> blocks from untrusted outputs.
_TABLE = 'style="border-collapse:collapse;margin:0.3em 0;font-size:0.9em"'
_CELL = 'style="padding:0.1em 0.7em;text-align:{align};border-bottom:1px solid #ddd"'


# ----------------------------------------------------------------------------- numbers


def usd(value: Any, digits: int = 2) -> str:
    """`1234.5` -> `$1,234.50`; missing or not finite -> `–`."""
    number = _finite(value)
    if number is None:
        return "–"
    sign = "−" if number < 0 else ""
    return f"{sign}${abs(number):,.{digits}f}"


def percent(value: Any, digits: int = 1) -> str:
    """A fraction as a percentage: `0.4045` -> `40.4%`; missing -> `–`."""
    number = _finite(value)
    return "–" if number is None else f"{number * 100:.{digits}f}%".replace("-", "−")


def count(value: Any) -> str:
    """A count with thousands separators: `2493.0` -> `2,493`; missing -> `–`."""
    number = _finite(value)
    return "–" if number is None else f"{round(number):,}"


def number(value: Any, digits: int = 2) -> str:
    """A plain number, fixed decimals; missing -> `–`."""
    number = _finite(value)
    return "–" if number is None else f"{number:,.{digits}f}".replace("-", "−")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# ----------------------------------------------------------------------------- HTML pieces


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]],
           numeric: Iterable[int] | None = None) -> str:
    """An HTML table; cells are escaped here; the `numeric` columns (default: all but the
    first) align right."""
    right = set(range(1, len(header)) if numeric is None else numeric)

    def cell(tag: str, index: int, value: Any) -> str:
        align = "right" if index in right else "left"
        return f"<{tag} {_CELL.format(align=align)}>{escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, name) for i, name in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, value) for i, value in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _facts(pairs: Iterable[tuple[str, Any]]) -> str:
    """A definition line: `label: value · label: value` (escaped)."""
    return " · ".join(f"<b>{escape(label)}</b>: {escape(str(value))}" for label, value in pairs)


def _section(title: str, body: str) -> str:
    return f"<div style=\"margin-top:0.5em\"><b>{escape(title)}</b>{body}</div>"


# ----------------------------------------------------------------------------- scenarios


def scenario_html(scenario: Any) -> str:
    """A scenario at a glance: name, description, duration, who takes part (tenants, each
    provider population with its GPU mix and strategy), and the market's main rules."""
    rules = scenario.market
    parts = [f"<div><b>Scenario {escape(scenario.name)}</b>"]
    if scenario.description:
        parts.append(f"<div style=\"color:#555\">{escape(_cut(scenario.description, 600))}</div>")
    parts.append("<div>" + _facts([
        ("duration", f"{number(scenario.duration_days, 2)} simulated days"),
        ("population", scenario.population),
    ]) + "</div>")
    parts.append(_section("Market", "<div>" + _facts([
        ("mechanism", _plugin(rules.mechanism, rules.mechanism_params)),
        ("selection", rules.selection),
        ("settlement", "BME (ACT escrow, paid in AKT)" if rules.settlement == "bme"
         else "AEP-23 (USD escrow)"),
        ("take rate", percent(rules.fee_rate)),
        ("bids net of fee", "yes" if rules.bids_net_of_fee else "no"),
        ("bidding window", f"{number(rules.bidding_window_s, 0)} s"),
        ("bids kept per order", count(rules.order_max_bids)),
    ]) + "</div>"))
    tenants = scenario.tenants
    parts.append(_section("Tenants", "<div>" + _facts([
        ("count", count(tenants.count)),
        ("arrivals", f"{number(tenants.arrivals_per_hour, 1)} jobs per hour"),
        ("weekly growth", percent(tenants.weekly_growth)),
        ("policy", _plugin(tenants.policy.name, tenants.policy.params)),
    ]) + "</div>"))
    parts.append(_section("Providers", _table(
        ("population", "archetype", "providers", "GPUs each", "GPU mix", "strategy"),
        ((p.name, p.archetype, count(p.count), f"{p.gpus_per_provider[0]}–"
          f"{p.gpus_per_provider[1]}", _mix(p.gpu_mix), _plugin(p.strategy.name,
                                                                 p.strategy.params))
         for p in scenario.providers), numeric=(2, 3))))
    if scenario.tournament is not None:
        parts.append(_section("Tournament", "<div>" + escape(", ".join(
            scenario.tournament.labels())) + "</div>"))
    entry_exit = scenario.entry_exit
    if entry_exit is not None:
        parts.append(_section("Entry and exit", "<div>" + _facts([
            ("reviews", f"every {entry_exit.review_days:g} days, of the last "
                        f"{entry_exit.window_days:g} days"),
            ("hurdle", percent(entry_exit.hurdle)),
            ("investment lag", f"{entry_exit.investment_lag_days:g} days"),
            ("may enter", ", ".join(entry_exit.entrants) if entry_exit.entrants is not None
             else "all"),
            ("may exit", ", ".join(entry_exit.exiters) if entry_exit.exiters is not None
             else "all"),
        ]) + "</div>"))
    parts.append("</div>")
    return "".join(parts)


def _plugin(name: str, params: Mapping[str, Any]) -> str:
    if not params:
        return name
    return name + "{" + ", ".join(f"{key}={params[key]}" for key in sorted(params)) + "}"


def _mix(mix: Mapping[str, float]) -> str:
    """GPU shares as percentages, largest first: `h100 40%, l40s 35%, …` (at most five)."""
    total = sum(mix.values()) or 1.0
    ranked = sorted(((share / total, gpu) for gpu, share in mix.items() if share > 0),
                    reverse=True)
    shown = ", ".join(f"{gpu} {share * 100:.0f}%" for share, gpu in ranked[:5])
    return shown + (f", … ({len(ranked) - 5} more)" if len(ranked) > 5 else "")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- run results


def result_text(result: Summarized) -> str:
    """A run in one line: `<RunResult 'default' seed 1, 0.50 days: 2,324 orders, 46.0%
    filled, efficiency 76.1%, tenants paid $5,265.96>`."""
    s = result.summary
    return (f"<RunResult {s.get('scenario')!r} seed {s.get('seed')}, "
            f"{number(s.get('simulated_days'))} days: {count(s.get('orders_posted'))} orders, "
            f"{percent(s.get('fill_rate'))} filled, efficiency "
            f"{percent(s.get('allocative_efficiency'))}, tenants paid "
            f"{usd(s.get('tenant_spend_usd'))}>")


def result_html(result: Summarized) -> str:
    """A run's summary: headline figures, prices per GPU model, welfare, and providers by
    population."""
    s = result.summary
    welfare = s.get("welfare") or {}
    parts = ["<div><b>" + escape(f"Run of {s.get('scenario')}, seed {s.get('seed')}")
             + "</b>", "<div>" + _facts([
                 ("simulated", f"{number(s.get('simulated_days'))} days"),
                 ("mechanism", s.get("mechanism")),
                 ("providers", count(s.get("providers_count"))),
                 ("tenants", count(s.get("tenants_count"))),
             ]) + "</div>", "<div>" + _facts([
                 ("orders", count(s.get("orders_posted"))),
                 ("filled", percent(s.get("fill_rate"))),
                 ("leases", count(s.get("leases_created"))),
                 ("tenants paid", usd(s.get("tenant_spend_usd"))),
                 ("platform fees", usd(s.get("platform_revenue_usd"))),
                 ("allocative efficiency", percent(s.get("allocative_efficiency"))),
                 ("money conserved", "yes" if s.get("money_conserved") else "NO"),
             ]) + "</div>"]
    prices = s.get("price_usd_per_gpu_hour") or {}
    if prices:
        parts.append(_section("Prices, USD per GPU-hour", _table(
            ("GPU model", "leases", "mean", "median", "p10", "p90", "list", "saved vs list",
             "GPU-hours"),
            ((gpu, count(p.get("count")), usd(p.get("mean"), 3), usd(p.get("median"), 3),
              usd(p.get("p10"), 3), usd(p.get("p90"), 3),
              usd(p.get("list_usd_per_gpu_hour"), 3), percent(p.get("savings_vs_list")),
              number(p.get("gpu_hours"), 1))
             for gpu, p in prices.items()))))
    if welfare:
        rows = [(label, usd(welfare.get(key))) for label, key in (
            ("potential (Σ value − best cost)", "potential_usd"),
            ("realized", "realized_usd"),
            ("consumer surplus (tenants)", "consumer_surplus_usd"),
            ("producer surplus (providers)", "producer_surplus_usd"),
            ("platform fees", "platform_fees_usd"),
            ("outside surplus (work taken to hyperscalers)", "outside_surplus_usd"),
            ("deadweight loss", "deadweight_loss_usd"),
        ) if key in welfare]
        rows.append(("allocative efficiency", percent(welfare.get("allocative_efficiency"))))
        parts.append(_section("Welfare of the work decided by the end of the run, USD",
                              _table(("", "value"), rows)))
    populations = s.get("populations") or {}
    if populations:
        parts.append(_section("Providers by population", _table(
            ("population", "providers", "took part", "utilization", "revenue",
             "short-run profit", "long-run profit"),
            ((name, count(p.get("providers")), percent(p.get("participation")),
              percent(p.get("utilization")), usd(p.get("revenue_usd")),
              usd(p.get("short_run_profit_usd")), usd(p.get("long_run_profit_usd")))
             for name, p in populations.items()))))
    entry_exit = s.get("entry_exit")
    if entry_exit:
        parts.append(_section("Entry and exit", _table(
            ("population", "entered", "exited", "on market at the end", "GPUs on market"),
            ((name, count(p.get("entered")), count(p.get("exited")),
              count(p.get("providers_on_market")), count(p.get("gpus_on_market")))
             for name, p in (entry_exit.get("by_population") or {}).items()))))
    parts.append("</div>")
    return "".join(parts)


__all__ = ["count", "number", "percent", "result_html", "result_text", "scenario_html", "usd"]
