"""Ansible's common template filters, written to give byte for byte what ansible-core gives.

Role templates written for Ansible use ``to_nice_yaml``, ``regex_replace``, ``b64encode``, ``hash``,
``combine``... These are re-implementations of ansible-core's (lib/ansible/plugins/filter/core.py,
2.19) on plain data, with the same defaults: ``to_json`` is ``json.dumps`` with its default
separators and ``ensure_ascii``; ``to_nice_json`` indents 4 and sorts keys with ``(',', ': ')``;
``to_yaml``/``to_nice_yaml`` are PyYAML's SafeDumper (the C one when present, as Ansible) with
``allow_unicode``, sorted keys, width 80, ``to_nice_yaml`` indenting 4 in block style.
tests/unit/test_templates_ansible*.py render the same templates through ansible-core and compare.

Every filter is also registered as ``ansible.builtin.<name>``. A filter Ansible has and driftctl
does not (``password_hash``, ``ipaddr``, ``random``, ...) is an error naming it: see
:func:`missing_filter_message`. The sandbox (driftctl/manifest/sandbox.py) wraps each filter that
can grow its input with a size check.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os.path
import re
import shlex
import uuid
from collections.abc import Callable, Mapping, MutableMapping, MutableSequence
from datetime import date, datetime, time
from typing import Any

import jinja2
import yaml

try:
    from yaml import CSafeDumper as _SafeDumper
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml: the same output, slower
    from yaml import SafeDumper as _SafeDumper  # type: ignore[assignment]
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

UUID_NAMESPACE_ANSIBLE = uuid.UUID("361E6D51-FAEC-444A-9079-341386DA8E2E")


class FilterError(jinja2.TemplateRuntimeError):
    """A filter refused its input (bad argument, a mandatory variable undefined, ...)."""


class RenderTooLarge(jinja2.TemplateRuntimeError):
    """A template would build a value larger than the cap. Raised before the value exists."""


# ---- serialising
def _json_default(o: Any) -> Any:
    if isinstance(o, (date, datetime, time)):
        return o.isoformat()
    if isinstance(o, Mapping):
        return dict(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def to_json(a: Any, *_: Any, **kwargs: Any) -> str:
    kwargs.pop("profile", None)
    kwargs.pop("vault_to_text", None)
    kwargs.pop("preprocess_unsafe", None)
    return json.dumps(a, default=_json_default, **kwargs)


def to_nice_json(a: Any, indent: int = 4, sort_keys: bool = True, **kwargs: Any) -> str:
    kwargs.pop("separators", None)
    return to_json(a, indent=indent, sort_keys=sort_keys, separators=(",", ": "), **kwargs)


class _Dumper(_SafeDumper):
    """Ansible's AnsibleDumper for plain data: any mapping is a dict, any other collection a list."""


_Dumper.add_multi_representer(dict, _SafeDumper.represent_dict)  # YamlMap, a manifest variable
_Dumper.add_multi_representer(Mapping, _SafeDumper.represent_dict)  # type: ignore[type-abstract]
_Dumper.add_multi_representer(str, lambda d, s: d.represent_str(str.__str__(s)))  # a Secret: libyaml wants a str
_Dumper.add_multi_representer(list, _SafeDumper.represent_list)
_Dumper.add_multi_representer(tuple, _SafeDumper.represent_list)
_Dumper.add_multi_representer(set, _SafeDumper.represent_list)
_Dumper.add_multi_representer(frozenset, _SafeDumper.represent_list)


def to_yaml(a: Any, *_: Any, default_flow_style: bool | None = None, **kwargs: Any) -> str:
    return str(yaml.dump(a, Dumper=_Dumper, allow_unicode=True, default_flow_style=default_flow_style, **kwargs))


def to_nice_yaml(a: Any, indent: int = 4, *_: Any, default_flow_style: bool = False, **kwargs: Any) -> str:
    return to_yaml(a, indent=indent, default_flow_style=default_flow_style, **kwargs)


def from_json(a: Any, profile: str | None = None, **kwargs: Any) -> Any:
    return json.loads(a, **kwargs)


