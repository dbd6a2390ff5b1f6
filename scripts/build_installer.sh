#!/usr/bin/env bash
# Build the frozen program (PyInstaller, build.spec) and its Linux installer (.deb) for each flavour, and
# smoke-test what a user gets: the frozen CLI must classify the sample folder with the bundled models exactly
# as the unfrozen CLI does (same predictions, probabilities within $TOLERANCE), the frozen GUI must start
# offscreen, classify one image and exit 0, and the .deb must install, run and uninstall cleanly.
#
#   bash scripts/build_installer.sh            # both flavours: full (PyTorch + CUDA) and lite (ONNX Runtime)
#   bash scripts/build_installer.sh lite       # one flavour
#
# Environment: LESION_MODELS_DIR (default resources/models/default), SAMPLE (default
# ../shared/data/ham10000_fullres_sample), TOLERANCE (default 1e-4), PYTHON (default .venv/bin/python),
# SKIP_DEB_TEST=1 (build the .deb but do not install it; the test needs root and dpkg), CLEAN=1 (fresh
# PyInstaller work folders), RELEASE=1 (stop unless every installed package has the version pinned in
# packaging/constraints-release.txt; without it, differences are listed and the build goes on).
# Results: dist/, logs and CSVs in build/smoke/, figures in build/installer-summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
if [ $# -gt 0 ]; then FLAVOURS=("$@"); else FLAVOURS=(full lite); fi
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
MODELS=$(realpath "${LESION_MODELS_DIR:-resources/models/default}")
SAMPLE=${SAMPLE:-../shared/data/ham10000_fullres_sample}
TOLERANCE=${TOLERANCE:-1e-4}
SMOKE=$ROOT/build/smoke
SUMMARY=$ROOT/build/installer-summary.md
NICE=(nice -n 10)
VERSION=$("$PY" -c "import lesion_desktop; print(lesion_desktop.__version__)")  # the one place it is written
mkdir -p "$SMOKE" build/logs dist
t_all=$(date +%s)

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
human() { numfmt --to=iec --suffix=B --format='%.2f' "$1"; }
fresh_home() { mktemp -d "${TMPDIR:-/tmp}/lesion-smoke-home.XXXXXX"; }  # no installed models, no settings

[ -f "$MODELS/manifest.json" ] || fail "no models in $MODELS (set LESION_MODELS_DIR)"
[ -d "$SAMPLE" ] || fail "sample folder $SAMPLE is missing"
FIRST_IMAGE=$(find "$SAMPLE" -type f -iname '*.jpg' | sort | awk 'NR == 1')  # awk reads all: no SIGPIPE
"$PY" -m PyInstaller --version >/dev/null 2>&1 \
    || "$PY" -m pip install -q -c packaging/constraints-release.txt pyinstaller pyinstaller-hooks-contrib \
    || fail "PyInstaller is not installed (pip install -c packaging/constraints-release.txt -e '.[build]')"
say "Versions against packaging/constraints-release.txt"
strict=(); [ "${RELEASE:-0}" = 1 ] && strict=(--strict)
"$PY" packaging/check_constraints.py "${strict[@]}" | tee "$SMOKE/constraints.txt" \
    || fail "RELEASE=1: installed packages differ from packaging/constraints-release.txt (listed above)"

say "Reference: the unfrozen CLI (PyTorch, CPU) on $SAMPLE with $MODELS"
t=$(date +%s)
LESION_DESKTOP_HOME=$(fresh_home) "${NICE[@]}" "$PY" -m lesion_desktop classify "$SAMPLE" --models "$MODELS" \
    --device cpu --backend torch -o "$SMOKE/unfrozen.csv" 2>"$SMOKE/unfrozen.log" || fail "unfrozen CLI (see $SMOKE/unfrozen.log)"
echo "reference CSV: $(($(wc -l <"$SMOKE/unfrozen.csv") - 1)) rows in $(($(date +%s) - t)) s"

{
    echo "| flavour | build | bundle | .deb | .deb build | frozen CLI vs unfrozen | GUI offscreen | .deb install/run/remove |"
    echo "|---|---|---|---|---|---|---|---|"
} >"$SUMMARY.rows"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }

