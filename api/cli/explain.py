"""`gpumarket explain`: why an order of a finished run got no bids (or what it got), read from
the run's output folder (`gpumarket run --out DIR`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from api.cli.output import Output
from api.cli.shared import FormatOption, fail, output_format, print_json
from market.core.no_bids import COLUMNS, MEANINGS, REASONS, dominant


def explain(
    order_id: Annotated[int, typer.Argument(metavar="ORDER_ID",
                                            help="an order id of the run (orders.parquet)",
                                            show_default=False)],
    out: Annotated[Path, typer.Option(
        help="the run's output folder (gpumarket run --out DIR)", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="print the explanation as one JSON "
                                          "object on stdout")] = False,
    fmt: FormatOption = None,
) -> None:
    """Why an order of a run got no bids: what it asked for, and for every provider that did
    not bid when its auction opened, the first reason (counted by reason), or the lease it
    got."""
    shape = output_format(fmt, as_json)
    found = order_explained(out, order_id)
    if shape == "json":
        print_json(found)
    else:
        Output(shape).show(*_blocks(found))


def order_explained(folder: Path, order_id: int) -> dict[str, Any]:
    """The order's row of `folder`'s orders table as plain data, with its job's other orders
    and its no-bid reasons (reason → providers, in precedence order; None when the run did
    not count them). Raises typer.Exit (code 2, one line) for a folder without a run or an
    unknown order."""
    import pyarrow.parquet as pq

    path = folder / "orders.parquet"
    if not path.is_file() or not (folder / "summary.json").is_file():
        raise fail(f"--out: {str(folder)!r} holds no run (no orders.parquet and summary.json); "
                   "write one with 'gpumarket run --out DIR'")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as error:  # damaged or not Parquet: one line (ArrowInvalid)
        raise fail(f"--out: cannot read {str(path)!r}: {error}") from None
    if "order_id" not in table.column_names:
        raise fail(f"--out: {str(path)!r} is not a run's orders table (no order_id column)")
    ids = table.column("order_id").to_pylist()
    try:
        at = ids.index(order_id)
    except ValueError:
        span = f"ids {min(ids)} to {max(ids)}" if ids else "no orders"
        raise fail(f"ORDER_ID: no order {order_id} in this run ({span})") from None
    row = {name: table.column(name)[at].as_py() for name in table.column_names}
    counted = all(column in row and row[column] is not None for column in COLUMNS)
    reasons = {reason: int(row[column]) for reason, column in zip(REASONS, COLUMNS,
                                                                 strict=True)
               if row[column]} if counted else None
    jobs = table.column("job_id").to_pylist()
    attempts = [{"order_id": ids[i], "attempt": table.column("attempt")[i].as_py(),
                 "outcome": table.column("outcome")[i].as_py()}
                for i, job in enumerate(jobs) if job == row["job_id"]]
    summary = json.loads((folder / "summary.json").read_text())
    return {
        "order_id": order_id, "job_id": row["job_id"], "tenant": row["tenant"],
        "attempt": row["attempt"], "job_kind": row["job_kind"], "gpus": row["gpus"],
        "gpu_models": row["gpu_models"].split(",") if row["gpu_models"] else [],
        "max_price_usd_per_gpu_hour": row["max_price_usd_per_gpu_hour"],
        "created_s": row["created_s"], "outcome": row["outcome"], "bids": row["bids"],
        "decided_s": row["decided_s"], "lease_id": row["lease_id"],
        "price_usd_per_gpu_hour": row["price_usd_per_gpu_hour"],
        "providers": summary.get("providers_count"),
        "no_bids": reasons,
        "dominant": dominant([reasons.get(r, 0) for r in REASONS]) if reasons else None,
        "job_orders": attempts,
    }


def _blocks(found: dict[str, Any]) -> list[Any]:
    """The explanation as report blocks: the order, then its reasons."""
    models = found["gpu_models"]
    asked = (f"{found['gpus']} GPU{'s' if found['gpus'] != 1 else ''} of "
             f"{', '.join(models) if len(models) <= 3 else f'{len(models)} models'} "
             f"at most {found['max_price_usd_per_gpu_hour']:.3f} USD/GPU-h")
    order = Table(title=f"Order {found['order_id']}", show_header=False, box=None,
                  padding=(0, 2))
    order.add_column("figure", style="bold")
    order.add_column("value")
    outcome = found["outcome"]
    if outcome == "leased":
        got = (f"leased: lease {found['lease_id']} at "
               f"{found['price_usd_per_gpu_hour']:.3f} USD/GPU-h after "
               f"{_minutes(found['decided_s'] - found['created_s'])}")
    elif outcome == "expired":
        got = f"expired after {_minutes(found['decided_s'] - found['created_s'])}, no lease"
    else:
        got = outcome if outcome != "open" else "still open when the run ended"
    tries = ", ".join(f"{o['order_id']} {o['outcome']}" for o in found["job_orders"])
    for label, value in (
        ("job", f"{found['job_id']} ({found['job_kind'] or 'job'}), attempt "
                f"{found['attempt']}, tenant {found['tenant']}"),
        ("asked for", asked),
        ("posted at", f"day {found['created_s'] / 86_400:.2f}"),
        ("outcome", got),
        ("bids", f"{found['bids']:,}" + (" (none acceptable: above the tenant's reserve for "
                                          "the job, or withdrawn)"
                                          if outcome == "expired" and found["bids"] else "")),
        ("the job's orders", tries),
    ):
        order.add_row(label, value)
    reasons = found["no_bids"]
    if reasons is None:
        order.caption = "no reasons counted for this order (cleared in a batch)"
        return [order]
    why = Table(title="Why providers did not bid", header_style="bold",
                box=box.SIMPLE, pad_edge=False, padding=(0, 1))
    for column in ("reason", "providers", "meaning"):
        why.add_column(column, justify="right" if column == "providers" else "left")
    for reason in REASONS:
        if reasons.get(reason):
            why.add_row(reason.replace("_", " "), f"{reasons[reason]:,}", MEANINGS[reason])
    not_bidding = sum(reasons.values())
    why.caption = (f"{not_bidding:,} providers did not bid when the auction opened, each "
                   f"under its first reason; dominant: {found['dominant'] or 'none'}")
    return [order, why]


def _minutes(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    return f"{seconds / 60:.1f} min"
