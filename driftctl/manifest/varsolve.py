"""Variables whose values are templates, as Ansible has them: ``url: "https://{{ inventory_hostname }}/"``
in group_vars, a role's defaults or a manifest's vars.

Ansible renders such a value when it is used, with the host's other variables. driftctl renders it
once per host and scope, before the manifests use it, in the order the variables refer to each other:
a value is rendered only after every variable it names is, so each template string is rendered exactly
once and what a variable brought in (a fact, another variable's result) is never rendered again
(D9). A variable that refers to itself, directly or through others, or whose template fails, is an
error naming the variable and where it was written, where a manifest uses it (as in Ansible).

Values that are secrets (``!secret``, ``!vault``) or tagged ``!unsafe`` are data and never rendered; a
value rendered from a secret becomes a secret itself. Facts are never templates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import meta

from driftctl.errors import Location, TemplateError
from driftctl.secret import Secret, collect, conceal
from driftctl.yamlsrc import Unsafe

__all__ = ["BrokenVariable", "is_template", "resolve"]

Render = Callable[[str, Any, Mapping[str, Any]], Any]


class BrokenVariable(jinja2.StrictUndefined):
    """A variable whose template failed to render: an error only where it is used. Ansible renders a
    variable when it is used, so a group_vars value that cannot render on this host (an Ansible fact,
    a lookup) is harmless until a manifest reads it; here too."""

    def __init__(self, error: TemplateError) -> None:
        super().__init__(name=None)
        self._error = error

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        raise self._error


# Jinja binds every operation of Undefined (str, +, iteration, ==, ...) to the base class's function
# itself: point each of them at the override, so each raises the variable's own error
for _cls in (jinja2.StrictUndefined, jinja2.Undefined):
    for _name, _attr in vars(_cls).items():
        if _attr is jinja2.Undefined._fail_with_undefined_error and _name != "_fail_with_undefined_error":
            setattr(BrokenVariable, _name, BrokenVariable._fail_with_undefined_error)


def is_template(value: Any) -> bool:
    """Whether ``value`` (or a string inside it) holds Jinja syntax; a secret or ``!unsafe`` never does."""
    if isinstance(value, (Secret, Unsafe)):
        return False
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(is_template(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_template(v) for v in value)
    return False


def _strings(value: Any) -> list[str]:
    if isinstance(value, (Secret, Unsafe)):
        return []
    if isinstance(value, str):
        return [value] if "{{" in value or "{%" in value else []
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _names(env: jinja2.Environment, value: Any, where: Location, name: str) -> set[str]:
    """The variables the templates inside ``value`` read (a syntax error is the variable's error)."""
    found: set[str] = set()
    for text in _strings(value):
        try:
            found |= meta.find_undeclared_variables(env.parse(text))
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"variable {name}: {e.message}", where) from None
    return found


def resolve(variables: Mapping[str, Any], candidates: set[str] | None, env: jinja2.Environment, render: Render,
            where: Callable[[str], Location]) -> dict[str, Any]:
    """``variables`` with every templated value among ``candidates`` (default: all) rendered.

    ``render(name, value, scope)`` renders one value with the variables it may read; ``where(name)``
    is where a variable was written (for errors). Returns a new dict; ``variables`` is not changed.
    """
    out = dict(variables)
    pending = {n for n in (variables if candidates is None else candidates)
               if n in variables and is_template(variables[n])}
    if not pending:
        return out
    state: dict[str, str] = {}  # name -> "busy" while its dependencies resolve, "done" after
    secret_of: dict[str, bool] = {n: bool(collect(v)) for n, v in variables.items() if n not in pending}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "busy":  # a loop: broken for every variable on it, an error where used
            loop = " -> ".join([*chain[chain.index(name):], name])
            out[name] = BrokenVariable(TemplateError(
                f"variable {name} refers to itself: {loop}", where(name),
                "a variable's template cannot use its own value; rename one of them"))
            return
        state[name] = "busy"
        deps = _names(env, variables[name], where(name), name) & set(variables)
        for dep in sorted(deps & pending):
            visit(dep, [*chain, name])
        try:
            value = render(name, variables[name], out)
        except TemplateError as e:
            value = BrokenVariable(e)
        if any(secret_of.get(d) for d in deps) and not isinstance(value, BrokenVariable):
            value = conceal(value)  # built from a secret: a secret too
        out[name] = value
        secret_of[name] = bool(collect(value))
        state[name] = "done"

    for name in sorted(pending):
        visit(name, [])
    return out
