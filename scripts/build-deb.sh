#!/usr/bin/env bash
# Build dist/socd_<version>_<arch>.deb with dpkg-deb (no debhelper needed).
#
# The package holds a complete virtualenv at /opt/socd: socd's wheel and all its
# dependencies, built here against the system interpreter (/usr/bin/python3.X) and
# depending on exactly that interpreter package (python3.X). Virtualenvs are not
# relocatable, so the venv is built in a staging root and then fixed to its final
# path: script shebangs and activate scripts are rewritten from the staging path to
# /opt/socd, byte code is compiled again with /opt/socd/... as its source path, and
# the build fails if the staging path is left anywhere. The installed package needs
# no network and no pip: dpkg tracks every file, so removal is clean.
#
# Also in the package: WeasyPrint (PDF reports, the default `reports.formats` has pdf;
# its libraries are Depends), all of docs/ in /opt/socd/share/doc/socd (the shipped
# config points there), the socd(8) man page generated from the CLI by
# scripts/gen_man.py, and /usr/bin/socd -> /opt/socd/bin/socd.
#
# Usage: scripts/build-deb.sh [--python /usr/bin/python3] [--out dist]
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
python=/usr/bin/python3
out="$src/dist"
while [ $# -gt 0 ]; do
    case "$1" in
    --python) python=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "build-deb: unknown option $1" >&2; exit 2 ;;
    esac
done

for tool in dpkg-deb dpkg; do
    command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing" >&2; exit 1; }
done
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "build-deb: socd needs Python >= 3.11, $python is $pyver" >&2
    exit 1
fi
# The versioned interpreter: the venv links to it and the package depends on it.
interp=$(dirname "$(readlink -f "$python")")/python$pyver
[ -x "$interp" ] || { echo "build-deb: $interp not found" >&2; exit 1; }
case "$interp" in
/usr/bin/*) ;;
*) echo "build-deb: $interp is not a Debian interpreter (/usr/bin/python3.X)" >&2; exit 1 ;;
esac
"$interp" -c 'import venv, ensurepip' 2>/dev/null \
    || { echo "build-deb: $interp lacks venv/ensurepip (apt-get install python3-venv)" >&2; exit 1; }

version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$src/socd/__init__.py")
arch=$(dpkg --print-architecture)
prefix=/opt/socd
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage="$work/root"
venv="$stage$prefix"

echo "build-deb: socd $version for $arch with python$pyver" >&2
# 1. socd's wheel from the source tree (a copy: the build must not touch the tree).
mkdir -p "$work/src"
tar -C "$src" --exclude=./.venv --exclude=./dist --exclude=./build --exclude=.git \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude=.ruff_cache --exclude=.mypy_cache -cf - . | tar -C "$work/src" -xf -
"$interp" -m pip wheel -q --no-deps -w "$work/wheels" "$work/src"
wheel=$(ls "$work"/wheels/socd-*.whl)

# 2. The venv with socd and its dependencies (the pip cache makes rebuilds fast).
"$interp" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-warn-script-location \
    "$wheel[geoip,pdf]"
"$venv/bin/python" -m pip uninstall -q -y pip setuptools >/dev/null 2>&1 || true
# The man page, from the installed CLI's parser (byte code goes in step 3 anyway).
env -u SOCD_CONFIG COLUMNS=80 SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(date +%s)}" \
    "$venv/bin/python" "$src/scripts/gen_man.py" -o "$work/socd.8"
if grep -qF "$work" "$work/socd.8"; then
    echo "build-deb: the staging path is in the man page" >&2
    exit 1
fi
rm -f "$venv"/bin/pip* "$venv"/bin/activate.fish "$venv"/bin/activate.csh "$venv"/bin/Activate.ps1
find "$venv" -name direct_url.json -delete

# 3. Make the venv live at /opt/socd.
grep -rlI --null -F "$venv" "$venv/bin" "$venv/pyvenv.cfg" | xargs -0 -r sed -i "s#$venv#$prefix#g"
find "$venv" -name __pycache__ -type d -prune -exec rm -rf {} +
"$venv/bin/python" -m compileall -q -j 0 -s "$stage" -p / "$venv/lib" >/dev/null
if left=$(grep -rlF "$stage" "$stage" | head -5) && [ -n "$left" ]; then
    echo "build-deb: the staging path is still in:" >&2
    echo "$left" >&2
    exit 1
fi

# 4. Configuration, units, user, documentation.
install -d -m 0755 "$stage/etc/socd" "$stage/etc/socd/rules.d" \
    "$stage/usr/lib/systemd/system" "$stage/usr/lib/sysusers.d" \
    "$venv/share/doc/socd/examples/socd.service.d"
install -m 0640 "$src/deploy/systemd/socd.yaml" "$stage/etc/socd/socd.yaml"
install -m 0640 "$src/deploy/systemd/socd.env" "$stage/etc/socd/socd.env"
install -m 0644 "$src/deploy/debian/rules.d-README" "$stage/etc/socd/rules.d/README"
install -m 0644 "$src/deploy/systemd/socd.service" "$src/deploy/systemd/socd-blocker.service" \
    "$src/deploy/systemd/socd-blocker.socket" "$src/deploy/systemd/socd@.service" \
    "$stage/usr/lib/systemd/system/"
install -m 0644 "$src/deploy/systemd/socd.sysusers" "$stage/usr/lib/sysusers.d/socd.conf"
# The installers' marker: the socd command then defaults to /etc/socd/socd.yaml, its
# environment file and the service user, and acts as that user on its state
# (socd/config/install.py).
install -d -m 0755 "$venv/share/socd"
printf 'SOCD_ETC=/etc/socd\nSOCD_SERVICE_USER=socd\n' > "$venv/share/socd/install.env"
chmod 0644 "$venv/share/socd/install.env"
# All of docs/, its folders kept (the pages link to each other: sources/mqtt.md...).
(cd "$src/docs" && find . -type f ! -name '.*' -print0) | while IFS= read -r -d '' f; do
    install -D -m 0644 "$src/docs/$f" "$venv/share/doc/socd/$f"
done
install -d -m 0755 "$stage/usr/share/man/man8" "$stage/usr/bin"
gzip -9n < "$work/socd.8" > "$stage/usr/share/man/man8/socd.8.gz"
chmod 0644 "$stage/usr/share/man/man8/socd.8.gz"
ln -s "$prefix/bin/socd" "$stage/usr/bin/socd"
install -m 0644 "$src/deploy/prometheus/socd-alerts.yml" "$venv/share/doc/socd/examples/socd-alerts.yml"
install -m 0644 "$src/deploy/grafana/socd-dashboard.json" \
    "$venv/share/doc/socd/examples/socd-dashboard.json"
install -m 0644 "$src/deploy/systemd/socd.yaml" "$venv/share/doc/socd/examples/socd.yaml"
install -m 0644 "$src"/deploy/systemd/socd.service.d/*.conf \
    "$venv/share/doc/socd/examples/socd.service.d/"

# 5. Control files.
install -d -m 0755 "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@PYTHON@/python$pyver/g" \
    -e "s/@INSTALLED_SIZE@/$size/" "$src/deploy/debian/control.in" > "$stage/DEBIAN/control"
install -m 0644 "$src/deploy/debian/conffiles" "$stage/DEBIAN/conffiles"
install -m 0755 "$src/deploy/debian/postinst" "$src/deploy/debian/prerm" \
    "$src/deploy/debian/postrm" "$stage/DEBIAN/"

mkdir -p "$out"
deb="$out/socd_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz -z6 --build "$stage" "$deb" >/dev/null
echo "$deb"
