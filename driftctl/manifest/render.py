"""Rendering manifest values and template files with Jinja2, sandboxed and strict.

Every string is rendered once (``ImmutableSandboxedEnvironment`` + ``StrictUndefined``); what a
string renders to is never rendered again, so a variable whose value contains ``{{`` stays text.
A string that is exactly one ``{{ expression }}`` keeps the expression's Python type.

Errors are TemplateErrors pointing at the manifest line of the string (for a multi-line block
scalar, the line inside it) or at the template file and its line.

Facts: before a host is contacted its facts are unknown. ``FactsPlaceholder`` stands for them: any
use of it succeeds and is recorded in a ``FactsUse``, so the caller knows which values depend on
facts (and skips the checks that need the real value) and that the host must be rendered again.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes

from driftctl.errors import Location, ManifestError, TemplateError
from driftctl.manifest.sandbox import LimitedSandbox, RenderTooLarge, render_capped, size_of
from driftctl.yamlsrc import YamlMap, YamlSeq, decode_utf8

_EXPR_ONLY = re.compile(r"^\{\{[-+]?(?P<expr>.*?)[-+]?\}\}$", re.S)
# names Jinja's sandbox and call machinery probe on objects; a placeholder must not pretend to have them
_JINJA_PROBES = frozenset({"unsafe_callable", "alters_data", "jinja_pass_arg"})


class FactsUse:
    """Records whether facts were used: ``touched`` since the last reset, ``ever`` in this render."""

    def __init__(self) -> None:
        self.touched = False
        self.ever = False

    def touch(self) -> None:
        self.touched = True
        self.ever = True

    def reset(self) -> bool:
        """Clear ``touched`` and return what it was."""
        was, self.touched = self.touched, False
        return was


class FactsPlaceholder:
    """A fact whose value is not known yet (preflight, before connecting).

    Attribute and item access give more placeholders, comparisons and arithmetic give a placeholder,
    iteration yields one placeholder, ``str()`` gives ``<facts.path>``. Every use is recorded.
    """

    __slots__ = ("_path", "_use")
    _path: str
    _use: FactsUse

    def __init__(self, path: str, use: FactsUse) -> None:
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_use", use)

    def _child(self, name: str) -> FactsPlaceholder:
        self._use.touch()
        return FactsPlaceholder(f"{self._path}.{name}", self._use)

    def __getattr__(self, name: str) -> FactsPlaceholder:
        if name.startswith("_") or name in _JINJA_PROBES:
            raise AttributeError(name)
        return self._child(name)

    def __getitem__(self, key: Any) -> FactsPlaceholder:
        return self._child(f"[{key!r}]" if not isinstance(key, str) else key)

    def __call__(self, *args: Any, **kwargs: Any) -> FactsPlaceholder:
        return self._child("()")

    def __str__(self) -> str:
        self._use.touch()
        return f"<{self._path}>"

    def __repr__(self) -> str:
        return f"FactsPlaceholder({self._path!r})"

    def __iter__(self) -> Iterator[FactsPlaceholder]:
        yield self._child("[0]")

    def __len__(self) -> int:
        self._use.touch()
        return 1

    def __bool__(self) -> bool:
        self._use.touch()
        return True

    def __contains__(self, item: Any) -> bool:
        self._use.touch()
        return True

    def __int__(self) -> int:
        self._use.touch()
        return 0

    def __float__(self) -> float:
        self._use.touch()
        return 0.0

    def __hash__(self) -> int:
        return hash(self._path)

    def _op(self, *_: Any) -> FactsPlaceholder:
        return self._child("(op)")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _op  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _op
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _op
    __neg__ = __pos__ = __abs__ = _op


class TrackedFacts(dict[str, Any]):
    """The real facts; reading them is recorded so the catalog knows it depends on them."""

    def __init__(self, facts: Mapping[str, Any], use: FactsUse) -> None:
        super().__init__(facts)
        self._use = use

    def __getitem__(self, key: Any) -> Any:
        self._use.touch()
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._use.touch()
        return super().get(key, default)

    def __iter__(self) -> Iterator[Any]:
        self._use.touch()
        return super().__iter__()

    def __contains__(self, key: object) -> bool:
        self._use.touch()
        return super().__contains__(key)

    def items(self) -> Any:
        self._use.touch()
        return super().items()

    def values(self) -> Any:
        self._use.touch()
        return super().values()

    def keys(self) -> Any:
        self._use.touch()
        return super().keys()


def contains_placeholder(value: Any) -> bool:
    if isinstance(value, FactsPlaceholder):
        return True
    if isinstance(value, str):
        return False
    if isinstance(value, Mapping):
        return any(contains_placeholder(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_placeholder(v) for v in value)
    return False


class _TreeLoader(jinja2.BaseLoader):
    """Loads ``{% include %}``d and ``template:`` files from search directories inside the tree only."""

    def __init__(self, search: tuple[Path, ...], tree: Path, display: Callable[[Path], str], max_bytes: int) -> None:
        self.search = search
        self.tree = tree
        self.display = display
        self.max_bytes = max_bytes

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        for base in self.search:
            path = (base / template).resolve()
            if not path.is_relative_to(self.tree):
                raise jinja2.TemplateNotFound(f"{template} (outside the manifest tree)")
            if path.is_file():
                # a TemplateError passes through Jinja untouched: "templates/t.j2:3: not UTF-8 (byte 0xff ...)"
                try:
                    if path.stat().st_size > self.max_bytes:  # not even read: it could not render smaller
                        raise TemplateError(f"{path.stat().st_size} bytes, over max_render_bytes ({self.max_bytes})",
                                            Location(self.display(path)))
                    data = path.read_bytes()
                except OSError as e:
                    raise TemplateError(f"cannot read: {e.strerror}", Location(self.display(path))) from None
                source = decode_utf8(data, self.display(path), TemplateError)
                return source, self.display(path), _unchanged(path)
        raise jinja2.TemplateNotFound(template)


def _unchanged(path: Path) -> Callable[[], bool]:
    mtime = path.stat().st_mtime
    return lambda: path.exists() and path.stat().st_mtime == mtime


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The line in template ``filename`` where ``exc`` happened, from Jinja's rewritten traceback."""
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == filename:
            line = lineno
    return line


