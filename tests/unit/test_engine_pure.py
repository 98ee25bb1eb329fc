"""Pure parts of the engine: what a directory's purge keeps, edges, masking of sensitive values."""

from __future__ import annotations

import pytest

from driftctl.engine import Planned, managed_below, mask_change, observed_view
from driftctl.errors import Location, ManifestError
from driftctl.model import Change, Resource
from driftctl.resources import get_type

LOC = Location("m.yaml", 1)


def resource(type_: str, title: str, **params: object) -> Resource:
    rtype = get_type(type_)
    assert rtype is not None
    validated = rtype.validate({rtype.namevar: title, **params}, LOC)
    return Resource(type_, title, validated, LOC)


def test_purge_keeps_files_that_cron_and_sysctl_write() -> None:
    catalog = [
        resource("directory", "/etc/cron.d", purge=True),
        resource("cron", "backup", file="driftctl-backup", command="true"),
        resource("directory", "/etc/sysctl.d", purge=True),
        resource("sysctl", "net.ipv4.ip_forward", value="1"),
        resource("file", "/etc/cron.d/other", content="x"),
    ]
    assert managed_below("/etc/cron.d", catalog) == ["/etc/cron.d/driftctl-backup", "/etc/cron.d/other"]
    assert managed_below("/etc/sysctl.d", catalog) == ["/etc/sysctl.d/99-driftctl.conf"]


def test_a_required_parameter_written_as_null_is_an_error() -> None:
    rtype = get_type("line")
    assert rtype is not None
    with pytest.raises(ManifestError, match="'path' is required"):
        rtype.validate({"name": "x", "path": None, "text": "a"}, LOC)


def test_sensitive_values_are_hashes_but_metadata_is_shown() -> None:
    r = resource("block", "secret-block", path="/etc/app.env", content="TOKEN=abc\n")
    r.sensitive = True
    rtype = get_type("block")
    assert rtype is not None
    p = Planned(r, rtype, rtype.desired(r.params))
    p.observed = {k: v for k, v in p.desired.items()}
    view = observed_view(p)
    assert view is not None
    assert all("abc" not in str(v) for v in view.values())
    masked = mask_change(Change("content", "TOKEN=old", "TOKEN=abc", "-TOKEN=old\n+TOKEN=abc\n"), p)
    assert masked.diff is None and str(masked.after).startswith("sha256:")
    assert mask_change(Change("mode", "0644", "0600"), p) == Change("mode", "0644", "0600")
