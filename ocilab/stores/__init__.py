"""Layer 3: stores, each readable through the same image interface."""
