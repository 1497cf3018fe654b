"""Reusable widgets of the workstation, one module each."""
