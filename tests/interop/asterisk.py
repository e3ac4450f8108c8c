"""A real Asterisk for interop tests: found, unpacked, configured privately, started and stopped.

``locate()`` finds an Asterisk in this order: ``$MIKROVOICE_ASTERISK`` (a tarball, an extracted
directory or an ``asterisk`` binary), ``<repo>/../shared/asterisk/asterisk-*.tar.xz``, then the
copy vendored in ``tests/interop/vendor/`` (see its README). ``RealAsterisk`` unpacks it into a
test's temporary directory, writes a private configuration there (every directory, a full log
file, only the modules the tests need), runs ``asterisk -f -C ...`` as a child process and stops
it by its PID. It talks to it with ``asterisk -rx`` (the CLI over the control socket).

``unavailable()`` says why the tests cannot run here (no Asterisk, missing runtime libraries);
``skip_or_fail`` skips with that reason, or fails when ``$CI`` is set: in CI the tests must run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENDORED = HERE / "vendor" / "asterisk-23.4.1-bookworm-amd64.tar.xz"
ENV_VAR = "MIKROVOICE_ASTERISK"

#: The modules the tests need (Local channels, the core bridges and the CLI are built in).
MODULES = (
    "pbx_config", "res_timing_timerfd", "res_clioriginate",
    "app_audiosocket", "chan_audiosocket", "res_audiosocket",
    "chan_websocket", "res_http_websocket", "res_websocket_client",
    "res_sorcery_config", "res_sorcery_memory",
    "app_dial", "app_exec", "app_playback", "app_mixmonitor", "app_senddtmf", "app_verbose", "app_echo",
    "format_sln", "format_pcm", "codec_ulaw", "codec_alaw", "codec_a_mu", "codec_resample",
    "func_uuid", "func_global", "func_channel", "func_strings", "func_logic", "func_cut", "func_hangupcause",
    "bridge_simple", "bridge_softmix", "bridge_holding", "bridge_builtin_features",
)

#: Debian 12 packages of the shared libraries the build links against, for the skip message.
_PACKAGES = {
    "libxml2.so.2": "libxml2", "libxslt.so.1": "libxslt1.1", "libexslt.so.0": "libxslt1.1",
    "libsqlite3.so.0": "libsqlite3-0", "libssl.so.3": "libssl3", "libcrypto.so.3": "libssl3",
    "libjansson.so.4": "libjansson4", "libuuid.so.1": "libuuid1", "libcrypt.so.1": "libcrypt1",
    "libedit.so.2": "libedit2",
}


class AsteriskUnavailable(Exception):
    """No usable Asterisk on this machine; the message says why and what to do."""


def locate() -> Path:
    """The Asterisk to use (a tarball, a directory or a binary); ``AsteriskUnavailable`` if none."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise AsteriskUnavailable(f"${ENV_VAR}={explicit} does not exist")
        return path
    shared = sorted((REPO.parent / "shared" / "asterisk").glob("asterisk-*.tar.xz"))
    if shared:
        return shared[-1]
    if VENDORED.is_file():
        with VENDORED.open("rb") as f:
            if f.read(6) != b"\xfd7zXZ\x00":  # e.g. a Git LFS pointer in a clone without LFS
                raise AsteriskUnavailable(f"{VENDORED} is not an xz tarball (a Git LFS pointer?)")
        return VENDORED
    raise AsteriskUnavailable(
        f"no Asterisk found: set ${ENV_VAR} to an Asterisk tarball, directory or binary, "
        f"or put asterisk-*.tar.xz in {REPO.parent / 'shared' / 'asterisk'}, or restore {VENDORED}"
    )


