"""Terminal reports (rich tables): a run summary, validation, tournaments, sweeps."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table


def _usd(value: float) -> str:
    sign = "−" if value < 0 else ""
    amount = abs(value)
    return f"{sign}${amount:,.0f}" if amount >= 100 else f"{sign}${amount:,.2f}"


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def render(summary: dict[str, Any], console: Console) -> None:
    """Print `summary` (a RunResult summary) as a handful of tables."""
    head = (f"[bold]{summary['scenario']}[/] · seed {summary['seed']} · "
            f"{summary['simulated_days']:.1f} simulated days · mechanism "
            f"{summary['mechanism']} · {summary['providers_count']} providers · "
            f"{summary['tenants_count']} tenants")

    orders = Table(title="Orders and leases", show_header=False, box=None, padding=(0, 2))
    orders.add_column(style="bold")
    orders.add_column(justify="right")
    waited = summary["job_time_to_lease_s"]
    reasons = ", ".join(f"{k} {v}" for k, v in summary["lease_close_reasons"].items()) or "none"
    for label, value in (
        ("jobs posted", f"{summary['jobs_posted']:,}"),
        ("orders posted (with re-posts)", f"{summary['orders_posted']:,}"),
        ("orders filled / expired", f"{summary['orders_filled']:,} / "
                                    f"{summary['orders_expired']:,}"),
        ("fill rate", _pct(summary["fill_rate"])),
        ("time to lease, median / p90", f"{_minutes(waited['median'])} / "
                                        f"{_minutes(waited['p90'])}"),
        ("leases failed (provider fault)", f"{summary['leases_failed']:,}"),
        ("lease close reasons", reasons),
        ("work re-posted", f"{summary['work_reposted']:,}"),
        ("jobs taken to a hyperscaler", f"{summary['tenants_left_for_hyperscaler']:,}"),
        ("allocative efficiency", _pct(summary["allocative_efficiency"])),
    ):
        orders.add_row(label, value)
    spot = summary["interruptible"]
    if spot["leases"]:
        for label, value in (
            ("interruptible leases", f"{spot['leases']:,}"),
            ("median price, interruptible / on-demand, all GPUs",
             f"{spot['price_usd_per_gpu_hour']['median']:.3f} / "
             f"{spot['on_demand_price_usd_per_gpu_hour']['median']:.3f} USD/GPU-h"),
            ("pauses / resumes", f"{spot['pauses']:,} / {spot['resumes']:,}"),
            ("GPU-hours paused", f"{spot['paused_gpu_hours']:,.0f}"),
        ):
            orders.add_row(label, value)

    prices = Table(title="Price paid per GPU-hour (USD)", header_style="bold")
    for column in ("GPU", "leases", "mean", "median", "p90", "list", "GPU-hours", "paid",
                   "saved vs list"):
        prices.add_column(column, justify="left" if column == "GPU" else "right")
    for model, row in summary["price_usd_per_gpu_hour"].items():
        prices.add_row(model, f"{row['count']:,}", f"{row['mean']:.3f}", f"{row['median']:.3f}",
                       f"{row['p90']:.3f}", f"{row['list_usd_per_gpu_hour']:.2f}",
                       f"{row['gpu_hours']:,.0f}", _usd(row["paid_usd"]),
                       _pct(row["savings_vs_list"]))

    providers = Table(title="Who earned what (USD)", header_style="bold")
    for column in ("archetype", "providers", "GPUs", "utilization", "revenue", "cost",
                   "profit", "revenue − marginal cost"):
        providers.add_column(column, justify="left" if column == "archetype" else "right")
    for archetype, row in summary["providers"].items():
        providers.add_row(archetype, f"{row['providers']:,}", f"{row['gpus']:,}",
                          _pct(row["utilization"]), _usd(row["revenue_usd"]),
                          _usd(row["cost_usd"]), _usd(row["profit_usd"]),
                          _usd(row["contribution_usd"]))

    money = Table(title="Who paid what", show_header=False, box=None, padding=(0, 2))
    money.add_column(style="bold")
    money.add_column(justify="right")
    conserved = "[green]yes[/]" if summary["money_conserved"] else "[red]NO[/]"
    for label, value in (
        ("tenants paid providers and platform", _usd(summary["tenant_spend_usd"])),
        ("tenants saved vs hyperscaler list", _pct(summary["tenant_savings_vs_list"])),
        ("spent at hyperscalers by leavers", _usd(summary["hyperscaler_spend_usd"])),
        ("platform revenue (take rate)", _usd(summary["platform_revenue_usd"])),
        ("held in escrow at the end", _usd(summary["escrow_held_micro"] / 1e6)),
        ("money conserved", f"{conserved} (ledger total {summary['money_total_micro']} µUSD)"),
    ):
        money.add_row(label, value)

    console.print(Panel(Group(head, "", orders), title="gpumarket run", expand=False))
    console.print(prices)
    console.print(providers)
    console.print(money)


def render_validation(rows: list[Any], console: Console) -> None:
    """The `validate` rows: simulated price against theory, per mechanism and bidders."""
    table = Table(title="Textbook reverse auction: market vs theory", header_style="bold")
    for column in ("mechanism (bidders)", "n", "mean price", "95% CI", "theory",
                   "variance / theory", "efficiency", "agree"):
        table.add_column(column, justify="left" if column.startswith("mech") else "right")
    for row in rows:
        table.add_row(f"{row.mechanism} ({row.strategy})", str(row.bidders),
                      f"{row.mean_price:.4f}", f"{row.ci_low:.4f}–{row.ci_high:.4f}",
                      f"{row.theory_mean:.4f}",
                      f"{row.variance:.4f} / {row.theory_variance:.4f}",
                      _pct(row.efficiency), "[green]yes[/]" if row.agrees else "[red]NO[/]")
    console.print(table)
    console.print(f"{rows[0].auctions:,} auctions per row; costs i.i.d. uniform; agree = the "
                  "theory mean within 3.29 standard errors and every unit to the lowest cost")


def _ci(figure: tuple[float, float, float] | None, digits: int, percent: bool = False) -> str:
    if figure is None:
        return "—"
    mean, low, high = figure
    if percent:
        return f"{mean:.1%} ± {(high - low) / 2:.1%}" if high == high else f"{mean:.1%}"
    return f"{mean:,.{digits}f} ± {(high - low) / 2:,.{digits}f}" if high == high \
        else f"{mean:,.{digits}f}"


def render_standings(standings: list[Any], console: Console) -> None:
    """The tournament leaderboard, best profit per provider first."""
    seeds = standings[0].seeds if standings else 0
    table = Table(title=f"Tournament leaderboard ({seeds} seeds; mean ± 95% CI half-width)",
                  header_style="bold")
    for column in ("#", "strategy", "share", "providers", "profit per provider (USD)",
                   "win rate", "utilization", "regret"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for rank, standing in enumerate(standings, start=1):
        table.add_row(str(rank), standing.strategy, f"{standing.share:.0%}",
                      f"{standing.providers:,}", _ci(standing.profit_per_provider_usd, 0),
                      _ci(standing.win_rate, 0, percent=True),
                      _ci(standing.utilization, 0, percent=True), _ci(standing.regret, 2))
    console.print(table)


def render_evolution(history: list[list[Any]], strategies: list[str], console: Console) -> None:
    """How the strategies' shares of the providers moved, generation by generation."""
    table = Table(title="Replicator dynamics: share of providers by generation",
                  header_style="bold")
    table.add_column("generation", justify="right")
    for name in strategies:
        table.add_column(name, justify="right")
    for generation, standings in enumerate(history):
        share = {s.strategy: s.share for s in standings}
        table.add_row(str(generation), *[f"{share[name]:.1%}" for name in strategies])
    console.print(table)


def render_sweep(sweep: Any, groups: list[Any], params: list[str], metrics: list[str],
                 console: Console) -> None:
    """Means ± 95% CI of `metrics` per combination of `params` (`market.analysis` groups)."""
    from market import analysis

    console.print(f"[bold]{escape(sweep.name)}[/]: {len(sweep.runs)} runs, "
                  f"{sweep.failed} failed")
    if not groups:
        console.print("no run finished: nothing to summarize")
        return
    table = Table(title="mean ± 95% confidence interval", header_style="bold")
    for param in params:
        table.add_column(param)
    table.add_column("runs", justify="right")
    table.add_column("failed", justify="right")
    for metric in metrics:
        table.add_column(metric, justify="right")
    for group in groups:
        table.add_row(*(escape(analysis.format_value(group.values[p])) for p in params),
                      str(group.runs), str(group.failed),
                      *(analysis.format_estimate(group.metrics[m]) for m in metrics))
    console.print(table)
