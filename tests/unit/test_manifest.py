"""load_site: the structure of a manifest tree, and every host-independent mistake at its file:line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_manifest_support import TYPES, write_tree

from driftctl.errors import ManifestError
from driftctl.manifest import load_site

GOOD = {
    "site.yaml": """
        - hosts: all
          roles: [base]
        - hosts: web
          roles: [web, base]
          manifests: [extra/tuning.yaml]
    """,
    "roles/base/defaults.yaml": """
        motd: hello
    """,
    "roles/base/resources.yaml": """
        vars:
          banner: managed
        secrets: [db_password]
        watch:
          - /etc/ssh
        resources:
          - file: /etc/motd
            template: motd.j2
          - package: curl
    """,
    "roles/base/templates/motd.j2": "{{ motd }}\n",
    "roles/web/resources.yaml": """
        resources:
          - package: nginx
    """,
    "extra/tuning.yaml": """
        resources:
          - file: /etc/tuning
            source: tuning.conf
    """,
    "files/tuning.conf": "x=1\n",
}


def load(tmp_path: Path, files: dict[str, str | bytes], **overrides: str | bytes) -> object:
    root = write_tree(tmp_path / "m", {**files, **overrides})
    return load_site(root, types=TYPES)


def error(tmp_path: Path, files: dict[str, str | bytes], **overrides: str | bytes) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(tmp_path, files, **overrides)
    return info.value


def test_loads_entries_roles_and_files_once(tmp_path: Path) -> None:
    site = load_site(write_tree(tmp_path / "m", GOOD), types=TYPES)
    assert [e.hosts for e in site.entries] == ["all", "web"]
    assert [mf.role for mf in site.entries[1].files] == ["web", "base", None]
    assert site.entries[0].files[0] is site.entries[1].files[1]  # the base role is loaded once
    base = site.roles["base"]
    assert base.defaults == {"motd": "hello"}
    assert base.manifest.vars == {"banner": "managed"}
    assert base.manifest.secrets == ["db_password"]
    assert base.manifest.watch == ["/etc/ssh"]
    assert [(d.type, d.title) for d in base.manifest.resources] == [("file", "/etc/motd"), ("package", "curl")]
    assert str(base.manifest.resources[1].location) == f"{tmp_path}/m/roles/base/resources.yaml:9"
    assert len(site.files) == 3


def test_unknown_site_key_did_you_mean(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"site.yaml": """
        - hosts: all
          role: [base]
    """})
    assert str(e.location) == f"{tmp_path}/m/site.yaml:2"
    assert "unknown key 'role'" in e.message and "did you mean 'roles'" in str(e)


def test_site_entry_without_hosts(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"site.yaml": """
        - hosts: all
          roles: [base]
        - roles: [web]
    """})
    assert str(e.location) == f"{tmp_path}/m/site.yaml:3"
    assert "'hosts'" in e.message


def test_empty_site_file(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"site.yaml": ""})
    assert str(e.location) == f"{tmp_path}/m/site.yaml:1" and "empty" in e.message


def test_missing_site_file(tmp_path: Path) -> None:
    files = {k: v for k, v in GOOD.items() if k != "site.yaml"}
    e = error(tmp_path, files)
    assert str(e.location) == f"{tmp_path}/m/site.yaml" and "not found" in e.message


def test_unknown_role_did_you_mean(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"site.yaml": """
        - hosts: all
          roles:
            - base
            - wbe
    """})
    assert str(e.location) == f"{tmp_path}/m/site.yaml:4"
    assert "no role 'wbe'" in e.message and "did you mean 'web'" in str(e)


def test_role_outside_the_tree_through_a_symlink(tmp_path: Path) -> None:
    outside = write_tree(tmp_path / "elsewhere", {"resources.yaml": "resources: []\n"})
    root = write_tree(tmp_path / "m", GOOD)
    os.symlink(outside, root / "roles" / "evil")
    (root / "site.yaml").write_text("- hosts: all\n  roles: [evil]\n")
    with pytest.raises(ManifestError) as info:
        load_site(root, types=TYPES)
    assert str(info.value.location) == f"{root}/site.yaml:2"
    assert "outside the manifest tree" in info.value.message


def test_missing_manifest_file(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"site.yaml": """
        - hosts: all
          manifests: [extra/tunning.yaml]
    """})
    assert str(e.location) == f"{tmp_path}/m/site.yaml:2"
    assert "not found" in e.message and "did you mean 'extra/tuning.yaml'" in str(e)


def test_manifest_file_escaping_the_tree(tmp_path: Path) -> None:
    write_tree(tmp_path, {"outside.yaml": "resources: []\n"})
    e = error(tmp_path, GOOD, **{"site.yaml": """
        - hosts: all
          manifests: [../outside.yaml]
    """})
    assert str(e.location) == f"{tmp_path}/m/site.yaml:2"
    assert "outside the manifest tree" in e.message


def test_bad_yaml_in_a_role_names_its_line(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        resources:
          - package: nginx
            ensure: [present
          - package: curl
    """})
    assert e.location is not None and e.location.file == f"{tmp_path}/m/roles/web/resources.yaml"
    assert e.location.line == 4 and "invalid YAML" in e.message


