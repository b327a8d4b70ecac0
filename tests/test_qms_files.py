"""The contract's file paths (contract 2, 3, 4, 7) as :mod:`core.qms_files` spells them, checked
against files the dev server (an independent oracle with its own spelling) really wrote."""

from __future__ import annotations

from core.devserver.sample import init_project
from core.qms_files import archive_path, audit_path, draft_path, find_meta, inbox_dir, meta_path, workspace_copy


def test_paths_match_a_project_the_dev_server_made(tmp_path):
    root = tmp_path / "pipe-dream"
    init_project(root)
    assert meta_path(root, "CR", "CR-001").is_file() and find_meta(root, "CR-001")["doc_type"] == "CR"
    assert audit_path(root, "CR", "CR-001").is_file()
    assert draft_path(root, "CR-001", "CR") == root / "QMS/CR/CR-001/CR-001-draft.md"
    assert workspace_copy(root, "claude", "CR-001").is_file()
    assert inbox_dir(root, "qa").is_dir()
    assert archive_path(root, root / "QMS/SOP/SOP-001.md", "1.0") == root / "QMS/.archive/SOP/SOP-001-v1.0.md"
    assert archive_path(root, root / "QMS/CR/CR-001/CR-001-draft.md", "0.1") == \
        root / "QMS/.archive/CR/CR-001/CR-001-v0.1.md"
    assert find_meta(root, "CR-" + "9" * 300) is None  # a name too long for the file system is no meta
