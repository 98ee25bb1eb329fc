"""Safe YAML loading that remembers where every key and item came from.

``load_file(path, error=ManifestError)`` returns plain Python data where mappings are ``YamlMap``
(a dict with ``location`` and ``key_locations``) and sequences are ``YamlSeq`` (a list with
``location`` and ``item_locations``), so later stages can point at the exact line of a mistake.
Duplicate keys, non-string keys where names are expected, anchors to unsafe tags and YAML syntax
errors raise ``error`` with file:line. ``!secret value`` makes a driftctl.secret.Secret, and so does
``!vault |`` (Ansible Vault text, decrypted with the keyring driftctl.vault installed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from driftctl import parsecache
from driftctl.errors import InputError, Location
from driftctl.secret import Secret, conceal


class YamlMap(dict):
    location: Location
    key_locations: dict[Any, Location]
    # the text as written of values YAML read as something else than a string (``1.10``, ``yes``)
    value_texts: dict[Any, str]

    def loc(self, key: Any) -> Location:
        return self.key_locations.get(key, self.location)

    def text(self, key: Any) -> str | None:
        """How the value of ``key`` was written, when YAML read it as a number, boolean, date or null."""
        return getattr(self, "value_texts", {}).get(key)


class YamlSeq(list):
    location: Location
    item_locations: list[Location]

    def loc(self, index: int) -> Location:
        try:
            return self.item_locations[index]
        except IndexError:
            return self.location


def location_of(value: Any, default: Location) -> Location:
    return getattr(value, "location", default)


# libyaml's parser when PyYAML was built with it (about 5x faster, same marks and line numbers);
# the constructors below are the same either way
_BASE: type = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader


_NOT_TEXT = frozenset(f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null", "timestamp"))


class Unsafe(str):
    """A string tagged ``!unsafe`` (Ansible's tag): data that is never rendered as a template, such as
    a Go or Helm template kept in a variable."""

    __slots__ = ()


class _Loader(_BASE):
    filename: str = "<string>"
    error_class: type[InputError] = InputError
    secret_seen: bool = False  # a !secret or !vault value was built: this parse is never cached

    def _loc(self, node: yaml.Node) -> Location:
        return Location(self.filename, node.start_mark.line + 1)

    def construct_yaml_map(self, node: yaml.MappingNode):
        data = YamlMap()
        data.location = self._loc(node)
        data.key_locations = {}
        data.value_texts = {}
        yield data
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise self.error_class("a mapping key must be a plain value", self._loc(key_node)) from None
            if key in data.key_locations:
                first = data.key_locations[key]
                raise self.error_class(
                    f"duplicate key {key!r} (first defined at line {first.line})", self._loc(key_node)
                )
            data.key_locations[key] = self._loc(key_node)
            if isinstance(value_node, yaml.ScalarNode) and value_node.tag in _NOT_TEXT:
                data.value_texts[key] = value_node.value
            data[key] = self.construct_object(value_node, deep=True)

    def construct_yaml_seq(self, node: yaml.SequenceNode):
        data = YamlSeq()
        data.location = self._loc(node)
        data.item_locations = [self._loc(n) for n in node.value]
        yield data
        data.extend(self.construct_sequence(node, deep=True))

    def construct_secret(self, node: yaml.Node) -> Secret:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error_class("!secret takes a plain string value", self._loc(node))
        self.secret_seen = True
        return Secret(self.construct_scalar(node))

    def construct_unsafe(self, node: yaml.Node) -> Unsafe:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error_class("!unsafe takes a string value", self._loc(node))
        return Unsafe(self.construct_scalar(node))

    def construct_vault(self, node: yaml.Node) -> Secret:
        """``!vault |`` and its Ansible Vault text: the decrypted value, a Secret (as Ansible, a string,
        never parsed further). Decrypted now, with the installed keyring: a wrong or missing password
        is an error at the value's line while loading, before any host is contacted."""
        if not isinstance(node, yaml.ScalarNode):
            raise self.error_class(f"{node.tag} takes the vault text as a block string ('{node.tag} |')",
                                   self._loc(node))
        self.secret_seen = True
        return decrypt_value(self.construct_scalar(node), self._loc(node), self.error_class)


    def construct_fast(self, node: yaml.Node) -> Any:
        """``construct_document`` for plain maps, sequences and scalars without the generic machinery
        (a 10,000-host inventory: ~0.09 s instead of ~0.2-0.3 s); any other tag goes the usual way."""
        memo: dict[int, Any] = {}
        locs: dict[int, Location] = {}
        scalars = self.yaml_constructors
        fn = self.filename

        def loc(n: yaml.Node) -> Location:
            line = n.start_mark.line + 1
            found = locs.get(line)
            if found is None:
                found = locs[line] = Location(fn, line)
            return found

        shared = False  # an alias to a mapping or sequence (or a tag built the generic way) was met

        def build(n: yaml.Node) -> Any:
            nonlocal shared
            done = memo.get(id(n))
            if done is not None:
                shared = True
                return done
            kind = type(n)
            if kind is yaml.ScalarNode and n.tag in _PLAIN_SCALARS:
                return scalars[n.tag](self, n)
            if kind is yaml.MappingNode and n.tag == _MAP:
                data = YamlMap()
                data.location, data.key_locations, data.value_texts = loc(n), {}, {}
                memo[id(n)] = data
                self.flatten_mapping(n)
                for key_node, value_node in n.value:
                    key = build(key_node)
                    try:
                        hash(key)
                    except TypeError:
                        raise self.error_class("a mapping key must be a plain value", loc(key_node)) from None
                    if key in data.key_locations:
                        first = data.key_locations[key]
                        raise self.error_class(
                            f"duplicate key {key!r} (first defined at line {first.line})", loc(key_node))
                    data.key_locations[key] = loc(key_node)
                    if type(value_node) is yaml.ScalarNode and value_node.tag in _NOT_TEXT:
                        data.value_texts[key] = value_node.value
                    data[key] = build(value_node)
                return data
            if kind is yaml.SequenceNode and n.tag == _SEQ:
                seq = YamlSeq()
                seq.location, seq.item_locations = loc(n), [loc(c) for c in n.value]
                memo[id(n)] = seq
                seq.extend(build(c) for c in n.value)
                return seq
            if kind is not yaml.ScalarNode:
                shared = True
            return self.construct_object(n, deep=True)

        data = build(node)
        if shared:
            self.check_expansion(node)
        return data

    def check_expansion(self, root: yaml.Node) -> None:
        """Aliases share one value, so loading is cheap, but whatever walks the data later (variable
        merging, templates, redaction, JSON output) walks it expanded: ten levels of ten aliases
        ("billion laughs") is 10^10 values. More than MAX_EXPANDED values, and more than ten times
        the document's own nodes, is an error at the document's first line."""
        sizes: dict[int, int] = {}  # expanded size of each mapping and sequence node (scalars are 1)
        scalar = yaml.ScalarNode
        distinct = 1

        def size(n: yaml.Node) -> int:
            nonlocal distinct
            known = sizes.get(id(n))
            if known is not None:
                return known
            total = 1
            children = [c for pair in n.value for c in pair] if type(n) is yaml.MappingNode else n.value
            distinct += len(children)
            for c in children:
                total += 1 if type(c) is scalar else size(c)
            sizes[id(n)] = total
            return total

        expanded = 1 if type(root) is scalar else size(root)
        if expanded > MAX_EXPANDED and expanded > 10 * distinct:
            raise self.error_class(f"YAML aliases expand this document to {expanded:,} values (from {distinct:,} "
                                   f"written): more than {MAX_EXPANDED:,}, refused (an alias bomb?)",
                                   self._loc(root), "write the repeated values out, or use fewer levels of aliases")


_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
MAX_EXPANDED = 5_000_000  # values a document may expand to through aliases (see check_expansion)
_PLAIN_SCALARS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp"))
_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_yaml_seq)
_Loader.add_constructor("!secret", _Loader.construct_secret)
_Loader.add_constructor("!unsafe", _Loader.construct_unsafe)
_Loader.add_constructor("!vault", _Loader.construct_vault)
_Loader.add_constructor("!vault-encrypted", _Loader.construct_vault)  # Ansible's older spelling

