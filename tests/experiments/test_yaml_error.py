"""A YAML file that does not parse: one line, the same words for a run config and a study spec."""

from __future__ import annotations

import pytest

from experiments.config import ConfigError, load_config
from experiments.studies.spec import StudyError, load_spec

# (file text, the message after "cannot parse <path>: ")
BROKEN = [
    pytest.param("trainer: [1\n", "line 2, column 1: did not find expected ',' or ']' (while parsing a flow "
                 "sequence that starts at line 1, column 10)", id="unclosed-list"),
    pytest.param("seed: 1\n  study: x\n", "line 2, column 8: mapping values are not allowed in this context", id="bad-indent"),
    pytest.param('name: "open\n', "line 2, column 1: found unexpected end of stream (while scanning a quoted scalar "
                 "that starts at line 1, column 7)", id="unclosed-quote"),
]


@pytest.mark.parametrize("text, message", BROKEN)
def test_config_and_study_spec_say_the_same(tmp_path, text, message):
    """Where (1-based line and column, as editors count), what, and in which construct: the
    run config's error and the study spec's are the same line."""
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as config_error:
        load_config(path=path)
    with pytest.raises(StudyError) as spec_error:
        load_spec(path)
    assert str(config_error.value) == str(spec_error.value) == f"cannot parse {path}: {message}"
