"""`python -m bench`: run the benchmarks and write docs/benchmarks.md."""

from bench.run import main

main()
