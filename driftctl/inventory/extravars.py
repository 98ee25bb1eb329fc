"""``-e/--extra-vars``: variables given on the command line, with Ansible's highest precedence.

Each ``-e`` argument is read as Ansible's ``load_extra_vars`` reads it:

- ``@FILE``: a YAML (or JSON) file holding a mapping, possibly vault-encrypted as a whole (with the
  passwords installed in driftctl.vault); errors name the file and line;
- text starting with ``{`` or ``[``: inline YAML/JSON (``-e '{"replicas": 3}'``); it must be a mapping;
- anything else: ``key=value`` pairs separated by spaces, quoted like Ansible's ``parse_kv`` does
  (``-e 'motd="hello world" env=prod'``); the values are strings, as in Ansible;
- text starting with ``/`` or ``.``: an error (a file name without its ``@``, as Ansible says).

Later arguments replace earlier ones key by key (``hash_behaviour = replace``). One difference from
Ansible: a word without ``=`` (``-e env``) is an error, where Ansible silently makes a variable
``_raw_params`` of it.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from pathlib import Path

from driftctl import yamlsrc
from driftctl.errors import ConfigError, Location
from driftctl.inventory.model import VarSet
from driftctl.secret import REDACTED

_ESCAPES = re.compile(
    r"""(\\U[a-fA-F0-9]{8}|\\u[a-fA-F0-9]{4}|\\x[a-fA-F0-9]{2}|\\N\{[^}]+\}|\\[\\'"abfnrtv])""", re.UNICODE
)
_BLOCKS = (("{{", "}}"), ("{%", "%}"), ("{#", "#}"))
_SHOWN = 60  # how much of an argument an error or a variable's source quotes


def _where(arg: str) -> Location:
    """Where an argument's variables and errors say they come from: ``-e`` and the argument with its
    values hidden (``-e ansible_become_password=********``), as in run records: an extra variable
    may be a password, and errors and ``driftctl inventory --host``'s sources are shown and logged."""
    shown = hidden(arg)
    shown = shown if len(shown) <= _SHOWN else shown[: _SHOWN - 3] + "..."
    return Location(f"-e {shown}")


def hidden(arg: str) -> str:
    """An ``-e`` argument without its values: ``@FILE`` as given, inline JSON/YAML as ``{...}``, and
    ``key=value`` pairs as ``key=********`` (a word without ``=`` as written)."""
    if arg.startswith("@"):
        return arg
    if arg[:1] in "[{":
        return "{...}" if arg[0] == "{" else "[...]"
    try:
        words = split_args(arg, Location("-e"))
    except ConfigError:  # unbalanced quotes: the names that can be told, never the text after an '='
        names = re.findall(r"(?:^|\s)([^\s='\"]+)=", arg)
        return " ".join(f"{n}={REDACTED}" for n in names) + " ..." if names else REDACTED
    out = []
    for word in words:
        pos = _separator(word)
        if pos is not None:
            out.append(f"{word[:pos]}={REDACTED}")
        else:
            out.append(REDACTED if "=" in word else word)
    return " ".join(out)


def _decode_escapes(text: str) -> str:
    return _ESCAPES.sub(lambda m: codecs.decode(m.group(0), "unicode-escape"), text)


def _unquote(text: str) -> str:
    """Ansible's ``unquote``: one pair of matching outer quotes goes (unless the last one is escaped)."""
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'" and text[-2] != "\\":
        return text[1:-1]
    return text


def split_args(text: str, where: Location) -> list[str]:
    """Split on whitespace, keeping quoted text and Jinja2 blocks (``{{ a b }}``) in one word, as
    Ansible's ``split_args`` does. Unbalanced quotes or blocks are an error."""
    words: list[str] = []
    current: list[str] = []
    quote: str | None = None
    depth = [0, 0, 0]
    i = 0
    while i < len(text):
        c = text[i]
        prev = text[i - 1] if i else ""
        if c in "\"'" and prev != "\\":
            if quote is None:
                quote = c
            elif quote == c:
                quote = None
        pair = text[i : i + 2]
        matched = False
        for n, (opening, closing) in enumerate(_BLOCKS):
            if pair == opening:
                depth[n] += 1
            elif pair == closing:
                depth[n] = max(0, depth[n] - 1)
            else:
                continue
            current.append(pair)
            i += 2
            matched = True
            break
        if matched:
            continue
        if c.isspace() and quote is None and not any(depth):
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(c)
        i += 1
    if quote is not None or any(depth):
        what = f"an unclosed {quote} quote" if quote is not None else "an unclosed Jinja2 block"
        raise ConfigError(f"cannot split the key=value pairs: {what}", where)
    if current:
        words.append("".join(current))
    return words


