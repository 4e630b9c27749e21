"""Reports as rich tables: a run summary, validation, tournaments, sweeps, listings.

Each `render_*` builds its tables and notes and hands them to an `api.cli.output.Output`, which
shows them as colour tables on a terminal, full-width plain text off one, or markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from api.cli.output import Output
from market.experiments.intervals import SIGNED_UNIT, UNIT, clip
from market.units import micro_to_usd


def _usd(value: float) -> str:
    sign = "−" if value < 0 else ""
    amount = abs(value)
    return f"{sign}${amount:,.0f}" if amount >= 100 else f"{sign}${amount:,.2f}"


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def show_run(summary: dict[str, Any], shape: str, out: Path | None) -> None:
    """The run report (`gpumarket run`, `gpumarket replay`) in format `shape`, and the folder
    its files went to (`out`, None: none written)."""
    output = Output(shape)
    render(summary, output)
    if out is not None:
        extra = (", entry_exit" if "entry_exit" in summary else "") + \
            (", bme, bme_providers" if "bme" in summary else "")
        output.show(f"wrote summary.json, orders, leases, jobs, providers, prices{extra} "
                    f"(.parquet) to {escape(str(out))}")
        if (out / "report.html").is_file() and "entry_exit" in summary:
            output.show(f"report: {escape(str(out / 'report.html'))}")


def render(summary: dict[str, Any], out: Output) -> None:
    """Print `summary` (a RunResult summary) as a handful of tables."""
    head = (f"[bold]{summary['scenario']}[/] · seed {summary['seed']} · "
            f"{summary['simulated_days']:.1f} simulated days · mechanism "
            f"{summary['mechanism']} · {summary['providers_count']} providers · "
            f"{summary['tenants_count']} tenants")

    orders = Table(title="Orders and leases", show_header=False, box=None, padding=(0, 2))
    orders.add_column("figure", style="bold")
    orders.add_column("value", justify="right")
    waited = summary["job_time_to_lease_s"]
    # One item a line: a list never wraps between a name and its count, at any width.
    reasons = "\n".join(f"{k} {v:,}" for k, v in summary["lease_close_reasons"].items()) \
        or "none"
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
    ):
        orders.add_row(label, value)
    spot = summary["interruptible"]
    if spot["leases"]:
        for label, value in (
            ("interruptible leases", f"{spot['leases']:,}"),
            ("median price, interruptible / on-demand, all GPUs",
             f"{spot['price_usd_per_gpu_hour']['median']:.3f} / "
             f"{spot['on_demand_price_usd_per_gpu_hour']['median']:.3f} USD/GPU-h"),
            ("pauses / resumes (at once)", f"{spot['pauses']:,} / {spot['resumes']:,} "
                                           f"({spot['resumed_at_once']:,})"),
            ("GPU-hours paused", f"{spot['paused_gpu_hours']:,.0f}"),
        ):
            orders.add_row(label, value)

    # Tables fit 80 columns (a pipe, a log, a narrow terminal): no vertical rules.
    prices = Table(title="Price paid per GPU-hour (USD)", header_style="bold", box=box.SIMPLE,
                   pad_edge=False, padding=(0, 0))
    for column in ("GPU", "leases", "mean", "median", "CV", "p90/p10", "GPU-hours", "paid",
                   "vs list"):
        prices.add_column(column, justify="left" if column == "GPU" else "right",
                          no_wrap=True)
    for model, row in summary["price_usd_per_gpu_hour"].items():
        prices.add_row(model, f"{row['count']:,}", f"{row['mean']:.3f}", f"{row['median']:.3f}",
                       _maybe(row["cv"], _pct), _maybe(row["p90_p10"], lambda x: f"{x:.2f}"),
                       f"{row['gpu_hours']:,.0f}", _usd(row["paid_usd"]),
                       f"−{_pct(row['savings_vs_list'])}" if row["savings_vs_list"] > 0
                       else _pct(-row["savings_vs_list"]))
    prices.caption = "CV: standard deviation / mean; vs list: against hyperscaler list"

    providers = Table(title="Who earned what (USD)", header_style="bold", box=box.SIMPLE,
                      pad_edge=False, padding=(0, 0))
    for column in ("archetype", "providers", "GPUs", "busy", "revenue", "avoidable\ncost",
                   "short-run\nprofit", "long-run\nprofit"):
        providers.add_column(column, justify="left" if column == "archetype" else "right",
                             no_wrap=column == "archetype")
    for archetype, row in summary["providers"].items():
        providers.add_row(archetype, f"{row['providers']:,}", f"{row['gpus']:,}",
                          _pct(row["utilization"]), _usd(row["revenue_usd"]),
                          _usd(row["avoidable_cost_usd"]), _usd(row["short_run_profit_usd"]),
                          _usd(row["long_run_profit_usd"]))
    power = summary["market_power"]
    lerner = ", ".join(f"{name} {_maybe(value, lambda x: f'{x:.2f}')}"
                       for name, value in power["lerner_index_by_archetype"].items())
    providers.caption = (f"long-run profit also pays capex; Lerner index {lerner}; "
                         f"revenue HHI {power['hhi_provider_revenue']:,.0f}")

    welfare = _welfare_table(summary["welfare"])

    money = Table(title="Who paid what", show_header=False, box=None, padding=(0, 2))
    money.add_column("figure", style="bold")
    money.add_column("value", justify="right")
    conserved = "[green]yes[/]" if summary["money_conserved"] else "[red]NO[/]"
    for label, value in (
        ("tenants paid providers and platform", _usd(summary["tenant_spend_usd"])),
        ("tenants saved vs hyperscaler list", _pct(summary["tenant_savings_vs_list"])),
        ("spent at hyperscalers by leavers", _usd(summary["hyperscaler_spend_usd"])),
        ("platform revenue (take rate)", _usd(summary["platform_revenue_usd"])),
        ("held in escrow at the end", _usd(micro_to_usd(summary["escrow_held_micro"]))),
        ("money conserved", f"{conserved} (ledger total {summary['money_total_micro']} µUSD)"),
    ):
        money.add_row(label, value)

    blocks = [Panel(Group(head, "", orders), title="gpumarket run", expand=False)]
    if summary.get("no_bids", {}).get("expired_orders"):
        blocks.append(_no_bids_table(summary["no_bids"]))
    blocks += [prices, providers, welfare, money]
    if "node_lists" in summary or "trace" in summary:
        from api.cli.trace import run_node_list_table, run_trace_table

        # Providers made of real machines: which file, what was kept.
        for population, nodes in summary.get("node_lists", {}).items():
            blocks.append(run_node_list_table(population, nodes,
                                              summary.get("node_fragmentation")))
        if "trace" in summary:  # jobs from a trace file: which, and what was skipped
            blocks.append(run_trace_table(summary["trace"]))
    if "entry_exit" in summary:  # providers entered and left during the run
        blocks.append(_entry_exit_table(summary["entry_exit"]))
    if "bme" in summary:  # settled in AKT: the price, the breakers, the supply
        blocks.append(_bme_table(summary["bme"]))
    out.show(*blocks)


def _bme_table(figures: dict[str, Any]) -> Table:
    """Burn-Mint Equilibrium: the AKT price, the collateral ratio and its breakers, AKT's
    supply, and what providers' AKT was worth when paid and when sold."""
    table = Table(title="Burn-Mint Equilibrium (paid in AKT)", show_header=False, box=None,
                  padding=(0, 2))
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    price = figures["akt_price_usd"]
    ratio = figures["collateral_ratio"]
    share = figures["mint_status_share"]
    breakers = figures["breaker_activations"]
    sellers = figures["providers"]
    for label, value in (
        ("AKT price, start → end (min–max)",
         f"{price['start']:.4f} → {price['end']:.4f} ({price['min']:.4f}–{price['max']:.4f})"),
        ("collateral ratio, end / min", f"{_maybe(ratio['end'], lambda x: f'{x:.3f}')} / "
                                        f"{_maybe(ratio['min'], lambda x: f'{x:.3f}')}"),
        ("time healthy / warning / halted",
         f"{_pct(share['healthy'])} / {_pct(share['warning'])} / "
         f"{_pct(share['halt_cr'] + share['halt_oracle'])}"),
        ("breakers tripped: warning / halt (CR) / halt (oracle)",
         f"{breakers['warning']:,} / {breakers['halt_cr']:,} / {breakers['halt_oracle']:,}"),
        ("ACT minted / burned / outstanding",
         f"{_usd(figures['act_minted_usd'])} / {_usd(figures['act_burned_usd'])} / "
         f"{_usd(figures['outstanding_act_usd'])}"),
        ("AKT burned / paid from vault / minted",
         f"{figures['akt_burned']:,.0f} / {figures['akt_paid_from_vault']:,.0f} / "
         f"{figures['akt_minted']:,.0f}"),
        ("AKT supply change (net)", f"{figures['net_supply_change_akt']:+,.0f}"),
        ("top-ups / orders paid in AKT", f"{figures['topups']:,} / "
                                         f"{figures['orders_paid_in_akt']:,}"),
        ("providers' AKT at settlement / when sold",
         f"{_usd(sellers['usd_at_settlement'])} / {_usd(sellers['usd_at_sale'])}"),
    ):
        table.add_row(label, value)
    table.caption = "ACT: one USD of compute; the vault holds the AKT burned for it"
    return table


