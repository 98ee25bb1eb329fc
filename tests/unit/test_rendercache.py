"""The render cache (D53): which templates it keeps, by what key, never a secret, never another user's.

Every cached text is compared with a fresh render of the same template (the Ansible template corpus
of test_templates_ansible.py, with its variables); the keys are shown to move with each input; the
directory checks are attacked with planted links and modes; faults (a corrupt file, a torn shard, a
full disk) only cost the cache.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from test_manifest_support import inventory, write_tree

from driftctl.manifest import compile_catalog, load_site
from driftctl.manifest import render as render_module
from driftctl.manifest import rendercache as rc
from driftctl.manifest.render import FactsPlaceholder, FactsUse, Renderer, TemplateOptions
from driftctl.manifest.rendercache import RenderCache, cache_names, render_key, template_key
from driftctl.secret import Secret
from driftctl.yamlsrc import YamlMap, YamlSeq

DATA = Path(__file__).parent / "data" / "ansible_templates"
VARS = json.loads((DATA / "vars.json").read_text())
CORPUS = sorted((d, p.name) for d in ("templates", "cases") for p in (DATA / d).glob("*.j2") if p.name != "inc.j2")


def open_cache(directory: Path) -> RenderCache:
    cache, why = RenderCache.open(directory)
    assert cache is not None, why
    return cache


def names_of(source: str) -> tuple[str, ...] | None:
    env = Renderer(DATA, str).file_env((), TemplateOptions())
    return cache_names(env.parse(source), env)


# ---- a cached text is the text a render makes


@pytest.mark.parametrize(("directory", "template"), CORPUS, ids=[f"{d}-{t}" for d, t in CORPUS])
def test_a_cached_text_is_the_rendered_text(tmp_path: Path, directory: str, template: str) -> None:
    fresh = Renderer(DATA, str).template_file(template, (DATA / directory,), VARS)
    texts, hits = [], []
    for _ in range(2):  # a run that renders and keeps, then a run (new cache, new renderer) that reads back
        cache = open_cache(tmp_path / "rc")
        shard = cache.shard(DATA, "web1", set())
        texts.append(Renderer(DATA, str).template_file(template, (DATA / directory,), VARS, cache=shard))
        hits.append(cache.hits)
        cache.close()
    assert texts == [fresh, fresh]
    assert hits == ([0, 1] if compiled_names(directory, template) is not None else [0, 0])


def compiled_names(directory: str, template: str) -> tuple[str, ...] | None:
    shared = Renderer(DATA, str)._template(template, (DATA / directory,), TemplateOptions.of(None)).cache_key
    return None if shared is None else shared[0]


def test_most_of_the_corpus_is_cached() -> None:
    cacheable = [t for d, t in CORPUS if compiled_names(d, t) is not None]
    assert "include.j2" not in cacheable
    assert len(cacheable) >= len(CORPUS) - 2, sorted({t for _, t in CORPUS} - set(cacheable))


# ---- which templates, and the names they read


@pytest.mark.parametrize("source", [
    "{% include 'inc.j2' %}",
    "{% import 'm.j2' as m %}{{ m.x() }}",
    "{% from 'm.j2' import x %}{{ x() }}",
    "{% extends 'base.j2' %}",
    "{{ [1, 2, 3] | random }}",
    "{{ [1, 2] | ansible.builtin.random }}",
    "{{ xs | map('random') | list }}",
    "{{ xs | map(which) | list }}",
    "{{ xs | select(which) | list }}",
    "{{ lipsum(1) }}",
    "{% set f = lipsum %}{{ f(1) }}",
    "{% filter random %}ab{% endfilter %}",
])
def test_a_template_whose_text_can_depend_on_more_than_its_variables_is_not_cached(source: str) -> None:
    assert names_of(source) is None


@pytest.mark.parametrize(("source", "names"), [
    ("plain text\n", ()),
    ("{{ a }} {{ b.c }} {{ d['e'] }}", ("a", "b", "d")),
    ("{% for x in xs %}{{ x }}{{ loop.index }}{% else %}{{ none_left }}{% endfor %}", ("none_left", "xs")),
    ("{% macro m(p) %}{{ p }}{{ outer }}{% endmacro %}{{ m(1) }}", ("outer",)),
    ("{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}{{ inside }}{% endcall %}", ("inside",)),
    ("{% set s %}{{ captured }}{% endset %}{{ s }}", ("captured",)),
    ("{% set v = given %}{{ v }}", ("given",)),
    ("{% filter upper %}{{ f }}{% endfilter %}", ("f",)),
    ("{% with w = base %}{{ w }}{{ other }}{% endwith %}", ("base", "other")),
    ("{% if maybe is defined %}{{ maybe }}{% endif %}", ("maybe",)),
    ("{{ xs | map('upper') | select('odd') | selectattr('a', 'defined') | list }}", ("xs",)),
    ("{% for i in range(3) %}{{ dict(a=i) }}{% endfor %}{% set ns = namespace(n=0) %}{{ ns.n }}",
     ("dict", "namespace", "range")),
])
def test_the_names_are_every_variable_a_template_reads(source: str, names: tuple[str, ...]) -> None:
    assert names_of(source) == names


def test_every_filter_test_and_global_is_sorted_pure_or_not() -> None:
    """An added filter, test or global fails here until rendercache.py says whether its result depends
    on its arguments only (driftctl does not provide filters that read the clock, files or randomness:
    filters.NOT_PROVIDED)."""
    env = Renderer(DATA, str).file_env((), TemplateOptions())
    assert set(env.globals) == rc.PURE_GLOBALS | rc.IMPURE_GLOBALS
    short = {name.removeprefix("ansible.builtin.") for name in env.filters}
    unsorted = short ^ (PURE_FILTERS_REVIEWED | rc.IMPURE_FILTERS)
    assert short - rc.IMPURE_FILTERS == PURE_FILTERS_REVIEWED, sorted(unsorted)
    assert {t.removeprefix("ansible.builtin.") for t in env.tests} == PURE_TESTS_REVIEWED


PURE_FILTERS_REVIEWED = {
    "abs", "attr", "b64decode", "b64encode", "basename", "batch", "bool", "capitalize", "center", "checksum",
    "combine", "comment", "count", "d", "default", "dict2items", "dictsort", "difference", "dirname", "e",
    "escape", "filesizeformat", "first", "flatten", "float", "forceescape", "format", "from_json", "from_yaml",
    "from_yaml_all", "groupby", "hash", "indent", "int", "intersect", "items", "items2dict", "join", "last",
    "length", "list", "lower", "mandatory", "map", "max", "md5", "min", "normpath", "path_join", "pprint",
    "quote", "regex_escape", "regex_findall", "regex_replace", "regex_search", "reject", "rejectattr",
    "replace", "reverse", "round", "safe", "select", "selectattr", "sha1", "slice", "sort", "splitext",
    "string", "striptags", "sum", "symmetric_difference", "ternary", "title", "to_json", "to_nice_json",
    "to_nice_yaml", "to_uuid", "to_yaml", "tojson", "trim", "truncate", "union", "unique", "upper",
    "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
}
PURE_TESTS_REVIEWED = {
    "!=", "<", "<=", "==", ">", ">=", "all", "any", "boolean", "callable", "contains", "defined", "divisibleby",
    "eq", "equalto", "escaped", "even", "false", "falsy", "filter", "float", "ge", "greaterthan", "gt", "in",
    "integer", "issubset", "issuperset", "iterable", "le", "lessthan", "lower", "lt", "mapping", "match", "ne",
    "none", "number", "odd", "regex", "sameas", "search", "sequence", "string", "subset", "superset", "test",
    "true", "truthy", "undefined", "upper", "version", "version_compare",
}


# ---- keys


def key(variables: dict[str, Any], names: tuple[str, ...] = ("a", "b"), source: str = "{{ a }}{{ b }}",
        options: Any = None, max_bytes: int = 1000, secrets: set[str] | None = None) -> bytes | None:
    env = Renderer(DATA, str).file_env((), TemplateOptions())
    return render_key(template_key(source, options, max_bytes), names, variables, env.globals, secrets or set())


def test_the_key_moves_with_every_input_and_with_nothing_else() -> None:
    base = key({"a": 1, "b": "x", "unread": 1})
    assert base is not None
    assert key({"a": 1, "b": "x", "unread": 2}) == base  # a variable the template does not read
    assert key({"b": "x", "a": 1}) == base  # the order of the variables themselves
    different = [
        key({"a": 1, "b": "x"}, source="{{ a }}-{{ b }}"),
        key({"a": 1, "b": "x"}, options=TemplateOptions(trim_blocks=False)),
        key({"a": 1, "b": "x"}, max_bytes=999),
        key({"a": "1", "b": "x"}), key({"a": True, "b": "x"}), key({"a": 1.0, "b": "x"}),
        key({"a": [1], "b": "x"}), key({"a": {"k": 1}, "b": "x"}), key({"a": {1: 1}, "b": "x"}),
        key({"a": {"k": 1}, "b": "x"}, names=("a", "b", "c")),  # c undefined: `c is defined` may be asked
        key({"a": {"k": 1, "j": 2}, "b": "x"}), key({"a": {"j": 2, "k": 1}, "b": "x"}),  # dict order is output order
        key({"a": None, "b": "x"}), key({"b": "x"}),  # None is not undefined
    ]
    assert base not in different and None not in different
    assert len(set(different)) == len(different)
    assert key({"a": YamlMap(k=1), "b": YamlSeq([1])}) == key({"a": {"k": 1}, "b": [1]})  # as YAML gives them


@pytest.mark.parametrize("value", [
    Secret("s3cret"),
    "text around s3cret here",
    ["x", {"k": "s3cret"}],
    {"s3cret": 1},
    {1, 2},
    (1, 2),
    b"bytes",
    object(),
    FactsPlaceholder("facts", FactsUse()),
    {("tuple", "key"): 1},
])
def test_a_value_that_is_not_plain_data_or_holds_a_secret_is_not_cached(value: Any) -> None:
    assert key({"a": value, "b": 1}, secrets={"s3cret"}) is None


def test_an_impure_global_read_by_name_is_not_cached_but_a_pure_one_is() -> None:
    assert key({}, names=("lipsum",)) is None
    assert key({}, names=("range",)) is not None
    assert key({"range": [1]}, names=("range",)) != key({}, names=("range",))  # a variable hides the global


# ---- secrets: never in the cache


CANARY = "CANARY-7b3e9f0c2d4a"


def test_no_secret_reaches_the_cache_file(tmp_path: Path) -> None:
    """A !secret variable, a plain variable built from it, a template whose own text holds the secret's
    value, and a sensitive file: none is kept. The plain template next to them is (the test can fail)."""
    site = load_site(write_tree(tmp_path / "m", {
        "site.yaml": "- hosts: all\n  roles: [r]\n",
        "roles/r/resources.yaml": """
            vars:
              url: "https://user:{{ token }}@example.org/"
            resources:
              - file: /etc/direct
                template: direct.j2
              - file: /etc/derived
                template: derived.j2
              - file: /etc/literal
                template: literal.j2
              - file: /etc/sensitive
                template: plain.j2
                sensitive: true
              - file: /etc/plain
                template: plain.j2
        """,
        "roles/r/templates/direct.j2": "token={{ token }}\n",
        "roles/r/templates/derived.j2": "url={{ url }}\n",
        "roles/r/templates/literal.j2": f"# {CANARY} is written here by hand\nhost={{{{ inventory_hostname }}}}\n",
        "roles/r/templates/plain.j2": "PLAIN host={{ inventory_hostname }} {{ port | default(1) }}\n",
    }))
    site.render_cache = cache = open_cache(tmp_path / "state" / "render-cache")
    inv = inventory(token=Secret(CANARY))
    catalog = compile_catalog(site, inv, inv.hosts["web1"], {})
    assert {r.id: r.params["content"] for r in catalog.resources}["file:/etc/direct"] == f"token={CANARY}\n"
    cache.close()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state" / "render-cache").iterdir())
    assert b"PLAIN host=web1 8080" in stored
    assert CANARY.encode() not in stored and CANARY[-10:].encode() not in stored
    assert stored.count(b"PLAIN host=") == 1  # the plain file only; the sensitive one with the same text is not


def test_the_cache_holds_no_text_once_the_catalogs_hold_them(tmp_path: Path) -> None:
    """An apply lets go of each host's catalog when the host is done: the cache must not keep every text
    alive behind it (~25 MB at 100 hosts of the bench)."""
    site = load_site(write_tree(tmp_path / "m", {
        "site.yaml": "- hosts: all\n  roles: [r]\n",
        "roles/r/resources.yaml": "resources:\n  - file: /etc/plain\n    template: plain.j2\n",
        "roles/r/templates/plain.j2": "host={{ inventory_hostname }}\n",
    }))
    inv = inventory()
    for run in ("cold", "warm"):
        site.render_cache = cache = open_cache(tmp_path / "rc")
        for host in ("web1", "web2"):
            compile_catalog(site, inv, inv.hosts[host], {})
        assert len(cache._shards) == (2 if run == "cold" else 0), run  # cold: until written
        cache.flush()
        assert cache._shards == {} and cache._used == {}
        assert cache.hits == (2 if run == "warm" else 0)
        cache.close()


# ---- who may write it


def test_the_cache_is_private_and_made_so(tmp_path: Path) -> None:
    open_cache(tmp_path / "rc").close()
    assert (tmp_path / "rc").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "rc" / rc.FILE_NAME).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("attack", ["dir mode 0770", "dir mode 0707", "parent mode 0777", "dir is a link",
                                    "file is a link", "file mode 0644", "file is a directory"])
def test_a_cache_another_user_could_write_is_not_used(tmp_path: Path, attack: str) -> None:
    parent = tmp_path / "state"
    parent.mkdir(mode=0o700)
    directory = parent / "render-cache"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if attack == "dir is a link":
        directory.symlink_to(elsewhere)
    else:
        directory.mkdir(mode=0o700)
    if attack.startswith("dir mode"):
        directory.chmod(int(attack.split()[-1], 8))
    elif attack == "parent mode 0777":
        parent.chmod(0o777)
    elif attack == "file is a link":
        (directory / rc.FILE_NAME).symlink_to(elsewhere / "planted.db")
    elif attack == "file mode 0644":
        (directory / rc.FILE_NAME).touch(mode=0o644)
        (directory / rc.FILE_NAME).chmod(0o644)
    elif attack == "file is a directory":
        (directory / rc.FILE_NAME).mkdir()
    cache, why = RenderCache.open(directory)
    assert cache is None and why is not None and why.startswith("render cache off:"), why
    assert list(elsewhere.iterdir()) == []  # nothing made through a link


def test_a_sticky_shared_parent_is_fine(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o1777)
    open_cache(parent / "render-cache").close()


# ---- faults cost the cache, never the run


def test_a_file_that_is_not_a_database_is_replaced(tmp_path: Path) -> None:
    directory = tmp_path / "rc"
    directory.mkdir(mode=0o700)
    (directory / rc.FILE_NAME).write_bytes(b"this is not a database" * 100)
    (directory / rc.FILE_NAME).chmod(0o600)
    cache = open_cache(directory)
    shard = cache.shard(DATA, "h", set())
    shard.put(b"k" * 32, "text")
    cache.close()
    again = open_cache(directory)
    assert again.shard(DATA, "h", set()).get(b"k" * 32) == "text"


def test_a_torn_shard_turns_the_cache_off_and_the_render_goes_on(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "rc")
    shard = cache.shard(DATA, "web1", set())
    assert Renderer(DATA, str).template_file("filters.j2", (DATA / "cases",), VARS, cache=shard)
    cache.close()
    with sqlite3.connect(tmp_path / "rc" / rc.FILE_NAME) as db:
        db.execute("UPDATE shard SET data = substr(data, 1, length(data) - 3)")
    cache = open_cache(tmp_path / "rc")
    text = Renderer(DATA, str).template_file("filters.j2", (DATA / "cases",), VARS,
                                             cache=cache.shard(DATA, "web1", set()))
    assert text == Renderer(DATA, str).template_file("filters.j2", (DATA / "cases",), VARS)
    assert cache.broken is not None and "past the end" in cache.broken
    assert cache.hits == 0


def test_a_full_disk_turns_the_cache_off_and_keeps_what_was_there(tiny_fs: Path) -> None:
    cache = open_cache(tiny_fs / "rc")
    cache.shard(DATA, "h", set()).put(b"a" * 32, "small")
    cache.flush()
    assert cache.broken is None
    cache.shard(DATA, "h", set()).put(b"b" * 32, "x" * (rc.MAX_TEXT - 1))  # more than the disk holds
    cache.flush()
    assert cache.broken is not None and ("full" in cache.broken or "disk" in cache.broken), cache.broken
    assert cache.shard(DATA, "h", set()).get(b"a" * 32) is None  # off for the rest of the run
    cache.close()
    again = open_cache(tiny_fs / "rc")
    assert again.shard(DATA, "h", set()).get(b"a" * 32) == "small"  # the last good write stands
    assert again.shard(DATA, "h", set()).get(b"b" * 32) is None
    again.close()


# ---- what is kept, and for how long


def test_old_texts_no_render_asked_for_and_old_shards_are_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    now = [1_000_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    cache = open_cache(tmp_path / "rc")
    cache.shard(DATA, "h", set()).put(b"o" * 32, "old, asked for again")
    cache.shard(DATA, "h", set()).put(b"u" * 32, "old, never asked for again")
    cache.shard(DATA, "gone", set()).put(b"g" * 32, "a host that left")
    cache.close()
    now[0] += rc.MAX_AGE_S + 1
    cache = open_cache(tmp_path / "rc")
    assert cache.shard(DATA, "h", set()).get(b"o" * 32) == "old, asked for again"
    cache.shard(DATA, "h", set()).put(b"n" * 32, "new")
    cache.close()
    cache = open_cache(tmp_path / "rc")
    h = cache.shard(DATA, "h", set())
    assert [h.get(k * 32) for k in (b"o", b"u", b"n")] == ["old, asked for again", None, "new"]
    assert cache.shard(DATA, "gone", set()).get(b"g" * 32) is None


def test_a_shard_is_one_tree_and_one_host(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "rc")
    cache.shard(DATA, "web1", set()).put(b"k" * 32, "web1's")
    assert cache.shard(DATA, "web2", set()).get(b"k" * 32) is None
    assert cache.shard(tmp_path, "web1", set()).get(b"k" * 32) is None
    assert cache.shard(DATA, "web1", set()).get(b"k" * 32) == "web1's"


def test_two_runs_at_once_both_finish(tmp_path: Path) -> None:
    first, second = open_cache(tmp_path / "rc"), open_cache(tmp_path / "rc")
    first.shard(DATA, "h", set()).put(b"1" * 32, "first")
    second.shard(DATA, "h", set()).put(b"2" * 32, "second")
    first.flush()
    second.flush()  # the later write of a shard wins: a cache loses texts, never a run
    assert first.broken is None and second.broken is None
    first.close()
    second.close()
    assert open_cache(tmp_path / "rc").shard(DATA, "h", set()).get(b"2" * 32) == "second"


def test_a_large_text_is_rendered_each_time(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "rc")
    cache.shard(DATA, "h", set()).put(b"L" * 32, "x" * (rc.MAX_TEXT + 1))
    assert cache.shard(DATA, "h", set()).get(b"L" * 32) is None


def test_pack_and_unpack_agree_and_refuse_what_pack_did_not_make() -> None:
    entries = {b"a" * 32: ("text\n", 5), b"b" * 32: ("ünïcode \udcff", 6), b"c" * 32: ("", 7)}
    assert rc.unpack(rc.pack(entries)) == entries
    with pytest.raises(ValueError):
        rc.unpack(rc.pack(entries)[:-1])
    with pytest.raises(ValueError):
        rc.unpack(b"short")


# ---- manifest strings: rendered once per run for the same values


def test_a_manifest_string_is_rendered_once_per_run_for_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Renderer(DATA, str)
    calls = []
    original = render_module.render_capped

    def counting(*args: Any, **kwargs: Any) -> str:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(render_module, "render_capped", counting)
    text = "/srv/d{{ item % 10 }}/f{{ item }}.conf"
    where = render_module.Location("m.yaml", 1)
    assert [r.string(text, {"item": i, "other": h}, where, "path") for h in range(3) for i in (1, 2)] == \
        ["/srv/d1/f1.conf", "/srv/d2/f2.conf"] * 3
    assert len(calls) == 2
    placeholder = FactsPlaceholder("facts", FactsUse())
    r.string("{{ x }}-", {"x": placeholder}, where, "p")
    r.string("{{ x }}-", {"x": placeholder}, where, "p")
    assert len(calls) == 4  # a value that is not plain data: rendered each time
