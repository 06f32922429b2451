"""Read a scenario-sized YAML file without letting the file choose how much memory, stack or time reading it takes.

``yaml.safe_load`` already refuses tags that build Python objects. What it still allows, and this reader refuses
with one :class:`YamlRefused` line naming the file and the place:

- anchors and aliases: a 400-byte file of nested aliases (a "YAML bomb") expands to gigabytes once anything walks
  it (pydantic, ``fedleak report``); no scenario needs them;
- nesting deeper than :data:`MAX_DEPTH` (a 100 000-deep list overflowed the stack);
- integers longer than :data:`MAX_INT_DIGITS` digits (a 20 000-digit integer hit Python's int-parsing limit);
- files larger than :data:`MAX_BYTES`, and bytes that are not UTF-8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_INT_DIGITS = 30


class YamlRefused(ValueError):
    """The file is not a plain YAML document fedleak reads; the message says why and where."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts nesting and refuses aliases and over-long integers while composing."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlRefused(f"{_where(event)}: aliases (*{event.anchor}) are not accepted; write the value out")
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise YamlRefused(f"{_where(event)}: anchors (&{event.anchor}) are not accepted; write the value out")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlRefused(f"{_where(event)}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: Any) -> int:
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise YamlRefused(f"{_where(node)}: an integer of {digits} digits; fedleak reads at most "
                              f"{MAX_INT_DIGITS}")
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _where(mark_holder: Any) -> str:
    mark = getattr(mark_holder, "start_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path``; :class:`YamlRefused` for anything listed in the module docstring, and
    :class:`yaml.YAMLError` for plain syntax errors."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise YamlRefused(f"{size} bytes; a scenario is at most {MAX_BYTES} bytes")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlRefused(f"byte {exc.start} is not UTF-8; save the file as UTF-8") from None
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise YamlRefused(f"nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