VAULT_HEADER = "$ANSIBLE_VAULT;"


def is_vault_text(text: str) -> bool:
    """Whether a whole file is Ansible Vault data (its first line ``$ANSIBLE_VAULT;...``)."""
    return text.lstrip().startswith(VAULT_HEADER)


def _decrypt(text: str, where: Location, error: type[InputError]) -> str:
    from driftctl import vault  # cryptography is imported only when vault data is met

    try:
        plain, _used = vault.decrypt(text)
    except vault.VaultError as e:
        raise error(e.message, where, e.hint) from None
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise error("the decrypted vault data is not UTF-8 text", where) from None


def decrypt_value(text: str, where: Location, error: type[InputError] = InputError) -> Secret:
    """A ``!vault`` value's plaintext as a Secret; ``error`` at ``where`` (file:line) if it cannot be."""
    return Secret(_decrypt(text, where, error))


def load_text(text: str, filename: str, error: type[InputError] = InputError, cache: bool = False) -> Any:
    """Parse one YAML document from ``text``; ``filename`` is what errors name.
    Whole vault-encrypted text is refused here: read it with ``read_source`` where it is allowed.
    ``cache``: a big file's parse may come from (and go to) driftctl.parsecache; never pass it for
    text that was decrypted (a parse that meets a !secret or !vault value is never cached anyway)."""
    if is_vault_text(text):
        raise _whole_vault_error(filename, error)
    cache = cache and parsecache.wanted(text)
    if cache:
        cached = parsecache.get(filename, text)
        if cached is not parsecache.MISS:
            return cached
    loader = _Loader(text)
    loader.filename, loader.error_class = filename, error  # per file: a class per file cost ~40 us
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_fast(node)
        if cache and not loader.secret_seen:
            parsecache.put(filename, text, data)
        return data
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = e.problem or e.context or "invalid YAML"
        raise error(f"invalid YAML: {problem}", Location(filename, line)) from None
    except yaml.YAMLError as e:
        raise error(f"invalid YAML: {e}", Location(filename)) from None
    finally:
        loader.dispose()


