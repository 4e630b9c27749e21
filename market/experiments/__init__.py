"""Experiments over many markets: sweep files and their execution (local or Dask), batch runs into
pandas, tournaments of strategies, the textbook validation against theory, analysis with
confidence intervals, and reports.
"""
