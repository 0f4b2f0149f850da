"""The mixer cases track the source: every mixer file under archs/ is registered, and the scan that finds them works."""

from seqmix.archs import MIXERS

from .mixer_cases import CASES, defined_mixers


def test_every_mixer_file_is_registered():
    missing = {name: file for name, file in defined_mixers().items() if name not in MIXERS}
    assert missing == {}, "import these files in archs/__init__.py so their mixers register"


def test_the_scan_finds_a_decorated_mixer_and_skips_the_rest(tmp_path):
    (tmp_path / "probe.py").write_text(
        "@register\nclass Probe(Mixer):\n    name = 'probe'\n\nclass Helper(Mixer):\n    name = 'helper'\n"
        "\n@register\nclass Typed(Mixer):\n    name: str = 'typed'\n"
    )
    assert defined_mixers(tmp_path) == {"probe": "probe.py", "typed": "probe.py"}


def test_cases_hold_every_registered_mixer_and_only_known_ones():
    assert set(MIXERS) <= set(CASES)
    assert all(name in MIXERS for name, _ in CASES.values())
