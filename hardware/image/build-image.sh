#!/usr/bin/env bash
# Build a flashable Raspberry Pi OS Lite image with lora-gateway installed.
#
#   sudo hardware/image/build-image.sh --base RASPIOS_LITE.img.xz \
#        [--deb lora-gateway_VERSION_ARCH.deb | --arch arm64|armhf --suite trixie|bookworm] \
#        [--firmware-archive sx1302_hal-2.1.0.tar.gz | --no-firmware] \
#        [--out lora-gateway.img] [--region EU868] [--mqtt-server mqtt://HOST:1883] \
#        [--topic-prefix eu868] [--board corecell] [--grow-mb 1024] [--no-compress]
#
# --base is the Raspberry Pi OS Lite image as downloaded (.img or .img.xz): today's
# (trixie) by default, 64-bit (arm64) or 32-bit (armhf, Pi 3 / Zero 2 W); pass
# --suite bookworm for a bookworm base. Without --deb a package for --arch and --suite
# is built with packaging/build-deb.sh. The image gets: the package installed with
# apt (through a chroot, so its Debian dependencies come along; on a machine of
# another architecture this needs qemu-user-static's binfmt handler), Semtech's
# AGC/ARB firmware checked and installed by `lora-gateway firmware install` (from
# --firmware-archive, else downloaded from the sx1302_hal release), SPI, I2C and the
# GPS UART enabled in config.txt, the serial console removed from cmdline.txt (the
# GPS owns the UART), gateway.toml.example and README-gateway.txt on the boot
# partition, and both units enabled. At first boot lora-gateway-import.service
# installs the gateway.toml the installer put on the boot partition (see
# docs/installer.md). Partitions are attached by offset, so no partition devices
# (udev) are needed. Needs root, losetup, parted, e2fsprogs, xz-utils and python3.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
base="" deb="" out=lora-gateway.img grow_mb=1024 compress=1
arch=arm64 suite=trixie firmware_archive="" firmware=1
render_args=()

while [ $# -gt 0 ]; do
  case $1 in
    --base) base=$2; shift 2 ;;
    --deb) deb=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --firmware-archive) firmware_archive=$2; shift 2 ;;
    --no-firmware) firmware=0; shift ;;
    --out) out=$2; shift 2 ;;
    --grow-mb) grow_mb=$2; shift 2 ;;
    --region) render_args+=(--set "REGION=$2"); shift 2 ;;
    --mqtt-server) render_args+=(--set "MQTT_SERVER=$2"); shift 2 ;;
    --topic-prefix) render_args+=(--set "TOPIC_PREFIX=$2"); shift 2 ;;
    --board) render_args+=(--set "BOARD=$2"); shift 2 ;;
    --no-compress) compress=0; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
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
  deb=$("$repo/packaging/build-deb.sh" --arch "$arch" --suite "$suite" --out "$repo/dist" | tail -n1)
fi

work=$(mktemp -d)
mnt=$work/mnt
loops=()
cleanup() {
  set +e
  for path in "$mnt/boot/firmware" "$mnt/proc" "$mnt/sys" "$mnt/dev" "$mnt"; do
    mountpoint -q "$path" && umount "$path"
  done
  for loop in "${loops[@]}"; do losetup -d "$loop"; done
  loops=()
  rm -rf "$work"
}
part_loop() {  # part_loop N: a loop device over partition N of the image, by byte offset
  local start size
  read -r start size < <(parted -s -m "$out" unit B print |
    awk -F: -v n="$1" '$1 == n { sub("B", "", $2); sub("B", "", $4); print $2, $4 }')
  [ -n "$start" ] || { echo "build-image: $out has no partition $1" >&2; return 1; }
  losetup --find --show --offset "$start" --sizelimit "$size" "$out"
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
root_loop=$(part_loop 2); loops+=("$root_loop")
boot_loop=$(part_loop 1); loops+=("$boot_loop")
e2fsck -pf "$root_loop" || [ $? -le 1 ]
resize2fs "$root_loop" >/dev/null

mkdir -p "$mnt"
mount "$root_loop" "$mnt"
mount "$boot_loop" "$mnt/boot/firmware"
mount -t proc proc "$mnt/proc"
mount --bind /sys "$mnt/sys"
mount --bind /dev "$mnt/dev"

echo "build-image: installing $(basename "$deb")"
cp "$deb" "$mnt/root/lora-gateway.deb"
in_image() { chroot "$mnt" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  DEBIAN_FRONTEND=noninteractive "$@"; }
resolv=$mnt/etc/resolv.conf
resolv_saved=""
if [ -e "$resolv" ] || [ -L "$resolv" ]; then resolv_saved=$work/resolv.conf; mv "$resolv" "$resolv_saved"; fi
cp /etc/resolv.conf "$resolv"  # name resolution for apt inside the image, restored below
# apt resolves the package's Depends (python3, python3-cryptography, ...) and its
# Recommends (python3-spidev, the GPIO binding) from Raspberry Pi OS's own archive.
in_image apt-get update -qq
in_image apt-get install -y -qq /root/lora-gateway.deb
rm -f "$mnt/root/lora-gateway.deb"
in_image systemctl enable lora-gateway.service lora-gateway-import.service

if [ "$firmware" -eq 1 ]; then
  echo "build-image: Semtech AGC/ARB firmware (checked against the allow-list)"
  if [ -n "$firmware_archive" ]; then
    cp "$firmware_archive" "$mnt/root/sx1302_hal.tar.gz"
    in_image lora-gateway firmware install --archive /root/sx1302_hal.tar.gz
    rm -f "$mnt/root/sx1302_hal.tar.gz"
  else
    in_image lora-gateway firmware install
  fi
else
  echo "build-image: WARNING: no firmware in this image; run 'sudo lora-gateway firmware install' on the gateway" >&2
fi
rm -f "$resolv"
[ -n "$resolv_saved" ] && mv "$resolv_saved" "$resolv"

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