def skip_or_fail(reason: str) -> None:
    """Skip the test with ``reason``; in CI (``$CI`` set) fail instead: there it must run."""
    if os.environ.get("CI"):
        pytest.fail(f"interop tests must run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Install:
    """Where the pieces of one Asterisk installation are."""

    binary: Path
    moddir: Path
    datadir: Path | None  # holds documentation/ (the XML docs the apps register with)
    libdir: Path | None  # for LD_LIBRARY_PATH

    @classmethod
    def from_prefix(cls, prefix: Path) -> Install:
        binary = prefix / "sbin" / "asterisk"
        if not binary.is_file():
            raise AsteriskUnavailable(f"{prefix} holds no sbin/asterisk")
        return cls.from_binary(binary)

    @classmethod
    def from_binary(cls, binary: Path) -> Install:
        prefix = binary.resolve().parent.parent
        moddirs = [prefix / "lib" / "asterisk" / "modules", prefix / "lib64" / "asterisk" / "modules",
                   *sorted(prefix.glob("lib/*-linux-gnu/asterisk/modules"))]
        moddir = next((d for d in moddirs if d.is_dir()), None)
        if moddir is None:
            raise AsteriskUnavailable(f"no module directory for {binary} (looked in {', '.join(map(str, moddirs))})")
        datadirs = [prefix / "var" / "lib" / "asterisk", prefix / "share" / "asterisk", Path("/var/lib/asterisk"),
                    Path("/usr/share/asterisk")]
        datadir = next((d for d in datadirs if (d / "documentation").is_dir()), None)
        libdir = prefix / "lib"
        return cls(binary, moddir, datadir, libdir if libdir.is_dir() else None)


def unpack(source: Path, into: Path) -> Install:
    """The installation ``source`` names, unpacked under ``into`` if it is a tarball."""
    if source.is_dir():
        for prefix in (source, source / "asterisk", source / "opt" / "asterisk"):
            if (prefix / "sbin" / "asterisk").is_file():
                return Install.from_prefix(prefix)
        raise AsteriskUnavailable(f"{source} holds no sbin/asterisk (nor asterisk/sbin/asterisk)")
    if tarfile.is_tarfile(source):
        into.mkdir(parents=True, exist_ok=True)
        with tarfile.open(source) as tar:
            tar.extractall(into, filter="tar")  # keeps the executable bits and relative symlinks
        found = sorted(into.glob("**/sbin/asterisk"), key=lambda p: len(p.parts))
        if not found:
            raise AsteriskUnavailable(f"{source} holds no sbin/asterisk")
        return Install.from_prefix(found[0].parent.parent)
    if os.access(source, os.X_OK):
        return Install.from_binary(source)
    raise AsteriskUnavailable(f"{source} is neither a tarball, a directory nor an executable")


def missing_libraries(install: Install, env: dict[str, str], modules: Sequence[str] = MODULES) -> list[str]:
    """The shared libraries ``ldd`` cannot find for the binary or the modules we load."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    files = [install.binary] + [install.moddir / f"{m}.so" for m in modules if (install.moddir / f"{m}.so").exists()]
    out = subprocess.run([ldd, *map(str, files)], env=env, capture_output=True, text=True, check=False).stdout
    return sorted(set(re.findall(r"^\s*(\S+) => not found", out, re.M)))


def check_libraries(install: Install, env: dict[str, str]) -> None:
    """``AsteriskUnavailable`` naming every shared library (and its Debian package) that is missing."""
    missing = missing_libraries(install, env)
    if missing:
        packages = sorted({_PACKAGES.get(lib, "?") for lib in missing})
        raise AsteriskUnavailable(
            f"{install.binary} cannot run: missing shared libraries {', '.join(missing)} "
            f"(Debian packages: {' '.join(packages)})")


class RealAsterisk:
    """One private Asterisk under ``root``: configure with ``write_config``, then ``async with``.

    The process is started by ``__aenter__`` and always stopped by ``__aexit__`` (SIGTERM to its
    PID, then SIGKILL); ``kill()`` is a last resort for synchronous teardown code.
    """

    def __init__(self, source: Path, root: Path) -> None:
        self.root = root
        self.install = unpack(source, root / "dist")
        self.env = dict(os.environ)
        if self.install.libdir is not None:
            self.env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (str(self.install.libdir), os.environ.get("LD_LIBRARY_PATH", "")) if p)
        check_libraries(self.install, self.env)
        self.etc = root / "etc"
        self.logdir = root / "log"
        self.spool = root / "spool"
        self.recordings = root / "rec"
        self.sounds = root / "sounds"
        # The control socket's path must fit in sun_path (108 bytes): a short run dir if needed.
        self.rundir = root / "run"
        if len(str(self.rundir / "asterisk.ctl")) > 100:
            self.rundir = Path(tempfile.mkdtemp(prefix="mvast-"))
        for d in (self.etc, self.logdir, self.spool, self.recordings, self.sounds, self.rundir,
                  root / "lib", root / "keys", root / "cache", root / "agi"):
            d.mkdir(parents=True, exist_ok=True)
        self.conf = self.etc / "asterisk.conf"
        self.log = self.logdir / "full"
        self.console = root / "console.txt"
        self.process: trio.Process | None = None
        self._log_lines: list[str] = []
        self._log_offset = 0

    # ------------------------------------------------------------------ configuration

    def write_config(self, extensions: str, *, websocket_client: str = "", extra: dict[str, str] | None = None) -> None:
        """The private configuration: ``extensions`` is the body of extensions.conf."""
        datadir = f"astdatadir => {self.install.datadir}\n" if self.install.datadir else ""
        files = {
            "asterisk.conf": (
                "[directories]\n"
                f"astetcdir => {self.etc}\nastmoddir => {self.install.moddir}\n{datadir}"
                f"astvarlibdir => {self.root / 'lib'}\nastdbdir => {self.root / 'lib'}\n"
                f"astkeydir => {self.root / 'keys'}\nastagidir => {self.root / 'agi'}\n"
                f"astspooldir => {self.spool}\nastrundir => {self.rundir}\nastlogdir => {self.logdir}\n"
                f"astcachedir => {self.root / 'cache'}\nastsbindir => {self.install.binary.parent}\n"
                "[options]\nverbose = 3\ndebug = 0\nnocolor = yes\nhideconnect = yes\n"
                "documentation_language = en_US\n"
            ),
            "logger.conf": (
                "[general]\ndateformat = %F %T.%3q\n"
                "[logfiles]\nfull => notice,warning,error,verbose,debug,dtmf\n"
            ),
            "modules.conf": "[modules]\nautoload = no\n" + "".join(f"load => {m}.so\n" for m in MODULES),
            "extensions.conf": "[general]\nstatic = yes\nwriteprotect = yes\n\n" + textwrap.dedent(extensions),
            "websocket_client.conf": textwrap.dedent(websocket_client),
            "chan_websocket.conf": "",
            # Silence the "Unable to load config file" errors of the core's optional files.
            **{name: "" for name in ("cdr.conf", "cel.conf", "features.conf", "acl.conf", "udptl.conf", "ccss.conf",
                                     "indications.conf", "musiconhold.conf", "http.conf", "manager.conf")},
            **(extra or {}),
        }
        for name, text in files.items():
            (self.etc / name).write_text(text)

    # ------------------------------------------------------------------ process

    async def __aenter__(self) -> RealAsterisk:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with trio.CancelScope(shield=True):
            await self.stop()

    async def start(self, boot_timeout_s: float = 20.0) -> None:
        console = self.console.open("wb")
        self.process = await trio.lowlevel.open_process(
            [str(self.install.binary), "-f", "-n", "-C", str(self.conf)],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True,
        )
        console.close()
        with trio.move_on_after(boot_timeout_s):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"Asterisk exited with {self.process.returncode} while booting\n{self.diagnostics()}")
                result = await self._run_cli("core waitfullybooted", timeout_s=boot_timeout_s)
                if result.returncode == 0 and b"fully booted" in result.stdout:
                    return
                await trio.sleep(0.05)
        raise RuntimeError(f"Asterisk did not boot within {boot_timeout_s:g} s\n{self.diagnostics()}")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the process by its PID: SIGTERM (Asterisk shuts down), SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(timeout_s):
            await process.wait()
            return
        process.kill()
        await process.wait()

    def kill(self) -> None:
        """Synchronous last resort (a teardown outside Trio): SIGKILL the PID if it still runs."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def _run_cli(self, command: str, timeout_s: float = 10.0) -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(timeout_s):
            return await trio.run_process(
                [str(self.install.binary), "-C", str(self.conf), "-rx", command],
                capture_stdout=True, capture_stderr=True, check=False, env=self.env,
            )

    async def rx(self, command: str) -> str:
        """Run one CLI command; its output. Raises if the control socket does not answer."""
        result = await self._run_cli(command)
        if result.returncode != 0:
            raise RuntimeError(f"asterisk -rx {command!r} failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace')}{result.stdout.decode(errors='replace')}")
        return result.stdout.decode(errors="replace")

    # ------------------------------------------------------------------ calls

    async def originate(self, bot_exten: str, caller_exten: str, context: str = "test") -> str:
        """A call between two dialplan extensions over a Local channel pair: ``bot_exten`` runs on
        ``;2`` and ``caller_exten`` on ``;1``, and audio flows between them. Returns the name of
        the caller's channel (``Local/<bot_exten>@<context>-XXXXXXXX;1``)."""
        await self.rx(f"channel originate Local/{bot_exten}@{context} extension {caller_exten}@{context}")
        return await self.caller_channel(bot_exten, context)

    async def caller_channel(self, bot_exten: str, context: str = "test") -> str:
        """The caller half (``;1``) of the Local pair to ``bot_exten``, once it exists."""
        with trio.fail_after(10):
            while True:
                for name in await self.channels():
                    if name.startswith(f"Local/{bot_exten}@{context}-") and name.endswith(";1"):
                        return name
                await trio.sleep(0.05)

    async def channels(self) -> list[str]:
        """The names of the channels up now (``core show channels concise``)."""
        out = await self.rx("core show channels concise")
        return [line.split("!", 1)[0] for line in out.splitlines() if "!" in line]

    async def wait_gone(self, prefix: str, timeout_s: float = 30.0, poll_s: float = 0.2) -> None:
        """Until no channel whose name starts with ``prefix`` is left."""
        with trio.fail_after(timeout_s):
            while True:  # polling another process: there is no event to wait for
                if not any(name.startswith(prefix) for name in await self.channels()):
                    return
                await trio.sleep(poll_s)

    async def redirect(self, channel: str, exten: str, context: str = "test", priority: int = 1) -> None:
        """Move a channel that runs dialplan to ``exten`` (it leaves its current app at once)."""
        out = await self.rx(f"channel redirect {channel} {context},{exten},{priority}")
        if "redirected" not in out.lower():
            raise RuntimeError(f"channel redirect {channel} {context},{exten},{priority}: {out.strip()}")

    async def set_global(self, name: str, value: str) -> None:
        await self.rx(f"dialplan set global {name} {value}")

    # ------------------------------------------------------------------ logs and files

    def log_lines(self) -> list[str]:
        """The log so far, line by line (read incrementally: it is polled often)."""
        try:
            with self.log.open("rb") as f:
                f.seek(self._log_offset)
                data = f.read()
        except FileNotFoundError:
            return self._log_lines
        end = data.rfind(b"\n") + 1  # only whole lines
        if end:
            self._log_lines += data[:end].decode(errors="replace").splitlines()
            self._log_offset += end
        return self._log_lines

    def log_text(self) -> str:
        return "\n".join(self.log_lines())

    def log_tail(self, lines: int = 40, grep: str | None = None) -> str:
        selected = [line for line in self.log_lines() if grep is None or grep in line]
        return "\n".join(selected[-lines:])

    def recording(self, name: str) -> bytes:
        path = self.recordings / name
        return path.read_bytes() if path.exists() else b""

    def diagnostics(self) -> str:
        console = self.console.read_text(errors="replace") if self.console.exists() else ""
        return f"--- console (tail) ---\n{console[-3000:]}\n--- {self.log} (tail) ---\n{self.log_tail(40)}"
