"""DRIMA: a decentralized multi-process runtime for Differential Reward Interaction MARL."""

__version__ = "0.1.0"
