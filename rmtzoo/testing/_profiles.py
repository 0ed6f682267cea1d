"""Hypothesis profiles for the kit's property suites."""

from __future__ import annotations

import os


def load_hypothesis_profile(default: str = "dev") -> str:
    """Register Hypothesis profiles ``ci`` (6 examples, derandomised), ``dev`` (15) and ``thorough``
    (200), all without deadlines, and load ``$HYPOTHESIS_PROFILE`` (else ``default``). Returns its name.
    Tests defined before the call keep the profile that was loaded when they were defined."""
    from hypothesis import HealthCheck, settings

    # differing_executors: pytest makes a new suite instance per parametrised call; the suites keep no
    # state on the instance, so that is harmless here
    checks = [HealthCheck.too_slow, HealthCheck.differing_executors]
    quiet = {"deadline": None, "suppress_health_check": checks}
    settings.register_profile("ci", max_examples=6, derandomize=True, **quiet)
    settings.register_profile("dev", max_examples=15, **quiet)
    settings.register_profile("thorough", max_examples=200, **quiet)
    name = os.environ.get("HYPOTHESIS_PROFILE", default)
    settings.load_profile(name)
    return name
