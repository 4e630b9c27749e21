"""Mechanisms and clearing: the auction rules an order's bids are cleared by (`rules`), what they
are told besides the bids (`auction`), the multi-order clearings (`clearing`), and the parts a
mechanism attaches to the engine (`batching`, `interruptible`).
"""
