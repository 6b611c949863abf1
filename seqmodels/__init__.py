"""Stage 2: light temporal heads trained on featx stores (heads arrive with their own issues)."""
