"""pyproject's filterwarnings hide only named third-party warnings: the project's own warnings surface."""

from __future__ import annotations

import warnings

import pytest


def _action(category: type[Warning], message: str, module: str) -> str:
    """The action of the first active filter that matches (what ``warnings.warn`` would do; "default" if none)."""
    for action, msg, cat, mod, lineno in warnings.filters:
        if ((msg is None or msg.match(message)) and issubclass(category, cat)
                and (mod is None or mod.match(module)) and lineno == 0):
            return action
    return "default"


@pytest.mark.parametrize("category", [UserWarning, DeprecationWarning, FutureWarning, RuntimeWarning])
def test_warnings_of_the_project_are_not_hidden(category: type[Warning]) -> None:
    for module in ("lightning_kd.cli", "lightning_kd.data.formats.mmsa", "test_cli"):
        assert _action(category, "cache file x is unusable", module) != "ignore", (category, module)


def test_named_third_party_warnings_are_hidden(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("pythonwarnings"):
        pytest.skip("-W on the command line overrides pyproject's filters")
    assert _action(UserWarning, "LightningCLI's args parameter is intended to run from within Python",
                   "lightning.pytorch.cli") == "ignore"
    assert _action(UserWarning, "The number of training batches (3) is smaller than the logging interval",
                   "lightning.pytorch.loops.fit_loop") == "ignore"
    # the same message from elsewhere, or another message from the same module, is not hidden
    assert _action(UserWarning, "LightningCLI's args parameter is intended", "lightning_kd.cli") != "ignore"
    assert _action(UserWarning, "something else", "lightning.pytorch.cli") != "ignore"
