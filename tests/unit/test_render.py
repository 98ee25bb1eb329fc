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
from driftctl.yamlsrc import Unsafe

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


def test_what_a_variable_brings_in_is_never_rendered_again(tmp_path: Path) -> None:
    # a variable's own template renders (as Ansible's do), once: Jinja arriving in a fact, in the
    # result of another variable's template or in an !unsafe value stays text
    site = site_with(tmp_path, """
        resources:
          - file: /etc/a
            content: "{{ from_fact }}"
          - file: /etc/b
            content: "x {{ through }} y"
          - file: /etc/c
            content: "{{ literal }}"
    """)
    facts = {**FACTS, "motd": "{{ 7 * 7 }} {% raw %}"}
    cat = compile_one(site, facts=facts, from_fact="{{ facts.motd }}", through="{{ from_fact }}",
                      literal=Unsafe("{{ .Values.port }}"))
    contents = [r.params["content"] for r in cat.resources]
    assert contents == ["{{ 7 * 7 }} {% raw %}", "x {{ 7 * 7 }} {% raw %} y", "{{ .Values.port }}"]


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


def test_an_undefined_variable_close_to_a_defined_one_gets_a_did_you_mean(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/motd
            content: "banner: {{ motd_bannr }}"
          - file: /etc/issue
            template: issue.j2
    """, **{"roles/r/templates/issue.j2": "{{ motd_banner }}\n"})
    e = render_error(site, motd_banner="hi")
    assert "'motd_bannr' is undefined" in e.message and e.hint == "did you mean 'motd_banner'?"
    far = site_with(tmp_path / "far", "resources:\n  - file: /etc/motd\n    content: \"{{ zzzz }}\"\n")
    assert render_error(far, motd_banner="hi").hint is None  # nothing close: no guess
    in_file = site_with(tmp_path / "file", "resources:\n  - file: /etc/issue\n    template: issue.j2\n",
                        **{"roles/r/templates/issue.j2": "{{ motd_banr }}\n"})
    assert render_error(in_file, motd_banner="hi").hint == "did you mean 'motd_banner'?"


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
    # an included file's final newline is dropped, as Ansible's template module does
    assert res.params["content"] == "listen 8080;\nserver_name web1;"
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


# ---- the size cap (Settings.max_render_bytes): refused before the value is built

CAP = 1_000_000
GROWING = [
    "{{ 'x' * 10**9 }}",
    "{{ ['x'] * 10**9 }}",
    "{{ 'x' ~ ('y' * 10**9) }}",
    "{{ 2 ** (10**10) }}",
    "{{ '%1000000000s' % 'x' }}",
    "{{ '%*s' % (10**9, 'x') }}",
    "{{ 'x'.center(10**9) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ 'x'.zfill(10**9) }}",
    "{{ '\t'.expandtabs(10**9) }}",
    "{{ 'ab'.replace('', 'x' * 900000) }}",
    "{{ ('x' * 900000).join(range(100000)) }}",
    "{{ ('x' * 900000).translate({120: 'y' * 1000}) }}",
    "{{ '{:>1000000000}'.format('x') }}",
    "{{ '{0:{1}}'.format('x', 10**9) }}",
    "{{ ('{0}' * 100000).format('x' * 900000) }}",
    "{{ 'x' | center(10**9) }}",
    "{{ ('a\\n' * 100000) | indent(10**4) }}",
    "{{ '%1000000000s' | format('x') }}",
    "{{ ('x' * 900000) | replace('x', 'yy') }}",
    "{{ range(100000) | map('string') | map('center', 900000) | join }}",
    "{{ range(100000) | map('string') | map('center', 900000) | list }}",
    "{{ ('x' * 900000) | list }}",
    "{{ [1] | batch(10**9, 'x') | list }}",
    "{{ range(3) | slice(10**9) | list }}",
    "{{ lipsum(10**7) }}",
    # nesting shares one big text many times: cheap to build, huge to show
    "{% set a = ['x' * 900000] %}{% set b = [a, a] %}{% set c = [b, b] %}{{ c }}",
    "{% set a = ['x' * 900000] %}{% set b = [a, a] %}{% set c = [b, b] %}x{{ c | string }}",
    "{% set a = ['x' * 900000] %}{% set b = [a, a] %}{% set c = [b, b] %}{{ c | tojson }}x",
    # captured output: {% set %} blocks and macros
    "{% set s %}{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}{% endset %}{{ s | length }}",
    "{% macro m() %}{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}{% endmacro %}{{ m() | length }}",
    # doubling in a loop
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    # plain output
    "x{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",
    # operands from variables and loops (ints take an inline path: a text or a list must not)
    "{% set n = 10**9 %}{{ 'x' * n }}",
    "{% set n = 10**9 %}{{ n * 'x' }}",
    "{% set n = 10**9 %}{% set s = ['x'] %}{{ s * n }}",
    "{% for n in [3, 10**9] %}{{ n * 'ab' }}{% endfor %}",
    "{% set n = 10**9 %}{{ (n + 1) * 'x' }}",
    "{% set a = 'x' * 900000 %}{% set b = a + a %}{{ b }}",
]


@pytest.mark.parametrize("text", GROWING)
def test_growing_a_value_past_the_cap_is_refused(text: str) -> None:
    r = Renderer(Path("/nonexistent"), str, max_bytes=CAP)
    with pytest.raises(TemplateError) as info:
        r.string(text, {}, Location("m.yaml", 7), "content")
    assert "too large" in info.value.message and f"over max_render_bytes ({CAP})" in info.value.message
    assert info.value.location is not None and info.value.location.file == "m.yaml"


def test_the_huge_value_is_never_built() -> None:
    # tracemalloc's peak, not ru_maxrss: the process's high-water mark late in a suite can hide a 1 GB string
    import tracemalloc

    r = Renderer(Path("/nonexistent"), str)
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError, match=r"m.yaml:3: content: too large: '\*' .* over max_render_bytes"):
            r.string("{{ 'x' * 10**9 }}", {}, Location("m.yaml", 3), "content")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 1024 * 1024  # the 1 GB string would show as ~1,000,000,000 bytes


def test_ordinary_templates_are_untouched() -> None:
    r = Renderer(Path("/nonexistent"), str, max_bytes=CAP)
    for text, want in [
        ("{{ 'ab' * 3 }}|{{ 'x'.center(5) }}|{{ '%03d' % 7 }}|{{ '{:>4}'.format('a') }}", "ababab|  x  |007|   a"),
        ("{{ [1, 2] | join(',') }} {{ range(3) | list }} {{ 'a\nb' | indent(2, true) }}", "1,2 [0, 1, 2]   a\n  b"),
        ("{% set s %}abc{% endset %}{{ s ~ 1 }} {{ 2 ** 10 }}", "abc1 1024"),
    ]:
        assert r.string(text, {}, Location("m.yaml", 1), "x") == want


def test_operators_mean_what_they_mean_in_jinja_whatever_their_operands() -> None:
    # ints are computed inline by the generated code, everything else through the sandbox's check:
    # both must give Jinja's results, evaluate each operand once, left first, and fail as Jinja fails
    import jinja2

    calls: list[str] = []

    def seen(name: str, value: Any) -> Any:
        calls.append(name)
        return value

    r = Renderer(Path("/nonexistent"), str, max_bytes=CAP)
    plain = jinja2.Environment()
    values: list[Any] = [7, -3, 0, True, 2.5, "ab", [1], (2,), None]
    for op in ("+", "*", "%"):
        for a in values:
            for b in values:
                text = "={{ seen('l', a) " + op + " seen('r', b) }}"  # text around: a rendered string
                try:
                    want = plain.from_string(text).render(a=a, b=b, seen=lambda _, v: v)
                except Exception as e:  # the same failure, whatever its class, is the point
                    want = f"fails: {type(e).__name__}: {e}"
                calls.clear()
                try:
                    got = r.string(text, {"a": a, "b": b, "seen": seen}, Location("m.yaml", 1), "x")
                except TemplateError as e:
                    got = f"fails: {e.message.removeprefix('x: ')}"
                assert got == want, (text, a, b)
                assert calls == ["l", "r"], (text, a, b, calls)
    assert r.string("{% for i in range(3) %}{{ (i * 31 + 2) % 5 }}{% endfor %}", {}, Location("m", 1), "x") == "234"


def test_a_rendered_file_over_the_cap_names_the_template_and_line(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/big
            template: big.j2
    """, **{"roles/r/templates/big.j2": "head\n{% for i in range(10000) %}{{ line }}\n{% endfor %}\n"})
    site.max_render_bytes = CAP  # Settings.max_render_bytes, as the CLI passes it to load_site
    err = render_error(site, line="y" * 200)
    assert err.location is not None and err.location.file.endswith("roles/r/templates/big.j2")
    assert err.location.line == 2 and err.message.startswith("too large: the rendered file would make")


def test_a_template_file_larger_than_the_cap_is_not_read(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/big
            template: big.j2
    """, **{"roles/r/templates/big.j2": "z" * (CAP + 1)})
    site.max_render_bytes = CAP
    err = render_error(site)
    assert str(err.location).endswith("roles/r/templates/big.j2")
    assert err.message == f"{CAP + 1} bytes, over max_render_bytes ({CAP})"
