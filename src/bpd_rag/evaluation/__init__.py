"""Offline evaluation against the gold set in eval/."""
