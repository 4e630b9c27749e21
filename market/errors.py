"""Errors an outside actor can cause by asking the market for something its rules forbid."""


class MarketError(ValueError):
    """An outside actor asked for something the market's rules do not allow; nothing changed."""
