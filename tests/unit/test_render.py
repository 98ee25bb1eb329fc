"""Rendering: native types, no second pass, the sandbox, and errors at the manifest's or template's line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_manifest_support import TYPES, inventory, write_tree

from driftctl.errors import Location, ManifestError, TemplateError
from driftctl.manifest import compile_catalog, load_site
from driftctl.manifest.render import FactsPlaceholder, FactsUse, Renderer
from driftctl.model import Catalog

FACTS = {"distribution": "debian", "cpus": 4, "distribution_like": []}


def site_with(tmp_path: Path, resources: str, **files: str | bytes) -> Any:
    root = write_tree(tmp_path / "m", {
        "site.yaml": "- hosts: all\n  roles: [r]\n",
        "roles/r/resources.yaml": resources,
        **files,
    })
    return load_site(root, types=TYPES)


def compile_one(site: Any, host: str = "web1", facts: dict[str, Any] | None = FACTS, **inv_vars: Any) -> Catalog:
    inv = inventory(**inv_vars)
    return compile_catalog(site, inv, inv.hosts[host], facts, types=TYPES)


def render_error(site: Any, **inv_vars: Any) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        compile_one(site, **inv_vars)
    return info.value


RES = "roles/r/resources.yaml"


def test_exact_expression_keeps_its_type(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - user: deploy
            uid: "{{ base_uid + 1 }}"
            groups: "{{ extra_groups }}"
          - service: web
            port: "{{ port }}"
            enabled: "{{ port > 1000 }}"
    """)
    cat = compile_one(site, base_uid=1000, extra_groups=["adm", "www-data"])
    user, service = cat.resources
    assert user.params["uid"] == 1001 and user.params["groups"] == ["adm", "www-data"]
    assert service.params["port"] == 8080 and service.params["enabled"] is True


def test_mixed_text_is_a_string(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/motd
            content: "port {{ port }} on {{ inventory_hostname }}\\n"
          - user: "u{{ port }}"
            shell: " {{ port }}"
    """)
    cat = compile_one(site)
    assert cat.resources[0].params["content"] == "port 8080 on web1\n"
    assert cat.resources[1].name == "u8080" and cat.resources[1].params["shell"] == " 8080"


def test_a_number_for_a_text_parameter_becomes_text_but_a_list_is_an_error(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - user: deploy
            shell: "{{ port }}"
          - user: other
            shell: "{{ [port] }}"
    """)
    with pytest.raises(ManifestError) as info:
        compile_one(site)
    assert str(info.value.location) == f"{tmp_path}/m/{RES}:5" and "shell must be str" in info.value.message
    site = site_with(tmp_path, """
        resources:
          - user: deploy
            shell: "{{ port }}"
    """)
    assert compile_one(site).resources[0].params["shell"] == "8080"


