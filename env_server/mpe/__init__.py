"""DRIMA's particle scenarios (paper section 4.2): Cooperative Hunting and Cooperative Collection."""

from .collection import CollectionScenario
from .hunting import HuntingScenario

SCENARIOS = {"hunting": HuntingScenario, "collection": CollectionScenario}

