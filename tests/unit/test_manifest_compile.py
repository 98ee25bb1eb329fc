"""compile_catalog / preflight: variables, when/loop, claims, relations, secrets, digest, facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_manifest_support import TYPES, inventory, make_inventory, write_tree

from driftctl.errors import ManifestError, TemplateError
from driftctl.inventory import Inventory
from driftctl.manifest import compile_catalog, load_site, preflight
from driftctl.model import Catalog
from driftctl.secret import Secret

FACTS = {"distribution": "debian", "cpus": 4, "init": "systemd"}
RES = "roles/r/resources.yaml"


def site_with(tmp_path: Path, resources: str, site: str = "- hosts: all\n  roles: [r]\n", **files: str) -> Any:
    root = write_tree(tmp_path / "m", {"site.yaml": site, RES: resources, **files})
    return load_site(root, types=TYPES)


def compile_one(site: Any, host: str = "web1", facts: dict[str, Any] | None = FACTS,
                inv: Inventory | None = None, **inv_vars: Any) -> Catalog:
    inv = inv or inventory(**inv_vars)
    return compile_catalog(site, inv, inv.hosts[host], facts, types=TYPES)


def fails(site: Any, **kw: Any) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        compile_one(site, **kw)
    return info.value


# ---- variables


def test_precedence_defaults_vars_inventory_magic(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        vars:
          from_vars: vars
          shadowed_by_inventory: vars
          inventory_hostname: not-the-host
        resources:
          - file: /etc/v
            content: "{{ only_default }} {{ from_vars }} {{ shadowed_by_inventory }} {{ inventory_hostname }}"
    """, **{"roles/r/defaults.yaml": """
        only_default: default
        from_vars: default
        shadowed_by_inventory: default
    """})
    inv = make_inventory({"h1": (["web"], {"shadowed_by_inventory": "host"})})
    cat = compile_catalog(site, inv, inv.hosts["h1"], FACTS, types=TYPES)
    assert cat.resources[0].params["content"] == "default vars host h1"


def test_magic_variables(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/v
            content: "{{ group_names | join(',') }} {{ groups.web | join(',') }} {{ groups['all'] | length }}"
    """)
    assert compile_one(site).resources[0].params["content"] == "web web1,web2 3"


def test_file_vars_are_scoped_to_their_file(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        vars:
          mine: r
        resources:
          - file: /etc/r
            content: "{{ mine }}"
    """, site="- hosts: all\n  roles: [r]\n  manifests: [other.yaml]\n", **{"other.yaml": """
        resources:
          - file: /etc/other
            content: "{{ mine }}"
    """})
    e = fails(site)
    assert str(e.location) == f"{tmp_path}/m/other.yaml:3" and "'mine' is undefined" in e.message


# ---- site selection


def test_site_entries_select_hosts_and_a_role_applies_once(tmp_path: Path) -> None:
    site = site_with(tmp_path, "resources:\n  - package: curl\n",
                     site="- hosts: all\n  roles: [r]\n- hosts: web\n  roles: [w, r]\n- hosts: lb\n  roles: [w]\n",
                     **{"roles/w/resources.yaml": "resources:\n  - package: nginx\n"})
    assert [r.id for r in compile_one(site, "web1").resources] == ["package:curl", "package:nginx"]
    assert [r.id for r in compile_one(site, "db1").resources] == ["package:curl"]  # no lb group: no match


def test_pattern_with_exclusion(tmp_path: Path) -> None:
    site = site_with(tmp_path, "resources:\n  - package: curl\n", site="- hosts: all:!web2\n  roles: [r]\n")
    assert compile_one(site, "web1").resources and not compile_one(site, "web2").resources


# ---- when / loop


def test_loop_and_when_per_item(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - user: "{{ item.name }}"
            loop: "{{ admins }}"
            when: item.active
            shell: "{{ item.shell | default('/bin/bash') }}"
          - package: "{{ pkg }}"
            loop: [vim-tiny, curl]
            loop_var: pkg
          - package: never
            when: false
          - package: only-web
            when: "'web' in group_names"
    """)
    admins = [{"name": "ann", "active": True}, {"name": "bob", "active": False},
              {"name": "cy", "active": True, "shell": "/bin/zsh"}]
    cat = compile_one(site, admins=admins)
    assert [r.id for r in cat.resources] == ["user:ann", "user:cy", "package:vim-tiny", "package:curl",
                                             "package:only-web"]
    assert cat.resources[1].params["shell"] == "/bin/zsh"
    assert "package:only-web" not in [r.id for r in compile_one(site, "db1", admins=admins).resources]


def test_loop_must_be_a_list(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: "{{ item }}"
            loop: "{{ pkgs }}"
    """)
    e = fails(site, pkgs="curl")
    assert str(e.location) == f"{tmp_path}/m/{RES}:3" and "loop must be a list" in e.message