def test_duplicate_key_in_a_resource(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        resources:
          - package: nginx
            ensure: present
            ensure: absent
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/web/resources.yaml:4"
    assert "duplicate key 'ensure' (first defined at line 3)" in e.message


def test_unknown_manifest_key_did_you_mean(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        vars: {}
        resource:
          - package: nginx
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/web/resources.yaml:2"
    assert "did you mean 'resources'" in str(e)


def test_a_manifest_file_that_is_a_bare_list(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        - package: nginx
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/web/resources.yaml:1"
    assert "resources:" in str(e)


def test_vars_must_be_a_mapping(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        vars:
          - a
        resources: []
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/web/resources.yaml:1" and "mapping" in e.message


def test_bad_variable_name_in_defaults(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/base/defaults.yaml": """
        motd: hello
        bad-name: 1
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/base/defaults.yaml:2" and "variable name" in e.message


def test_unknown_resource_type_did_you_mean(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        resources:
          - package: nginx
          - pakage: curl
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/web/resources.yaml:3"
    assert "unknown resource type 'pakage'" in e.message and "did you mean 'package'" in str(e)


def test_meta_parameter_first_is_explained(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        resources:
          - require: [package:curl]
            package: nginx
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/web/resources.yaml:2"
    assert "first key of a resource is its type" in str(e)


def test_unknown_parameter_did_you_mean(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        resources:
          - package: nginx
            ensure: present
            notfy: [service:nginx]
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/web/resources.yaml:4"
    assert "unknown parameter 'notfy'" in e.message and "did you mean 'notify'" in str(e)


def test_title_given_twice(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        resources:
          - package: nginx
            name: apache2
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/web/resources.yaml:3" and "title" in e.message


def test_missing_title(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        resources:
          - package:
            ensure: present
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/web/resources.yaml:2" and "title is missing" in e.message


def test_template_path_escaping_the_tree(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        resources:
          - file: /etc/passwd-copy
            template: ../../../../etc/passwd
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/web/resources.yaml:3"
    assert "outside the manifest tree" in e.message


def test_absolute_source_path_is_outside_the_tree(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        resources:
          - file: /etc/x
            source: /etc/hostname
    """})
    assert str(e.location) == f"{tmp_path}/m/roles/web/resources.yaml:3"
    assert "outside the manifest tree" in e.message


def test_template_escaping_through_a_symlink(tmp_path: Path) -> None:
    secret = write_tree(tmp_path / "private", {"key": "do not read\n"}) / "key"
    root = write_tree(tmp_path / "m", {**GOOD, "roles/web/resources.yaml": """
        resources:
          - file: /etc/x
            template: innocent.j2
    """})
    (root / "roles/web/templates").mkdir(parents=True)
    os.symlink(secret, root / "roles/web/templates/innocent.j2")
    with pytest.raises(ManifestError) as info:
        load_site(root, types=TYPES)
    assert str(info.value.location) == f"{root}/roles/web/resources.yaml:3"
    assert "outside the manifest tree" in info.value.message


def test_a_symlink_inside_the_tree_is_fine(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", GOOD)
    (root / "roles/web/templates").mkdir(parents=True)
    os.symlink(root / "roles/base/templates/motd.j2", root / "roles/web/templates/shared.j2")
    (root / "roles/web/resources.yaml").write_text("resources:\n  - file: /etc/x\n    template: shared.j2\n")
    site = load_site(root, types=TYPES)
    assert site.roles["web"].manifest.resources[0].body["template"] == "shared.j2"
    from test_manifest_support import inventory

    from driftctl.manifest import compile_catalog

    inv = inventory(motd="hi")
    assert compile_catalog(site, inv, inv.hosts["web1"], {}, types=TYPES).by_id()["file:/etc/x"].params["content"] \
        == "hi\n"


def test_missing_source_did_you_mean(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD, **{"extra/tuning.yaml": """
        resources:
          - file: /etc/tuning
            source: tunning.conf
    """})
    assert str(e.location) == f"{tmp_path}/m/extra/tuning.yaml:3"
    assert "not found" in e.message and "did you mean 'tuning.conf'" in str(e)


def test_a_templated_path_is_checked_at_compile_time_not_load(tmp_path: Path) -> None:
    site = load(tmp_path, GOOD, **{"roles/web/resources.yaml": """
        resources:
          - file: /etc/x
            template: "{{ name }}.j2"
    """})
    assert site.roles["web"].manifest.resources[0].body["template"] == "{{ name }}.j2"  # type: ignore[attr-defined]


def test_role_without_resources_yaml(tmp_path: Path) -> None:
    files = {k: v for k, v in GOOD.items() if k != "roles/web/resources.yaml"}
    files["roles/web/defaults.yaml"] = "a: 1\n"
    e = error(tmp_path, files)
    assert str(e.location) == f"{tmp_path}/m/site.yaml:4"
    assert f"role 'web' has no {tmp_path}/m/roles/web/resources.yaml" in e.message
