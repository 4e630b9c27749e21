"""The remote side of a live market: the Python client, its event stream, and the bot that
trades with any bid strategy over them."""
