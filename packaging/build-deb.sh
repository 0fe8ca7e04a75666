#!/usr/bin/env bash
# Build the lora-gateway Debian package with dpkg-deb.
#
#   packaging/build-deb.sh [--arch amd64|arm64|armhf] [--suite bookworm|trixie]
#                          [--version VERSION] [--out DIR]
#
# One package layout for Debian 12 (bookworm, Python 3.11) and Debian 13 /
# today's Raspberry Pi OS (trixie, Python 3.13): the gateway runs on Debian's
# own /usr/bin/python3, whatever its version. Debian provides the packages it
# keeps security-patched and whose versions fit (python3-cryptography with the
# system OpenSSL, python3-serial); /opt/lora-gateway/lib/site-packages holds
# only what Debian lacks in a usable version (paho-mqtt 2, structlog >= 24,
# protobuf and chirpstack-api's generated messages) as pure-Python or
# stable-ABI (abi3) wheels, which import on any Python 3 >= 3.11. chirpstack-api
# is taken without its gRPC dependencies (grpcio, google-api-core): the gateway
# only uses its protobuf messages. The build fails if a version-specific
# extension module slips in. See packaging/README.md for the reasoning.
#
# Because pip selects wheels by platform tag, arm64 and armhf packages for a
# Raspberry Pi build on an amd64 machine. --suite only picks the systemd
# features the unit may use (RestartSteps= needs systemd >= 254, trixie).
# Prints the path of the .deb on its last line.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
here=$repo/packaging
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
suite=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null || true)
suite=${suite:-bookworm}
out=$repo/dist
python=${PYTHON:-python3}
maintainer=${DEB_MAINTAINER:-"lora-gateway maintainers <lora-gateway@localhost>"}
version=

while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "build-deb: unknown argument $1" >&2; exit 2 ;;
  esac
done

case $arch in
  amd64) machines=(x86_64) ;;
  arm64) machines=(aarch64) ;;
  armhf) machines=(armv7l) ;;
  *) echo "build-deb: no wheels for architecture $arch (amd64, arm64 or armhf)" >&2; exit 2 ;;
esac
case $suite in
  bookworm) revision=1~deb12 ;;  # per-suite builds sort below a plain -1 and deb12 < deb13,
  trixie) revision=1~deb13 ;;    # so a release upgrade of the OS also upgrades the package
  *) echo "build-deb: suite $suite is not one this package is tested on (bookworm, trixie)" >&2
     exit 2 ;;
esac

