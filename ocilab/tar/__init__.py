"""Layer 2: tar streams and their compression."""
