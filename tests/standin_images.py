"""Local stand-ins for the registry images the compose files name, built once per engine and reused.

There is no image registry here, so each image docker/docker-compose.yaml and docker/Dockerfile name
(``apache/airflow:3.3.2-python3.11``, ``postgres:16``, ``redis:7.2-bookworm``, ``haproxy:2.6``) is
built from Debian's packages under that exact name, honouring the part of the official image's
contract our files rely on (tests/standins/README.md has the table of what differs). Plus the
busybox image the Docker example runs as a sibling container.

A minimal Debian base comes first (``mmdebstrap --variant=minbase bookworm``, imported with
``podman import``); it trusts the build host's local certificate authorities, so package indexes
behind one answer inside a build. Every image carries a label with the hash of its inputs (its
folder, the base's hash, the lock file for Airflow): an image is rebuilt only when that changes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.container_engine import Engine

TESTS = Path(__file__).parent
REPO = TESTS.parent
STANDINS = TESTS / "standins"
LABEL = "dts.standin.inputs"
BASE = "localhost/dts-standin-base:bookworm"
BUSYBOX = "localhost/dts-busybox:latest"
#: Where the build host keeps certificate authorities of its own (Debian's update-ca-certificates).
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
#: What mmdebstrap runs in the new base before it is packed (local CAs, no service starts).
CUSTOMIZE = STANDINS / "base" / "customize"


@dataclass(frozen=True)
class StandIn:
    """One registry image, built from ``tests/standins/<folder>/Containerfile``."""

    name: str
    folder: str
    extra_inputs: tuple[Path, ...] = ()


#: Fully qualified as Docker names them, so the short names in our files resolve to them locally.
STANDINS_BY_NAME = {
    image.name: image
    for image in (
        StandIn("docker.io/apache/airflow:3.3.2-python3.11", "airflow", (REPO / "requirements" / "dev.lock",)),
        StandIn("docker.io/library/postgres:16", "postgres"),
        StandIn("docker.io/library/redis:7.2-bookworm", "redis"),
        StandIn("docker.io/library/haproxy:2.6", "haproxy"),
    )
}


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:32]


def _files_digest(paths: list[Path]) -> list[bytes]:
    return [p.name.encode() + b"\0" + p.read_bytes() for p in sorted(paths)]


def _local_cas() -> list[Path]:
    return sorted(LOCAL_CAS.glob("*.crt")) if LOCAL_CAS.is_dir() else []


def base_inputs() -> str:
    return _digest(b"mmdebstrap minbase bookworm", *_files_digest([CUSTOMIZE, *_local_cas()]))


def standin_inputs(image: StandIn) -> str:
    folder = STANDINS / image.folder
    files = [p for p in folder.iterdir() if p.is_file()]
    return _digest(base_inputs().encode(), *_files_digest(files), *_files_digest(list(image.extra_inputs)))


def _label(engine: Engine, name: str) -> str | None:
    result = engine.podman("image", "inspect", "--format", '{{index .Labels "' + LABEL + '"}}', name, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _log(message: str) -> None:
    print(f"==> {message}", flush=True)


def build_base(engine: Engine) -> bool:
    """The minimal Debian base; returns whether it was (re)built."""
    inputs = base_inputs()
    if _label(engine, BASE) == inputs:
        return False
    shutil.which("mmdebstrap") or _missing("mmdebstrap")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dts-standin-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                "--include=ca-certificates",
                f"--customize-hook={CUSTOMIZE}",
                "bookworm",
                str(rootfs),
            ],
            check=True,
            timeout=900,
        )
        engine.podman(
            "import",
            "--quiet",
            "--change",
            f"LABEL {LABEL}={inputs}",
            "--change",
            'CMD ["/bin/bash"]',
            str(rootfs),
            BASE,
        )
    _log(f"built {BASE} in {time.monotonic() - started:.0f} s")
    return True


def build_standin(engine: Engine, image: StandIn) -> bool:
    """One stand-in; returns whether it was (re)built."""
    inputs = standin_inputs(image)
    if _label(engine, image.name) == inputs:
        return False
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"dts-standin-{image.folder}-") as tmp:
        context = Path(tmp)
        for path in (STANDINS / image.folder).iterdir():
            shutil.copy2(path, context / path.name)
        for path in image.extra_inputs:
            shutil.copy2(path, context / path.name)
        result = engine.podman(
            "build",
            "--quiet",
            "--pull=never",
            "--label",
            f"{LABEL}={inputs}",
            "-t",
            image.name,
            str(context),
            check=False,
            timeout=1800,
        )
        if result.returncode != 0:
            raise SystemExit(f"building the stand-in {image.name} failed:\n{result.stderr[-4000:]}")
    _log(f"built {image.name} in {time.monotonic() - started:.0f} s")
    return True


def build_busybox(engine: Engine) -> bool:
    """The image example_secret_docker runs, from Debian's static busybox (as scripts/podman-setup makes it)."""
    busybox = shutil.which("busybox") or _missing("busybox-static")
    inputs = _digest(Path(busybox).read_bytes())
    if _label(engine, BUSYBOX) == inputs:
        return False
    with tempfile.TemporaryDirectory(prefix="dts-busybox-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        (rootfs / "tmp").mkdir()
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        for tool in ("sh", "env", "cat", "echo", "printf", "sha256sum", "cut", "tr", "sleep", "ls", "test", "true"):
            (rootfs / "bin" / tool).symlink_to("busybox")
        tar = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        engine.podman(
            "import", "--quiet", "--change", f"LABEL {LABEL}={inputs}", "--change", 'CMD ["/bin/sh"]', str(tar), BUSYBOX
        )
    return True


def build_all(engine: Engine) -> None:
    """Every stand-in and the busybox image, each only if missing or its inputs changed."""
    build_base(engine)
    for image in STANDINS_BY_NAME.values():
        build_standin(engine, image)
    build_busybox(engine)


def _missing(package: str) -> str:
    raise SystemExit(
        f"{package} is missing: install it with `apt-get install {package}` (scripts/system-packages does)"
    )
