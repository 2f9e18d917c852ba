"""Applicants and administrators: registration, tokens, password reset, one-time codes."""
