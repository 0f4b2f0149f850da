"""Tools built on the training core: the scaling benchmark, the local sweep runner, evaluation over length and depth,
the compare report. Each is a `seqmix <tool>` subcommand whose module has `build_parser()` and `main(argv) -> int`."""
