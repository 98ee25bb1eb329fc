"""Rendering manifest values and template files with Jinja2, sandboxed and strict.

Every string is rendered once (``ImmutableSandboxedEnvironment`` + ``StrictUndefined``); what a
string renders to is never rendered again, so a variable whose value contains ``{{`` stays text.
A string that is exactly one ``{{ expression }}`` keeps the expression's Python type.

Template files (``template:``) are rendered as Ansible's template module renders them (trim_blocks,
the ``#jinja2:`` header, Ansible's final newlines, None writing nothing): see ``TemplateOptions`` and
``Renderer.template_file``. Strings in manifests keep Jinja's defaults.

Errors are TemplateErrors pointing at the manifest line of the string (for a multi-line block
scalar, the line inside it) or at the template file and its line.

Facts: before a host is contacted its facts are unknown. ``FactsPlaceholder`` stands for them: any
use of it succeeds and is recorded in a ``FactsUse``, so the caller knows which values depend on
facts (and skips the checks that need the real value) and that the host must be rendered again.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes

from driftctl.errors import Location, ManifestError, TemplateError
from driftctl.manifest.filters import missing_filter_message
from driftctl.manifest.rendercache import Shard, cache_names, render_key, template_key
from driftctl.manifest.sandbox import (
    LimitedSandbox,
    NativeText,
    NoneText,
    RenderTooLarge,
    render_capped,
    render_parts,
    size_of,
)
from driftctl.yamlsrc import Unsafe, YamlMap, YamlSeq, decode_utf8

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


_NO_FILTER = re.compile(r"^No filter named '(?P<name>[^']+)'")


def _message(exc: BaseException) -> str:
    if isinstance(exc, jinja2.TemplateError) and (m := _NO_FILTER.match(str(exc.message or ""))):
        return missing_filter_message(m.group("name"))
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


_UNDEFINED = re.compile(r"^'(?P<name>[A-Za-z_][A-Za-z0-9_]*)' is undefined")


def _undefined_hint(exc: BaseException, variables: Mapping[str, Any]) -> str | None:
    """``did you mean 'motd_banner'?`` for an undefined variable whose name is close to a defined one."""
    from driftctl.patterns import nearest

    m = _UNDEFINED.match(str(getattr(exc, "message", "") or "")) if isinstance(exc, jinja2.UndefinedError) else None
    if m is None:
        return None
    close = nearest(m.group("name"), [k for k in variables if isinstance(k, str)])
    return f"did you mean {close!r}?" if close else None


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


# ---- template files: Ansible's template module settings
JINJA2_HEADER = "#jinja2:"
NEWLINE_SEQUENCES = ("\n", "\r", "\r\n")
_ESCAPED_NEWLINES = {"\\n": "\n", "\\r": "\r", "\\r\\n": "\r\n"}  # "\\n" as written in YAML single quotes


@dataclasses.dataclass(frozen=True)
class TemplateOptions:
    """How a ``template:`` file is parsed and rendered: Ansible's template module defaults.

    Differs from Jinja's defaults in ``trim_blocks`` (True). The final newlines are Ansible's too:
    Jinja drops one (``keep_trailing_newline`` false) and the render gets as many trailing newlines
    as the template file has, when it has fewer (see :func:`_restore_trailing_newlines`).
    """

    block_start_string: str = jinja2.defaults.BLOCK_START_STRING
    block_end_string: str = jinja2.defaults.BLOCK_END_STRING
    variable_start_string: str = jinja2.defaults.VARIABLE_START_STRING
    variable_end_string: str = jinja2.defaults.VARIABLE_END_STRING
    comment_start_string: str = jinja2.defaults.COMMENT_START_STRING
    comment_end_string: str = jinja2.defaults.COMMENT_END_STRING
    line_statement_prefix: str | None = None
    line_comment_prefix: str | None = None
    trim_blocks: bool = True
    lstrip_blocks: bool = False
    newline_sequence: str = "\n"
    keep_trailing_newline: bool = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_string"):
                if not isinstance(value, str) or not value:
                    raise ValueError(f"{f.name} must be a non-empty string, not {value!r}")
            elif f.name.endswith("_prefix"):
                if value is not None and (not isinstance(value, str) or not value):
                    raise ValueError(f"{f.name} must be a non-empty string or None, not {value!r}")
            elif f.name == "newline_sequence":
                if value not in NEWLINE_SEQUENCES:
                    raise ValueError(f"newline_sequence must be one of '\\n', '\\r' or '\\r\\n', not {value!r}")
            elif not isinstance(value, bool):
                raise ValueError(f"{f.name} must be true or false, not {value!r}")
        starts = (self.block_start_string, self.variable_start_string, self.comment_start_string)
        if len(set(starts)) != 3:
            raise ValueError("block, variable and comment start strings must be different")

    @classmethod
    def of(cls, options: Mapping[str, Any] | None) -> TemplateOptions:
        """Ansible's defaults with ``options`` (a file resource's) over them; ValueError when wrong."""
        if not options:
            return DEFAULT_TEMPLATE_OPTIONS
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown template option {unknown[0]!r} (known: {', '.join(sorted(known))})")
        values = dict(options)
        if values.get("newline_sequence") in _ESCAPED_NEWLINES:
            values["newline_sequence"] = _ESCAPED_NEWLINES[values["newline_sequence"]]
        return dataclasses.replace(DEFAULT_TEMPLATE_OPTIONS, **values)

    def jinja(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_header(self, source: str) -> tuple[str, TemplateOptions, int]:
        """Apply a first line ``#jinja2: key: value, ...`` (values are Python literals), as Ansible does.

        Returns the source without that line, the options, and how many lines were taken off (0 or 1).
        The header wins over the resource's options, as it wins over the template module's in Ansible.
        """
        if not source.startswith(JINJA2_HEADER):
            return source, self, 0
        eol = source.find("\n")
        if eol == -1:
            raise ValueError(f"missing newline after the {JINJA2_HEADER!r} header")
        line, rest = source[len(JINJA2_HEADER):eol], source[eol + 1:]
        known = {f.name for f in dataclasses.fields(self)}
        overrides: dict[str, Any] = {}
        for pair in line.split(","):
            if not pair.strip():
                raise ValueError(f"{JINJA2_HEADER} header: an empty pair (a stray comma?)")
            if ":" not in pair:
                raise ValueError(f"{JINJA2_HEADER} header: no ':' in {pair.strip()!r} (write key: value)")
            key, val = (p.strip() for p in pair.split(":", 1))
            if key not in known:
                raise ValueError(f"{JINJA2_HEADER} header: unknown option {key!r} (known: {', '.join(sorted(known))})")
            try:
                overrides[key] = ast.literal_eval(val)
            except (ValueError, SyntaxError):
                raise ValueError(f"{JINJA2_HEADER} header: {key}: {val!r} is not a Python literal "
                                 f"(True, False, 'text', \"text\")") from None
        return rest, dataclasses.replace(self, **overrides), 1


DEFAULT_TEMPLATE_OPTIONS = TemplateOptions()


def _trailing_newlines(text: str) -> int:
    return len(text) - len(text.rstrip("\n"))


def _restore_trailing_newlines(source: str, result: str, newline: str) -> str:
    """Ansible's Templar: when the template ends in more "\\n" than the result, the result gets the
    missing ones as ``newline`` (only "\\n" is counted, in both)."""
    missing = _trailing_newlines(source) - _trailing_newlines(result)
    return result + newline * missing if missing > 0 else result


def _ansible_result(source: str, parts: list[str], newline: str) -> str:
    """The file Ansible's template module writes from a template's outputs.

    Ansible drops None outputs; a template with no output left writes an empty file, one whose only
    output is a value that is not text (``{{ port }}``) writes that value's text and nothing else
    (its final newlines are not restored); otherwise the text, with the final newlines restored as
    ``newline``: the template module's (the resource's) newline_sequence, even when a ``#jinja2:``
    header sets another, as Ansible does.
    """
    outputs = []  # the first two outputs are all that decide (a template has hundreds of parts)
    for p in parts:
        if not isinstance(p, NoneText):
            outputs.append(p)
            if len(outputs) == 2:
                break
    if not outputs:
        return ""
    if len(outputs) == 1 and isinstance(outputs[0], NativeText):
        return str.__str__(outputs[0])
    return _restore_trailing_newlines(source, "".join(parts), newline)


@dataclasses.dataclass(frozen=True)
class _CompiledFile:
    """A compiled template file, its source, the resource's options (before the header's), the header's
    lines (0 or 1), and its body and options after the header (for ``cache_key``)."""

    template: jinja2.Template
    source: str
    base: TemplateOptions
    offset: int
    body: str
    options: TemplateOptions

    @functools.cached_property
    def cache_key(self) -> tuple[tuple[str, ...], bytes] | None:
        """(the names it reads, the part of the render cache key its renders share), or None when its
        text is never cached (rendercache.cache_names). Worked out the first time a render may use the
        cache: a run without one (bake, pull) does not pay for it."""
        env = self.template.environment
        assert isinstance(env, LimitedSandbox)
        # its own tree: compiling may have folded constants in the one it was compiled from
        names = cache_names(env.parse(self.body, self.template.name, self.template.filename), env)
        return None if names is None else (names, template_key(self.source, (self.base, self.options), env.max_bytes))

# at most this many rendered manifest strings are remembered in a run (a few MB)
_MEMO_MAX = 50_000

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
        self._file_envs: dict[tuple[tuple[Path, ...], TemplateOptions], LimitedSandbox] = {}
        self._files: dict[tuple[str, tuple[Path, ...], TemplateOptions], _CompiledFile] = {}
        self._compiled: dict[str, Any] = {}
        # manifest strings that are templates: the names each reads (None: not a function of them), and
        # the texts rendered in this run by (string, the values of its names)
        self._string_names: dict[str, tuple[str, ...] | None] = {}
        self._memo: dict[tuple[str, bytes], str] = {}

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

    def file_env(self, search: tuple[Path, ...], options: TemplateOptions) -> LimitedSandbox:
        """The environment of ``template:`` files: Ansible's settings, a None output writes nothing."""
        key = (search, options)
        env = self._file_envs.get(key)
        if env is None:
            env = LimitedSandbox(
                self.max_bytes,
                ansible_output=True,
                undefined=jinja2.StrictUndefined,
                loader=_TreeLoader(search, self.tree, self.display, self.max_bytes),
                autoescape=False,
                auto_reload=False,
                cache_size=-1,
                **options.jinja(),
            )
            self._file_envs[key] = env
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
                self._string_names[text] = cache_names(ast, env)
            self._compiled[text] = compiled
        return compiled

    def _memo_key(self, text: str, variables: Mapping[str, Any]) -> tuple[str, bytes] | None:
        """What a manifest string's text is a function of (itself and the values of the names it reads),
        or None when that is not known (see rendercache.cache_names)."""
        names = self._string_names.get(text)
        if names is None or len(self._memo) >= _MEMO_MAX:
            return None
        values = render_key(b"", names, variables, self.env().globals, ())
        return None if values is None else (text, values)

    def string(self, text: str, variables: Mapping[str, Any], location: Location, what: str) -> Any:
        """Render one manifest string; an exact ``{{ expr }}`` keeps its type."""
        if "{" not in text:
            return text  # no Jinja syntax can start without a brace: skip the parser
        try:
            compiled = self._compile(text)
            if isinstance(compiled, jinja2.Template):
                # the same string with the same values renders the same text on every host (a loop's
                # paths, say): rendered once per run
                key = self._memo_key(text, variables)
                if key is not None and (done := self._memo.get(key)) is not None:
                    return done
                done = render_capped(self.env(), compiled, variables, "the rendered text")
                if key is not None:
                    self._memo[key] = done
                return done
            return self._plain(compiled(variables), what, location)
        except ManifestError:
            raise
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{what}: {_message(e)}", _line_in(location, text, e.lineno)) from None
        except Exception as e:
            raise TemplateError(f"{what}: {_message(e)}", _line_in(location, text, self._lineno(text, e)),
                                _undefined_hint(e, variables)) from None

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
            raise TemplateError(f"{what}: {_message(e)}", location, _undefined_hint(e, variables)) from None

    def value(self, value: Any, variables: Mapping[str, Any], location: Location, what: str) -> Any:
        """Render every string inside ``value`` (as written in a manifest); keys are not rendered."""
        from driftctl.secret import Secret

        if isinstance(value, (Secret, Unsafe)):
            return value  # a !secret literal or an !unsafe string is data, never a template
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
    def template_file(self, name: str, search: tuple[Path, ...], variables: Mapping[str, Any],
                      options: Mapping[str, Any] | None = None, cache: Shard | None = None) -> str:
        """Render the template file ``name`` found in ``search`` as Ansible's template module does.

        ``options`` are the file resource's template options (``trim_blocks``, ``newline_sequence``,
        delimiters...) over Ansible's defaults; a ``#jinja2:`` first line overrides both. Errors name
        the template and its line. ``cache``: the host's shard of the render cache (D53), which the text
        is read from and kept in when the template and its inputs allow (never for a sensitive file).
        """
        try:
            base = TemplateOptions.of(options)
        except ValueError as e:
            raise TemplateError(str(e), Location(name)) from None
        compiled = self._template(name, search, base)
        key = None
        if cache is not None and (shared := compiled.cache_key) is not None:
            names, template_part = shared
            key = render_key(template_part, names, variables, compiled.template.environment.globals, cache.secrets)
            if key is not None and (text := cache.get(key)) is not None:
                return text
        text = self._render_file(compiled, name, variables)
        if key is not None:
            assert cache is not None
            cache.put(key, text)
        return text

    def _render_file(self, compiled: _CompiledFile, name: str, variables: Mapping[str, Any]) -> str:
        template, source, offset, base = compiled.template, compiled.source, compiled.offset, compiled.base
        filename = template.filename or name
        env = template.environment
        assert isinstance(env, LimitedSandbox)
        try:
            parts = render_parts(env, template, variables, "the rendered file")
        except ManifestError:
            raise
        except jinja2.TemplateSyntaxError as e:  # an {% include %}d file with a syntax error
            raise TemplateError(_message(e), Location(e.filename or filename, e.lineno)) from None
        except Exception as e:
            # the innermost template frame: an error inside an {% include %}d file names that file.
            # Jinja rewrites tracebacks so template frames carry the template's file name and line.
            line = _template_line(e, filename)
            where = Location(filename, line + offset if line else None)
            for frame, lineno in traceback.walk_tb(e.__traceback__):
                if "__jinja_exception__" in frame.f_globals:
                    top = frame.f_code.co_filename == filename
                    where = Location(frame.f_code.co_filename, lineno + offset if top else lineno)
            raise TemplateError(_message(e), where, _undefined_hint(e, variables)) from None
        return _ansible_result(source, parts, base.newline_sequence)

    def _template(self, name: str, search: tuple[Path, ...],
                  base: TemplateOptions) -> _CompiledFile:
        """The compiled file (cached), its source, its options after its header, the header's lines."""
        key = (name, search, base)
        cached = self._files.get(key)
        if cached is not None:
            return cached
        loader = _TreeLoader(search, self.tree, self.display, self.max_bytes)
        try:
            source, filename, uptodate = loader.get_source(self.env(search), name)
        except jinja2.TemplateNotFound as e:
            raise TemplateError(_message(e), Location(name)) from None
        try:
            body, opts, offset = base.with_header(source)
        except ValueError as e:
            raise TemplateError(str(e), Location(filename, 1)) from None
        env = self.file_env(search, opts)
        try:
            code = env.compile(body, name, filename)
        except jinja2.TemplateSyntaxError as e:
            line = e.lineno + offset if e.lineno and (e.filename or filename) == filename else e.lineno
            raise TemplateError(_message(e), Location(e.filename or filename, line)) from None
        template = env.template_class.from_code(env, code, env.make_globals(None), uptodate)
        self._files[key] = cached = _CompiledFile(template, source, base, offset, body, opts)
        return cached


def _line_in(location: Location, text: str, lineno: int | None) -> Location:
    """The file line of template line ``lineno`` inside a manifest string written at ``location``.

    A multi-line string is (almost always) a block scalar (``content: |``) whose first line is the
    line after the key; a one-line string sits on the key's line.
    """
    if location.line is None or not lineno or "\n" not in text.rstrip("\n"):
        return location
    return Location(location.file, location.line + lineno)
