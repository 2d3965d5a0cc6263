"""Hugging Face Hub integration: reading Hub-shaped folders and importing them into a vault."""
