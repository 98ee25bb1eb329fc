"""Ansible-style template files without the oracle: errors at file:line, the file resource's template
options, the size cap on Ansible's filters, and inline manifest strings keeping Jinja's behaviour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_manifest_support import inventory, write_tree

from driftctl.errors import ManifestError, TemplateError
from driftctl.manifest import compile_catalog, load_site
from driftctl.manifest.render import Renderer, TemplateOptions
from driftctl.resources.file import File, template_options

TYPES = {"file": File}


def render(tmp_path: Path, source: str | bytes, variables: dict[str, Any] | None = None,
           options: dict[str, Any] | None = None, max_bytes: int | None = None, **more: str) -> str:
    tree = write_tree(tmp_path / "t", {"t.j2": source, **more})
    renderer = Renderer(tree, lambda p: str(p.relative_to(tree)), *([max_bytes] if max_bytes else []))
    return renderer.template_file("t.j2", (tree,), variables or {}, options)


def render_error(tmp_path: Path, source: str, **kwargs: Any) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        render(tmp_path, source, **kwargs)
    return info.value


# ---- Ansible's defaults and the header
def test_trim_blocks_is_on_for_template_files(tmp_path: Path) -> None:
    assert render(tmp_path, "{% for i in [1, 2] %}\n{{ i }}\n{% endfor %}\n") == "1\n2\n"


def test_header_sets_options_and_is_not_output(tmp_path: Path) -> None:
    text = "#jinja2: trim_blocks: False, lstrip_blocks: True\n  {% if true %}\nx\n  {% endif %}\n"
    assert render(tmp_path, text) == "\nx\n"


def test_header_delimiters(tmp_path: Path) -> None:
    text = "#jinja2: variable_start_string: '[%', variable_end_string: '%]'\n[% v %] {{ v }}\n"
    assert render(tmp_path, text, {"v": 1}) == "1 {{ v }}\n"


def test_a_lone_value_is_written_as_ansible_writes_it(tmp_path: Path) -> None:
    assert render(tmp_path, "{{ port }}\n", {"port": 22}) == "22"  # no final newline, as Ansible
    assert render(tmp_path, "{{ name }}\n", {"name": "web"}) == "web\n"
    assert render(tmp_path, "a{{ none }}b\n", {"none": None}) == "ab\n"  # None writes nothing


@pytest.mark.parametrize(("header", "message"), [
    ("#jinja2: trim_blocks False\n", "no ':' in 'trim_blocks False'"),
    ("#jinja2: nosuch: True\n", "unknown option 'nosuch'"),
    ("#jinja2: trim_blocks: yes\n", "'yes' is not a Python literal"),
    ("#jinja2: trim_blocks: 'yes'\n", "trim_blocks must be true or false"),
    ("#jinja2: trim_blocks: True,\n", "an empty pair"),
    ("#jinja2: newline_sequence: '\\n\\n'\n", "newline_sequence must be one of"),
    ("#jinja2: block_start_string: '{{'\n", "start strings must be different"),
])
def test_a_bad_header_is_an_error_at_its_line(tmp_path: Path, header: str, message: str) -> None:
    e = render_error(tmp_path, header + "x\n")
    assert str(e.location) == "t.j2:1" and message in e.message, e


def test_a_header_alone_is_an_error(tmp_path: Path) -> None:
    e = render_error(tmp_path, "#jinja2: trim_blocks: True")
    message = "missing newline after"
    assert str(e.location) == "t.j2:1" and message in e.message, e


def test_lines_after_a_header_are_the_file_lines(tmp_path: Path) -> None:
    e = render_error(tmp_path, "#jinja2: lstrip_blocks: True\nok\n{{ nosuch }}\n")
    assert str(e.location) == "t.j2:3" and "nosuch" in e.message
    e = render_error(tmp_path, "#jinja2: lstrip_blocks: True\nok\n\n{% if %}\n")
    assert str(e.location) == "t.j2:4" and "syntax" in e.message


# ---- filters
def test_a_filter_driftctl_does_not_provide_names_itself_and_the_line(tmp_path: Path) -> None:
    e = render_error(tmp_path, "a\n{{ 'pw' | password_hash('sha512') }}\n")
    assert str(e.location) == "t.j2:2"
    assert "filter 'password_hash' is an Ansible filter driftctl does not provide" in e.message
    assert "salt is random" in e.message
    e = render_error(tmp_path, "a\n{% if true %}\nb\n{{ addr | ipaddr }}\n{% endif %}\n", variables={"addr": "x"})
    assert str(e.location) == "t.j2:4" and "filter 'ipaddr' is an Ansible filter driftctl does not provide" \
        in e.message
    e = render_error(tmp_path, "{{ x | community.general.json_query('a') }}\n", variables={"x": {}})
    assert "'community.general.json_query' is from an Ansible collection" in e.message
    e = render_error(tmp_path, "{{ x | nosuchfilter }}\n", variables={"x": 1})
    assert "no filter named 'nosuchfilter'" in e.message and str(e.location) == "t.j2:1"


def test_a_filter_error_is_at_its_line(tmp_path: Path) -> None:
    e = render_error(tmp_path, "a\n{{ nosuch | mandatory }}\n")
    assert str(e.location) == "t.j2:2" and "Mandatory variable 'nosuch' not defined" in e.message
    e = render_error(tmp_path, "{{ 'x' | comment('nosuch') }}\n")
    assert "invalid style 'nosuch'" in e.message


@pytest.mark.parametrize("expr", [
    "big | to_json",
    "big | to_nice_json",
    "big | to_yaml",
    "big | to_nice_yaml",
    "big | b64encode",
    "big | quote",
    "big | comment",
    "big | regex_escape",
    "big | ansible.builtin.to_json",
    "small | regex_replace('(.)', '\\\\1\\\\1\\\\1\\\\1')",
    "([small] * 3) | to_json",
])
def test_ansible_filters_keep_to_the_size_cap(tmp_path: Path, expr: str) -> None:
    cap = 4000
    variables = {"big": "'\n" * 1750, "small": "x" * 1500}
    e = render_error(tmp_path, f"{{{{ {expr} }}}}\n", variables=variables, max_bytes=cap)
    assert "too large" in e.message and "max_render_bytes (4000)" in e.message, e


def test_filters_in_inline_strings_but_jinja_whitespace(tmp_path: Path) -> None:
    """A manifest string keeps Jinja's defaults (no trim_blocks); Ansible's filters work there too."""
    root = write_tree(tmp_path / "m", {
        "site.yaml": "- hosts: all\n  roles: [r]\n",
        "roles/r/resources.yaml": """
            resources:
              - file: /etc/a
                content: |
                  {% if true %}
                  {{ {'b': 1, 'a': [1]} | to_nice_yaml(indent=2) }}
                  {% endif %}
        """,
    })
    site = load_site(root, types=TYPES)
    inv = inventory()
    cat = compile_catalog(site, inv, inv.hosts["web1"], {}, types=TYPES)
    assert cat.resources[0].params["content"] == "\na:\n- 1\nb: 1\n\n\n"


# ---- the file resource's options
def site_with(tmp_path: Path, resource: str, template: str = "x\n") -> Any:
    root = write_tree(tmp_path / "m", {
        "site.yaml": "- hosts: all\n  roles: [r]\n",
        "roles/r/resources.yaml": "resources:\n" + resource,
        "roles/r/templates/t.j2": template,
    })
    return load_site(root, types=TYPES)


def compile_error(tmp_path: Path, resource: str) -> ManifestError:
    inv = inventory()
    with pytest.raises(ManifestError) as info:  # the tree's load checks literal parameters already
        compile_catalog(site_with(tmp_path, resource), inv, inv.hosts["web1"], {}, types=TYPES)
    return info.value


@pytest.mark.parametrize(("options", "message", "line"), [
    ("    trim_blocks: maybe\n", "trim_blocks", 4),
    ("    newline_sequence: 'CRLF'\n", "newline_sequence must be one of", 4),
    ("    variable_start_string: ''\n", "variable_start_string must be a non-empty string", 4),
    ("    comment_start_string: '[%'\n    block_start_string: '[%'\n", "start strings must be different", 2),
    ("    nosuch_string: 'x'\n", "unknown parameter 'nosuch_string'", 4),
])
def test_bad_template_options_are_errors_at_their_line(tmp_path: Path, options: str, message: str, line: int) -> None:
    e = compile_error(tmp_path, "  - file: /etc/a\n    template: t.j2\n" + options)
    assert message in e.message and e.location.line == line and e.location.file.endswith("resources.yaml"), e


def test_template_options_need_a_template(tmp_path: Path) -> None:
    e = compile_error(tmp_path, "  - file: /etc/a\n    content: x\n    trim_blocks: false\n")
    assert "trim_blocks only apply to a template: file" in e.message and e.location.line == 2


def test_resource_options_reach_the_renderer(tmp_path: Path) -> None:
    params = File.validate({"path": "/etc/a", "template": "t.j2", "trim_blocks": False,
                            "newline_sequence": "\\r\\n"}, _loc())
    options = template_options(params)
    assert options == {"trim_blocks": False, "newline_sequence": "\r\n"}
    assert TemplateOptions.of(options).newline_sequence == "\r\n"
    text = render(tmp_path, "{% if true %}\na\n{% endif %}\n", options=options)
    assert text == "\r\na\r\n"


def test_resource_options_apply_when_compiled(tmp_path: Path) -> None:
    site = site_with(tmp_path, "  - file: /etc/a\n    template: t.j2\n    trim_blocks: false\n",
                     "{% if true %}\na\n{% endif %}\n")
    inv = inventory()
    cat = compile_catalog(site, inv, inv.hosts["web1"], {}, types=TYPES)
    assert cat.resources[0].params["content"] == "\na\n"


def _loc() -> Any:
    from driftctl.errors import Location

    return Location("resources.yaml", 1)


def test_filters_take_manifest_data_and_secrets(tmp_path: Path) -> None:
    """Variables from YAML files are dict/list subclasses with locations, secrets a str subclass."""
    from driftctl.secret import Secret
    from driftctl.yamlsrc import load_text

    variables = load_text("app: {b: [1, x], c: '1.10'}\n", "vars.yaml")
    variables["pw"] = Secret("s3cret")
    text = render(tmp_path, "{{ app | to_nice_yaml }}{{ app | to_json }}\n{{ {'pw': pw} | to_yaml }}"
                            "{{ [pw] | to_json }} {{ 'a/b.c' | splitext }}\n", variables)
    assert text == ("b:\n- 1\n- x\nc: '1.10'\n"
                    '{"b": [1, "x"], "c": "1.10"}\n{pw: s3cret}\n["s3cret"] [\'a/b\', \'.c\']\n')
