"""Amazon SNS subscription filter policies: validation and matching, as AWS documents them.

A policy maps property names to a list of accepted values (OR within a key, AND across keys).
A value is an exact string, number, ``true``, ``false`` or ``null``, or an operator object:
``prefix``, ``suffix``, ``equals-ignore-case``, ``wildcard``, ``cidr``, ``numeric``, ``exists``
and ``anything-but`` (of values, or of a prefix, suffix or wildcard). ``"$or": [{...}, {...}]``
ORs whole sub-policies. In ``MessageBody`` scope policies nest like the JSON body.

Python values stand for SNS attribute types: ``str`` is a String, ``int``/``float`` a Number,
``bool`` the JSON literal ``true``/``false``, a list a String.Array (it matches when any element
does). A string never equals a number, nor a number a string.

Pure: no I/O, no state. ``matches`` validates the policy too, so a bad policy raises
``InvalidFilterPolicyError`` wherever it is used.
"""

from __future__ import annotations

import ipaddress
import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from framework.exceptions import InvalidFilterPolicyError

__all__ = ["MAX_COMBINATIONS", "MAX_KEYS", "MAX_POLICY_BYTES", "Scope", "matches", "validate"]

Scope = Literal["MessageAttributes", "MessageBody"]

MAX_KEYS = 5  # keys per policy (top-level keys only in MessageBody scope)
MAX_COMBINATIONS = 150  # total value combinations, see _complexity
MAX_POLICY_BYTES = 256 * 1024  # size of the policy's JSON
NUMERIC_LIMIT = 1_000_000_000  # numeric operands lie within -10^9..10^9
NUMERIC_DECIMALS = 5  # AWS compares numbers to five digits after the decimal point

_SCOPES = ("MessageAttributes", "MessageBody")
_OR = "$or"
_STRING_OPERATORS = frozenset({"prefix", "suffix", "equals-ignore-case", "wildcard"})
_OPERATORS = _STRING_OPERATORS | {"anything-but", "cidr", "exists", "numeric"}
_ANYTHING_BUT_OPERATORS = ("prefix", "suffix", "wildcard")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_NUMERIC_OPS = ", ".join(_COMPARE)

Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Rule:
    """One entry of a key's value list: ``op`` is "equals" for an exact value, else the operator."""

    op: str
    arg: Any


Leaf = tuple[Path, tuple[_Rule, ...]]
Branch = list[Leaf]  # keys ANDed together; a policy is a list of branches ORed together


@dataclass(slots=True)
class _Node:
    """A parsed (sub-)policy: its leaves AND each ``$or`` group (a list of alternatives)."""

    leaves: list[Leaf] = field(default_factory=list)
    ors: list[list[_Node]] = field(default_factory=list)


def validate(policy: Mapping[str, Any], *, scope: Scope = "MessageAttributes") -> None:
    """Check that a filter policy is valid SNS syntax within AWS's limits.

    Args:
        policy: The policy, as the JSON object it would be sent to SNS as.
        scope: ``"MessageAttributes"`` (flat keys) or ``"MessageBody"`` (keys may nest).

    Raises:
        InvalidFilterPolicyError: Naming the offending key and the rule it breaks.
    """
    _compile(policy, scope)


def matches(
    policy: Mapping[str, Any] | None,
    *,
    attributes: Mapping[str, Any],
    body: Any = None,
    scope: Scope = "MessageAttributes",
) -> bool:
    """Return whether a message passes a filter policy.

    Args:
        policy: The subscription's filter policy; ``None`` (no policy) matches every message.
        attributes: The message attributes, used in ``MessageAttributes`` scope.
        body: The parsed JSON body, used in ``MessageBody`` scope; anything but a JSON object
            fails a policy that names any key, as in AWS.
        scope: Which of the two the policy applies to.

    Returns:
        True when every key of at least one ``$or`` alternative matches.

    Raises:
        InvalidFilterPolicyError: If the policy itself is invalid.
    """
    if policy is None:
        return True
    branches = _compile(policy, scope)
    lookup: Callable[[Path], list[Any] | None]
    if scope == "MessageBody":
        if not isinstance(body, Mapping):
            return not any(branches)
        flat = _flatten_body(body)
        lookup = lambda path: flat.get(".".join(path))  # noqa: E731
        nonempty = bool(flat)
    else:
        lookup = lambda path: _attribute_values(attributes, path[0])  # noqa: E731
        nonempty = any(_attribute_values(attributes, name) is not None for name in attributes)
    return any(
        all(_leaf_matches(rules, lookup(path), nonempty=nonempty) for path, rules in branch)
        for branch in branches
    )


