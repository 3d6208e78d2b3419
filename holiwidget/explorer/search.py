"""Class search: a class index from what a user types (an index, "name (index)", or words)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import HoliwidgetError

__all__ = ["find_class"]


def find_class(text: str, names: Sequence[str]) -> int:
    """The class index that ``text`` names among ``names``.

    ``text`` is an index ("281"), a chooser label ("tabby, tabby cat (281)"), a whole class
    name or a part of exactly one class name (case-insensitive; a whole name wins over
    parts). Raises HoliwidgetError naming the candidates when none or several match.
    """
    if text.isdigit():
        return int(text)
    if text.endswith(")") and "(" in text:
        index = text.rsplit("(", 1)[1][:-1]
        if index.isdigit():
            return int(index)
    lower = text.lower()
    exact = [i for i, n in enumerate(names) if n.lower() == lower]
    found = exact or [i for i, n in enumerate(names) if lower in n.lower()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise HoliwidgetError(f"no class name contains {text!r}; try another word or an index")
    listed = ", ".join(f"{names[i]} ({i})" for i in found[:6])
    more = f" and {len(found) - 6} more" if len(found) > 6 else ""
    raise HoliwidgetError(
        f"{len(found)} classes match {text!r}: {listed}{more}; pick one from the list"
    )
