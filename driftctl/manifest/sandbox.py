"""A Jinja2 sandbox that refuses to build a value larger than ``max_bytes`` *before* building it.

Jinja's own sandbox stops attribute access, not memory use: ``{{ 'x' * 10**9 }}`` grew the controller
by gigabytes. Every way a template can make something big from something small is checked here
against the size of what it would make, before it is made:

- operators ``*``, ``+``, ``**`` and ``%`` (``intercepted_binops``), and ``~`` (the code generator);
- str methods that grow text (``center``, ``ljust``, ``rjust``, ``zfill``, ``expandtabs``,
  ``replace``, ``join``, ``translate``) and ``str.format``/``format_map`` (widths, repeated fields);
- filters that grow text or materialise sequences (``center``, ``indent``, ``format``, ``join``,
  ``replace``, ``wordwrap``, ``tojson``, ``pprint``, ``string``, ``list``, ``batch``, ``slice``,
  ``sort``, ``unique``, ``reverse``, ``groupby``, ...): a generator is consumed with a budget;
- every ``{{ }}`` output (``finalize``) and every captured block (``{% set %}...``, macros,
  ``caller()``, ``{% filter %}``) is bounded; ``range`` is bounded by Jinja (MAX_RANGE) and
  ``lipsum`` here.

Sizes are estimates that never undercount what rendering the value as text would take: a list
counts the sizes of its items (``[big] * 1000`` is 1000 bigs, although the list itself is small),
so nested sharing cannot smuggle a huge text past the cap. Text counts characters.

What is not bounded: CPU time (``{% for i in range(100000) %}{% for j in range(100000) %}`` runs
for a long time without growing); a render is still a synchronous call.
"""

from __future__ import annotations

import functools
import itertools
import re
import types
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, cast

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter

from driftctl.manifest import filters as ansible_filters

_PER_ITEM = 8  # a reference in a list, a separator when shown: never count an item as free


RenderTooLarge = ansible_filters.RenderTooLarge  # defined with the filters, which raise it too


_SCALARS = frozenset({int, float, bool, type(None)})


class NativeText(str):
    """The text of a ``{{ }}`` value that is not text (a number, a list, ...), in an Ansible-style render.

    Ansible keeps such a value as it is when it is a template's only output (``{{ port }}`` renders
    ``22`` without the template's final newline): the renderer needs to know what each output was.
    """

    def __str__(self) -> str:
        return self  # the str() Jinja writes around an output (in volatile or autoescape blocks) keeps the mark


_SMALL_INTS = [NativeText(i) for i in range(1024)]  # the outputs of loop counters, made once


class NoneText(NativeText):
    """A ``{{ }}`` whose value is None: Ansible writes nothing and does not count it as an output."""


def size_of(value: Any, budget: int) -> int:
    """How large ``value`` is as text, counting nested items; stops counting past ``budget``
    (returns a number larger than it), so a huge structure costs at most ``budget`` steps."""
    kind = type(value)
    if kind is str:
        return len(value)
    if kind in _SCALARS:
        return _PER_ITEM
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (str, bytes, bytearray)):
            total += len(v)
        elif isinstance(v, Mapping):
            total += _PER_ITEM * len(v)
            if total <= budget:
                stack.extend(v.keys())
                stack.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += _PER_ITEM * len(v)
            if total <= budget:
                stack.extend(v)
        else:
            total += _PER_ITEM
        if total > budget:
            return total
    return total


class _BoundedBuffer(list[Any]):
    """The list a captured block (``{% set x %}``, a macro, ``caller()``) collects its output in."""

    __slots__ = ("_env", "_size")

    def __init__(self, env: LimitedSandbox) -> None:
        super().__init__()
        self._env = env
        self._size = 0

    def append(self, item: Any) -> None:
        self._size += len(item) if type(item) is str else size_of(item, self._env.max_bytes)
        if self._size > self._env.max_bytes:
            raise self._env.too_large("a captured block's output", self._size)
        super().append(item)

    def extend(self, items: Iterable[Any]) -> None:
        items = tuple(items)
        if all(type(i) is str for i in items):  # what Jinja hands a buffer: str() of each output
            self._size += sum(map(len, items))
        else:
            self._size += sum(size_of(i, self._env.max_bytes) for i in items)
        if self._size > self._env.max_bytes:
            raise self._env.too_large("a captured block's output", self._size)
        super().extend(items)