# --- validation -------------------------------------------------------------------------------


def _json(value: Any) -> str:
    """Compact JSON for messages and the size limit (any Mapping or tuple as JSON would be)."""
    return json.dumps(
        value,
        separators=(",", ":"),
        ensure_ascii=False,
        default=lambda o: dict(o) if isinstance(o, Mapping) else repr(o),
    )


def _error(path: Path, message: str) -> InvalidFilterPolicyError:
    return InvalidFilterPolicyError(f"filter policy key {'.'.join(path)!r}: {message}")


def _compile(policy: Any, scope: str) -> list[Branch]:
    """Validate ``policy`` and return it as OR-ed branches of AND-ed leaves."""
    if scope not in _SCOPES:
        raise InvalidFilterPolicyError(
            f"filter policy scope {scope!r} is not one of {', '.join(_SCOPES)}"
        )
    if not isinstance(policy, Mapping):
        raise InvalidFilterPolicyError(
            f"filter policy must be a JSON object of keys, got {type(policy).__name__}"
        )
    root = _parse_object(policy, (), scope)
    size = len(_json(policy).encode())
    if size > MAX_POLICY_BYTES:
        raise InvalidFilterPolicyError(
            f"filter policy is {size} bytes of JSON, over AWS's limit of {MAX_POLICY_BYTES}"
        )
    complexity = _complexity(root)
    if complexity > MAX_COMBINATIONS:
        widest = max(_all_leaves(root), key=lambda leaf: len(leaf[1]))
        raise _error(
            widest[0],
            f"policy is too complex: {complexity} value combinations exceed AWS's limit of "
            f"{MAX_COMBINATIONS} (this key has {len(widest[1])} values)",
        )
    branches = _expand(root)  # at most `complexity` branches, so bounded by the check above
    for branch in branches:
        # In MessageBody scope AWS counts only top-level keys; nested keys are free. AWS does not
        # say how "$or" counts: we count each alternative as the standalone policy it stands for.
        keys = list(dict.fromkeys(path[0] for path, _ in branch))
        if len(keys) > MAX_KEYS:
            raise _error(
                (keys[MAX_KEYS],),
                f"policy has {len(keys)} keys ({', '.join(keys)}), over AWS's limit of {MAX_KEYS}",
            )
    return branches


def _is_or(value: Any) -> bool:
    # AWS reads "$or" as the operator only for a list of at least two objects none of whose
    # keys is a reserved operator word; otherwise "$or" is an ordinary property name.
    return (
        isinstance(value, list | tuple)
        and len(value) >= 2
        and all(isinstance(v, Mapping) and not (set(v) & _OPERATORS) for v in value)
    )


def _parse_object(obj: Mapping[Any, Any], prefix: Path, scope: str) -> _Node:
    node = _Node()
    for key, value in obj.items():
        if not isinstance(key, str):
            raise _error((*prefix, str(key)), "keys must be strings")
        path = (*prefix, key)
        if key == _OR and _is_or(value):
            alternatives: list[_Node] = []
            for index, alternative in enumerate(value, 1):
                if not alternative:
                    raise _error(path, f"alternative {index} is an empty object")
                alternatives.append(_parse_object(alternative, prefix, scope))
            node.ors.append(alternatives)
        elif isinstance(value, Mapping):
            if scope == "MessageAttributes":
                raise _error(path, "scope MessageAttributes does not support nested policies")
            if not value:
                raise _error(path, "nested object is empty")
            child = _parse_object(value, path, scope)
            node.leaves += child.leaves
            node.ors += child.ors
        elif isinstance(value, list | tuple):
            if not value:
                raise _error(path, "empty value lists are not allowed")
            hint = " ($or needs a list of 2+ objects keyed by property names)" if key == _OR else ""
            node.leaves.append((path, tuple(_parse_rule(path, v, hint) for v in value)))
        else:
            raise _error(path, f"must be an object or an array, got {_json(value)}")
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_rule(path: Path, value: Any, hint: str = "") -> _Rule:
    if value is None or isinstance(value, str | bool):
        return _Rule("equals", value)
    if _is_number(value):
        if not math.isfinite(value):
            raise _error(path, f"number {value} is not finite")
        return _Rule("equals", value)
    if not isinstance(value, Mapping):
        raise _error(
            path,
            "values must be strings, numbers, true, false, null or operator objects, "
            f"got {type(value).__name__}",
        )
    if len(value) != 1:
        names = ", ".join(repr(k) for k in value)
        raise _error(path, f"an operator object takes exactly one operator, got {names or 'none'}")
    ((op, arg),) = value.items()
    if op in _STRING_OPERATORS:
        return _Rule(op, _string_arg(path, op, arg))
    if op == "exists":
        if not isinstance(arg, bool):
            raise _error(path, f"exists must be true or false, got {_json(arg)}")
        return _Rule(op, arg)
    if op == "cidr":
        return _Rule(op, _parse_cidr(path, arg))
    if op == "numeric":
        return _Rule(op, _parse_numeric(path, arg))
    if op == "anything-but":
        return _parse_anything_but(path, arg)
    known = ", ".join(sorted(_OPERATORS))
    raise _error(path, f"unknown operator {op!r} (expected one of {known}){hint}")


