"""The market's lifecycle core: the engine (order → bids → lease → end), its event bus, and the
parts with one job each it is built from (settlement, bidding, eligibility, reliability, holds,
intake), with the records and arrays they work on.
"""