def _checked_binop(op: str) -> Callable[[_LimitedCodeGenerator, nodes.BinExpr, Frame], None]:
    """Jinja's visitor of an intercepted operator, with the check skipped inline when both operands
    are ints (what loops and counters compute: nothing to grow, and a call per operator was most of a
    numeric template's render). Both operands are evaluated once, left first, as before; anything
    else still goes through ``call_binop``, and ``**`` always does (a big power is built from ints)."""

    @optimizeconst
    def visitor(self: _LimitedCodeGenerator, node: nodes.BinExpr, frame: Frame) -> None:
        left, right = self.temporary_identifier(), self.temporary_identifier()
        self.write(f"({left} {op} {right} if (type({left} := ")
        self.visit(node.left, frame)
        self.write(f") is int) & (type({right} := ")
        self.visit(node.right, frame)
        self.write(f") is int) else environment.call_binop(context, {op!r}, {left}, {right}))")

    return visitor


class _LimitedCodeGenerator(CodeGenerator):
    visit_Add = _checked_binop("+")
    visit_Mul = _checked_binop("*")
    visit_Mod = _checked_binop("%")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outputs: list[str] = []  # the temporaries of the outputs being written

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        """Each ``{{ }}`` output: a str goes out as it is, without the finalize call (which does not
        change a str); any other value through finalize, which returns text (``LimitedSandbox``'s both
        do), so Jinja's ``str()`` around it is not written either."""
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape:
            super()._output_child_pre(node, frame, finalize)
            return
        self._outputs.append(self.temporary_identifier())
        self.write(f"({self._outputs[-1]} if type({self._outputs[-1]} := ")

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape:
            super()._output_child_post(node, frame, finalize)
            return
        name = self._outputs.pop()
        self.write(f") is str else {finalize.src}{name}))")

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.new_buffer()")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape:
            super().visit_Concat(node, frame)
            return
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


_GROWING_STR_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join", "translate"})
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")
_NUMBERS = re.compile(r"\d+")


