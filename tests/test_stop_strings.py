"""Stop strings: where a code answer ends, and how a completion is cut there."""

import pytest

from restem_assets.generation import SamplingParams, cut_at_stop
from restem_assets.tasks.prompts import CODE_STOP, stop_strings


def test_cut_at_the_earliest_stop_string_keeping_it():
    assert cut_at_stop("def f():\n    return 1\n```\n\nThis returns 1.", CODE_STOP) == ("def f():\n    return 1\n```\n", True)
    assert cut_at_stop("a STOP b END c", ("END", "STOP")) == ("a STOP", True)
    assert cut_at_stop("no stop here", CODE_STOP) == ("no stop here", False)


def test_an_opening_python_fence_is_not_a_stop():
    text = "Here it is:\n```python\ndef f():\n    return 1\n```\nDone."
    assert cut_at_stop(text, CODE_STOP)[0] == "Here it is:\n```python\ndef f():\n    return 1\n```\n"


def test_code_problems_stop_at_the_closing_fence_and_math_problems_do_not():
    assert stop_strings([{"domain": "code"}, {"domain": "code"}]) == CODE_STOP
    assert stop_strings([{"domain": "math"}]) == ()
    assert stop_strings([{"domain": "code"}, {"domain": "math"}]) == ()
    assert stop_strings([]) == ()


def test_sampling_params_refuse_empty_stop_strings():
    assert SamplingParams(stop=["x"]).stop == ("x",)
    with pytest.raises(ValueError, match="non-empty strings"):
        SamplingParams(stop=("",))
