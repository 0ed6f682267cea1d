"""rmtzoo's contract and property suites on the mamba backbone, through the public kit."""

import rmtzoo.testing as kit


class TestMamba(kit.BackboneContract, kit.ModelProperties):
    backbones = ["mamba"]
