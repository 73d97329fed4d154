"""Layer 5: presentation (DataFrames, plots, text tables, widgets, notebook glue)."""