def from_yaml(data: Any) -> Any:
    if isinstance(data, str):
        return yaml.load(data, Loader=_SafeLoader)
    return data


def from_yaml_all(data: Any) -> Any:
    if data is None:
        return []
    if isinstance(data, str):
        return list(yaml.load_all(data, Loader=_SafeLoader))
    return data


# ---- text
def _text(value: Any) -> str:
    """ansible's to_text(value, nonstring='simplerepr')."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _bytes(value: Any, encoding: str = "utf-8") -> bytes:
    if isinstance(value, bytes):
        return value
    return _text(value).encode(encoding, "surrogateescape")


def regex_replace(value: Any = "", pattern: str = "", replacement: str = "", ignorecase: bool = False,
                  multiline: bool = False, count: int = 0, mandatory_count: int = 0,
                  *, _budget: int | None = None) -> str:
    text = _text(value)
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    regex = re.compile(pattern, flags)
    if _budget is None:
        output, subs = regex.subn(replacement, text, count=count)
    else:
        grown = [len(text)]

        def expand(m: re.Match[str]) -> str:
            piece = m.expand(replacement)
            grown[0] += len(piece) - (m.end() - m.start())
            if grown[0] > _budget:
                raise RenderTooLarge(f"the regex_replace filter would make {grown[0]} bytes or more, over "
                                     f"max_render_bytes ({_budget})")
            return piece

        output, subs = regex.subn(expand, text, count=count)
    if mandatory_count and mandatory_count != subs:
        raise FilterError(f"'{pattern}' should match {mandatory_count} times, but matches {count} times in '{text}'")
    return output


def regex_findall(value: Any, regex: str, multiline: bool = False, ignorecase: bool = False) -> list[Any]:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    return re.findall(regex, _text(value), flags)


def regex_search(value: Any, regex: str, *args: str, **kwargs: Any) -> Any:
    text = _text(value)
    groups: list[int | str] = []
    for arg in args:
        named = re.match(r"\\g<(\S+)>", arg) if isinstance(arg, str) else None
        numbered = re.match(r"\\(\d+)", arg) if isinstance(arg, str) else None
        if named:
            groups.append(named.group(1))
        elif numbered:
            groups.append(int(numbered.group(1)))
        else:
            raise FilterError("regex_search: Unknown argument")
    flags = (re.I if kwargs.get("ignorecase") else 0) | (re.M if kwargs.get("multiline") else 0)
    match = re.search(regex, text, flags)
    if match is None:
        return None
    if not groups:
        return match.group()
    return [match.group(g) for g in groups]


def regex_escape(string: Any, re_type: str = "python") -> str:
    text = _text(string)
    if re_type == "python":
        return re.escape(text)
    if re_type == "posix_basic":
        return regex_replace(text, r"([].[^$*\\])", r"\\\1")
    raise FilterError(f"Regex type ({re_type}) not yet implemented" if re_type == "posix_extended"
                      else f"Invalid regex type ({re_type})")


def b64encode(string: Any, encoding: str = "utf-8", urlsafe: bool = False) -> str:
    func = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return func(_bytes(string, encoding)).decode("utf-8")


def b64decode(string: Any, encoding: str = "utf-8", urlsafe: bool = False) -> str:
    func = base64.urlsafe_b64decode if urlsafe else base64.b64decode
    return func(_bytes(string)).decode(encoding, "surrogateescape")


def get_hash(data: Any, hashtype: str = "sha1") -> str:
    try:
        h = hashlib.new(hashtype)
    except (ValueError, TypeError) as e:
        raise FilterError(f"hash: {e}") from None
    h.update(_bytes(data))
    return h.hexdigest()


def md5(data: Any) -> str:
    return get_hash(data, "md5")


def sha1(data: Any) -> str:
    return get_hash(data, "sha1")


def quote(a: Any) -> str:
    return shlex.quote("" if a is None else _text(a))


def comment(text: str, style: str = "plain", **kw: Any) -> str:
    """Ansible's ``comment`` filter, line for line."""
    styles: dict[str, dict[str, str]] = {
        "plain": {"decoration": "# "},
        "erlang": {"decoration": "% "},
        "c": {"decoration": "// "},
        "cblock": {"beginning": "/*", "decoration": " * ", "end": " */"},
        "xml": {"beginning": "<!--", "decoration": " - ", "end": "-->"},
    }
    if style not in styles:
        raise FilterError(f"comment: invalid style {style!r} (available styles: {', '.join(styles)})")
    style_params = styles[style]
    prepostfix = kw["decoration"] if "decoration" in kw else style_params["decoration"]
    p: dict[str, Any] = {
        "newline": "\n", "beginning": "", "prefix": prepostfix.rstrip(), "prefix_count": 1,
        "decoration": "", "postfix": prepostfix.rstrip(), "postfix_count": 1, "end": "",
    }
    p.update(style_params)
    p.update(kw)
    str_beginning = f"{p['beginning']}{p['newline']}" if p["beginning"] else ""
    str_prefix = ""
    if p["prefix"]:
        if p["prefix"] != p["newline"]:
            str_prefix = f"{p['prefix']}{p['newline']}" * int(p["prefix_count"])
        else:
            str_prefix = f"{p['newline']}" * int(p["prefix_count"])
    str_text = (p["decoration"] + text.replace(p["newline"], f"{p['newline']}{p['decoration']}")).replace(
        f"{p['decoration']}{p['newline']}", f"{p['decoration'].rstrip()}{p['newline']}")
    str_postfix = p["newline"].join([""] + [p["postfix"] for _ in range(int(p["postfix_count"]))])
    str_end = f"{p['newline']}{p['end']}" if p["end"] else ""
    return f"{str_beginning}{str_prefix}{str_text}{str_postfix}{str_end}"


