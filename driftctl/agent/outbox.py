"""Pull mode's outbox on the host: report documents of ``driftctl pull`` runs, for the controller.

``driftctl pull`` writes each recorded run as ``<seq>.json`` (mode 0600) into a 0700 directory of the
user it runs as, with the outbox's identity in ``id`` (driftctl/pull/state.py). A probe that asks
(``"outbox": {"dir", "id", "after", "max", "max_bytes"}``) gets the reports numbered after ``after``
(oldest first, at most ``max`` of them and about ``max_bytes``), as ``{"id", "reports": [{"seq",
"doc"}], "more"}``. Naming ``after`` for the same ``id`` is the controller's acknowledgement: its
store committed those, so they are removed. A directory or file another user could have written is
refused (opened by descriptor, links never followed): a report is believed only as far as the
controller's own checks go, but nobody else gets to plant one.
"""

import json
import os
import stat

from driftctl.agent._core import Failure

OUTBOX_MAX = 20
OUTBOX_MAX_BYTES = 4 * 1024 * 1024


def _outbox_dir(path):
    """The outbox directory's descriptor, or None when there is none (this host never pulled)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if e.errno in (2, 20):  # ENOENT, ENOTDIR
            return None
        raise Failure("the pull outbox %s cannot be opened: %s" % (path, e.strerror)) from None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        raise Failure("refusing the pull outbox %s: not a 0700 directory of uid %d" % (path, os.geteuid()))
    return fd


def _outbox_read(dfd, name, limit):
    """A regular file of ours in the outbox, not writable by others, at most ``limit`` bytes; or None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dfd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        if st.st_size > limit:
            return b""
        chunks = []
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def outbox_collect(spec):
    """The answer to a probe's ``outbox`` request (see the module docstring)."""
    path = str(spec.get("dir") or "/var/lib/driftctl/pull/outbox")
    dfd = _outbox_dir(path)
    if dfd is None:
        return {"id": None, "reports": [], "more": False}
    try:
        ident = (_outbox_read(dfd, "id", 200) or b"").decode("utf-8", "replace").strip()
        after = int(spec.get("after") or 0) if spec.get("id") == ident else 0
        most = max(1, min(int(spec.get("max") or OUTBOX_MAX), 1000))
        budget = int(spec.get("max_bytes") or OUTBOX_MAX_BYTES)
        numbered = []
        for name in os.listdir(dfd):
            if name.endswith(".json") and name[:-5].isdigit():
                numbered.append((int(name[:-5]), name))
        numbered.sort()
        acked = 0
        if spec.get("id") == ident and after > 0:
            for seq, name in numbered:
                if seq <= after:
                    try:
                        os.unlink(name, dir_fd=dfd)
                        acked += 1
                    except OSError:
                        pass
        reports = []
        used = 0
        more = False
        for seq, name in numbered:
            if seq <= after:
                continue
            if len(reports) >= most:
                more = True
                break
            data = _outbox_read(dfd, name, budget)
            if data is None:
                continue
            if reports and used + len(data) > budget:
                more = True
                break
            try:
                doc = json.loads(data.decode("utf-8")) if data else None
            except ValueError:
                doc = None
            used += len(data)
            reports.append({"seq": seq, "doc": doc} if doc is not None else
                           {"seq": seq, "doc": None, "error": "unreadable or larger than %d bytes" % budget})
        return {"id": ident, "reports": reports, "more": more, "acked": acked}
    finally:
        os.close(dfd)