def _entry_exit_table(figures: dict[str, Any]) -> Table:
    """Entry and exit by population: entered, exited, and on the market at the end."""
    table = Table(title="Entry and exit", header_style="bold", box=box.SIMPLE)
    for name in ("population", "entered", "exited", "on market", "GPUs on market"):
        table.add_column(name, justify="left" if name == "population" else "right")
    for name, row in figures["by_population"].items():
        table.add_row(name, f"{row['entered']:,}", f"{row['exited']:,}",
                      f"{row['providers_on_market']:,}", f"{row['gpus_on_market']:,}")
    table.caption = (f"{figures['leaving']} leaving (serving their last leases), "
                     f"{figures['committed']} committed and on their way")
    return table


def _no_bids_table(figures: dict[str, Any]) -> Table:
    """Why expired orders got no acceptable bid: each reason's orders (where it was the
    dominant one) and providers, per expired order (`market.core.no_bids`)."""
    orders = figures["expired_orders"]
    table = Table(title=f"Why no bids? ({orders:,} expired orders)", header_style="bold",
                  box=box.SIMPLE, pad_edge=False, padding=(0, 1))
    for column in ("reason", "dominant in", "providers per order"):
        table.add_column(column, justify="left" if column == "reason" else "right",
                         no_wrap=True)
    dominant, providers = figures["dominant_reason_orders"], figures["providers"]
    for reason in sorted(providers, key=lambda r: (-dominant[r], -providers[r])):
        if providers[reason]:
            table.add_row(reason.replace("_", " "), f"{dominant[reason]:,}",
                          f"{providers[reason] / orders:,.1f}")
    table.caption = ("dominant: the reason most providers of an accepted GPU model gave; "
                     "an order: gpumarket explain --out DIR ORDER_ID")
    return table


