"""Reading a configuration file: JSON, YAML or TOML, refusing deep nesting and YAML alias bombs.

Imported by :func:`datasources.config.load_config` only when it is given a path, so a host
configured from a dict never imports json, yaml or tomllib.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .config import MAX_DEPTH
from .errors import ConfigurationError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ALIAS_EXPANSION_BUDGET", "parse_file"]

# nodes that YAML aliases may add to a document by repeating what they refer to: merge keys and
# shared blocks take a few; a "billion laughs" document takes billions, and is refused
ALIAS_EXPANSION_BUDGET = 10_000


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigurationError(
            f"{path}: not UTF-8 text: byte {exc.start} (line {line}) is {data[exc.start : exc.start + 1]!r}"
        ) from None


def parse_file(path: Path) -> Any:
    """The document in a ``.json``, ``.yaml``/``.yml`` or ``.toml`` file, or a ConfigurationError naming it."""
    text = _read_text(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            import json  # only for JSON files: the start path does not pay for it

            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        if suffix in (".yaml", ".yml"):
            return _load_yaml(text, path)
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            return tomllib.loads(text)
    except RecursionError:
        raise ConfigurationError(f"{path}: nested too deeply to be a configuration") from None
    except ConfigurationError:
        raise
    except ValueError as exc:  # TOMLDecodeError, and the int digit limit of every parser
        raise ConfigurationError(f"{path}: {str(exc)[:300]}") from None
    raise ConfigurationError(f"{path}: unknown configuration format {suffix!r} (use .json, .yaml, .yml or .toml)")


def _load_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load``, with the document's aliases checked before any of it is built."""
    import yaml

    loader = None
    try:
        _check_yaml_depth(text, path)
        loader = yaml.SafeLoader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_nodes(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigurationError(f"{path}: {where}{problem}"[:500]) from None
    except (ConfigurationError, RecursionError):
        raise
    except Exception as exc:  # PyYAML's constructors: a bad timestamp, a huge int, a bad base64...
        raise ConfigurationError(f"{path}: {type(exc).__name__}: {str(exc)[:300]}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_yaml_depth(text: str, path: Path) -> None:
    """Refuse nesting past :data:`MAX_DEPTH` from the tokens, before PyYAML composes anything:
    its scanner's cost per token grows with the depth, so ``[[[[...`` of a few KB took seconds."""
    import yaml

    opening = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken)
    opening += (yaml.BlockMappingStartToken,)
    closing = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, opening):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigurationError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(token, closing):
            depth -= 1


def _yaml_children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_yaml_nodes(root: Any, path: Path) -> None:
    """Refuse a composed YAML document whose aliases would expand it past the budget, that
    refers to itself, or that nests past :data:`MAX_DEPTH`. Linear in the document's nodes."""
    distinct: set[int] = set()
    pending = [(root, 1)]
    while pending:
        node, depth = pending.pop()
        if id(node) in distinct:
            continue
        if depth > MAX_DEPTH:
            raise ConfigurationError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        distinct.add(id(node))
        pending += [(child, depth + 1) for child in _yaml_children(node)]
    budget = len(distinct) + ALIAS_EXPANSION_BUDGET
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:  # each node's size with every alias expanded, bottom up, each node once
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _yaml_children(node))
            if size > budget:
                raise ConfigurationError(
                    f"{path}: YAML aliases expand the document past {budget} nodes (an alias bomb?)"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigurationError(f"{path}: a YAML alias refers to a node that contains it")
        on_path.add(key)
        stack.append((node, True))
        stack += [(child, False) for child in _yaml_children(node) if id(child) not in sizes]
