"""What outside actors may ask of a live market: the validated bodies of its commands.

These pydantic models are the one edge where input from HTTP bodies and websocket messages is
checked (types, ranges, sizes); the market itself then checks what depends on its state (is the
order still open? is the bid under its max price?). A body that passes is logged as it was
accepted, so a replay applies exactly the same command.

Types are strict: a string is never read as a number, nor a boolean as one, nor a number as a
string (`"gpus": "1"` and `"max_price_usd_per_gpu_hour": true` are refused, where a lax reader
would post an order the client did not mean). An integer is a valid float, as JSON has one type
of number; a float is not a valid integer, even `1.0`. What no command can hold (NaN, infinity,
huge integers, deep nesting) is refused before, by the JSON reader in `api.live.edge`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.wire import ERROR_STATUS

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40,
                                        pattern=r"^[\w .@+-]+$")]
PositiveUsd = Annotated[float, Field(gt=0, lt=1e6, allow_inf_nan=False)]
Id = Annotated[int, Field(ge=0, lt=2**53)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateMarket(_Body):
    """A new live market: a built-in scenario, or a TOML overlay on one, with a seed."""

    scenario: Annotated[str, Field(max_length=64)] = Field(
        "default", description="built-in scenario name (the base when `scenario_toml` is given)")
    scenario_toml: Annotated[str, Field(max_length=65_536)] | None = Field(
        None, description="a scenario file's text: an overlay on a built-in scenario")
    overrides: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=50)] = \
        Field(default_factory=list, description="scenario fields by dotted path: PATH=VALUE")
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 1
    speed: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        60.0, description="simulated seconds per wall-clock second")
    name: Name | None = None


class Speed(_Body):
    speed: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        description="simulated seconds per wall-clock second")


class JoinTenant(_Body):
    role: Literal["tenant"]
    name: Name
    wallet_usd: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] = 10_000.0


class JoinProvider(_Body):
    role: Literal["provider"]
    name: Name
    gpu_model: Annotated[str, Field(max_length=40)] = Field(description="a catalog GPU id")
    gpus: Annotated[int, Field(ge=1, le=1024)] = 8
    archetype: Literal["datacenter", "home_rig", "hyperscaler"] = "datacenter"
    wallet_usd: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] = 1_000.0


Join = Annotated[JoinTenant | JoinProvider, Field(discriminator="role")]


class PostOrder(_Body):
    """A job: `gpus` GPUs of any of `gpu_models`, for `hours` (None: until closed)."""

    gpus: Annotated[int, Field(ge=1, le=64)] = 1
    gpu_models: Annotated[list[Annotated[str, Field(max_length=40)]],
                          Field(min_length=1, max_length=20)]
    max_price_usd_per_gpu_hour: PositiveUsd
    hours: Annotated[float, Field(gt=0, le=24 * 365, allow_inf_nan=False)] | None = 1.0
    deposit_usd: Annotated[float, Field(ge=0, lt=1e9, allow_inf_nan=False)] | None = Field(
        None, description="escrow to lock; default: the job at max price (24 h if open-ended)")
    auto_select: bool = Field(
        False, description="true: the market's mechanism picks the winning bid; false: the "
                           "tenant accepts a bid by hand")
    interruptible: bool = False


class CancelOrder(_Body):
    order_id: Id


class Bid(_Body):
    order_id: Id
    price_usd_per_gpu_hour: PositiveUsd


class Accept(_Body):
    order_id: Id
    bid_id: Id


class CloseLease(_Body):
    lease_id: Id
    reopen: bool = Field(False, description="Akash keeps the group open: re-auction the rest")


class HoldOrder(_Body):
    """Keep the bids on a hand-picked order open while its tenant chooses (a live market
    releases the hold after `gpumarket serve --hold-s` wall seconds)."""

    order_id: Id


class ReleaseOrder(_Body):
    """End a hold: bids older than the market's bid timeout are dropped now."""

    order_id: Id


class BidBody(_Body):
    price_usd_per_gpu_hour: PositiveUsd


class AcceptBody(_Body):
    bid_id: Id


class CloseBody(_Body):
    reopen: bool = False


#: The commands a participant may send, by the `type` they carry on a websocket.
COMMANDS: dict[str, type[_Body]] = {
    "post_order": PostOrder,
    "cancel_order": CancelOrder,
    "bid": Bid,
    "accept": Accept,
    "close_lease": CloseLease,
    "hold_order": HoldOrder,
    "release_order": ReleaseOrder,
}
#: The commands that join a participant (logged and replayed like the others).
JOINS: dict[str, type[_Body]] = {"join_tenant": JoinTenant, "join_provider": JoinProvider}


class CommandError(Exception):
    """A command refused at the edge or by the market: `code` names the kind (as HTTP statuses
    do), `message` is one line, `field` the offending field if there is one."""

    STATUS: ClassVar[dict[str, int]] = ERROR_STATUS

    def __init__(self, code: str, message: str, field: str | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s

    @property
    def status(self) -> int:
        return self.STATUS[self.code]

    def frame(self, request_id: Any = None) -> dict[str, Any]:
        """The error as a websocket frame (with `retry_after_s`, wall seconds, when it is a
        rate limit)."""
        frame = {"type": "error", "id": request_id, "code": self.code, "message": self.message,
                 "field": self.field}
        if self.retry_after_s is not None:
            frame["retry_after_s"] = round(self.retry_after_s, 3)
        return frame


def first_error(error: Any) -> CommandError:
    """A pydantic ValidationError as one line naming the field and what is valid."""
    detail = error.errors()[0]
    field = ".".join(str(part) for part in detail.get("loc", ()) if part != "body")
    more = len(error.errors()) - 1
    tail = f" (and {more} more)" if more else ""
    return CommandError("invalid", f"{field or 'message'}: {detail['msg']}{tail}",
                        field or None)
