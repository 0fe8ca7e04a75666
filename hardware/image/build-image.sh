#!/usr/bin/env bash
# Build a flashable Raspberry Pi OS Lite (64-bit) image with lora-gateway installed.
#
#   sudo hardware/image/build-image.sh --base RASPIOS_LITE_ARM64.img.xz \
#        [--deb lora-gateway_VERSION_arm64.deb] [--out lora-gateway.img] \
#        [--region EU868] [--mqtt-server mqtt://HOST:1883] [--topic-prefix eu868] \
#        [--board corecell] [--grow-mb 1024] [--no-compress]
#
# --base is the Raspberry Pi OS Lite arm64 image as downloaded (.img or .img.xz);
# without --deb an arm64 package is built with packaging/build-deb.sh. The image
# gets: the package installed (through a chroot; on a non-arm64 machine this
# needs qemu-user-static's binfmt handler), SPI and the GPS UART enabled in
# config.txt, the serial console removed from cmdline.txt (the GPS owns the
# UART), gateway.toml.example and README-gateway.txt on the boot partition, and
# both units enabled. At first boot lora-gateway-import.service installs the
# gateway.toml the installer put on the boot partition (see docs/installer.md).
# Needs root, losetup, parted, e2fsprogs, xz-utils and python3.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
base="" deb="" out=lora-gateway.img grow_mb=1024 compress=1
render_args=()

while [ $# -gt 0 ]; do
  case $1 in
    --base) base=$2; shift 2 ;;
    --deb) deb=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --grow-mb) grow_mb=$2; shift 2 ;;
    --region) render_args+=(--set "REGION=$2"); shift 2 ;;
    --mqtt-server) render_args+=(--set "MQTT_SERVER=$2"); shift 2 ;;
    --topic-prefix) render_args+=(--set "TOPIC_PREFIX=$2"); shift 2 ;;
    --board) render_args+=(--set "BOARD=$2"); shift 2 ;;
    --no-compress) compress=0; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$base" ] || { echo "build-image: --base is required" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "build-image: run as root (loop devices, chroot)" >&2; exit 2; }
for tool in losetup parted e2fsck resize2fs xz python3 chroot; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is missing" >&2; exit 2; }
done

version=$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$repo/pyproject.toml")
if [ -z "$deb" ]; then
  deb=$("$repo/packaging/build-deb.sh" --arch arm64 --suite bookworm --out "$repo/dist" | tail -n1)
fi

work=$(mktemp -d)
mnt=$work/mnt
loop=""
cleanup() {
  set +e
  for path in "$mnt/boot/firmware" "$mnt/proc" "$mnt/sys" "$mnt/dev" "$mnt"; do
    mountpoint -q "$path" && umount "$path"
  done
  [ -n "$loop" ] && losetup -d "$loop"
  rm -rf "$work"
}
trap cleanup EXIT

echo "build-image: unpacking $base"
case $base in
  *.xz) xz -dc "$base" >"$out" ;;
  *) cp "$base" "$out" ;;
esac

echo "build-image: growing the root partition by $grow_mb MiB"
truncate -s "+${grow_mb}M" "$out"
parted -s "$out" resizepart 2 100%
loop=$(losetup --find --show --partscan "$out")
e2fsck -pf "${loop}p2" || [ $? -le 1 ]
resize2fs "${loop}p2" >/dev/null

mkdir -p "$mnt"
mount "${loop}p2" "$mnt"
mount "${loop}p1" "$mnt/boot/firmware"
mount -t proc proc "$mnt/proc"
mount --bind /sys "$mnt/sys"
mount --bind /dev "$mnt/dev"

echo "build-image: installing $(basename "$deb")"
cp "$deb" "$mnt/tmp/lora-gateway.deb"
chroot "$mnt" dpkg -i /tmp/lora-gateway.deb
# SPI binding (no binary wheel on PyPI): Raspberry Pi OS's own package, recommended by ours.
chroot "$mnt" apt-get install -y --no-install-recommends python3-spidev
rm -f "$mnt/tmp/lora-gateway.deb"
chroot "$mnt" systemctl enable lora-gateway.service lora-gateway-import.service

echo "build-image: boot partition"
python3 "$here/render.py" --out "$work/rendered" --set "VERSION=$version" "${render_args[@]}" >/dev/null
boot=$mnt/boot/firmware
# Replace an earlier block between the markers, so running twice changes nothing.
sed -i '/^# >>> lora-gateway/,/^# <<< lora-gateway/d' "$boot/config.txt"
cat "$work/rendered/config.txt" >>"$boot/config.txt"
sed -i -E 's/console=(serial0|ttyAMA0|ttyS0),[0-9]+ ?//g' "$boot/cmdline.txt"
cp "$work/rendered/gateway.toml.example" "$boot/gateway.toml.example"
cp "$work/rendered/README-gateway.txt" "$boot/README-gateway.txt"

cleanup
trap - EXIT
if [ "$compress" -eq 1 ]; then
  xz -T0 -f "$out"
  out=$out.xz
fi
echo "build-image: done: $out (flash it with Raspberry Pi Imager or dd)"
