"""Every mistake of a run at once, each at its file:line, as a compiler reports them (up to a cap)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_manifest_support import TYPES, inventory, write_tree

from driftctl.errors import ManifestError
from driftctl.manifest import load_site, preflight
from driftctl.manifest.compile import MAX_ERRORS

WRITING_MISTAKES = """
resources:
  - file: /etc/a
    mdoe: "0644"
  - fiel: /etc/b
  - file: /etc/c
    content: ok
    tags: [x]
    notfiy: [service:x]
"""

VALUE_MISTAKES = """
resources:
  - file: /etc/a
    mode: "{{ no_such_var }}"
  - file: /etc/b
    content: "{{ motd | no_such_filter }}"
  - file: /etc/c
    mode: "not a mode"
  - file: /etc/fine
    content: ok
"""


def errors_of(tmp_path: Path, resources: str) -> str:
    root = write_tree(tmp_path / "m", {"site.yaml": "- hosts: all\n  roles: [r]\n",
                                       "roles/r/resources.yaml": resources})
    inv = inventory(motd="hi")
    with pytest.raises(ManifestError) as e:
        preflight(load_site(root, types=TYPES), inv, inv.select(None), TYPES)
    return str(e.value).replace(f"{root}/roles/r/resources.yaml", "R")


def test_every_mistake_in_how_resources_are_written_comes_at_once(tmp_path: Path) -> None:
    text = errors_of(tmp_path, WRITING_MISTAKES)
    assert text.startswith("3 errors in the manifests:"), text
    assert "R:3: file: unknown parameter 'mdoe'" in text
    assert "R:4: unknown resource type 'fiel'" in text
    assert "R:8: file: unknown parameter 'notfiy'" in text


def test_every_mistake_in_values_comes_at_once(tmp_path: Path) -> None:
    text = errors_of(tmp_path, VALUE_MISTAKES)
    assert text.startswith("3 errors in the manifests:"), text
    assert "R:3: mode: 'no_such_var' is undefined" in text
    assert "R:5: " in text and "no_such_filter" in text
    assert "R:7: " in text and "not a mode" in text
    assert "[hosts: web1, web2, db1]" in text  # the same mistake on every host: listed once


def test_past_the_cap_the_rest_are_counted(tmp_path: Path) -> None:
    many = "resources:\n" + "".join(f"  - file: /etc/f{i}\n    mdoe: '0644'\n" for i in range(MAX_ERRORS + 5))
    root = write_tree(tmp_path / "m", {"site.yaml": "- hosts: all\n  roles: [r]\n", "roles/r/resources.yaml": many})
    inv = inventory()
    with pytest.raises(ManifestError) as e:
        preflight(load_site(root, types=TYPES), inv, inv.select(None), TYPES)
    text = str(e.value)
    assert text.count("mdoe") == MAX_ERRORS and "and 5 more" in text, text
