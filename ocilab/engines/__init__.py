"""Layer 4: engines and operations (registry server, Docker engine, builders, copy, validation)."""
