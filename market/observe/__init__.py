"""What watches a market from outside: welfare accounts, metrics, the result tables and the run
result, with how a result shows itself (`reprs`, `plots`). None of them imports the engine: they
hear events and read `market.core.state`.
"""