def parse_kv(text: str, where: Location | None = None) -> dict[str, str]:
    """``key=value`` pairs as Ansible's ``parse_kv`` reads them: the first ``=`` not escaped with a
    backslash (and not the first character) splits; the value loses one pair of outer quotes."""
    where = where or _where(text)
    out: dict[str, str] = {}
    for word in split_args(text, where):
        decoded = _decode_escapes(word)
        pos = _separator(decoded)
        if pos is None and "=" in decoded:  # '=value': the word would show the value
            raise ConfigError("a word has no variable name before its '='", where)
        if pos is None:
            raise ConfigError(f"{word!r} is not a key=value pair", where,
                              "give key=value, @FILE.yaml or a JSON/YAML mapping")
        key = decoded[:pos].strip()
        if not key:
            raise ConfigError("a word has no variable name before its '='", where)
        out[key] = _unquote(decoded[pos + 1 :].strip())
    return out


def _separator(word: str) -> int | None:
    pos = 0
    while True:
        pos = word.find("=", pos + 1)
        if pos < 0:
            return None
        if word[pos - 1] != "\\":
            return pos


def _mapping(data: object, where: Location, what: str) -> VarSet:
    out = VarSet()
    if data is None:  # an empty file: no variables (Ansible: an error; an empty file harms nobody)
        return out
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else type(data).__name__
        raise ConfigError(f"{what} must be a mapping of names to values, not {kind}",
                          yamlsrc.location_of(data, where))
    for key, value in data.items():
        loc = data.loc(key) if isinstance(data, yamlsrc.YamlMap) else where
        if not isinstance(key, str) or not key:
            raise ConfigError(f"variable name {key!r} must be a non-empty string", loc)
        out.set(key, value, loc)
    return out


def read_one(arg: str, cwd: Path | None = None) -> VarSet:
    """The variables of one ``-e`` argument, each with where it was written."""
    where = _where(arg)
    if not arg:
        return VarSet()
    if arg.startswith("@"):
        name = arg[1:]
        if not name:
            raise ConfigError("'@' names no file", where, "give -e @vars.yaml")
        path = Path(name) if cwd is None or Path(name).is_absolute() else cwd / name
        if path.is_dir():
            raise ConfigError(f"extra variables file {name} is a directory", where)
        if not path.exists():
            raise ConfigError(f"extra variables file {name} not found", where)
        # a whole vault-encrypted file is decrypted (its values become secrets), as Ansible reads -e @vault.yml
        return _mapping(yamlsrc.load_vars_file(path, ConfigError), Location(str(path), 1), "an extra variables file")
    if arg[0] in "/.":
        raise ConfigError(f"{arg!r} looks like a file name", where, f"write -e @{arg} to read it (as Ansible asks)")
    if arg[0] in "[{":
        try:
            data = yamlsrc.load_text(arg, where.file, ConfigError)
        except ConfigError as e:  # a line number only means something in text of several lines
            if "\n" in arg.strip():
                raise
            raise ConfigError(e.message, where, "inline extra variables are JSON or YAML") from None
        found = _mapping(data, where, "inline extra variables")
        if "\n" not in arg.strip():
            found.sources = {k: Location(f"-e {{{k!r}: {REDACTED}}}") for k in found.sources}
        return found
    out = VarSet()
    for key, value in parse_kv(arg, where).items():
        out.set(key, value, Location(f"-e {key}={REDACTED}"))
    return out


def read(args: Iterable[str], cwd: Path | None = None) -> VarSet:
    """Every ``-e`` argument, in order: a later one replaces an earlier one's keys."""
    out = VarSet()
    for arg in args:
        out.update(read_one(arg, cwd))
    return out
