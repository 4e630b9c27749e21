"""`python -m api.cli`: the `gpumarket` command."""

from api.cli.main import main

if __name__ == "__main__":
    main()