class _LimitedFormatter(SandboxedFormatter):
    """``str.format`` that counts what it has produced and refuses a width larger than the cap."""

    def __init__(self, env: LimitedSandbox) -> None:
        super().__init__(env)
        self._limited = env
        self._size = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        cap = self._limited.max_bytes
        widest = max((int(n) for n in _NUMBERS.findall(format_spec)), default=0)
        self._size += max(widest, size_of(value, cap))
        if self._size > cap:
            raise self._limited.too_large("str.format", self._size)
        return super().format_field(value, format_spec)


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """``ImmutableSandboxedEnvironment`` with a size cap on everything a template builds."""

    code_generator_class = _LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self, max_bytes: int, *, ansible_output: bool = False, **options: Any) -> None:
        """``options`` are Jinja's (``trim_blocks``, delimiters, ...). ``ansible_output``: outputs as
        Ansible's templates make them: a ``{{ }}`` whose value is None writes nothing (Jinja writes
        "None"), and each output is marked with what it was (:class:`NativeText`, :class:`NoneText`);
        the finalize step runs at render time, so ``{{ 22 }}`` stays a number as in Ansible."""
        finalize: Any = self._finalize
        if ansible_output:
            slow = self._ansible_finalize

            def ansible_finalize(eval_ctx: Any, value: Any) -> str:
                kind = type(value)  # the common outputs first, without a call: every ``{{ }}`` comes here
                if kind is str:
                    return value
                if kind is int:
                    return _SMALL_INTS[value] if 0 <= value < 1024 else NativeText(value)
                if kind is float or kind is bool:
                    return NativeText(value)
                return slow(value)

            finalize = jinja2.pass_eval_context(ansible_finalize)  # not a bound method: Jinja marks it
        super().__init__(finalize=finalize, **options)
        self.max_bytes = max_bytes
        self.globals["lipsum"] = self._lipsum
        ansible_filters.install(self.filters, self.tests)
        self.filters["regex_replace"] = functools.wraps(ansible_filters.regex_replace)(
            functools.partial(ansible_filters.regex_replace, _budget=max_bytes))
        for full in list(self.filters):
            name = full.removeprefix("ansible.builtin.")
            if name == "regex_replace":
                self.filters[full] = self.filters["regex_replace"]
            elif name in _FILTER_CHECKS or name in _MATERIALISING_FILTERS:
                self.filters[full] = _checked_filter(self, full, self.filters[full], _FILTER_CHECKS.get(name))

    # ---- the checks
    def too_large(self, what: str, size: int) -> RenderTooLarge:
        return RenderTooLarge(f"{what} would make {size} bytes or more, over max_render_bytes ({self.max_bytes})")

    def check(self, what: str, size: int) -> None:
        if size > self.max_bytes:
            raise self.too_large(what, size)

    def size(self, value: Any) -> int:
        return size_of(value, self.max_bytes)

    def take(self, values: Iterable[Any], what: str) -> list[Any]:
        """``values`` as a list, consumed one by one and given up as soon as it grows past the cap."""
        if isinstance(values, (list, tuple, set, frozenset, dict, range)):
            return list(values)  # already in memory: a copy of the references only
        if isinstance(values, (str, bytes)):
            self.check(what, (_PER_ITEM + 1) * len(values))
            return list(values)
        out, total = [], 0
        for v in values:
            total += _PER_ITEM + self.size(v)
            self.check(what, total)
            out.append(v)
        return out

    def new_buffer(self) -> _BoundedBuffer:
        return _BoundedBuffer(self)

    def checked_concat(self, parts: tuple[Any, ...]) -> str:
        total = sum(len(p) if type(p) is str else size_of(p, self.max_bytes) for p in parts)
        self.check("'~'", total)
        return "".join(map(str, parts))

    def _ansible_finalize(self, value: Any) -> str:
        if value is None:
            return _NONE
        if isinstance(value, str):
            return value
        self._check_output(value)
        return NativeText(_tuples_as_lists(value))

    def _finalize(self, value: Any) -> str:
        """Every ``{{ }}`` output of a plain render: checked, and as text (the code generator writes no
        ``str()`` around it)."""
        self._check_output(value)
        return value if type(value) is str else str(value)

    def _check_output(self, value: Any) -> None:
        if type(value) is not str and type(value) not in _SCALARS:
            self.check("an output value", self.size(value))

    def _lipsum(self, n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        from jinja2.utils import generate_lorem_ipsum

        self.check("lipsum()", int(n) * int(max) * 16)
        return generate_lorem_ipsum(n, html, min, max)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if type(left) in _SCALARS and type(right) in _SCALARS and operator != "**":
            return self.binop_table[operator](left, right)  # numbers: nothing to grow
        if operator == "*":
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(n, int) and isinstance(seq, (str, bytes, list, tuple)):
                self.check(f"'*' ({type(seq).__name__} of {len(seq)} times {n})", self.size(seq) * n)
        elif operator == "+":
            if isinstance(left, (str, bytes, list, tuple)) and isinstance(right, (str, bytes, list, tuple)):
                self.check("'+'", self.size(left) + self.size(right))
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                self.check("'**'", right * left.bit_length() // 8)
        elif operator == "%" and isinstance(left, str):
            self._check_percent(left, right)
        return super().call_binop(context, operator, left, right)

    def _check_percent(self, fmt: str, args: Any) -> None:
        values = list(args.values()) if isinstance(args, Mapping) else list(args) if isinstance(args, tuple) else [args]
        widest = 0
        specs = _PERCENT_SPEC.findall(fmt)
        for width, precision in specs:
            for n in (width, precision):
                if n == "*":
                    widest = max([widest, *(v for v in values if isinstance(v, int))])
                elif n:
                    widest = max(widest, int(n))
        largest = max((self.size(v) for v in values), default=0)
        self.check("'%' formatting", len(fmt) + len(specs) * max(widest, largest))

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(__obj, types.BuiltinMethodType) and isinstance(__obj.__self__, (str, bytes)) \
                and __obj.__name__ in _GROWING_STR_METHODS:
            return __self._call_str_method(__context, __obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def _call_str_method(self, context: jinja2.runtime.Context, method: Any, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> Any:
        s, name = method.__self__, method.__name__
        what = f"str.{name}()"
        if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
            self.check(what, args[0])
        elif name == "expandtabs":
            tab = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(tab, int):
                self.check(what, len(s) + s.count("\t" if isinstance(s, str) else b"\t") * tab)
        elif name == "replace" and len(args) >= 2:
            old, new = args[0], args[1]
            if isinstance(old, type(s)) and isinstance(new, type(s)):
                n = s.count(old) if old else len(s) + 1
                if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
                    n = min(n, args[2])
                self.check(what, len(s) + n * max(0, len(new) - len(old)))
        elif name == "join" and args:
            items = self.take(args[0], what)
            self.check(what, sum(self.size(i) for i in items) + len(s) * max(0, len(items) - 1))
            args = (items, *args[1:])
        elif name == "translate" and args and isinstance(args[0], Mapping):
            longest = max((self.size(v) for v in args[0].values()), default=1)
            self.check(what, len(s) * max(1, longest))
        return super().call(context, method, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        f_self, is_map = value.__self__, value.__name__ == "format_map"
        env = self

        def limited(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                mapping: Mapping[str, Any] = args[0]
                return type(f_self)(_LimitedFormatter(env).vformat(f_self, (), mapping))
            return type(f_self)(_LimitedFormatter(env).vformat(f_self, args, kwargs))

        return functools.update_wrapper(limited, value)


# ---- filters: how large each would make its result, before it runs
def _arg(rest: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any) -> Any:
    return rest[i] if len(rest) > i else kwargs.get(name, default)


def _text_len(env: LimitedSandbox, value: Any) -> int:
    return len(value) if isinstance(value, str) else env.size(value)


def _lines(env: LimitedSandbox, value: Any) -> int:
    return value.count("\n") + 1 if isinstance(value, str) else env.size(value) // _PER_ITEM + 1


def _json_size(env: LimitedSandbox, value: Any, indent: Any) -> int:
    size = env.size(value) * 6  # escapes: one character can become \uXXXX
    if isinstance(indent, int) and indent > 0:
        size += (env.size(value) // _PER_ITEM + 1) * indent * 64  # a line per item, nested at most 64 deep
    return size


_FilterCheck = Callable[[LimitedSandbox, Any, tuple[Any, ...], dict[str, Any]], int]

_FILTER_CHECKS: dict[str, _FilterCheck] = {
    "center": lambda env, v, r, k: max(_text_len(env, v), _as_int(_arg(r, k, 0, "width", 80))),
    "indent": lambda env, v, r, k: _text_len(env, v) + _lines(env, v) * _width(_arg(r, k, 0, "width", 4)),
    "format": lambda env, v, r, k: _format_size(env, v, r, k),
    "join": lambda env, v, r, k: 0,  # checked on the materialised items (below)
    "replace": lambda env, v, r, k: _replace_size(env, v, r, k),
    "wordwrap": lambda env, v, r, k: 2 * _text_len(env, v),
    "tojson": lambda env, v, r, k: _json_size(env, v, _arg(r, k, 0, "indent", None)),
    "pprint": lambda env, v, r, k: 4 * env.size(v),
    "string": lambda env, v, r, k: env.size(v),
    "list": lambda env, v, r, k: 9 * len(v) if isinstance(v, (str, bytes)) else 0,
    "batch": lambda env, v, r, k: _PER_ITEM * _as_int(_arg(r, k, 0, "linecount", 1))
    if _arg(r, k, 1, "fill_with", None) is not None else 0,
    "slice": lambda env, v, r, k: _PER_ITEM * _as_int(_arg(r, k, 0, "slices", 1)),
    # Ansible's filters (driftctl/manifest/filters.py); regex_replace counts what it makes as it goes
    "to_json": lambda env, v, r, k: _json_size(env, v, k.get("indent")),
    "to_nice_json": lambda env, v, r, k: _json_size(env, v, _arg(r, k, 0, "indent", 4)),
    "to_yaml": lambda env, v, r, k: _json_size(env, v, k.get("indent", 2)),
    "to_nice_yaml": lambda env, v, r, k: _json_size(env, v, _arg(r, k, 0, "indent", 4)),
    "b64encode": lambda env, v, r, k: 4 * _text_len(env, v) // 3 + 4,
    "b64decode": lambda env, v, r, k: _text_len(env, v),
    "quote": lambda env, v, r, k: 5 * _text_len(env, v) + 2,  # each ' becomes '"'"'
    "comment": lambda env, v, r, k: _comment_size(env, v, k),
    "regex_escape": lambda env, v, r, k: 2 * _text_len(env, v),
}
# filters that turn their input into a list: a generator input is consumed with a budget first
_MATERIALISING_FILTERS = ("join", "list", "sort", "unique", "reverse", "batch", "slice", "groupby",
                          "random", "last", "dictsort", "sum", "tojson", "string", "pprint",
                          "to_json", "to_nice_json", "to_yaml", "to_nice_yaml", "flatten", "combine",
                          "items2dict", "union", "intersect", "difference", "symmetric_difference")


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _width(value: Any) -> int:
    return len(value) if isinstance(value, str) else _as_int(value)


def _comment_size(env: LimitedSandbox, text: Any, kwargs: dict[str, Any]) -> int:
    """Every line of ``text`` gets a decoration; prefix and postfix lines are repeated their count."""
    extra = sum(len(str(v)) for v in kwargs.values() if isinstance(v, str)) + 8
    counts = sum(_as_int(kwargs.get(k, 1)) for k in ("prefix_count", "postfix_count"))
    return _text_len(env, text) + (_lines(env, text) + counts + 2) * extra


def _format_size(env: LimitedSandbox, fmt: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    if isinstance(fmt, str):
        env._check_percent(fmt, kwargs or tuple(rest))
    return 0


def _replace_size(env: LimitedSandbox, s: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    if not isinstance(s, str) or len(rest) < 2:
        return 0
    old, new = str(rest[0]), str(rest[1])
    n = s.count(old) if old else len(s) + 1
    count = _arg(rest, kwargs, 2, "count", None)
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    return len(s) + n * max(0, len(new) - len(old))


def _checked_filter(env: LimitedSandbox, name: str, f: Callable[..., Any],
                    check: _FilterCheck | None) -> Callable[..., Any]:
    skip = 1 if getattr(f, "jinja_pass_arg", None) is not None else 0

    label = f"the {name} filter"
    short = name.removeprefix("ansible.builtin.")

    @functools.wraps(f)  # keeps jinja_pass_arg: the context/environment argument still comes first
    def limited(*args: Any, **kwargs: Any) -> Any:
        value = args[skip] if len(args) > skip else None
        if hasattr(type(value), "__next__"):  # a generator (map, select, ...): consumed with a budget
            value = env.take(cast(Iterable[Any], value), label)
            args = (*args[:skip], value, *args[skip + 1:])
        if short == "join" and value is not None and type(value) is not str:
            sep = _arg(args[skip + 1:], kwargs, 0, "d", "")
            env.check(label, sum(size_of(i, env.max_bytes) for i in value) + len(str(sep)) * max(0, len(value) - 1))
        if check is not None:
            env.check(label, check(env, value, args[skip + 1:], kwargs))
        return f(*args, **kwargs)

    return limited


def _tuples_as_lists(value: Any) -> Any:
    """Ansible shows a tuple in a template's output as a list (``splitext``: ``['a', '.gz']``)."""
    if type(value) is tuple or type(value) is list:
        return [_tuples_as_lists(v) for v in value]
    if type(value) is dict:
        return {k: _tuples_as_lists(v) for k, v in value.items()}
    return value


def render_capped(env: LimitedSandbox, template: jinja2.Template, variables: Mapping[str, Any], what: str) -> str:
    """Render ``template`` as a stream, stopping once its output passes the cap.

    The error is thrown into the template's generator, so it carries the template line being rendered.
    """
    return "".join(render_parts(env, template, variables, what))


def render_parts(env: LimitedSandbox, template: jinja2.Template, variables: Mapping[str, Any],
                 what: str) -> list[str]:
    """What ``render_capped`` joins: each piece of text and each output, as the template yields them."""
    parts: list[str] = []
    total = 0
    stream = cast(Generator[str, None, None], template.root_render_func(template.new_context(dict(variables))))
    try:
        while batch := list(itertools.islice(stream, 256)):  # counted in C, a batch at a time
            total += sum(map(len, batch))
            if total > env.max_bytes:
                stream.throw(env.too_large(what, total))
            parts += batch
    except Exception:
        env.handle_exception()  # as Template.render: raises it again, with the template's file and line
    return parts


_NONE = NoneText("")


__all__ = ["LimitedSandbox", "NativeText", "NoneText", "RenderTooLarge", "render_capped", "render_parts", "size_of"]