def to_uuid(string: Any, namespace: Any = UUID_NAMESPACE_ANSIBLE) -> str:
    space = namespace
    if not isinstance(space, uuid.UUID):
        try:
            space = uuid.UUID(namespace)
        except (AttributeError, ValueError, TypeError) as e:
            raise FilterError(f"Invalid value '{namespace}' for 'namespace': {e}") from None
    return str(uuid.uuid5(space, _text(string)))


# ---- paths
def basename(path: Any) -> str:
    return os.path.basename(_text(path))


def dirname(path: Any) -> str:
    return os.path.dirname(_text(path))


def splitext(path: Any) -> tuple[str, str]:
    return os.path.splitext(_text(path))


def normpath(path: Any) -> str:
    return os.path.normpath(_text(path))


def path_join(paths: Any) -> str:
    if isinstance(paths, str):
        return os.path.join(paths)
    if isinstance(paths, (list, tuple)):
        return os.path.join(*paths)
    raise FilterError(f"|path_join expects string or sequence, got {type(paths)} instead.")


# ---- data
_TRUE = {"yes", "on", "true", "1"}
_FALSE = {"no", "off", "false", "0"}


def to_bool(value: Any) -> bool:
    check: Any = value.lower() if isinstance(value, str) else str(value).lower() if isinstance(value, int) else value
    if isinstance(check, str) or check is None:
        if check in _TRUE:
            return True
        if check in _FALSE:
            return False
    try:
        return bool(check == 1)  # as Ansible's fallback (which it deprecates with a warning)
    except TypeError:
        return False


def ternary(value: Any, true_val: Any, false_val: Any, none_val: Any = None) -> Any:
    if value is None and none_val is not None:
        return none_val
    return true_val if bool(value) else false_val


def mandatory(a: Any, msg: str | None = None) -> Any:
    if isinstance(a, jinja2.Undefined):
        if msg is not None:
            raise FilterError(_text(msg))
        name = getattr(a, "_undefined_name", None)
        raise FilterError(f"Mandatory variable {f'{name!r} ' if name is not None else ''}not defined.")
    return a