def _message(exc: BaseException) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return str(exc.message)
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"not allowed in a template: {exc}"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"template syntax: {exc.message}"
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"template not found: {exc.message}"
    if isinstance(exc, RenderTooLarge):
        return f"too large: {exc.message}"
    if isinstance(exc, jinja2.TemplateError):
        return str(exc.message or exc)
    return f"{type(exc).__name__}: {exc}"


def plain(value: Any, what: str, location: Location) -> Any:
    """Turn an expression's value into YAML-like data (dicts, lists, scalars); reject anything else."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError with the variable's name
        raise TemplateError(f"{what}: undefined value", location)
    if value is None or isinstance(value, (bool, int, float, str, bytes, FactsPlaceholder)):
        return value
    if isinstance(value, Mapping):
        return {k: plain(v, what, location) for k, v in value.items()}
    if isinstance(value, (list, tuple, range, set, frozenset, Iterator)):
        return [plain(v, what, location) for v in value]
    raise TemplateError(f"{what}: the expression gives a {type(value).__name__}, which is not data", location)


# Settings.max_render_bytes' default: what a Renderer caps at when nobody says otherwise
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class Renderer:
    """Renders strings, expressions and template files of one manifest tree. Thread-safe for reading.

    No rendered value or file, and nothing a template builds on the way, may be larger than
    ``max_bytes`` (``Settings.max_render_bytes``): see driftctl/manifest/sandbox.py.
    """

    def __init__(self, tree: Path, display: Callable[[Path], str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.tree = tree
        self.display = display
        self.max_bytes = max_bytes
        self._envs: dict[tuple[Path, ...], LimitedSandbox] = {}
        self._compiled: dict[str, Any] = {}

    def env(self, search: tuple[Path, ...] = ()) -> LimitedSandbox:
        env = self._envs.get(search)
        if env is None:
            env = LimitedSandbox(
                self.max_bytes,
                undefined=jinja2.StrictUndefined,
                loader=_TreeLoader(search, self.tree, self.display, self.max_bytes),
                keep_trailing_newline=True,  # a config file's final newline is content
                autoescape=False,
                # each template is compiled once per run (a run reads one state of the tree): no stat
                # per use, no eviction when a site has more than Jinja's default 400 templates
                auto_reload=False,
                cache_size=-1,
            )
            self._envs[search] = env
        return env

    # ---- strings in manifests
    def _compile(self, text: str) -> Any:
        """A TemplateExpression (string is one ``{{ expr }}``) or a Template; cached by text."""
        compiled = self._compiled.get(text)
        if compiled is None:
            env = self.env()
            ast = env.parse(text)
            m = _EXPR_ONLY.match(text)
            if (
                m
                and len(ast.body) == 1
                and isinstance(ast.body[0], nodes.Output)
                and len(ast.body[0].nodes) == 1
                and not isinstance(ast.body[0].nodes[0], nodes.TemplateData)
            ):
                compiled = env.compile_expression(m.group("expr"), undefined_to_none=False)
            else:
                compiled = env.from_string(text)
            self._compiled[text] = compiled
        return compiled

    def string(self, text: str, variables: Mapping[str, Any], location: Location, what: str) -> Any:
        """Render one manifest string; an exact ``{{ expr }}`` keeps its type."""
        if "{" not in text:
            return text  # no Jinja syntax can start without a brace: skip the parser
        try:
            compiled = self._compile(text)
            if isinstance(compiled, jinja2.Template):
                return render_capped(self.env(), compiled, variables, "the rendered text")
            return self._plain(compiled(variables), what, location)
        except ManifestError:
            raise
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{what}: {_message(e)}", _line_in(location, text, e.lineno)) from None
        except Exception as e:
            raise TemplateError(f"{what}: {_message(e)}", _line_in(location, text, self._lineno(text, e))) from None

    def _lineno(self, text: str, exc: BaseException) -> int | None:
        compiled = self._compiled.get(text)
        if isinstance(compiled, jinja2.Template):
            return _template_line(exc, "<template>")
        if compiled is not None:
            # compile_expression's template is not traceback-rewritten: map the generated code's line
            template = compiled._template
            for frame, lineno in traceback.walk_tb(exc.__traceback__):
                if frame.f_code.co_filename == "<template>":
                    return int(template.get_corresponding_lineno(lineno))
        return None

    def _plain(self, value: Any, what: str, location: Location) -> Any:
        """An expression's value as data, unless it is larger than the cap (checked before copying it)."""
        size = size_of(value, self.max_bytes)
        if size > self.max_bytes:
            raise TemplateError(f"{what}: too large: the value is {size} bytes or more, over max_render_bytes "
                                f"({self.max_bytes})", location)
        return plain(value, what, location)

    def expression(self, expr: str, variables: Mapping[str, Any], location: Location, what: str) -> Any:
        """Evaluate a bare expression (``when:``), without braces."""
        if "{{" in expr or "{%" in expr:
            raise TemplateError(f"{what} is a bare expression: write it without {{{{ }}}}", location,
                                f"e.g. {what}: {expr.replace('{{', '').replace('}}', '').strip()}")
        try:
            compiled = self._compiled.get("\0expr:" + expr)  # a key no manifest string can have
            if compiled is None:
                compiled = self._compiled["\0expr:" + expr] = self.env().compile_expression(
                    expr, undefined_to_none=False)
            return self._plain(compiled(variables), what, location)
        except ManifestError:
            raise
        except Exception as e:
            raise TemplateError(f"{what}: {_message(e)}", location) from None

    def value(self, value: Any, variables: Mapping[str, Any], location: Location, what: str) -> Any:
        """Render every string inside ``value`` (as written in a manifest); keys are not rendered."""
        from driftctl.secret import Secret

        if isinstance(value, Secret):
            return value  # a !secret literal is data, never a template
        if isinstance(value, str):
            return self.string(value, variables, location, what)
        if isinstance(value, Mapping):
            return {
                k: self.value(v, variables, value.loc(k) if isinstance(value, YamlMap) else location, f"{what}.{k}")
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [
                self.value(v, variables, value.loc(i) if isinstance(value, YamlSeq) else location, f"{what}[{i}]")
                for i, v in enumerate(value)
            ]
        return value

    # ---- template files
    def template_file(self, name: str, search: tuple[Path, ...], variables: Mapping[str, Any]) -> str:
        """Render the template file ``name`` found in ``search``; errors name the template and line."""
        env = self.env(search)
        try:
            template = env.get_template(name)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(_message(e), Location(e.filename or name, e.lineno)) from None
        except jinja2.TemplateNotFound as e:
            raise TemplateError(_message(e), Location(name)) from None
        filename = template.filename or name
        try:
            return render_capped(env, template, variables, "the rendered file")
        except ManifestError:
            raise
        except jinja2.TemplateSyntaxError as e:  # an {% include %}d file with a syntax error
            raise TemplateError(_message(e), Location(e.filename or filename, e.lineno)) from None
        except Exception as e:
            # the innermost template frame: an error inside an {% include %}d file names that file.
            # Jinja rewrites tracebacks so template frames carry the template's file name and line.
            where = Location(filename, _template_line(e, filename))
            for frame, lineno in traceback.walk_tb(e.__traceback__):
                if "__jinja_exception__" in frame.f_globals:
                    where = Location(frame.f_code.co_filename, lineno)
            raise TemplateError(_message(e), where) from None


def _line_in(location: Location, text: str, lineno: int | None) -> Location:
    """The file line of template line ``lineno`` inside a manifest string written at ``location``.

    A multi-line string is (almost always) a block scalar (``content: |``) whose first line is the
    line after the key; a one-line string sits on the key's line.
    """
    if location.line is None or not lineno or "\n" not in text.rstrip("\n"):
        return location
    return Location(location.file, location.line + lineno)