def _maybe(value: float | None, show: Any) -> str:
    return "—" if value is None else show(value)


def _welfare_table(welfare: dict[str, Any]) -> Table:
    """Welfare counted once per job: where the potential went."""
    table = Table(title="Welfare, counted once per job (USD)", show_header=False, box=None,
                  padding=(0, 2))
    table.add_column("figure", style="bold", no_wrap=True)
    table.add_column("value", justify="right")
    causes = welfare["deadweight_loss_by_cause_usd"]
    holds = "[green]yes[/]" if welfare["identity_holds"] else "[red]NO[/]"
    jobs = "\n".join(f"{name.replace('_', ' ')} {count:,}"
                     for name, count in welfare["jobs"].items()) or "none"
    for label, value in (
        ("potential (value − best cost)", _usd(welfare["potential_usd"])),
        ("  tenants' surplus", _usd(welfare["consumer_surplus_usd"])),
        ("  providers' surplus", _usd(welfare["producer_surplus_usd"])),
        ("  platform fees", _usd(welfare["platform_fees_usd"])),
        ("  outside option's surplus", _usd(welfare["outside_surplus_usd"])),
        ("    tenants', hyperscalers'", ", ".join(
            _usd(welfare["outside_surplus_by_side_usd"][side])
            for side in ("tenants", "hyperscalers"))),
        ("  deadweight loss", _usd(welfare["deadweight_loss_usd"])),
        ("    unserved, misallocated, wasted",
         ", ".join(_usd(causes[cause]) for cause in ("unserved", "misallocated", "wasted"))),
        ("allocative efficiency", _pct(welfare["allocative_efficiency"])),
        ("pending at the end (not counted)", _usd(welfare["pending_potential_usd"])),
        ("jobs", jobs),
        ("parts add up to the potential", f"{holds} (off by "
                                          f"{welfare['identity_residual_micro']} µUSD)"),
    ):
        table.add_row(label, value)
    return table


