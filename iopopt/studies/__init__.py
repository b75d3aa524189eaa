"""Studies: profiling this machine, the fidelity of the cost model against measurement."""
