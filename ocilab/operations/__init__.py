"""Layer 4, the kit's own operations: copy, validate, analyse, build, unpack, run, registries and GC."""
