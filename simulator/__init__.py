"""The demo company: writes three messy source systems and a separate ground truth.

    from simulator import SimulationConfig, generate
    report = generate(SimulationConfig(customers=2000, seed=7, out=Path("data/sources")))

See docs/sources.md for the contract the files follow and simulator/behaviour.py for the process.
"""

from simulator.build import generate
from simulator.config import SimulationConfig

__all__ = ["SimulationConfig", "generate"]
