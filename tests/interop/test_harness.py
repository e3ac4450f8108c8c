"""The harness itself, without running Asterisk: where it looks, and how it says it cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop import asterisk
from tests.interop.asterisk import AsteriskUnavailable, Install, check_libraries, locate, skip_or_fail


def test_the_environment_comes_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    chosen = tmp_path / "asterisk-custom.tar.xz"
    chosen.write_bytes(b"")
    monkeypatch.setenv(asterisk.ENV_VAR, str(chosen))
    assert locate() == chosen
    monkeypatch.setenv(asterisk.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(AsteriskUnavailable, match="does not exist"):
        locate()


def test_then_the_shared_build_then_the_vendored_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(asterisk.ENV_VAR, raising=False)
    repo = tmp_path / "main"
    monkeypatch.setattr(asterisk, "REPO", repo)
    assert locate() == asterisk.VENDORED  # a clean clone: no ../shared
    shared = tmp_path / "shared" / "asterisk" / "asterisk-23.4.1-bookworm-amd64.tar.xz"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"")
    assert locate() == shared
    shared.unlink()
    monkeypatch.setattr(asterisk, "VENDORED", tmp_path / "gone.tar.xz")
    with pytest.raises(AsteriskUnavailable, match="no Asterisk found"):
        locate()


def test_the_vendored_copy_is_a_real_tarball() -> None:
    with asterisk.VENDORED.open("rb") as f:
        assert f.read(6) == b"\xfd7zXZ\x00", "a Git LFS pointer or a broken copy"


def test_missing_libraries_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ldd = tmp_path / "bin" / "ldd"
    ldd.parent.mkdir()
    ldd.write_text("#!/bin/sh\necho '\tlibjansson.so.4 => not found'\necho '\tlibc.so.6 => /lib/libc.so.6'\n")
    ldd.chmod(0o755)
    monkeypatch.setenv("PATH", f"{ldd.parent}:/usr/bin:/bin")
    install = Install(tmp_path / "asterisk", tmp_path, None, None)
    with pytest.raises(AsteriskUnavailable, match=r"missing shared libraries libjansson\.so\.4 \(Debian packages: libjansson4\)"):
        check_libraries(install, {"PATH": f"{ldd.parent}:/usr/bin:/bin"})


def test_no_asterisk_skips_but_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Asterisk"):
        skip_or_fail("no Asterisk")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI: no Asterisk"):
        skip_or_fail("no Asterisk")