def test_values_from_variables_are_never_rendered_again(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/a
            content: "{{ payload }}"
          - file: /etc/b
            content: "x {{ payload }} y"
    """)
    cat = compile_one(site, payload="{{ 7 * 7 }} {% raw %}")
    assert cat.resources[0].params["content"] == "{{ 7 * 7 }} {% raw %}"
    assert cat.resources[1].params["content"] == "x {{ 7 * 7 }} {% raw %} y"


def test_undefined_variable_names_the_manifest_line(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: nginx
          - file: /etc/motd
            mode: "0644"
            content: "{{ motd_banner }}"
    """)
    e = render_error(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:5"
    assert "'motd_banner' is undefined" in e.message


def test_error_inside_a_block_scalar_names_the_line_inside_it(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/motd
            content: |
              first line
              second {{ nope }}
              third
    """)
    e = render_error(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:5" and "'nope' is undefined" in e.message


def test_syntax_error_in_a_string(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/motd
            content: "{{ port + }}"
    """)
    e = render_error(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:3" and "template syntax" in e.message


def test_undefined_attribute_of_a_defined_variable(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: "{{ pkg.nmae }}"
    """)
    e = render_error(site, pkg={"name": "nginx"})
    assert str(e.location) == f"{tmp_path}/m/{RES}:2" and "has no attribute 'nmae'" in e.message


def test_sandbox_blocks_python_internals(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/x
            content: "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    """)
    e = render_error(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:3"
    assert "not allowed" in e.message or "undefined" in e.message


def test_immutable_sandbox_blocks_mutation(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/x
            content: "{{ items.append(3) }}"
    """)
    e = render_error(site, items=[1, 2])
    assert str(e.location) == f"{tmp_path}/m/{RES}:3" and "not allowed" in e.message


def test_template_file_is_rendered_into_content(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/nginx/site.conf
            template: site.conf.j2
    """, **{"roles/r/templates/site.conf.j2": "listen {{ port }};\n{% include 'part.j2' %}",
            "roles/r/templates/part.j2": "server_name {{ inventory_hostname }};\n"})
    res = compile_one(site).resources[0]
    assert res.params["content"] == "listen 8080;\nserver_name web1;\n"
    assert res.params["template"] == "site.conf.j2"  # left as written, for display


def test_source_file_is_read_as_bytes(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /usr/local/bin/tool
            source: tool.bin
    """, **{"roles/r/files/tool.bin": b"\x00\x01{{ not rendered }}\xff"})
    res = compile_one(site).resources[0]
    assert res.params["content"] == b"\x00\x01{{ not rendered }}\xff"


def test_template_runtime_error_names_the_template_line(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/app.conf
            template: app.conf.j2
    """, **{"roles/r/templates/app.conf.j2": "a = 1\nb = {{ port }}\n\nc = {{ missing_var }}\n"})
    e = render_error(site)
    assert str(e.location) == f"{tmp_path}/m/roles/r/templates/app.conf.j2:4"
    assert "'missing_var' is undefined" in e.message
    assert e.hint == f"rendering template 'app.conf.j2' for file:/etc/app.conf at {tmp_path}/m/{RES}:2"


def test_template_syntax_error_names_the_template_line(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/app.conf
            template: app.conf.j2
    """, **{"roles/r/templates/app.conf.j2": "a = 1\n{% if port %}\nb\n{% endfor %}\n"})
    e = render_error(site)
    assert str(e.location) == f"{tmp_path}/m/roles/r/templates/app.conf.j2:4" and "template syntax" in e.message


def test_error_in_an_included_template_names_that_file(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/app.conf
            template: main.j2
    """, **{"roles/r/templates/main.j2": "top\n{% include 'inner.j2' %}\n",
            "roles/r/templates/inner.j2": "one\ntwo {{ 1 // 0 }}\n"})
    e = render_error(site)
    assert str(e.location) == f"{tmp_path}/m/roles/r/templates/inner.j2:2"
    assert "ZeroDivisionError" in e.message


def test_include_cannot_leave_the_tree(tmp_path: Path) -> None:
    write_tree(tmp_path, {"outside.j2": "secret\n"})
    site = site_with(tmp_path, """
        resources:
          - file: /etc/app.conf
            template: main.j2
    """, **{"roles/r/templates/main.j2": "x\n{% include '../../../../outside.j2' %}\n"})
    e = render_error(site)
    assert str(e.location) == f"{tmp_path}/m/roles/r/templates/main.j2:2" and "outside the manifest tree" in e.message


def test_templated_template_path_is_resolved_and_checked_per_host(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/app.conf
            template: "{{ flavour }}.j2"
    """, **{"roles/r/templates/small.j2": "small\n"})
    assert compile_one(site, flavour="small").resources[0].params["content"] == "small\n"
    with pytest.raises(ManifestError) as info:
        compile_one(site, flavour="../../../../../etc/passwd")
    assert str(info.value.location) == f"{tmp_path}/m/{RES}:3" and "outside the manifest tree" in info.value.message


def test_expression_giving_a_non_data_object_is_an_error(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - user: deploy
            groups: "{{ cycler }}"
    """)
    e = render_error(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:3" and "not data" in e.message


def test_generators_become_lists(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - user: deploy
            groups: "{{ names | map('upper') }}"
    """)
    assert compile_one(site, names=["a", "b"]).resources[0].params["groups"] == ["A", "B"]


def test_facts_are_available_to_templates(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/os
            content: "{{ facts.distribution }} with {{ facts.cpus }} cpus"
    """)
    cat = compile_one(site)
    assert cat.resources[0].params["content"] == "debian with 4 cpus" and cat.uses_facts


def test_renderer_placeholder_records_use() -> None:
    use = FactsUse()
    r = Renderer(Path("/nonexistent"), str)
    value = r.string("{{ facts.os }}", {"facts": FactsPlaceholder("facts", use)}, Location("f", 1), "x")
    assert isinstance(value, FactsPlaceholder) and use.ever
    use2 = FactsUse()
    text = r.string("{% if facts.cpus > 2 %}big{% endif %} {{ facts.kernel | upper }}",
                    {"facts": FactsPlaceholder("facts", use2)}, Location("f", 1), "x")
    assert text == "big <FACTS.KERNEL>" and use2.ever
