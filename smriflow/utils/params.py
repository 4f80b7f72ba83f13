"""A parameter declared once: its default, the values it accepts and one line of documentation.

A function's options are declared as :class:`Param` objects next to it (in a module that imports nothing
heavy); the function takes its defaults from them and checks its arguments with :meth:`Param.check`, and
the other front-ends derive from the same objects: nipype traits
(:func:`smriflow.interfaces.base.param_trait`), argparse options (``choices``, ``default``,
:meth:`Param.parse`), and the workflow YAML files, whose ``args`` a test compares with the declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Param"]

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclass(frozen=True)
class Param:
    """One option of a function.

    Attributes
    ----------
    default : bool, int, float or str
        The value used when the caller gives none; its type is the parameter's type.
    doc : str
        One line: what the option does (the help of the CLI option, the trait's and the YAML arg's doc).
    choices : tuple, optional
        The only values accepted.
    low, high : float, optional
        Bounds of a number (``None``: unbounded).
    low_open, high_open : bool
        Exclude the bound itself.
    """

    default: Any
    doc: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __post_init__(self) -> None:
        if type(self.default) not in _TYPE_NAMES:
            raise ValueError(f"'default' must be a bool, int, float or str. {self.default!r} was provided.")
        if self.problem(self.default):
            raise ValueError(f"'default' must be {self.expected}. {self.default!r} was provided.")

    @property
    def type(self) -> type:
        """The Python type of the values (that of the default)."""
        return type(self.default)

    @property
    def type_name(self) -> str:
        """``bool``, ``int``, ``float`` or ``str``, as a workflow argument's ``type``."""
        return _TYPE_NAMES[self.type]

    @property
    def expected(self) -> str:
        """The accepted values, as the end of a "must be …" sentence."""
        if self.choices is not None:
            return "one of {" + ", ".join(repr(choice) for choice in self.choices) + "}"
        if self.low is not None and self.high is not None:
            opening, closing = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {opening}{self.low:g}, {self.high:g}{closing}"
        if self.low is not None:
            if self.low == 0:
                return "positive" if self.low_open else "0 or more"
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        if self.high is not None:
            return f"{'below' if self.high_open else 'at most'} {self.high:g}"
        return f"of type {self.type_name}"

    def problem(self, value: Any) -> bool:
        """Whether ``value`` is not accepted."""
        numeric = self.type in (int, float)
        if isinstance(value, bool) and self.type is not bool:
            return True
        if not isinstance(value, float | int if self.type is float else self.type):
            return True
        if self.choices is not None and value not in self.choices:
            return True
        if numeric and self.low is not None and (value < self.low or self.low_open and value == self.low):
            return True
        return bool(
            numeric and self.high is not None and (value > self.high or self.high_open and value == self.high)
        )

    def check(self, name: str, value: Any) -> Any:
        """Return ``value`` (an int as a float for a float parameter) when it is accepted.

        Raises
        ------
        ValueError
            ``'name' must be <what it accepts>. <value> was provided.``
        """
        if self.problem(value):
            raise ValueError(f"'{name}' must be {self.expected}. {value!r} was provided.")
        return float(value) if self.type is float else value

    def parse(self, name: str, text: str) -> Any:
        """Read a command-line value (``"0.05"``) and :meth:`check` it."""
        try:
            value = self.type(text) if self.type is not bool else text.lower() in ("1", "true", "yes")
        except ValueError:
            raise ValueError(f"'{name}' must be {self.expected}. {text!r} was provided.") from None
        return self.check(name, value)
