"""Mechanisms and clearing: the auction rules an order's bids are cleared by (`rules`), the
multi-order clearings (`clearing`), and the parts a mechanism attaches to the engine
(`batching`, `interruptible`). What the rules are told besides the bids is
`market.core.auction`.
"""