def decode_utf8(data: bytes, filename: str, error: type[InputError] = InputError) -> str:
    """``data`` as text; else ``error`` at the line of the first bad byte, naming the byte and its offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise error(f"not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})", Location(filename, line),
                    "save the file as UTF-8") from None


def _whole_vault_error(filename: str, error: type[InputError]) -> InputError:
    return error("this file is vault-encrypted as a whole, which is not supported here", Location(filename, 1),
                 "encrypt single values with !vault instead; a vault-encrypted inventory hosts file must be YAML "
                 "named *.yml or *.yaml (see docs/secrets.md)")


def read_text(path: str | Path, error: type[InputError] = InputError, vault_file: bool = False) -> str:
    """A UTF-8 file's text; errors (missing, unreadable, not UTF-8) name the file (and line).
    A whole vault-encrypted file is an error unless ``vault_file`` (``read_source`` decrypts it): read
    as text it would be taken for something else (an INI inventory of hosts named by hex lines)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error("file not found", Location(str(path))) from None
    except OSError as e:
        raise error(f"cannot read: {e.strerror}", Location(str(path))) from None
    text = decode_utf8(data, str(path), error)
    if not vault_file and is_vault_text(text):
        raise _whole_vault_error(str(path), error)
    return text


def load_file(path: str | Path, error: type[InputError] = InputError) -> Any:
    return load_text(read_text(path, error), str(path), error, cache=True)


def read_source(path: str | Path, error: type[InputError] = InputError) -> tuple[str, bool]:
    """A file's text and whether it was vault-encrypted as a whole (then decrypted with the
    installed keyring, as Ansible reads any file that starts with ``$ANSIBLE_VAULT;``). Lines of
    errors in it are lines of the plaintext, as ``ansible-vault view`` shows it."""
    text = read_text(path, error, vault_file=True)
    if not is_vault_text(text):
        return text, False
    return _decrypt(text, Location(str(path), 1), error), True


def load_vars_file(path: str | Path, error: type[InputError] = InputError) -> Any:
    """``load_file`` for files of variables (group_vars, host_vars): a vault-encrypted file is
    decrypted and every string value in it (not the keys) becomes a Secret."""
    text, vaulted = read_source(path, error)
    data = load_text(text, str(path), error, cache=not vaulted)
    return conceal(data) if vaulted else data
