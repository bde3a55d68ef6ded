"""Python functions generated when rules and mappings are loaded (issue 17).

Where a tree of closures or a loop over a table cost more than the work itself, socd
writes the work out as one function: the rules engine's dispatch keys, group keys and
conditions (``socd.engine``), a decoder mapping's ``convert()`` (``socd.decoders.mapping``)
and the typed-field check of ``normalize()`` (``socd.event``). docs/architecture.md,
"Generated functions on the hot paths", says why.

The rule that keeps it safe, kept here for all three: nothing from a rule, a mapping or
an event ever becomes source text. Every such value is bound with :meth:`Source.const`
under a name made from the source's own counter; the text holds only those names, the
generator's own locals, keywords and operators. The bound values reach the function as
closure cells (faster to read than globals).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Source:
    """The body of one generated function and the values its names are bound to.

    ``fixed`` binds socd's own helpers under fixed names (``_dict``, ``_get``...); a
    generator may add more with :meth:`bind`. Lines at depth 1 are the function's body.
    """

    def __init__(self, fixed: Mapping[str, Any] | None = None) -> None:
        self.consts: dict[str, Any] = dict(fixed or {})
        self.lines: list[str] = []
        self.counter = 0

    def name(self, prefix: str) -> str:
        """A fresh identifier (a local or a constant's name): ``prefix`` and a number."""
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any) -> str:
        """A fresh name bound to ``value``, never its text in the source."""
        name = self.name("_c")
        self.consts[name] = value
        return name

    def bind(self, **values: Any) -> None:
        """Bind socd's own helpers under the given fixed names."""
        self.consts.update(values)

    def add(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def build(self, function: str, params: str, label: str) -> Any:
        """The function ``function`` of ``params`` (the generator's own identifiers, never
        input) with these lines as its body; ``label`` is its file name in tracebacks."""
        names = sorted(self.consts)
        source = (f"def _make({', '.join(names)}):\n"
                  f"    def {function}({params}):\n" +
                  "\n".join("    " + line for line in self.lines) +
                  f"\n    return {function}\n")
        namespace: dict[str, Any] = {}
        exec(compile(source, f"<{label}>", "exec"), namespace)  # noqa: S102 - see the module
        return namespace["_make"](*(self.consts[n] for n in names))
