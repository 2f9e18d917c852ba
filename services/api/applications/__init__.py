"""Submitting applications and following them."""
