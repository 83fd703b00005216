"""Rendering one clip (or many) on several workers: segment plans, and a Ray runner (optional dependency)."""
