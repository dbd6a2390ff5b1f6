#!/usr/bin/env bash
# Package a PyInstaller bundle as a .deb: program in /opt/lesion-desktop, /usr/bin/lesion-desktop symlink,
# desktop entry and hicolor icons.  Usage: build_deb.sh BUNDLE_DIR FLAVOUR VERSION OUT_DIR
# FLAVOUR full -> package lesion-desktop; lite -> lesion-desktop-lite (they install the same paths and
# conflict). DEB_COMPRESSION (default gzip) and DEB_LEVEL (default 1): the full bundle is ~4.5 GB of mostly
# CUDA libraries, and level 1 packs it several times faster than dpkg-deb's default for a few % more size.
set -euo pipefail
bundle=$(realpath "$1"); flavour=$2; version=$3; out=$(realpath "$4")
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
pkg=lesion-desktop; other=lesion-desktop-lite; desc="GPU (CUDA) and CPU edition, with retraining"
if [ "$flavour" = lite ]; then
    pkg=lesion-desktop-lite; other=lesion-desktop; desc="CPU edition (ONNX Runtime), classification only"
fi
[ -s "$bundle/licenses/INDEX.txt" ] || { echo "build_deb.sh: $bundle has no licenses/ (build it with build.spec)" >&2; exit 1; }
arch=$(dpkg --print-architecture)
mkdir -p "$out"
stage=$(mktemp -d "$out/.deb-stage.XXXXXX")  # beside the output: same file system, so hard links work
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" "$stage/usr/share/applications" "$stage/usr/share/doc/$pkg"
# Hard links: the full bundle is ~4.5 GB and dpkg-deb only reads it (fakeroot makes root own it in the .deb).
cp -al "$bundle" "$stage/opt/lesion-desktop" 2>/dev/null || cp -a "$bundle" "$stage/opt/lesion-desktop"
ln -s /opt/lesion-desktop/lesion-desktop "$stage/usr/bin/lesion-desktop"
install -m 644 "$here/lesion-desktop.desktop" "$stage/usr/share/applications/lesion-desktop.desktop"
for size in 16 24 32 48 64 128 256; do
    install -D -m 644 "$root/resources/icons/lesion-desktop-$size.png" \
        "$stage/usr/share/icons/hicolor/${size}x${size}/apps/lesion-desktop.png"
done
cat > "$stage/usr/share/doc/$pkg/copyright" <<TXT
Lesion Desktop: MIT licence (code), /opt/lesion-desktop/licenses/LICENSE-lesion-desktop.txt.

The bundled models were trained on HAM10000 (ViDIR Group, Medical University of Vienna; Tschandl, Rosendahl,
Kittler, Sci Data 5, 180161, 2018), CC BY-NC 4.0 (https://creativecommons.org/licenses/by-nc/4.0/legalcode):
the models inherit its non-commercial terms. What that means for a clinic:
/opt/lesion-desktop/licenses/THIRD_PARTY_NOTICES.md.

The program contains third-party software under its own licences (Qt/PySide6: LGPL-3.0; PyTorch: BSD-style;
OpenCV: Apache-2.0; ONNX Runtime: MIT; NVIDIA CUDA libraries in the full edition: NVIDIA's licence agreements;
and others). Each package's licence texts, found from the files the build collected, are in
/opt/lesion-desktop/licenses/ (list: /opt/lesion-desktop/licenses/INDEX.txt).
TXT
installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
# Libraries the bundle takes from the system: glibc, X11/xcb and Wayland for Qt's window system, OpenGL/EGL,
# fonts, D-Bus and GLib (Qt's event loop and portals). "t64" names are Debian 13 / Ubuntu 24.04's.
cat > "$stage/DEBIAN/control" <<CTL
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: Lesion Desktop maintainers <lesion-desktop@localhost>
Installed-Size: $installed_kb
Section: science
Priority: optional
Depends: libc6 (>= 2.36), libglib2.0-0t64 | libglib2.0-0, libdbus-1-3, libfontconfig1, libfreetype6,
 libx11-6, libx11-xcb1, libxcb1, libxcb-cursor0, libxcb-icccm4, libxcb-image0, libxcb-keysyms1, libxcb-randr0,
 libxcb-render-util0, libxcb-shape0, libxcb-shm0, libxcb-sync1, libxcb-xfixes0, libxcb-xkb1, libxkbcommon0,
 libxkbcommon-x11-0, libegl1, libgl1, libwayland-client0, libwayland-cursor0, libwayland-egl1
Conflicts: $other
Replaces: $other
Homepage: https://example.invalid/lesion-desktop
Description: Skin-lesion decision support for dermoscopy images ($desc)
 Shows how likely each of seven diagnoses (HAM10000 classes) is for a dermoscopy image, how uncertain the
 estimate is and what the models cannot judge. Decision support, not a diagnosis: a clinician makes the
 diagnosis. Includes the command line 'lesion-desktop classify'.
CTL
install -m 755 "$here/postinst" "$here/postrm" "$stage/DEBIAN/"
deb="$out/${pkg}_${version}_${arch}.deb"
fakeroot dpkg-deb --build -Z"${DEB_COMPRESSION:-gzip}" -z"${DEB_LEVEL:-1}" "$stage" "$deb" >/dev/null
echo "$deb"