def _flatten(items: Any, levels: int | None = None, skip_nulls: bool = True) -> list[Any]:
    out: list[Any] = []
    for element in items:
        if skip_nulls and element in (None, "None", "null"):
            continue
        if isinstance(element, (list, tuple)):
            if levels is None:
                out.extend(_flatten(element, skip_nulls=skip_nulls))
            elif levels >= 1:
                out.extend(_flatten(element, levels=int(levels) - 1, skip_nulls=skip_nulls))
            else:
                out.append(element)
        else:
            out.append(element)
    return out


def flatten(items: Any, levels: int | None = None, skip_nulls: bool = True) -> list[Any]:
    return _flatten(items, levels, skip_nulls)


_LIST_MERGES = ("replace", "keep", "append", "prepend", "append_rp", "prepend_rp")


def _merge_hash(x: Mapping[Any, Any], y: Mapping[Any, Any], recursive: bool, list_merge: str) -> dict[Any, Any]:
    """ansible.utils.vars.merge_hash: ``y`` merged into a copy of ``x``; y wins."""
    if not isinstance(x, Mapping) or not isinstance(y, Mapping):
        raise FilterError(f"combine: only dictionaries can be combined, not {type(x).__name__} "
                          f"and {type(y).__name__}")
    if x == {} or x == y:
        return dict(y)
    if y == {}:
        return dict(x)
    out = dict(x)
    if not recursive and list_merge == "replace":
        out.update(y)
        return out
    for key, y_value in y.items():
        if key not in out:
            out[key] = y_value
            continue
        x_value = out[key]
        if isinstance(x_value, MutableMapping) and isinstance(y_value, MutableMapping):
            out[key] = _merge_hash(x_value, y_value, recursive, list_merge) if recursive else y_value
            continue
        if isinstance(x_value, MutableSequence) and isinstance(y_value, MutableSequence):
            if list_merge == "replace":
                out[key] = y_value
            elif list_merge == "append":
                out[key] = list(x_value) + list(y_value)
            elif list_merge == "prepend":
                out[key] = list(y_value) + list(x_value)
            elif list_merge == "append_rp":
                out[key] = [z for z in x_value if z not in y_value] + list(y_value)
            elif list_merge == "prepend_rp":
                out[key] = list(y_value) + [z for z in x_value if z not in y_value]
            continue
        out[key] = y_value
    return out


def combine(*terms: Any, **kwargs: Any) -> Any:
    recursive = kwargs.pop("recursive", False)
    list_merge = kwargs.pop("list_merge", "replace")
    if kwargs:
        raise FilterError("'recursive' and 'list_merge' are the only valid keyword arguments")
    if list_merge not in _LIST_MERGES:
        raise FilterError(f"combine: list_merge must be one of {', '.join(_LIST_MERGES)}, not {list_merge!r}")
    dictionaries = _flatten(terms, levels=1)
    if not dictionaries:
        return {}
    if len(dictionaries) == 1:
        return dictionaries[0]
    it = reversed(dictionaries)
    result = next(it)
    for d in it:
        result = _merge_hash(d, result, recursive, list_merge)
    return result


def _unique(items: Any) -> list[Any]:
    out: list[Any] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out


# The set filters: Ansible returns Python's set order, which for text changes from run to run
# (hash randomisation), so roles sort the result. driftctl keeps the order of first appearance:
# the same input gives the same file on every run; sorted, both are identical.
def union(a: Any, b: Any) -> list[Any]:
    return _unique([*a, *b])


def intersect(a: Any, b: Any) -> list[Any]:
    return _unique([x for x in a if x in b])


def difference(a: Any, b: Any) -> list[Any]:
    return _unique([x for x in a if x not in b])


def symmetric_difference(a: Any, b: Any) -> list[Any]:
    both = intersect(a, b)
    return [x for x in union(a, b) if x not in both]


def dict2items(mydict: Any, key_name: str = "key", value_name: str = "value") -> list[dict[str, Any]]:
    if not isinstance(mydict, Mapping):
        raise FilterError(f"dict2items requires a dictionary, got {type(mydict)} instead.")
    return [{key_name: k, value_name: mydict[k]} for k in mydict]