def _string_arg(path: Path, op: str, arg: Any) -> Any:
    if not isinstance(arg, str):
        raise _error(path, f"{op} must be a string, got {_json(arg)}")
    if op.endswith("wildcard"):  # also "anything-but wildcard"
        return _wildcard_regex(path, arg)
    return arg.lower() if op == "equals-ignore-case" else arg


def _wildcard_regex(path: Path, pattern: str) -> re.Pattern[str]:
    # "*" matches any run of characters; "\*" is a literal star and "\\" a literal backslash.
    if "**" in pattern:
        raise _error(path, f"wildcard {pattern!r} has consecutive '*', which AWS refuses")
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*\\":
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if char == "*" else re.escape(char))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def _parse_cidr(path: Path, arg: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(arg, str) or arg.count("/") != 1:
        raise _error(path, f"cidr must be a string like '10.0.0.0/24', got {_json(arg)}")
    try:
        return ipaddress.ip_network(arg, strict=False)
    except ValueError:
        raise _error(path, f"cidr {arg!r} is not a valid IP network") from None


def _parse_numeric(path: Path, arg: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(arg, list | tuple) or len(arg) not in (2, 4):
        raise _error(
            path,
            f"numeric takes [op, number] or a range [>|>=, low, <|<=, high], got {_json(arg)}",
        )
    pairs: list[tuple[str, float]] = []
    for op, bound in zip(arg[::2], arg[1::2], strict=True):
        if not isinstance(op, str) or op not in _COMPARE:
            raise _error(path, f"numeric operator {op!r} is not one of {_NUMERIC_OPS}")
        if not _is_number(bound) or not math.isfinite(bound):
            raise _error(path, f"numeric operand of {op!r} must be a number, got {bound!r}")
        if abs(bound) > NUMERIC_LIMIT:
            raise _error(path, f"numeric operand {bound} is outside AWS's range -1e9..1e9")
        pairs.append((op, float(bound)))
    if len(pairs) == 2:
        (low_op, low), (high_op, high) = pairs
        if low_op not in (">", ">=") or high_op not in ("<", "<="):
            raise _error(
                path,
                f"numeric range must be ['>' or '>=', low, '<' or '<=', high], "
                f"got {low_op!r} then {high_op!r}",
            )
        if low >= high:
            raise _error(path, f"numeric range bottom {low:g} must be less than top {high:g}")
    return tuple(pairs)


def _parse_anything_but(path: Path, arg: Any) -> _Rule:
    if isinstance(arg, Mapping):
        if len(arg) != 1 or next(iter(arg)) not in _ANYTHING_BUT_OPERATORS:
            names = ", ".join(repr(k) for k in arg) or "none"
            raise _error(
                path,
                f"anything-but takes values or one of {', '.join(_ANYTHING_BUT_OPERATORS)}, "
                f"got {names}",
            )
        ((op, inner),) = arg.items()
        return _Rule(f"anything-but-{op}", _string_arg(path, f"anything-but {op}", inner))
    values = arg if isinstance(arg, list | tuple) else [arg]
    if not values:
        raise _error(path, "anything-but list is empty")
    for value in values:
        if not (isinstance(value, str) or (_is_number(value) and math.isfinite(value))):
            raise _error(path, f"anything-but values must be strings or numbers, got {value!r}")
    return _Rule("anything-but", tuple(values))


def _complexity(node: _Node) -> int:
    # AWS: multiply the number of values of every key, where a nested key counts its values
    # times its nesting depth; the alternatives of an "$or" add up. Product-of-sums here equals
    # AWS's sum over the expanded alternatives, without expanding them.
    total = math.prod(len(rules) * len(path) for path, rules in node.leaves)
    for alternatives in node.ors:
        total *= sum(_complexity(alternative) for alternative in alternatives)
    return total


def _all_leaves(node: _Node) -> list[Leaf]:
    leaves = list(node.leaves)
    for alternatives in node.ors:
        for alternative in alternatives:
            leaves += _all_leaves(alternative)
    return leaves


def _expand(node: _Node) -> list[Branch]:
    branches: list[Branch] = [list(node.leaves)]
    for alternatives in node.ors:
        options = [b for alternative in alternatives for b in _expand(alternative)]
        branches = [branch + option for branch in branches for option in options]
    return branches


# --- matching ---------------------------------------------------------------------------------


def _attribute_values(attributes: Mapping[str, Any], name: str) -> list[Any] | None:
    """The values of attribute ``name`` (None when absent); a list is a String.Array."""
    value = attributes.get(name)
    if value is None or isinstance(value, bytes | bytearray):
        return None  # SNS ignores Binary attributes, so they count as absent
    return list(value) if isinstance(value, list | tuple) else [value]


def _flatten_body(body: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Map each dotted path of ``body`` to its scalar values, descending into arrays.

    AWS flattens both sides, so policy key "a.b" also matches body {"a": {"b": ...}}, and an
    array contributes each element (objects in arrays are searched element by element).
    """
    flat: dict[str, list[Any]] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item, path)
        else:
            flat.setdefault(path, []).append(node)

    walk(body, "")
    return flat


def _has_value(values: list[Any] | None) -> bool:
    """Whether a key "exists" as AWS's key matching defines it: some non-null, non-empty value.

    An empty array never reaches here (it flattens to nothing, so its key is absent).
    """
    return values is not None and any(value is not None and value != "" for value in values)


def _leaf_matches(rules: tuple[_Rule, ...], values: list[Any] | None, *, nonempty: bool) -> bool:
    for rule in rules:
        if rule.op == "exists":
            # AWS: "exists": true needs a non-null, non-empty value; "exists": false matches only
            # a message with at least one attribute (a body with at least one property), so an
            # empty attribute set matches neither. False is exactly the complement of true there.
            present = _has_value(values)
            if present if rule.arg else (nonempty and not present):
                return True
        # Every other rule, anything-but included, needs the key present: AWS does not deliver
        # a message lacking the key even to {"anything-but": ...} (add {"exists": false} for that).
        elif values is not None and any(_rule_matches(rule, value) for value in values):
            return True
    return False


def _number(value: float) -> float:
    return round(float(value), NUMERIC_DECIMALS)


def _same(expected: Any, value: Any) -> bool:
    """Exact match, type-strict: a string never equals a number, nor true the number 1."""
    if _is_number(expected):
        return _is_number(value) and _number(expected) == _number(value)
    if isinstance(expected, bool) or expected is None:
        return value is expected
    return isinstance(value, str) and value == expected


def _rule_matches(rule: _Rule, value: Any) -> bool:
    op, arg = rule.op, rule.arg
    if op == "equals":
        return _same(arg, value)
    if op == "anything-but":
        if value is None:
            return False  # null is no value (see _has_value); [null] names it exactly
        # Applied per element: a String.Array passes when any element is outside the list.
        # (AWS's prose once said "none of the elements", but its examples, which we follow,
        # deliver ["rugby", "baseball"] to anything-but ["rugby", "tennis"].)
        return not any(_same(excluded, value) for excluded in arg)
    if op == "numeric":
        return _is_number(value) and all(_COMPARE[o](_number(value), b) for o, b in arg)
    if not isinstance(value, str):
        return False  # every remaining operator is a string operator
    if op == "cidr":
        try:
            return ipaddress.ip_address(value) in arg
        except ValueError:
            return False
    negate = op.startswith("anything-but-")
    kind = op.removeprefix("anything-but-")
    if kind == "prefix":
        hit = value.startswith(arg)
    elif kind == "suffix":
        hit = value.endswith(arg)
    elif kind == "wildcard":
        hit = arg.fullmatch(value) is not None
    else:  # equals-ignore-case
        hit = value.lower() == arg
    return hit != negate
