"""Reading terraform/ as python-hcl2 parses it, for tests/unit/test_terraform.py and
tests/salt/test_core_roles.py: blocks by kind and name, locals and variables' defaults, and a
small evaluator for the expressions that decide what gets built (`count`, conditionals on
`var.storage_backend` and `var.backup_region`). No provider can be downloaded here, so nothing
is planned: what the HCL says is read as written, and an expression this evaluator does not
know is an error, not a guess."""

from __future__ import annotations

import io
import operator
import re
from collections.abc import Iterator
from pathlib import Path

import hcl2

from tests.conftest import ROOT

TERRAFORM_DIR = ROOT / "terraform"
COUNT_INDEX = re.compile(r"\$\{count\.index \+ (\d+)\}")
DROPLET = re.compile(r"digitalocean_droplet\.(\w+)")
Config = dict[str, list]
COMPARISONS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge}


def unquote(value: object) -> object:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(texts: list[str]) -> Config:
    """Top-level blocks of several .tf texts, merged by kind (resource, variable...)."""
    merged: Config = {}
    for text in texts:
        for kind, items in hcl2.load(io.StringIO(text)).items():
            if not kind.startswith("__"):
                merged.setdefault(kind, []).extend(items)
    return merged


def tf_texts(directory: Path = TERRAFORM_DIR) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(directory.glob("*.tf"))}


def core() -> Config:
    return load(list(tf_texts().values()))


def named(config: Config, kind: str) -> dict[str, dict]:
    """Blocks with one label (variable, output) by name."""
    return {unquote(name): body for item in config.get(kind, []) for name, body in item.items()}


def resources(config: Config, resource_type: str) -> dict[str, dict]:
    found = {}
    for item in config.get("resource", []):
        for kind, instances in item.items():
            if unquote(kind) == resource_type:
                found.update({unquote(name): body for name, body in instances.items()})
    return found


def locals_of(config: Config) -> dict[str, object]:
    return {key: value for item in config.get("locals", []) for key, value in item.items()}


def resolve(config: Config, value: object) -> object:
    """A literal, or a `${local.x}` / `${var.x}` (default) / `${tostring(...)}` of one."""
    value = unquote(value)
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\$\{(?:tostring\()?(local|var)\.(\w+)\)?\}", value)
    if not match:
        return value
    kind, name = match.groups()
    if kind == "local":
        return resolve(config, locals_of(config)[name])
    return resolve(config, named(config, "variable")[name].get("default"))


def variables(config: Config, **overrides: object) -> dict[str, object]:
    """Every variable's value: its default, or the override (as a tfvars file would set it)."""
    values = {name: body.get("default") for name, body in named(config, "variable").items()}
    unknown = set(overrides) - set(values)
    assert not unknown, f"no such variable: {sorted(unknown)}"
    return values | overrides


def top_level(expr: str) -> Iterator[tuple[int, str]]:
    """(position, character) of each character outside brackets, strings and templates."""
    stack: list[str] = []
    index = 0
    while index < len(expr):
        char = expr[index]
        if stack and stack[-1] == '"':
            if char == "\\":
                index += 1
            elif char == '"':
                stack.pop()
            elif expr.startswith("${", index):
                stack.append("{")
                index += 1
        elif char == '"':
            stack.append('"')
        elif char in "([{":
            stack.append(char)
        elif char in ")]}":
            stack.pop()
        elif not stack:
            yield index, char
        index += 1


def interpolated(expr: str) -> str | None:
    """`a` of an expression written as `${a}` as a whole, else None."""
    if not (expr.startswith("${") and expr.endswith("}")):
        return None
    inner = expr[2:-1]
    try:
        list(top_level(inner))
    except IndexError:  # a `}` that closes the first `${` before the end: `${a}-${b}`
        return None
    return inner


def conditional(expr: str) -> tuple[str, str, str] | None:
    """(condition, if true, if false) of `c ? a : b`, at the top level of `expr`."""
    marks = [(i, c) for i, c in top_level(expr) if c in "?:"]
    questions = [i for i, c in marks if c == "?"]
    if not questions:
        return None
    question = questions[0]
    colon = next(i for i, c in marks if c == ":" and i > question)
    assert "?" not in {c for i, c in marks if question < i < colon}, f"nested: {expr}"
    return expr[:question].strip(), expr[question + 1 : colon].strip(), expr[colon + 1 :].strip()


