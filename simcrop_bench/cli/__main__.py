"""``python -m simcrop_bench.cli``: the same entry point as the ``simcrop-bench`` script."""

from simcrop_bench.cli.app import main

main()
