"""The `gpumarket` command line (`api.cli.main`): offline runs, sweeps and reports, and the
commands that serve a live market or trade in one as a bot."""
