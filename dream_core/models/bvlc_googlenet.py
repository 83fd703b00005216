"""BVLC GoogLeNet (placeholder until implemented)."""
SPECS: list = []
