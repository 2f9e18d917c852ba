"""Developer tools: run the whole system locally, catch its mail."""
