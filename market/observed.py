"""Observed GPU rental prices: the points a calibration fits the market to.

`market/data/observed_prices.csv` ships each price point people have reported for renting a
GPU, one row per point, with the month it was observed and its source:

- `observed`: the month, `YYYY-MM`;
- `gpu`: the catalog model it prices (`market/data/gpus.toml`);
- `venue`: where it was asked: `marketplace` (peer-to-peer and community clouds), `specialist`
  (GPU clouds' own capacity), `hyperscaler` (AWS, Azure, Google), `contract` (reserved terms);
- `statistic`: what the figure is: `typical`, `median`, `average`, `low`, `on_demand`, `spot`
  or `range`;
- `low_usd_per_gpu_hour`, `high_usd_per_gpu_hour`: the figure, USD per GPU-hour (a single
  figure has both equal; a range gives its ends);
- `source`: who reported it, what, and where (an address).

A file of one's own in the same columns can replace it (`load_observed_prices(path)`).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from market.catalog import GpuCatalog, load_catalog

COLUMNS = ("observed", "gpu", "venue", "statistic", "low_usd_per_gpu_hour",
           "high_usd_per_gpu_hour", "source")
VENUES = ("marketplace", "specialist", "hyperscaler", "contract")
STATISTICS = ("typical", "median", "average", "low", "on_demand", "spot", "range")
#: The catalog's own ceiling for a price per GPU-hour (`market.catalog.BOUNDS`).
MAX_USD_PER_GPU_HOUR = 1_000.0
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class ObservedPricesError(ValueError):
    """A row of an observed-prices file that cannot be used: the message names the file, the
    line and the column."""


@dataclass(frozen=True)
class ObservedPrice:
    """One reported price point (see the module's column list)."""

    observed: str
    gpu: str
    venue: str
    statistic: str
    low_usd_per_gpu_hour: float
    high_usd_per_gpu_hour: float
    source: str

    @property
    def mid_usd_per_gpu_hour(self) -> float:
        """The figure, or the middle of the range."""
        return (self.low_usd_per_gpu_hour + self.high_usd_per_gpu_hour) / 2


def load_observed_prices(path: str | os.PathLike[str] | None = None,
                         catalog: GpuCatalog | None = None) -> list[ObservedPrice]:
    """The observed prices in `path` (default: the shipped file), every row checked; raise
    ObservedPricesError naming the file, line and column of the first bad one."""
    if path is None:
        origin = "market/data/observed_prices.csv"
        text = resources.files("market").joinpath("data/observed_prices.csv").read_text("utf-8")
    else:
        origin = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ObservedPricesError(f"{origin}: cannot read: {error}") from None
    models = set((catalog or load_catalog()).ids)
    return list(_rows(csv.reader(io.StringIO(text, newline="")), origin, models))


def _rows(reader: Iterable[list[str]], origin: str,
          models: set[str]) -> Iterable[ObservedPrice]:
    header = next(iter(reader), None)
    if header is None or tuple(header) != COLUMNS:
        raise ObservedPricesError(f"{origin}:1: expected the columns {', '.join(COLUMNS)}")
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(COLUMNS):
            raise ObservedPricesError(f"{origin}:{line}: expected {len(COLUMNS)} fields, "
                                      f"got {len(row)}")
        yield _price(dict(zip(COLUMNS, row, strict=True)), f"{origin}:{line}", models)


def _price(fields: dict[str, str], where: str, models: set[str]) -> ObservedPrice:
    def bad(column: str, expected: str) -> ObservedPricesError:
        return ObservedPricesError(f"{where}: column {column}: expected {expected}, got "
                                   f"{fields[column][:40]!r}")

    if not _MONTH.match(fields["observed"]):
        raise bad("observed", "a month YYYY-MM")
    if fields["gpu"] not in models:
        raise bad("gpu", f"a catalog model ({', '.join(sorted(models))})")
    if fields["venue"] not in VENUES:
        raise bad("venue", f"one of {', '.join(VENUES)}")
    if fields["statistic"] not in STATISTICS:
        raise bad("statistic", f"one of {', '.join(STATISTICS)}")
    prices = []
    for column in ("low_usd_per_gpu_hour", "high_usd_per_gpu_hour"):
        try:
            value = float(fields[column])
        except ValueError:
            value = math.nan
        if not 0 < value <= MAX_USD_PER_GPU_HOUR:
            raise bad(column, f"a price in (0, {MAX_USD_PER_GPU_HOUR:g}] USD per GPU-hour")
        prices.append(value)
    if prices[0] > prices[1]:
        raise bad("high_usd_per_gpu_hour", f"at least low_usd_per_gpu_hour ({prices[0]:g})")
    if not fields["source"].strip():
        raise bad("source", "who reported the price and where")
    return ObservedPrice(fields["observed"], fields["gpu"], fields["venue"],
                         fields["statistic"], prices[0], prices[1], fields["source"].strip())


def observed_span(prices: Iterable[ObservedPrice], gpu: str, *, venue: str | None = None,
                  since: str = "0000-01") -> tuple[float, float] | None:
    """The lowest low and highest high, USD per GPU-hour, reported for `gpu` (at `venue`, if
    given) from the month `since` (YYYY-MM) on; None when nothing was."""
    chosen = [price for price in prices
              if price.gpu == gpu and price.observed >= since
              and (venue is None or price.venue == venue)]
    if not chosen:
        return None
    return (min(price.low_usd_per_gpu_hour for price in chosen),
            max(price.high_usd_per_gpu_hour for price in chosen))
