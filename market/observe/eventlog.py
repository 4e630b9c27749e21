"""A run's whole event stream on disk, and the scenario that rebuilds it.

`EventLog` subscribes to a market's bus and streams every event to `events.parquet` (one row
per event: sequence number, simulated seconds, kind, the event as JSON); `read_events` reads
it back in order. `write_scenario` / `read_scenario` keep the resolved scenario beside it as
`scenario.json`, so that `Market(read_scenario(folder), seed)` rebuilds the very run that
wrote the log (same scenario + seed ⇒ same events). Together they are what off-policy
evaluation reads (`market.experiments.offpolicy`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from market.observe.tables import _Table

#: The file names inside a run's folder.
EVENTS_FILE = "events.parquet"
SCENARIO_FILE = "scenario.json"


class EventLog:
    """Every event of a run, streamed to Parquet (the recorder's buffered table): sequence,
    time, kind and the event as JSON. Call `close` when the run is over."""

    SCHEMA = pa.schema([("seq", pa.int64()), ("time_s", pa.float64()), ("kind", pa.string()),
                        ("data", pa.string())])

    def __init__(self, market: Any | None, path: str | Path) -> None:
        self.table = _Table(self.SCHEMA, Path(path))
        self.seq = 0
        if market is not None:
            self.listen(market)

    def listen(self, market: Any) -> None:
        """Hear every event of `market` from now on (for a market built after the log)."""
        market.subscribe(self.on_event)

    def on_event(self, event: Any) -> None:
        self.table.append((self.seq, event.time_s, event.kind, json.dumps(event.to_dict())))
        self.seq += 1

    def close(self) -> None:
        self.table.close()


def read_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """The events of an `events.parquet`, in order, as the dicts `Event.to_dict` made (kind
    first). Reads one row group at a time: memory stays flat in the log's length."""
    reader = pq.ParquetFile(path)
    for group in range(reader.num_row_groups):
        table = reader.read_row_group(group, columns=["data"])
        for data in table.column("data").to_pylist():
            yield json.loads(data)


def write_scenario(folder: str | Path, scenario: Any) -> Path:
    """Write the resolved `scenario` as `folder/scenario.json` (`model_dump(mode="json")`:
    every field, presets applied) and return its path."""
    path = Path(folder) / SCENARIO_FILE
    path.write_text(json.dumps(scenario.model_dump(mode="json"), indent=1) + "\n",
                    encoding="utf-8")
    return path


def read_scenario(folder: str | Path) -> Any:
    """The scenario `write_scenario` wrote in `folder`, validated again (ScenarioError on a
    file that is not one; OSError when it cannot be read)."""
    from market.scenario import validate_scenario

    path = Path(folder) / SCENARIO_FILE
    try:
        data = json.loads(path.read_text("utf-8"))
    except ValueError as error:
        from market.scenario import ScenarioError

        raise ScenarioError(f"{path.name}: not JSON: {error}") from None
    return validate_scenario(data, path.name)
