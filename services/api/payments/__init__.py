"""The payment side of the API: checkout links and the provider's webhooks."""
