#!/usr/bin/env bash
# Build the lora-gateway Debian package with dpkg-deb.
#
#   packaging/build-deb.sh [--arch amd64|arm64] [--suite bookworm|trixie] [--out DIR]
#
# The package carries its own Python environment in /opt/lora-gateway, made
# for Debian's python3.11: the repository's wheel and its dependencies (binary
# wheels for the target architecture, fetched by pip from the Python package
# index) in lib/python3.11/site-packages, and bin/python3 pointing at
# /usr/bin/python3.11. Because pip selects wheels by platform tag, an arm64
# package for a Raspberry Pi can be built on an amd64 machine. Also installed:
# the systemd units, sysusers/tmpfiles entries, a default configuration and
# the helpers for SPI and the boot-partition configuration. Prints the path of
# the .deb on its last line.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
here=$repo/packaging
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
suite=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null || true)
suite=${suite:-bookworm}
out=$repo/dist
python=${PYTHON:-python3}
maintainer=${DEB_MAINTAINER:-"lora-gateway maintainers <lora-gateway@localhost>"}

while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "build-deb: unknown argument $1" >&2; exit 2 ;;
  esac
done

case $arch in
  amd64) machine=x86_64 ;;
  arm64) machine=aarch64 ;;
  *) echo "build-deb: no binary wheels for architecture $arch (amd64 or arm64)" >&2; exit 2 ;;
esac

version=$("$python" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$repo/pyproject.toml")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
venv=$root/opt/lora-gateway
site=$venv/lib/python3.11/site-packages

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

# 2. Its dependencies, as binary wheels for the target (glibc 2.17 .. 2.36 = bookworm).
platforms=()
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_${machine}"); done
platforms+=(--platform "manylinux2014_${machine}")
"$python" -m pip install --quiet --disable-pip-version-check --no-compile \
  --target "$site" --only-binary=:all: --python-version 3.11 --implementation cp \
  "${platforms[@]}" "$work"/wheels/*.whl 'gpiod>=2.1'
# spidev ships no binary wheels: the package recommends Debian's python3-spidev, which
# the venv sees through include-system-site-packages (our own site-packages come first).
rm -rf "${site:?}/bin"   # console scripts with this machine's interpreter path

# 3. A virtual environment around Debian's interpreter.
mkdir -p "$venv/bin"
ln -s /usr/bin/python3.11 "$venv/bin/python3"
ln -s python3 "$venv/bin/python"
printf 'home = /usr/bin\ninclude-system-site-packages = true\nversion = 3.11\n' >"$venv/pyvenv.cfg"
launcher='#!/bin/sh
exec /opt/lora-gateway/bin/python3 -I -m gateway "$@"'
printf '%s\n' "$launcher" >"$venv/bin/lora-gateway"
install -D -m 0755 "$venv/bin/lora-gateway" "$root/usr/bin/lora-gateway"
chmod 0755 "$venv/bin/lora-gateway"

# 4. System integration.
units=$root/lib/systemd/system
install -D -m 0644 "$repo/systemd/lora-gateway.service" "$units/lora-gateway.service"
install -D -m 0644 "$repo/systemd/lora-gateway-import.service" "$units/lora-gateway-import.service"
case $suite in
  buster|bullseye|bookworm) ;;  # systemd < 254: RestartSteps= unknown, plain RestartSec= applies
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
Version: ${version}-1
Architecture: ${arch}
Maintainer: ${maintainer}
Installed-Size: ${size}
Depends: python3.11, libc6 (>= 2.36)
Recommends: systemd, python3-spidev
Section: net
Priority: optional
Description: LoRaWAN gateway for the Semtech SX1302, forwarding to ChirpStack v4
 Receives LoRaWAN frames with an SX1302 concentrator on a Raspberry Pi, keeps
 them in SQLite through backhaul outages and forwards them to ChirpStack v4
 over MQTT. Runs as the unprivileged lora-gateway user under a hardened
 systemd unit; includes its own Python environment in /opt/lora-gateway.
EOF

mkdir -p "$out"
deb=$out/lora-gateway_${version}-1_${arch}.deb
find "$root" -name __pycache__ -type d -prune -exec rm -rf {} +
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