def render_validation(rows: list[Any], out: Output) -> None:
    """The `validate` rows: simulated price against theory, per mechanism and bidders."""
    table = Table(title="Textbook reverse auction: market vs theory", header_style="bold")
    for column in ("mechanism (bidders)", "n", "mean price", "95% CI", "theory",
                   "variance / theory", "efficiency", "lowest margin", "agree"):
        table.add_column(column, justify="left" if column.startswith("mech") else "right")
    for row in rows:
        table.add_row(f"{row.mechanism} ({row.strategy})", str(row.bidders),
                      f"{row.mean_price:.4f}", f"{row.ci_low:.4f}–{row.ci_high:.4f}",
                      f"{row.theory_mean:.4f}",
                      f"{row.variance:.4f} / {row.theory_variance:.4f}",
                      _pct(row.efficiency), f"{row.min_margin_usd_per_gpu_hour:.4f}",
                      "[green]yes[/]" if row.agrees else "[red]NO[/]")
    out.show(table, f"{rows[0].auctions:,} auctions per row; costs i.i.d. uniform; take rate "
                  f"{rows[0].take_rate:.0%}, priced in by the bidders: theory in terms of "
                  "cost / (1 − take rate); lowest margin = least (1 − take rate) × price − "
                  "cost of any winner; agree = the theory mean within 3.29 standard errors, "
                  "every unit to the lowest cost and no winner below its cost")


def render_deviations(rows: list[Any], out: Output) -> None:
    """The `validate --deviations` rows: each mechanism's best unilateral deviation."""
    table = Table(title="Incentive checks: one bidder's best shading of the prescribed bid",
                  header_style="bold")
    for column in ("mechanism", "prescribed", "n", "profit", "best shading",
                   "gain per auction, 95% CI", "theory", "verdict"):
        table.add_column(column, justify="left" if column in ("mechanism", "prescribed",
                                                              "verdict") else "right")
    colour = {"no profitable deviation": "green", "profitable deviation": "red"}
    for row in rows:
        best = row.best
        theory = "—" if best.theory_gain is None else f"{best.theory_gain:+.4f}"
        style = colour.get(row.verdict)
        table.add_row(row.mechanism, row.strategy, str(row.bidders), f"{row.profit:.4f}",
                      f"× {best.shading:g}",
                      f"{best.gain:+.4f} ± {(best.ci_high - best.ci_low) / 2:.4f}", theory,
                      f"[{style}]{row.verdict}[/]" if style else row.verdict)
    out.show(table, f"{rows[0].auctions:,} auctions per run, USD per GPU-hour kept after the fee; "
                  "profit = the bidder's mean (1 − take rate) × price − cost per auction when "
                  "it plays the prescribed strategy; gain = the paired difference when it "
                  "alone multiplies its bid by the shading (same seed, same costs); shadings "
                  f"tried: {', '.join(f'{g.shading:g}' for g in rows[0].shadings)}; a "
                  "profitable deviation = the best gain above 3.29 standard errors")


