"""The face and the engine of the benchmark: CLIs, suites, run config, run function, Ray launch."""