def items2dict(mylist: Any, key_name: str = "key", value_name: str = "value") -> dict[Any, Any]:
    if not isinstance(mylist, (list, tuple)):
        raise FilterError(f"items2dict requires a list, got {type(mylist)} instead.")
    try:
        return {item[key_name]: item[value_name] for item in mylist}
    except KeyError:
        raise FilterError(f"items2dict requires each dictionary in the list to contain the keys '{key_name}' and "
                          f"'{value_name}', got {mylist} instead.") from None
    except TypeError:
        raise FilterError(f"items2dict requires a list of dictionaries, got {mylist} instead.") from None


# ---- tests (``is match(...)``, ``selectattr('name', 'search', ...)``)
def test_regex(value: Any = "", pattern: str = "", ignorecase: bool = False, multiline: bool = False,
               match_type: str = "search") -> bool:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    compiled = re.compile(pattern, flags)
    return bool(getattr(compiled, match_type, compiled.search)(_text(value)))


def test_match(value: Any, pattern: str = "", ignorecase: bool = False, multiline: bool = False) -> bool:
    return test_regex(value, pattern, ignorecase, multiline, "match")


def test_search(value: Any, pattern: str = "", ignorecase: bool = False, multiline: bool = False) -> bool:
    return test_regex(value, pattern, ignorecase, multiline, "search")


_BOOLEANS_TRUE = frozenset(("y", "yes", "on", "1", "true", "t", 1, 1.0, True))
_BOOLEANS_FALSE = frozenset(("n", "no", "off", "0", "false", "f", 0, 0.0, False))


def test_truthy(value: Any, convert_bool: bool = False) -> bool:
    """Ansible's ``truthy``: ``convert_bool`` reads "yes"/"off"/... as module_utils' boolean() does."""
    if convert_bool:
        normal = value.lower().strip() if isinstance(value, str) else value
        try:
            if normal in _BOOLEANS_TRUE:
                return True
            if normal in _BOOLEANS_FALSE:
                return False
        except TypeError:  # unhashable: plain truthiness
            pass
    return bool(value)


_VERSION_PART = re.compile(r"(\d+|[a-z]+|\.)")
_VERSION_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
}
_VERSION_OP_NAMES = {"==": "eq", "=": "eq", "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "!=": "ne", "<>": "ne",
                     **{k: k for k in _VERSION_OPS}}


def _loose_version(text: str) -> list[int | str]:
    """Ansible's LooseVersion: numbers compare as numbers, letters as text; dots separate."""
    return [int(p) if p.isdigit() else p for p in _VERSION_PART.split(text) if p and p != "."]


def test_version(value: Any, version: Any, operator: str = "eq", strict: Any = None,
                 version_type: str | None = None) -> bool:
    """Ansible's ``version`` test with its default, loose comparison (``strict``, ``semver``... are not
    provided: an error names them)."""
    if strict or version_type not in (None, "loose"):
        raise FilterError(f"the version test: version_type {version_type or 'strict'!r} is not provided by "
                          "driftctl (only the default, loose comparison)")
    if not value:
        raise FilterError("Input version value cannot be empty")
    if not version:
        raise FilterError("Version parameter to compare against cannot be empty")
    if operator not in _VERSION_OP_NAMES:
        raise FilterError(f"Invalid operator type ({operator}). Must be one of "
                          f"{', '.join(map(repr, _VERSION_OP_NAMES))}")
    try:
        return _VERSION_OPS[_VERSION_OP_NAMES[operator]](_loose_version(_text(value)), _loose_version(_text(version)))
    except TypeError as e:
        raise FilterError(f"Version comparison failed: {e}") from None


TESTS: dict[str, Callable[..., bool]] = {
    "version": test_version, "version_compare": test_version,
    "match": test_match, "search": test_search, "regex": test_regex,
    "truthy": test_truthy, "falsy": lambda value, convert_bool=False: not test_truthy(value, convert_bool),
    "contains": lambda seq, value: value in seq,
    "subset": lambda a, b: set(a) <= set(b), "issubset": lambda a, b: set(a) <= set(b),
    "superset": lambda a, b: set(a) >= set(b), "issuperset": lambda a, b: set(a) >= set(b),
    "any": any, "all": all,
}

