"""Registry: the one-line descriptions ``cnnlab list`` prints."""

from __future__ import annotations

from cnnlab.registry import Registry


def test_describe_is_the_whole_first_paragraph_on_one_line():
    reg = Registry("thing")

    @reg.register("wrapped")
    def wrapped():
        """Iterative magnitude pruning (Han et al. 2015), with a summary wrapped over
        two source lines.

        Details that ``cnnlab list`` leaves out."""

    @reg.register("bare")
    def bare():
        pass

    assert reg.describe("wrapped") == ("Iterative magnitude pruning (Han et al. 2015), with a "
                                       "summary wrapped over two source lines.")  # fmt: skip
    assert reg.describe("bare") == ""