version=${version:-$("$python" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$repo/pyproject.toml")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
lib=$root/opt/lora-gateway/lib
site=$lib/site-packages

# 1. The repository's wheel, built from a copy so the checkout gets no build/ or egg-info.
mkdir -p "$work/src"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (
    cd "$repo"
    git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' file; do
        [ -f "$file" ] && printf '%s\0' "$file"  # skip files deleted but still tracked
      done | xargs -0 cp --parents -t "$work/src"
  )
else
  cp -a "$repo/." "$work/src"
fi
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" "$work/src"

# 2. What Debian does not provide in a usable version: pure-Python or abi3 wheels only
#    (glibc 2.17 .. 2.36: bookworm's is the oldest C library this must run on).
platforms=()
for machine in "${machines[@]}"; do
  for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_${machine}"); done
  platforms+=(--platform "manylinux2014_${machine}")
done
pip_target=("$python" -m pip install --quiet --disable-pip-version-check --no-compile
  --target "$site" --only-binary=:all: --python-version 3.11 --implementation cp
  --abi abi3 --abi none "${platforms[@]}")
"${pip_target[@]}" --no-deps "$work"/wheels/*.whl
bundled=$("$python" - "$repo/pyproject.toml" <<'PY'
import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
from_debian = {"cryptography", "pyserial"}  # python3-cryptography, python3-serial
print("\n".join(d for d in deps if re.split(r"[<>=!~ ;\[]", d)[0].lower() not in from_debian))
PY
)
mapfile -t bundled <<<"$bundled"
plain=() chirpstack=()
for dep in "${bundled[@]}"; do
  case $dep in chirpstack-api*) chirpstack+=("$dep") ;; *) plain+=("$dep") ;; esac
done
"${pip_target[@]}" --upgrade "${plain[@]}"
# Newer chirpstack-api releases are published as source only: build its (pure) wheel here.
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
  --wheel-dir "$work/chirpstack" "${chirpstack[@]}"
"${pip_target[@]}" --upgrade --no-deps "$work"/chirpstack/chirpstack_api-*.whl
# The generated messages need a protobuf runtime at least as new as their generator.
generator=$(sed -n 's/^# Protobuf Python Version: \([0-9.]*\).*/\1/p' \
  "$site/chirpstack_api/gw/gw_pb2.py" | head -n1)
major=${generator%%.*}
"${pip_target[@]}" --upgrade "protobuf>=${generator:-4},<$((${major:-4} + 1))"
rm -rf "${site:?}/bin"   # console scripts with this machine's interpreter path
specific=$(find "$site" -name '*.cpython-3*.so' -print)
if [ -n "$specific" ]; then
  echo "build-deb: version-specific extension modules would tie the package to one Python:" >&2
  printf '  %s\n' "$specific" >&2
  exit 1
fi

# 3. The launcher: Debian's python3, isolated (-I: no PYTHONPATH, no user site),
#    with the bundled packages ahead of the system's.
install -D -m 0644 /dev/stdin "$lib/launch.py" <<'PY'
"""Start lora-gateway on the system's Python with the packaged libraries first."""
import sys

sys.path.insert(0, "/opt/lora-gateway/lib/site-packages")
from gateway.cli import main  # noqa: E402

sys.exit(main())
PY
install -D -m 0755 /dev/stdin "$root/usr/bin/lora-gateway" <<'SH'
#!/bin/sh
exec /usr/bin/python3 -I /opt/lora-gateway/lib/launch.py "$@"
SH

# 4. System integration.
units=$root/lib/systemd/system
install -D -m 0644 "$repo/systemd/lora-gateway.service" "$units/lora-gateway.service"
install -D -m 0644 "$repo/systemd/lora-gateway-import.service" "$units/lora-gateway-import.service"
case $suite in
  bookworm) ;;  # systemd < 254: RestartSteps= unknown, plain RestartSec= applies
  *) install -D -m 0644 "$repo/systemd/restart-backoff.conf" \
       "$units/lora-gateway.service.d/restart-backoff.conf" ;;
esac
install -D -m 0644 "$repo/systemd/lora-gateway.sysusers" "$root/usr/lib/sysusers.d/lora-gateway.conf"
install -D -m 0644 "$repo/systemd/lora-gateway.tmpfiles" "$root/usr/lib/tmpfiles.d/lora-gateway.conf"
install -D -m 0644 "$here/gateway.toml" "$root/etc/lora-gateway/gateway.toml"
install -d -m 0755 "$root/etc/lora-gateway/tls"
install -D -m 0755 "$here/debian/enable-spi" "$root/usr/lib/lora-gateway/enable-spi"
install -D -m 0755 "$here/debian/import-boot-config" "$root/usr/lib/lora-gateway/import-boot-config"
doc=$root/usr/share/doc/lora-gateway
install -D -m 0644 "$here/debian/copyright" "$doc/copyright"
for page in installer.md maintainer.md; do
  [ -f "$repo/docs/$page" ] && install -m 0644 "$repo/docs/$page" "$doc/$page"
done

# 5. Control files.
install -d -m 0755 "$root/DEBIAN"
for script in postinst prerm postrm; do
  install -m 0755 "$here/debian/$script" "$root/DEBIAN/$script"
done
echo /etc/lora-gateway/gateway.toml >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: lora-gateway
Version: ${version}-${revision}
Architecture: ${arch}
Maintainer: ${maintainer}
Installed-Size: ${size}
Depends: python3 (>= 3.11), python3-cryptography, python3-serial, libc6 (>= 2.36)
Recommends: systemd, python3-spidev, python3-libgpiod (>= 2) | python3-rpi-lgpio | python3-rpi.gpio
Section: net
Priority: optional
Description: LoRaWAN gateway for the Semtech SX1302, forwarding to ChirpStack v4
 Receives LoRaWAN frames with an SX1302 concentrator on a Raspberry Pi, keeps
 them in SQLite through backhaul outages and forwards them to ChirpStack v4
 over MQTT. Runs as the unprivileged lora-gateway user under a hardened
 systemd unit, on the system's Python 3 (the libraries Debian lacks are
 in /opt/lora-gateway). Semtech's SX1302 firmware is not included: run
 "lora-gateway firmware install" once.
EOF

mkdir -p "$out"
deb=$out/lora-gateway_${version}-${revision}_${arch}.deb
find "$root" -name __pycache__ -type d -prune -exec rm -rf {} +
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