def _ci(figure: tuple[float, float, float] | None, digits: int, percent: bool = False,
        bounds: tuple[float, float] | None = None) -> str:
    """"mean ± half-width"; "mean (low–high)" when the interval was clipped to `bounds` (a
    share's t interval near 0% or 100%), as ± would then claim a bound outside them."""
    if figure is None:
        return "—"
    mean, low, high = figure
    shown = (lambda x: f"{x:.1%}") if percent else (lambda x: f"{x:,.{digits}f}")
    if high != high:  # one seed: no interval
        return shown(mean)
    low_in, high_in = clip(low, high, bounds)
    if (low_in, high_in) != (low, high):
        return f"{shown(mean)} ({shown(low_in)}–{shown(high_in)})"
    half = (high - low) / 2
    return f"{shown(mean)} ± {shown(half)}"


def _delta(figure: tuple[float, float, float] | None, digits: int,
           percent: bool = False) -> str:
    """A paired difference, signed, ± its half-width; * when its interval excludes 0. A
    difference of shares is clipped to [−100%, 100%] and then shown as (low–high)."""
    if not figure:
        return "—"
    mean, low, high = figure
    shown = round(mean * 100 if percent else mean, 1 if percent else digits) + 0.0  # no -0
    text = f"{'+' if shown > 0 else ''}{shown:,.{1 if percent else digits}f}"
    text += "%" if percent else ""
    if high != high:  # one seed: no interval
        return text
    star = " *" if low > 0 or high < 0 else ""
    if percent:
        low_in, high_in = clip(low, high, SIGNED_UNIT)
        if (low_in, high_in) != (low, high):
            return f"{text} ({low_in:+.1%}–{high_in:+.1%}){star}"
    half = (high - low) / 2
    return f"{text} ± {half:.1%}{star}" if percent else f"{text} ± {half:,.{digits}f}{star}"


