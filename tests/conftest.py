"""Shared fixtures: fd-pair factories, origins, leak checks."""

# --- HTTP origins (nginx, fault-injecting origin) ---