deb_test() {  # deb flavour: install with dpkg -i, run CLI and GUI from /usr/bin, remove, check nothing is left
    local deb=$1 flavour=$2 pkg
    pkg=$(dpkg-deb -f "$deb" Package)
    if [ "${SKIP_DEB_TEST:-0}" = 1 ] || [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null; then
        echo "not tested (needs root and dpkg; SKIP_DEB_TEST=${SKIP_DEB_TEST:-0})"; return 0
    fi
    if installed lesion-desktop || installed lesion-desktop-lite; then
        echo "not tested (a lesion-desktop package is already installed here; not touching it)"; return 0
    fi
    # What the package depends on comes from the distribution first: dpkg -i does not fetch dependencies.
    local depends; depends=$(dpkg-deb -f "$deb" Depends | tr '\n' ' ')
    apt-get satisfy -y -q --no-install-recommends "$depends" >"$SMOKE/$flavour-deps.log" 2>&1 \
        || { apt-get update -q >>"$SMOKE/$flavour-deps.log" 2>&1 \
             && apt-get satisfy -y -q --no-install-recommends "$depends" >>"$SMOKE/$flavour-deps.log" 2>&1; } \
        || fail "cannot install the .deb's dependencies (see $SMOKE/$flavour-deps.log)"
    local watch=(/opt /usr/bin /usr/share/applications /usr/share/icons /usr/share/doc)
    find "${watch[@]}" -xdev 2>/dev/null | grep -v 'icon-theme.cache$' | sort >"$SMOKE/$flavour-fs-before.txt"
    local t0; t0=$(date +%s)
    dpkg -i "$deb" >"$SMOKE/$flavour-dpkg-i.log" 2>&1 || fail "dpkg -i $deb (see $SMOKE/$flavour-dpkg-i.log)"
    local t_inst=$(($(date +%s) - t0))
    [ -L /usr/bin/lesion-desktop ] && [ -x /opt/lesion-desktop/lesion-desktop ] || fail "$pkg: program not in place"
    [ -f /usr/share/applications/lesion-desktop.desktop ] || fail "$pkg: no desktop entry"
    [ -f /usr/share/icons/hicolor/256x256/apps/lesion-desktop.png ] || fail "$pkg: no icon"
    (cd "$ROOT" && LESION_DESKTOP_HOME=$(fresh_home) /usr/bin/lesion-desktop classify "$SAMPLE" \
        -o "$SMOKE/$flavour-deb.csv") >"$SMOKE/$flavour-deb-cli.log" 2>&1 || fail "installed CLI ($SMOKE/$flavour-deb-cli.log)"
    local cmp; cmp=$("$PY" packaging/compare_csv.py "$SMOKE/unfrozen.csv" "$SMOKE/$flavour-deb.csv" \
        --tolerance "$TOLERANCE") || fail "installed CLI: $cmp"
    LESION_DESKTOP_HOME=$(fresh_home) QT_QPA_PLATFORM=offscreen timeout 600 /usr/bin/lesion-desktop \
        --open "$FIRST_IMAGE" --quit-after-result >"$SMOKE/$flavour-deb-gui.log" 2>&1 \
        || fail "installed GUI (see $SMOKE/$flavour-deb-gui.log)"
    t0=$(date +%s)
    dpkg -r "$pkg" >"$SMOKE/$flavour-dpkg-r.log" 2>&1 || fail "dpkg -r $pkg"
    local t_rm=$(($(date +%s) - t0))
    find "${watch[@]}" -xdev 2>/dev/null | grep -v 'icon-theme.cache$' | sort >"$SMOKE/$flavour-fs-after.txt"
    if installed "$pkg"; then fail "$pkg still installed"; fi
    local left; left=$(diff "$SMOKE/$flavour-fs-before.txt" "$SMOKE/$flavour-fs-after.txt" | grep -c '^[<>]' || true)
    [ "$left" = 0 ] || fail "$pkg: removal left $left path(s) changed (diff $SMOKE/$flavour-fs-{before,after}.txt)"
    dpkg -P "$pkg" >>"$SMOKE/$flavour-dpkg-r.log" 2>&1 || fail "dpkg -P $pkg"  # drop dpkg's record too
    echo "dpkg -i ${t_inst} s; /usr/bin CLI ${cmp#*: }; GUI exit 0; dpkg -r ${t_rm} s, nothing left"
}

for flavour in "${FLAVOURS[@]}"; do
    case $flavour in full) name=lesion-desktop ;; lite) name=lesion-desktop-lite ;; *) fail "unknown flavour $flavour" ;; esac
    bundle=$ROOT/dist/$name
    env_extra=(LESION_FLAVOUR="$flavour" LESION_MODELS_DIR="$MODELS")
    t_build=$(date +%s)
    if [ "$flavour" = lite ] && find "$MODELS" -name '*.onnx' | grep -q .; then
        say "lite: $MODELS carries its ONNX graphs; no export"
    elif [ "$flavour" = lite ]; then
        say "lite: exporting the ensemble to ONNX (checked against PyTorch)"
        "${NICE[@]}" "$PY" packaging/export_onnx.py --models "$MODELS" --output build/onnx-models/default \
            --check-images "$SAMPLE" --tolerance "$TOLERANCE" >"$SMOKE/lite-export.log" 2>&1 \
            || { tail -n 20 "$SMOKE/lite-export.log"; fail "ONNX export (see $SMOKE/lite-export.log)"; }
        grep -E '^(exported|ONNX export)' "$SMOKE/lite-export.log"
        env_extra+=(LESION_ONNX_DIR="$ROOT/build/onnx-models/default")
    fi
    say "$flavour: PyInstaller build -> $bundle"
    rm -rf "$bundle"
    clean=(); [ "${CLEAN:-0}" = 1 ] && clean=(--clean)
    env "${env_extra[@]}" "${NICE[@]}" "$PY" -m PyInstaller --noconfirm "${clean[@]}" --log-level WARN \
        --distpath dist --workpath "build/pyi-$flavour" build.spec >"build/logs/pyinstaller-$flavour.log" 2>&1 \
        || { tail -n 30 "build/logs/pyinstaller-$flavour.log"; fail "PyInstaller ($flavour)"; }
    build_s=$(($(date +%s) - t_build))
    bundle_bytes=$(du -sb "$bundle" | cut -f1)
    echo "built in ${build_s} s, $(human "$bundle_bytes")"
    if [ "$flavour" = lite ] && [ -e "$bundle/_internal/torch" ]; then fail "the lite bundle contains torch"; fi
    if [ -e "$bundle/_internal/huggingface_hub" ]; then fail "the $flavour bundle contains huggingface_hub"; fi
    [ -s "$bundle/licenses/INDEX.txt" ] || fail "the $flavour bundle has no licences/INDEX.txt"
    echo "licences: $(find "$bundle/licenses" -mindepth 1 -maxdepth 1 -type d | wc -l) folders of texts, index $bundle/licenses/INDEX.txt"

    say "$flavour: frozen CLI classifies $SAMPLE with the bundled models"
    (LESION_DESKTOP_HOME=$(fresh_home) "$bundle/lesion-desktop" classify "$SAMPLE" -o "$SMOKE/$flavour.csv") \
        >"$SMOKE/$flavour-cli.log" 2>&1 || { cat "$SMOKE/$flavour-cli.log"; fail "frozen CLI ($flavour)"; }
    cli_cmp=$("$PY" packaging/compare_csv.py "$SMOKE/unfrozen.csv" "$SMOKE/$flavour.csv" --tolerance "$TOLERANCE") \
        || { echo "$cli_cmp"; fail "frozen CLI output differs ($flavour)"; }
    echo "$cli_cmp"

    say "$flavour: frozen GUI offscreen opens $(basename "$FIRST_IMAGE"), classifies it and quits"
    t=$(date +%s)
    gui_home=$(fresh_home)
    LESION_DESKTOP_HOME=$gui_home QT_QPA_PLATFORM=offscreen timeout 600 "$bundle/lesion-desktop" \
        --open "$FIRST_IMAGE" --quit-after-result --screenshot "$SMOKE/$flavour-gui.png" >"$SMOKE/$flavour-gui.log" 2>&1 \
        || { tail -n 20 "$SMOKE/$flavour-gui.log"; fail "frozen GUI ($flavour) exited non-zero"; }
    [ -s "$SMOKE/$flavour-gui.png" ] || fail "frozen GUI ($flavour) showed no result"
    cp "$gui_home/data/logs/lesion-desktop.log" "$SMOKE/$flavour-gui-app.log" 2>/dev/null || true
    gui_s=$(($(date +%s) - t))
    echo "GUI exited 0 after ${gui_s} s (screenshot $SMOKE/$flavour-gui.png)"

    say "$flavour: .deb"
    t=$(date +%s)
    deb=$("${NICE[@]}" packaging/linux/build_deb.sh "$bundle" "$flavour" "$VERSION" dist)
    deb_s=$(($(date +%s) - t))
    deb_bytes=$(stat -c %s "$deb")
    echo "$deb: $(human "$deb_bytes") in ${deb_s} s"
    deb_result=$(deb_test "$deb" "$flavour")
    echo "$deb_result"

    echo "| $flavour | ${build_s} s | $(human "$bundle_bytes") | $(human "$deb_bytes") | ${deb_s} s | ${cli_cmp#*: } | exit 0 in ${gui_s} s | $deb_result |" \
        >>"$SUMMARY.rows"
done

total_s=$(($(date +%s) - t_all))
{
    echo "Built $(date -u '+%Y-%m-%d %H:%M UTC') on $(. /etc/os-release && echo "$PRETTY_NAME"), $(nproc) cores,"
    echo "models: $MODELS ($("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['name'])" "$MODELS/manifest.json" 2>/dev/null || echo '?')),"
    echo "sample: $SAMPLE, tolerance $TOLERANCE; total ${total_s} s."
    echo
    cat "$SUMMARY.rows"
} >"$SUMMARY"
rm -f "$SUMMARY.rows"
say "Summary (also in $SUMMARY)"
cat "$SUMMARY"
