"""The pure parts of `make mutation`'s runner (tests/mutation/run.py): its reviewed list of
equivalent mutants, mutmut's names, and how a mutant is shown and fingerprinted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutation import run

MUTATED_SOURCE = """\
class Policy:
    def allows(self, made: int) -> bool:
        return made < 3


def xǁPolicyǁallows__mutmut_orig(self, made: int) -> bool:
    return made < 3


def xǁPolicyǁallows__mutmut_1(self, made: int) -> bool:
    return made <= 3


def xǁPolicyǁallows__mutmut_2(self, made: int) -> bool:
    return made < 4
"""
ORIGINAL_SOURCE = '''\
"""A module."""


class Policy:
    def allows(self, made: int) -> bool:
        return made < 3
'''


def test_the_reviewed_list_parses_and_every_entry_has_a_reason() -> None:
    listed = run.read_equivalents()
    assert listed
    for fingerprint, entry in listed.items():
        assert run.FINGERPRINT.match(fingerprint)
        assert entry.reason
        assert entry.where.split(":")[0] in run.MUTATED


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("abc x.py:1 f -- why\n", "expected `<fingerprint> <where> -- <reason>`"),
        ("0123456789ab x.py:1 f\n", "expected `<fingerprint> <where> -- <reason>`"),
        ("0123456789ab x.py:1 f --  \n", "expected `<fingerprint> <where> -- <reason>`"),
        ("0123456789ab a -- r\n0123456789ab b -- r\n", "0123456789ab is listed twice"),
    ],
    ids=["short-fingerprint", "no-reason", "blank-reason", "twice"],
)
def test_a_malformed_entry_stops_the_run(tmp_path: Path, text: str, error: str) -> None:
    listed = tmp_path / "equivalent.txt"
    listed.write_text("# a comment\n\n" + text)
    with pytest.raises(SystemExit, match=error):
        run.read_equivalents(listed)


def test_mutmut_names_map_back_to_functions_and_methods() -> None:
    assert run.qualified_name("x__clip") == ["_clip"]
    assert run.qualified_name("x_decide") == ["decide"]
    assert run.qualified_name("xǁStepStateǁto_dict") == ["StepState", "to_dict"]
    assert run.module_of("saga_worker/engine/decide.py") == "saga_worker.engine.decide"


def test_a_mutant_is_shown_where_it_is_with_a_fingerprint_of_its_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mutants" / "pkg").mkdir(parents=True)
    (tmp_path / "mutants" / "pkg" / "policy.py").write_text(MUTATED_SOURCE)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "policy.py").write_text(ORIGINAL_SOURCE)
    monkeypatch.setattr(run, "WORK", tmp_path)
    describer = run.Describer()
    first = describer.describe(
        run.Mutant("pkg.policy.xǁPolicyǁallows__mutmut_1", "pkg/policy.py", "survived")
    )
    second = describer.describe(
        run.Mutant("pkg.policy.xǁPolicyǁallows__mutmut_2", "pkg/policy.py", "survived")
    )
    assert first.where == "pkg/policy.py:6 Policy.allows"
    assert first.diff == ("- return made < 3", "+ return made <= 3")
    assert second.diff == ("- return made < 3", "+ return made < 4")
    assert run.FINGERPRINT.match(first.fingerprint)
    assert first.fingerprint != second.fingerprint
    # the fingerprint does not depend on mutmut's numbering, only on the change
    renumbered = MUTATED_SOURCE.replace("__mutmut_1(", "__mutmut_9(")
    (tmp_path / "mutants" / "pkg" / "policy.py").write_text(renumbered)
    again = run.Describer().describe(
        run.Mutant("pkg.policy.xǁPolicyǁallows__mutmut_9", "pkg/policy.py", "survived")
    )
    assert again.fingerprint == first.fingerprint
