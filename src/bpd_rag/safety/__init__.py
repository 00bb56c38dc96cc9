"""The safety layer: crisis triage, personal-advice and prompt-injection refusals before retrieval, and the
checks after answering. Patterns and exemplars are data (data/safety/); every text it says is in prompts/."""

from bpd_rag.safety.crisis import CrisisPatterns
from bpd_rag.safety.guard import SafetyGuard, ensure_safe_to_serve

__all__ = ["CrisisPatterns", "SafetyGuard", "ensure_safe_to_serve"]
