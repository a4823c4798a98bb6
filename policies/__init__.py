"""Agents: the privileged oracle (tests, SFT traces), the heuristic baseline, LLM policies."""

from .heuristic import HeuristicPolicy
from .oracle import OraclePolicy

__all__ = ["HeuristicPolicy", "OraclePolicy"]