def render_standings(board: Any, out: Output) -> None:
    """The tournament leaderboard (a `market.experiments.tournament.Leaderboard`), best profit per
    provider first, with each strategy's paired difference from the reference, and a
    warning line per population that does not split evenly."""
    standings = board.standings
    seeds = len(board.seeds)
    reference = escape(board.reference)
    table = Table(title=f"Tournament leaderboard ({seeds} seeds; mean ± 95% CI half-width)",
                  header_style="bold")
    for column in ("#", "strategy", "share", "providers", "GPUs", "profit per provider (USD)",
                   f"Δ profit vs {reference}", "win rate", f"Δ win rate vs {reference}",
                   "utilization", "regret"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for rank, standing in enumerate(standings, start=1):
        vs = standing.vs_reference
        table.add_row(str(rank), escape(standing.strategy), f"{standing.share:.0%}",
                      f"{standing.providers:,}", f"{standing.gpus:,.0f}",
                      _ci(standing.profit_per_provider_usd, 0),
                      _delta(vs.get("profit_per_provider_usd"), 1) if vs else "reference",
                      _ci(standing.win_rate, 0, percent=True, bounds=UNIT),
                      _delta(vs.get("win_rate"), 0, percent=True) if vs else "reference",
                      _ci(standing.utilization, 0, percent=True, bounds=UNIT),
                      _ci(standing.regret, 2))
    out.show(table, f"Δ: paired difference from {reference} on the same {seeds} seeds (common "
             "random numbers), mean ± 95% CI half-width; * the interval excludes 0. "
             "Without *, the seeds cannot tell the two apart. A share's interval is clipped "
             "to [0%, 100%] and then shown as (low–high).",
             *(f"[yellow]warning:[/] {escape(warning)}" for warning in board.warnings))


def render_evolution(history: list[Any], strategies: list[str], out: Output) -> None:
    """How the strategies' shares of the providers moved, generation by generation (each a
    `Leaderboard`), and which fitness gaps were significant."""
    table = Table(title="Replicator dynamics: share of providers by generation",
                  header_style="bold")
    table.add_column("generation", justify="right")
    for name in strategies:
        table.add_column(escape(name), justify="right")
    for generation, board in enumerate(history):
        cells = []
        for name in strategies:
            standing = board[name]
            gap = standing.profit_vs_mean_usd
            mark = "=" if not (gap[1] > 0 or gap[2] < 0) else "▲" if gap[0] > 0 else "▼"
            cells.append(f"{standing.share:.1%} {mark} {_delta(gap, 1)}")
        table.add_row(str(generation), *cells)
    out.show(table, "Each cell: the generation's share, then its profit per provider minus the "
                  "market's mean (USD, paired over seeds, ± 95% CI half-width). ▲/▼ the gap "
                  "is significant: the share moves; = it is not: the share is kept "
                  "(up to renormalization).")


def render_sweep(sweep: Any, groups: list[Any], params: list[str], metrics: list[str],
                 out: Output) -> None:
    """Means ± 95% CI of `metrics` per combination of `params` (`market.experiments.analysis`
    groups), under the labels and in the units the HTML report uses
    (`market.experiments.labels`)."""
    from market.experiments import analysis, labels


    head = f"[bold]{escape(sweep.name)}[/]: {len(sweep.runs)} runs, {sweep.failed} failed"
    if not groups:
        out.show(head, "no run finished: nothing to summarize")
        return
    table = Table(title="mean ± 95% confidence interval", header_style="bold")
    for param in params:
        table.add_column(escape(labels.parameter(param).title))
    table.add_column("runs", justify="right")
    table.add_column("failed", justify="right")
    for metric in metrics:
        table.add_column(escape(labels.metric(metric).title), justify="right")
    for group in groups:
        table.add_row(*(escape(labels.format_param_value(p, group.values[p])) for p in params),
                      str(group.runs), str(group.failed),
                      *(analysis.format_estimate(group.metrics[m], labels.metric(m))
                        for m in metrics))
    out.show(head, table)


def render_baseline(sweep: Any, comparisons: list[Any], metrics: list[str],
                    baseline: dict[str, Any], out: Output) -> None:
    """Each point's paired difference from its baseline point (`analysis.Comparison`s)."""
    from market.experiments import analysis, labels


    title = (f"paired difference from the baseline ({escape(analysis.group_label(baseline))}):"
             " mean ± 95% CI half-width over seeds")
    if not comparisons:
        out.show(f"{title}: no point has a baseline point with OK runs")
        return
    table = Table(title=title, header_style="bold")
    for param in sweep.params:
        table.add_column(escape(labels.parameter(param).title))
    table.add_column("pairs", justify="right")
    for metric in metrics:
        table.add_column(escape(labels.metric(metric).difference_title), justify="right")
    for c in comparisons:
        cells = []
        for metric in metrics:
            cells.append("baseline" if c.is_baseline
                         else analysis.format_difference(c.differences[metric],
                                                         labels.metric(metric)))
        table.add_row(*(escape(labels.format_param_value(p, c.values[p]))
                        for p in sweep.params), str(c.pairs), *cells)
    out.show(table, "* the interval excludes 0; without *, the seeds cannot tell the point "
             "from its baseline.")


def render_pass_through(passes: list[Any], from_baseline: bool, out: Output) -> None:
    """The fee pass-through between take rates (`analysis.PassThrough`s)."""
    from market.experiments import analysis


    how = "from the baseline's take rate" if from_baseline else "between adjacent take rates"
    table = Table(title=f"Fee pass-through {how}: Δ price paid per GPU-hour / Δ fee per "
                        "GPU-hour, paired by seed", header_style="bold")
    others = list(passes[0].values) if passes else []
    for param in others:
        table.add_column(param)
    for column in ("take rate", "pairs", "Δ fee (USD/GPU-h)", "Δ price (USD/GPU-h)",
                   "pass-through", "95% CI (Fieller)"):
        table.add_column(column, justify="right")
    for p in passes:
        table.add_row(*(escape(analysis.format_value(p.values[k])) for k in others),
                      f"{analysis.format_value(p.take_rate_from)} → "
                      f"{analysis.format_value(p.take_rate_to)}",
                      str(p.fee_change.n), analysis.format_estimate(p.fee_change),
                      analysis.format_estimate(p.price_change), analysis.format_share(p.ratio),
                      analysis.format_share_interval(p.low, p.high))
    out.show(table, "100%: tenants bear the whole change in the fee; 0%: providers absorb it.")


def render_listing(title: str, rows: list[dict[str, Any]], out: Output) -> None:
    """A list of named things (`gpumarket scenarios`, `gpumarket sweeps`): one row each."""
    table = Table(title=title, header_style="bold", box=box.SIMPLE, pad_edge=False,
                  show_edge=False)
    for key in rows[0] if rows else ("name",):
        table.add_column(key, justify="right" if key == "runs" else "left",
                         no_wrap=key == "name")
    for row in rows:
        table.add_row(*(escape(f"{value:,}" if isinstance(value, int) else str(value))
                        for value in row.values()))
    out.show(table)


def sweep_report_json(sweep: Any, groups: list[Any], params: list[str], metrics: list[str],
                      baseline: dict[str, Any] | None, comparisons: list[Any],
                      passes: list[Any], page: Any) -> dict[str, Any]:
    """`gpumarket report --json`: the tables of the report as one JSON object, every mean a
    labelled 95% interval clipped to its metric's natural range (`market.experiments.intervals`)."""
    from market.experiments.intervals import labelled, natural_range

    def estimate(e: Any, bounds: tuple[float, float] | None) -> dict[str, Any]:
        return labelled(e.mean, e.low, e.high, method="student_t", n=e.n, bounds=bounds)

    def difference_range(metric: str) -> tuple[float, float] | None:
        return SIGNED_UNIT if natural_range(metric) == UNIT else None

    return {
        "sweep": sweep.name, "runs": len(sweep.runs), "failed": sweep.failed,
        "params": params, "metrics": metrics,
        "groups": [{"values": group.values, "runs": group.runs, "failed": group.failed,
                    "metrics": {m: estimate(group.metrics[m], natural_range(m))
                                for m in metrics}} for group in groups],
        "baseline": baseline,
        "comparisons": [{"values": c.values, "baseline": c.baseline, "pairs": c.pairs,
                         "is_baseline": c.is_baseline,
                         "differences": {m: estimate(c.differences[m], difference_range(m))
                                         for m in metrics}} for c in comparisons],
        "pass_through": [{"values": p.values, "take_rate_from": p.take_rate_from,
                          "take_rate_to": p.take_rate_to,
                          "fee_change_usd_per_gpu_hour": estimate(p.fee_change, None),
                          "price_change_usd_per_gpu_hour": estimate(p.price_change, None),
                          "pass_through": labelled(p.ratio, p.low, p.high, method="fieller",
                                                   n=p.fee_change.n)} for p in passes],
        "report_html": str(page),
    }
