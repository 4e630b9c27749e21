"""Tests for market.observed: the shipped observed GPU prices and the checks on each row.

The shipped file loads whole, every row with a source that names an address; a model's span
is worked by hand on a three-row file; every kind of bad row is refused with the file, line
and column named.
"""

from __future__ import annotations

import pytest

from market.observed import (
    COLUMNS,
    ObservedPricesError,
    load_observed_prices,
    observed_span,
)

HEADER = ",".join(COLUMNS)


def write(tmp_path, *rows: str):
    path = tmp_path / "prices.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def test_the_shipped_prices_load_and_each_names_its_source_and_address():
    prices = load_observed_prices()
    assert len(prices) >= 20
    assert all("https://" in price.source for price in prices)
    # H100 is observed in every venue the calibration distinguishes.
    assert {price.venue for price in prices if price.gpu == "h100"} == {
        "marketplace", "specialist", "hyperscaler", "contract"}


def test_span_by_hand(tmp_path):
    path = write(tmp_path,
                 '2026-03,h100,marketplace,spot,2.69,2.69,"a, https://a"',
                 '2026-05,h100,marketplace,range,1.80,2.40,"b, https://b"',
                 '2024-10,h100,specialist,typical,2.99,2.99,"c, https://c"')
    prices = load_observed_prices(path)
    assert [price.mid_usd_per_gpu_hour for price in prices] == [2.69, 2.1, 2.99]
    assert observed_span(prices, "h100") == (1.80, 2.99)
    assert observed_span(prices, "h100", venue="marketplace") == (1.80, 2.69)
    assert observed_span(prices, "h100", since="2026-04") == (1.80, 2.40)
    assert observed_span(prices, "a100-80gb") is None


@pytest.mark.parametrize(("row", "column"), [
    ('2026-13,h100,marketplace,spot,1,1,"s"', "observed"),
    ('2026-03,h999,marketplace,spot,1,1,"s"', "gpu"),
    ('2026-03,h100,bazaar,spot,1,1,"s"', "venue"),
    ('2026-03,h100,marketplace,mode,1,1,"s"', "statistic"),
    ('2026-03,h100,marketplace,spot,0,1,"s"', "low_usd_per_gpu_hour"),
    ('2026-03,h100,marketplace,spot,nan,1,"s"', "low_usd_per_gpu_hour"),
    ('2026-03,h100,marketplace,spot,1,1e9,"s"', "high_usd_per_gpu_hour"),
    ('2026-03,h100,marketplace,range,2,1,"s"', "high_usd_per_gpu_hour"),
    ('2026-03,h100,marketplace,spot,1,1," "', "source"),
])
def test_a_bad_row_names_its_file_line_and_column(tmp_path, row, column):
    path = write(tmp_path, '2026-03,h100,marketplace,spot,2,2,"fine"', row)
    with pytest.raises(ObservedPricesError, match=rf"^{path}:3: column {column}: expected "):
        load_observed_prices(path)


def test_wrong_columns_short_rows_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("observed,gpu\n", encoding="utf-8")
    with pytest.raises(ObservedPricesError, match=r":1: expected the columns observed, gpu"):
        load_observed_prices(path)
    short = write(tmp_path, "2026-03,h100")
    with pytest.raises(ObservedPricesError, match=r":2: expected 7 fields, got 2"):
        load_observed_prices(short)
    with pytest.raises(ObservedPricesError, match=r"nothing\.csv: cannot read"):
        load_observed_prices(tmp_path / "nothing.csv")