def choose(config: Config, expr: object, values: dict[str, object]) -> object:
    """The expression left once conditionals and `local.x` references are decided for these
    variables' values: `${c ? a : b}` is a or b, `${local.x}` the local's expression."""
    if not isinstance(expr, str):
        return expr
    inner = interpolated(expr)
    if inner is None:
        return expr
    if branches := conditional(inner):
        condition, if_true, if_false = branches
        chosen = if_true if evaluate(config, condition, values) else if_false
        return choose(config, wrap(chosen), values)
    if match := re.fullmatch(r"local\.(\w+)", inner):
        return choose(config, locals_of(config)[match[1]], values)
    return expr


def wrap(expr: str) -> object:
    """A bare expression as python-hcl2 writes an attribute's value."""
    if re.fullmatch(r"-?\d+", expr):
        return int(expr)
    if expr.startswith('"') and expr.endswith('"'):
        return expr
    return "${" + expr + "}"


def evaluate(config: Config, expr: object, values: dict[str, object]) -> object:
    """The value of a literal, `var.x`, `local.x`, `a == b`, `a != b`, `a >= b`, `min(a, b)`
    or `c ? a : b`; anything else is
    an AssertionError, so that a test never passes on an expression it did not read."""
    if not isinstance(expr, str):
        return expr
    expr = interpolated(expr) or expr
    if branches := conditional(expr):
        condition, if_true, if_false = branches
        return evaluate(
            config, if_true if evaluate(config, condition, values) else if_false, values
        )
    for symbol, compare in COMPARISONS.items():
        found = [i for i, _ in top_level(expr) if expr.startswith(f" {symbol} ", i)]
        if found:
            left, right = expr[: found[0]], expr[found[0] + len(symbol) + 2 :]
            return compare(evaluate(config, left, values), evaluate(config, right, values))
    if match := re.fullmatch(r"min\(([^,()]+), ([^,()]+)\)", expr):
        return min(evaluate(config, match[1], values), evaluate(config, match[2], values))
    if re.fullmatch(r"-?\d+", expr):
        return int(expr)
    if expr.startswith('"') and expr.endswith('"') and "${" not in expr:
        return expr[1:-1]
    if match := re.fullmatch(r"var\.(\w+)", expr):
        return unquote(values[match[1]])
    if match := re.fullmatch(r"local\.(\w+)", expr):
        return evaluate(config, locals_of(config)[match[1]], values)
    raise AssertionError(f"an expression the test cannot evaluate: {expr!r}")


def instances(config: Config, resource_type: str, name: str, values: dict[str, object]) -> int:
    """How many of a resource the HCL makes: its `count` (1 without one)."""
    body = resources(config, resource_type)[name]
    count = evaluate(config, body.get("count", 1), values)
    assert isinstance(count, int), f"{resource_type}.{name}: count {count!r}"
    return count


def droplet_names(config: Config, droplet: str, values: dict[str, object]) -> list[str]:
    """The names (minion ids) of a droplet resource's instances: `count.index` filled in, a
    variable's value where the name is one."""
    template = str(unquote(resources(config, "digitalocean_droplet")[droplet]["name"]))
    names = []
    for index in range(instances(config, "digitalocean_droplet", droplet, values)):
        name = COUNT_INDEX.sub(lambda match, n=index: str(n + int(match[1])), template)
        if match := re.fullmatch(r"\$\{var\.(\w+)\}", name):
            name = str(unquote(values[match[1]]))
        assert "${" not in name, f"{droplet}: a name the test cannot read: {template}"
        names.append(name)
    return names


def core_minion_ids(config: Config, **overrides: object) -> dict[str, str]:
    """Minion id -> droplet resource, for every droplet the `core_minions` output names: it
    maps `local.core_droplets`, a concat of droplet resources, by name."""
    value = named(config, "output")["core_minions"]["value"]
    loop = "${{for droplet in local.core_droplets : droplet.name => droplet.ipv4_address_private}}"
    assert value == loop, f"core_minions: not a map of local.core_droplets by name: {value}"
    listed = str(locals_of(config)["core_droplets"])
    assert re.sub(r"digitalocean_droplet\.\w+|[\s,\[\]]", "", listed) == "${concat()}", listed
    values = variables(config, **overrides)
    ids = {}
    for droplet in DROPLET.findall(listed):
        ids.update(dict.fromkeys(droplet_names(config, droplet, values), droplet))
    return ids
