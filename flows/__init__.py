"""Prefect flows composing the `pipeline` stages."""