def test_when_with_braces_is_explained(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: curl
            when: "{{ x }}"
    """)
    e = fails(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:3" and "without {{ }}" in e.message


def test_when_undefined_variable(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: curl
          - package: vim
            when: install_vim
    """)
    e = fails(site)
    assert isinstance(e, TemplateError)
    assert str(e.location) == f"{tmp_path}/m/{RES}:4" and "'install_vim' is undefined" in e.message


def test_loop_var_must_be_a_name(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: x
            loop: [a]
            loop_var: "not a name"
    """)
    assert str(fails(site).location) == f"{tmp_path}/m/{RES}:4"
    site = site_with(tmp_path / "b", """
        resources:
          - package: x
            loop: [a]
            loop_var: facts
    """)
    e = fails(site)
    assert str(e.location) == f"{tmp_path}/b/m/{RES}:4" and "hide" in e.message


# ---- validation, claims, relations


def test_validation_error_at_the_parameter_line(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: nginx
            ensure: "{{ state }}"
    """)
    e = fails(site, state="installed")
    assert str(e.location) == f"{tmp_path}/m/{RES}:3" and "ensure must be one of" in e.message


def test_duplicate_resource_names_both_places(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: nginx
          - package: curl
          - package: "{{ 'nginx' }}"
    """)
    e = fails(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:4"
    assert f"also declared at {tmp_path}/m/{RES}:2" in e.message


def test_two_resources_claiming_the_same_thing(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - line: a
            path: /etc/ssh/sshd_config
            text: PermitRootLogin no
            match: ^PermitRootLogin
          - line: b
            path: /etc/ssh/sshd_config
            text: PermitRootLogin yes
            match: ^PermitRootLogin
    """)
    e = fails(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:6"
    assert f"line:b and line:a (at {tmp_path}/m/{RES}:2) both manage line:/etc/ssh/sshd_config:^PermitRootLogin" \
        == e.message


def test_unknown_relation_did_you_mean(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: nginx
          - service: nginx
            require:
              - package:ngnix
    """)
    e = fails(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:4"
    assert "no resource 'package:ngnix'" in e.message and "did you mean 'package:nginx'" in str(e)


def test_relation_must_be_an_id(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: nginx
          - service: nginx
            notify: nginx
    """)
    e = fails(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:4" and "not a resource id" in e.message


def test_relations_order_and_autorequire(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - service: nginx
            subscribe: [file:/etc/nginx/nginx.conf]
          - file: /etc/nginx/nginx.conf
            content: x
            owner: www
            require: package:nginx
          - user: www
          - directory: /etc/nginx
          - package: nginx
    """)
    cat = compile_one(site)
    assert [r.id for r in cat.resources] == [
        "user:www", "directory:/etc/nginx", "package:nginx", "file:/etc/nginx/nginx.conf", "service:nginx"]
    conf = cat.by_id()["file:/etc/nginx/nginx.conf"]
    assert conf.require == ["package:nginx", "directory:/etc/nginx", "user:www"]


def test_autorequire_never_makes_a_cycle(tmp_path: Path) -> None:
    # the manifest orders the file before its directory on purpose: autorequire gives way
    site = site_with(tmp_path, """
        resources:
          - directory: /srv/app
            require: [file:/srv/app/marker]
          - file: /srv/app/marker
            content: x
    """)
    cat = compile_one(site)
    assert [r.id for r in cat.resources] == ["file:/srv/app/marker", "directory:/srv/app"]
    assert cat.by_id()["file:/srv/app/marker"].require == []


def test_cycle_in_a_manifest(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: a
            require: [package:b]
          - package: b
            require: [package:a]
    """)
    e = fails(site)
    assert e.message == (f"dependency cycle: package:a ({tmp_path}/m/{RES}:2) -> package:b ({tmp_path}/m/{RES}:4)"
                         f" -> package:a ({tmp_path}/m/{RES}:2)")


def test_watch_paths_rendered_and_checked(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        watch:
          - /etc/ssh
          - "/etc/{{ app }}"
          - /etc/ssh/
        resources: []
    """)
    assert compile_one(site, app="nginx").watch == ["/etc/ssh", "/etc/nginx"]
    e = fails(site, app="../x")
    assert str(e.location) == f"{tmp_path}/m/{RES}:3" and "watch" in e.message


# ---- secrets


def test_secrets_collected_from_variables_and_secrets_list(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        secrets: [api_token, nested]
        resources:
          - file: /etc/app.env
            content: "DB={{ db_password }} TOKEN={{ api_token }}"
          - file: /etc/public
            content: "hello"
          - user: app
            password: !secret "$6$literal"
    """)
    cat = compile_one(site, db_password=Secret("hunter2"), api_token="tok-123",
                      nested={"a": ["x1", 5]}, unused=Secret("unused-secret"))
    assert {"hunter2", "tok-123", "x1", "5", "unused-secret", "$6$literal"} <= cat.secrets
    by_id = cat.by_id()
    assert by_id["file:/etc/app.env"].sensitive  # a secret value inside: never shown
    assert by_id["user:app"].sensitive and not by_id["file:/etc/public"].sensitive
    assert isinstance(by_id["user:app"].params["password"], Secret)


def test_single_expression_keeps_the_secret_type(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - user: app
            password: "{{ pw }}"
    """)
    assert isinstance(compile_one(site, pw=Secret("s3cret")).resources[0].params["password"], Secret)


# ---- digest


def test_digest_is_stable_and_follows_the_input(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - file: /etc/motd
            content: "{{ banner }}"
          - package: curl
    """)
    first = compile_one(site, banner="hi").digest
    assert len(first) == 64
    assert compile_one(site, banner="hi").digest == first
    again = load_site(tmp_path / "m", types=TYPES)  # reloaded from disk: same digest
    assert compile_one(again, banner="hi").digest == first
    assert compile_one(site, banner="hello").digest != first
    assert compile_one(site, "web2", banner="hi").digest != first  # another host


def test_digest_of_every_kind_of_value_is_pinned() -> None:
    """Reports and saved plans keep catalog digests: the canonical form must not move between versions
    (this value was computed before canonical() took its shortcuts for plain types)."""
    import types

    from driftctl.manifest.canonical import digest
    from driftctl.model import Catalog, Resource

    class Odd:
        def __repr__(self) -> str:
            return "Odd()"

    params = {
        "s": "text", "i": 3, "f": 1.5, "b": True, "n": None, "secret": Secret("s3cret"),
        "nested": {1: "int key", "k": [1, (2, 3), {"x": b"raw"}]}, "tuple": ("a", 1),
        "set": {"b", "a"}, "frozen": frozenset({3, 1}), "bytes": b"\x00\xff",
        "proxy": types.MappingProxyType({"p": 1}), "obj": Odd(), "list_of_secrets": [Secret("a"), "b"],
    }
    cat = Catalog("web1", [Resource("file", "/etc/x", params, None, require=["package:a"])],  # type: ignore[arg-type]
                  watch=["/etc"])
    assert digest(cat) == "a00624f518fe1eacd9abce2980e17d42458919e970934b6fc2e0a688d12462b9"


def test_digest_ignores_where_a_resource_is_written(tmp_path: Path) -> None:
    a = site_with(tmp_path / "a", "resources:\n  - package: curl\n")
    b = site_with(tmp_path / "b", "\n\n# a comment\nresources:\n\n  - package: curl\n")
    assert compile_one(a).digest == compile_one(b).digest


# ---- facts and preflight


FACT_SITE = """
    resources:
      - package: "{{ 'apache2' if facts.distribution == 'debian' else 'httpd' }}"
      - file: /etc/os-banner
        content: "{{ facts.distribution_pretty }}"
        mode: "{{ mode }}"
      - service: ssh
        require: [package:openssh-server]
      - package: openssh-server
      - package: rh-only
        when: facts.distribution == 'rhel'
      - file: "{{ facts.home }}/x"
        content: x
      - file: /etc/template.conf
        template: t.j2
"""


def fact_site(tmp_path: Path) -> Any:
    template = "{% if facts.init == 'systemd' %}{{ nope }}{% endif %}\n"
    return site_with(tmp_path, FACT_SITE, **{"roles/r/templates/t.j2": template})


def test_preflight_uses_placeholders_and_flags_the_catalog(tmp_path: Path) -> None:
    site = fact_site(tmp_path)
    cat = compile_one(site, facts=None, mode="0644")
    assert cat.uses_facts
    ids = [r.id for r in cat.resources]
    assert "package:openssh-server" in ids and "package:rh-only" in ids  # kept: may exist


def test_preflight_still_checks_what_does_not_depend_on_facts(tmp_path: Path) -> None:
    site = fact_site(tmp_path)
    e = fails(site, facts=None, mode="644x")
    assert str(e.location) == f"{tmp_path}/m/{RES}:5" and "mode" in e.message


def test_real_facts_render_and_report_the_hosts_errors(tmp_path: Path) -> None:
    site = fact_site(tmp_path)
    e = fails(site, facts={**FACTS, "distribution_pretty": "Debian 12", "home": "/root"}, mode="0644")
    assert str(e.location) == f"{tmp_path}/m/roles/r/templates/t.j2:1" and "'nope' is undefined" in e.message
    cat = compile_one(site, facts={**FACTS, "init": "sysv", "distribution_pretty": "Debian 12", "home": "/root"},
                      mode="0644")
    ids = [r.id for r in cat.resources]
    assert ids[:2] == ["package:apache2", "file:/etc/os-banner"] and "package:rh-only" not in ids
    assert "file:/root/x" in ids and cat.uses_facts
    assert cat.by_id()["file:/etc/os-banner"].params["content"] == "Debian 12"


def test_catalog_without_facts_does_not_use_them(tmp_path: Path) -> None:
    site = site_with(tmp_path, "resources:\n  - package: curl\n")
    assert not compile_one(site, facts=None).uses_facts
    assert not compile_one(site).uses_facts


def test_preflight_collects_errors_over_hosts(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: "{{ pkg }}"
          - file: /etc/port
            content: "{{ port }}"
    """)
    inv = make_inventory({"a": (["web"], {"pkg": "x", "port": 1}), "b": (["web"], {"pkg": "y"}),
                         "c": (["web"], {"pkg": "z"}), "d": (["db"], {"port": 2})})
    with pytest.raises(ManifestError) as info:
        preflight(site, inv, list(inv.hosts.values()), types=TYPES)
    text = str(info.value)
    assert text.startswith("2 errors in the manifests:")
    assert f"{tmp_path}/m/{RES}:4: content: 'port' is undefined [hosts: b, c]" in text
    assert f"{tmp_path}/m/{RES}:2: name: 'pkg' is undefined [hosts: d]" in text
    good = make_inventory({"a": (["web"], {"pkg": "x", "port": 1})})
    catalogs = preflight(site, good, list(good.hosts.values()), types=TYPES)
    assert list(catalogs) == ["a"] and [r.id for r in catalogs["a"].resources] == ["package:x", "file:/etc/port"]


def test_preflight_single_error_is_raised_as_is(tmp_path: Path) -> None:
    site = site_with(tmp_path, "resources:\n  - package: \"{{ pkg }}\"\n")
    inv = make_inventory({"a": (["web"], {}), "b": (["web"], {})})
    with pytest.raises(TemplateError) as info:
        preflight(site, inv, list(inv.hosts.values()), types=TYPES)
    assert str(info.value.location) == f"{tmp_path}/m/{RES}:2"


def test_bad_site_pattern_is_an_error_at_its_line(tmp_path: Path) -> None:
    site = site_with(tmp_path, "resources: []\n", site="- hosts: all\n  roles: [r]\n- hosts: \"~web(\"\n  roles: [r]\n")
    e = fails(site)
    assert str(e.location) == f"{tmp_path}/m/site.yaml:3" and "regular expression" in e.message


def test_exclusion_of_a_group_this_inventory_lacks(tmp_path: Path) -> None:
    site = site_with(tmp_path, "resources:\n  - package: curl\n", site="- hosts: all:!bastion\n  roles: [r]\n")
    assert [r.id for r in compile_one(site, "db1").resources] == ["package:curl"]


def test_preflight_accepts_one_resource_per_distribution(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: web-server
            when: facts.distribution == 'debian'
          - package: web-server
            when: facts.distribution == 'fedora'
            ensure: latest
          - service: web
            require: [package:web-server]
    """)
    assert [r.id for r in compile_one(site, facts=None).resources] == ["package:web-server", "service:web"]
    debian = compile_one(site)
    assert [r.id for r in debian.resources] == ["package:web-server", "service:web"]
    assert debian.resources[0].params["ensure"] == "present"
    fedora = compile_one(site, facts={"distribution": "fedora"})
    assert fedora.resources[0].params["ensure"] == "latest"


def test_preflight_with_a_loop_over_facts(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - directory: "/srv/{{ item }}"
            loop: "{{ facts.mounts }}"
          - directory: "/data/{{ item }}"
            loop: "{{ facts.mounts }}"
            mode: "0750"
          - file: /etc/mounts.txt
            content: "{{ facts.mounts | join(' ') }}"
            require: [directory:/srv/a]
    """)
    cat = compile_one(site, facts=None)
    assert cat.uses_facts and len(cat.resources) == 3
    real = compile_one(site, facts={"mounts": ["a", "b"]})
    assert [r.id for r in real.resources] == ["directory:/srv/a", "directory:/srv/b", "directory:/data/a",
                                              "directory:/data/b", "file:/etc/mounts.txt"]
    e = fails(site, facts={"mounts": ["b"]})
    assert "no resource 'directory:/srv/a'" in e.message


def test_duplicates_under_real_facts_are_errors(tmp_path: Path) -> None:
    site = site_with(tmp_path, """
        resources:
          - package: web-server
            when: facts.distribution == 'debian'
          - package: web-server
            when: facts.init == 'systemd'
    """)
    compile_one(site, facts=None)
    e = fails(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:4" and "duplicate resource package:web-server" in e.message


def test_preflight_keeps_a_resource_whose_checks_need_facts(tmp_path: Path) -> None:
    from typing import ClassVar

    from driftctl.errors import Location
    from driftctl.resources.base import Param, ResourceType

    class Listen(ResourceType):
        name = "listen"
        namevar = "name"
        params: ClassVar[dict[str, Param]] = {"name": Param(str, "name"), "port": Param(int, "port")}

        @classmethod
        def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
            if params["port"] < 1024:  # a TypeError on the preflight's None
                raise ManifestError("listen: port must be 1024 or more", location)
            return params

    types = {**TYPES, "listen": Listen}
    root = write_tree(tmp_path / "m", {"site.yaml": "- hosts: all\n  roles: [r]\n", RES: """
        resources:
          - listen: app
            port: "{{ facts.cpus * 1000 }}"
          - service: app
            require: [listen:app]
    """})
    site = load_site(root, types=types)
    inv = inventory()
    pre = compile_catalog(site, inv, inv.hosts["web1"], None, types=types)
    assert [r.id for r in pre.resources] == ["listen:app", "service:app"]
    assert compile_catalog(site, inv, inv.hosts["web1"], {"cpus": 4}, types=types).resources[0].params["port"] == 4000
    with pytest.raises(ManifestError) as info:
        compile_catalog(site, inv, inv.hosts["web1"], {"cpus": 1}, types=types)
    assert str(info.value.location) == f"{tmp_path}/m/{RES}:2" and "1024" in info.value.message


# ---- ids that would carry a secret; resources that would undo each other (issue 8 §2, §6)


def real_site(tmp_path: Path, resources: str, **files: str) -> Any:
    """A site with the real resource types (exec, line, block, cron... are not among the test doubles)."""
    from driftctl.resources.base import all_types

    root = write_tree(tmp_path / "m", {"site.yaml": "- hosts: all\n  roles: [r]\n", RES: resources, **files})
    return load_site(root, types=all_types())


def compile_real(site: Any, facts: dict[str, Any] | None = FACTS, host: str = "web1", **inv_vars: Any) -> Catalog:
    from driftctl.resources.base import all_types

    inv = inventory(**inv_vars)
    return compile_catalog(site, inv, inv.hosts[host], facts, types=all_types())


def fails_real(site: Any, facts: dict[str, Any] | None = FACTS, **inv_vars: Any) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        compile_real(site, facts, **inv_vars)
    return info.value


SECRET_EXEC = """
    resources:
      - exec: "/usr/bin/curl -H 'Authorization: {{ token }}' https://example.invalid/hook"
        unless: "/usr/bin/test -e /var/tmp/{{ token }}"
      - exec: notify-hook
        command: "/usr/bin/curl -H 'Authorization: {{ token }}' https://example.invalid/hook"
      - line: "token-{{ token }}"
        path: /etc/app.env
        text: "TOKEN={{ token }}"
      - package: curl
"""


def test_a_title_holding_a_secret_becomes_a_hash(tmp_path: Path) -> None:
    site = real_site(tmp_path, SECRET_EXEC)
    cat = compile_real(site, token=Secret("tok-8f2e61d0"))
    ids = [r.id for r in cat.resources]
    hashed = [i for i in ids if ":secret-" in i]
    assert len(hashed) == 2 and hashed[0].startswith("exec:secret-") and hashed[1].startswith("line:secret-")
    assert all(len(i.partition(":secret-")[2]) == 12 for i in hashed)
    # an explicit name wins: the command holds the secret, the id does not need to
    assert "exec:notify-hook" in ids and "package:curl" in ids
    assert not any("tok-8f2e61d0" in i for i in ids)
    by_id = cat.by_id()
    # the resource still does what was written: only its shown title changed
    assert "Authorization: tok-8f2e61d0" in by_id[hashed[0]].params["command"]
    assert by_id[hashed[0]].sensitive


def test_secret_ids_are_stable_and_follow_the_secret(tmp_path: Path) -> None:
    site = real_site(tmp_path, SECRET_EXEC)
    first = [r.id for r in compile_real(site, token=Secret("tok-8f2e61d0")).resources]
    again = load_site(tmp_path / "m", types=site_types())  # another run: the site read again
    assert [r.id for r in compile_real(again, token=Secret("tok-8f2e61d0")).resources] == first
    assert [r.id for r in compile_real(site, host="web2", token=Secret("tok-8f2e61d0")).resources] == first
    other = [r.id for r in compile_real(site, token=Secret("tok-other-77")).resources]
    assert [i for i in other if ":secret-" not in i] == [i for i in first if ":secret-" not in i]
    assert {i for i in other if ":secret-" in i}.isdisjoint(i for i in first if ":secret-" in i)


def test_a_secret_from_a_secrets_list_or_another_file_hides_the_title_too(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {
        "site.yaml": "- hosts: all\n  roles: [r]\n  manifests: [later.yaml]\n",
        RES: """
            resources:
              - exec: "/usr/bin/env KEY={{ api_key }} /bin/true"
              - exec: "/usr/bin/env X={{ later_literal }} /bin/true"
        """,
        "later.yaml": """
            secrets: [api_key]
            resources:
              - file: /etc/later
                content: !secret "lit-3c1d9e"
        """})
    from driftctl.resources.base import all_types

    site = load_site(root, types=all_types())
    ids = [r.id for r in compile_real(site, api_key="plain-but-listed-42", later_literal="lit-3c1d9e").resources]
    # api_key is named in another file's secrets: list; the literal !secret is declared in another file
    assert [i.partition(":")[2].startswith("secret-") for i in ids] == [True, True, False]


def test_a_relation_by_a_secret_title_is_an_error_without_the_secret(tmp_path: Path) -> None:
    site = real_site(tmp_path, """
        resources:
          - exec: "/usr/bin/touch /var/tmp/{{ token }}"
          - service: cron
            subscribe:
              - "exec:/usr/bin/touch /var/tmp/{{ token }}"
    """)
    e = fails_real(site, token=Secret("tok-8f2e61d0"))
    assert str(e.location) == f"{tmp_path}/m/{RES}:4"
    assert "names a resource by a title that holds a secret" in e.message and "name of its own" in str(e)
    assert "tok-8f2e61d0" not in str(e) and "tok-8f2e61d0" not in repr(e.args)


def test_a_relation_to_an_explicitly_named_secret_exec_works(tmp_path: Path) -> None:
    site = real_site(tmp_path, """
        resources:
          - service: cron
            subscribe: [exec:touch-token]
          - exec: touch-token
            command: "/usr/bin/touch /var/tmp/{{ token }}"
    """)
    cat = compile_real(site, token=Secret("tok-8f2e61d0"))
    assert [r.id for r in cat.resources] == ["exec:touch-token", "service:cron"]
    assert cat.by_id()["service:cron"].subscribe == ["exec:touch-token"]


def test_autorequire_follows_a_hashed_id(tmp_path: Path) -> None:
    site = real_site(tmp_path, """
        resources:
          - file: /etc/x
            content: x
            owner: "{{ account }}"
          - user: "{{ account }}"
    """)
    cat = compile_real(site, account=Secret("svc7f3a"))
    user = cat.resources[0]
    assert user.id.startswith("user:secret-") and cat.resources[1].require == [user.id]


def test_errors_quoting_a_rendered_secret_are_redacted(tmp_path: Path) -> None:
    claims = real_site(tmp_path / "a", """
        resources:
          - line: a
            path: /etc/app.env
            text: "TOKEN={{ token }}"
          - line: b
            path: /etc/app.env
            text: "TOKEN={{ token }}"
    """)
    choice = real_site(tmp_path / "b", """
        resources:
          - package: curl
            ensure: "{{ token }}x!"
    """)
    for site, what in ((claims, "both manage"), (choice, "ensure must be")):
        e = fails_real(site, token=Secret("tok-8f2e61d0"))
        assert what in e.message and "tok-8f2e61d0" not in str(e) and "********" in str(e)
        assert "tok-8f2e61d0" not in repr(e.args)


CONTENT_AND_EDIT = """
    resources:
      - file: /etc/x.conf
        {how}
      - {kind}: edit-x
        path: /etc/x.conf
        {edit}
"""


@pytest.mark.parametrize("how", ["content: \"a=1\\n\"", "template: x.j2", "source: x.txt"])
@pytest.mark.parametrize("kind,edit", [("line", "text: b=2"), ("block", "content: b=2")])
def test_whole_content_and_an_edit_of_one_file_conflict(tmp_path: Path, how: str, kind: str, edit: str) -> None:
    site = real_site(tmp_path, CONTENT_AND_EDIT.format(how=how, kind=kind, edit=edit),
                     **{"roles/r/templates/x.j2": "a=1\n", "roles/r/files/x.txt": "a=1\n"})
    e = fails_real(site)
    assert str(e.location) == f"{tmp_path}/m/{RES}:4"
    assert e.message == (f"file:/etc/x.conf at {tmp_path}/m/{RES}:2 manages the whole content of /etc/x.conf, "
                         f"{kind}:edit-x at {tmp_path}/m/{RES}:4 edits it: they would undo each other on every apply")
    # found before any connection, whatever the facts
    with pytest.raises(ManifestError, match="undo each other"):
        preflight(site, inventory(), list(inventory().hosts.values()), types=site_types())


def site_types() -> Any:
    from driftctl.resources.base import all_types

    return all_types()


def test_a_cron_file_or_a_sysctl_file_with_content_conflicts_too(tmp_path: Path) -> None:
    site = real_site(tmp_path, """
        resources:
          - sysctl: vm.swappiness
            value: "10"
            file: /etc/sysctl.d/90-app.conf
          - file: /etc/sysctl.d/90-app.conf
            content: "vm.swappiness = 10\\n"
    """)
    e = fails_real(site)
    assert e.message.startswith(f"file:/etc/sysctl.d/90-app.conf at {tmp_path}/m/{RES}:5 manages the whole content")
    assert "sysctl:vm.swappiness at" in e.message and str(e.location) == f"{tmp_path}/m/{RES}:2"


def test_edits_that_do_not_conflict(tmp_path: Path) -> None:
    site = real_site(tmp_path, """
        resources:
          - file: /etc/x.conf
            owner: root
            mode: "0644"
          - line: one
            path: /etc/x.conf
            text: a=1
          - line: two
            path: /etc/x.conf
            text: b=2
          - block: three
            path: /etc/x.conf
            content: c=3
          - file: /etc/other.conf
            content: "whole\\n"
    """)
    ids = [r.id for r in compile_real(site).resources]
    assert set(ids) == {"file:/etc/x.conf", "line:one", "line:two", "block:three", "file:/etc/other.conf"}


def test_content_conflict_with_a_path_from_facts_waits_for_the_facts(tmp_path: Path) -> None:
    site = real_site(tmp_path, """
        resources:
          - file: /etc/x.conf
            content: "a=1\\n"
          - line: edit-x
            path: "{{ facts.conf }}"
            text: b=2
    """)
    pre = compile_real(site, facts=None)
    assert "line:edit-x" in [r.id for r in pre.resources]
    assert compile_real(site, facts={**FACTS, "conf": "/etc/y.conf"})
    e = fails_real(site, facts={**FACTS, "conf": "/etc/x.conf"})
    assert "undo each other" in e.message