# name -> function; each is also registered as ansible.builtin.<name>
FILTERS: dict[str, Callable[..., Any]] = {
    "to_json": to_json, "to_nice_json": to_nice_json, "from_json": from_json,
    "to_yaml": to_yaml, "to_nice_yaml": to_nice_yaml, "from_yaml": from_yaml, "from_yaml_all": from_yaml_all,
    "regex_replace": regex_replace, "regex_search": regex_search, "regex_findall": regex_findall,
    "regex_escape": regex_escape,
    "b64encode": b64encode, "b64decode": b64decode,
    "hash": get_hash, "md5": md5, "sha1": sha1, "checksum": sha1,
    "quote": quote, "comment": comment, "to_uuid": to_uuid,
    "basename": basename, "dirname": dirname, "splitext": splitext, "normpath": normpath, "path_join": path_join,
    "bool": to_bool, "ternary": ternary, "mandatory": mandatory,
    "flatten": flatten, "combine": combine, "dict2items": dict2items, "items2dict": items2dict,
    "union": union, "intersect": intersect, "difference": difference, "symmetric_difference": symmetric_difference,
}
# Jinja's own filters that Ansible templates use under their ansible.builtin name too
JINJA_ALIASES = ("default", "d", "join", "map", "select", "selectattr", "reject", "rejectattr", "unique",
                 "min", "max", "sort", "length", "lower", "upper", "replace", "trim", "int", "string", "list",
                 "first", "last", "indent", "dictsort", "groupby", "items", "sum", "batch", "center", "format")

# Ansible's filters (ansible-core 2.19: core, mathstuff, urls, urlsplit, encryption) that driftctl
# does not provide, and why for some
NOT_PROVIDED: dict[str, str] = {
    "password_hash": "its salt is random, so the file would change on every run, and ansible-core itself "
                     "needs passlib for it; hash the password once and keep the hash in a !secret variable",
    "random": "its result changes on every run; use a fixed value or hash()",
    "shuffle": "its result changes on every run",
    "fileglob": "it reads the controller's file system",
    "realpath": "it reads the controller's file system",
    "expanduser": "it reads the controller's environment",
    "expandvars": "it reads the controller's environment",
    "relpath": "", "win_basename": "", "win_dirname": "", "win_splitdrive": "", "commonpath": "",
    "to_datetime": "", "strftime": "", "type_debug": "", "extract": "", "subelements": "",
    "rekey_on_member": "", "vault": "", "unvault": "", "log": "", "pow": "", "root": "",
    "human_readable": "", "human_to_bytes": "",
    "zip": "", "zip_longest": "", "product": "", "permutations": "", "combinations": "",
    "urldecode": "", "urlsplit": "", "ipaddr": "", "ipv4": "", "ipv6": "", "ipwrap": "", "json_query": "",
}

_FQCN = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*\.(\w+)$")


def missing_filter_message(name: str) -> str:
    """What to say about a filter name driftctl does not have."""
    m = _FQCN.match(name)
    short = m.group(1) if m else name
    if m and not name.startswith(("ansible.builtin.", "ansible.legacy.")):
        return f"filter {name!r} is from an Ansible collection, which driftctl does not provide"
    if short in NOT_PROVIDED:
        why = NOT_PROVIDED[short]
        return f"filter {name!r} is an Ansible filter driftctl does not provide" + (f" ({why})" if why else "")
    return f"no filter named {name!r}"


def install(filters: MutableMapping[str, Any], tests: MutableMapping[str, Any]) -> None:
    """Add the Ansible filters and tests (and their ansible.builtin names) to an environment's."""
    filters.update(FILTERS)
    for name in (*FILTERS, *JINJA_ALIASES):
        if name in filters:
            filters[f"ansible.builtin.{name}"] = filters[name]
    tests.update(TESTS)
    for name in list(tests):
        if "." not in name:
            tests[f"ansible.builtin.{name}"] = tests[name]


__all__ = ["FILTERS", "NOT_PROVIDED", "TESTS", "FilterError", "RenderTooLarge", "install", "missing_filter_message"]
