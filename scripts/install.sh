#!/usr/bin/env bash
# Install socd from this source tree as a systemd service (docs/deployment-systemd.md).
#
#   scripts/install.sh [--prefix /opt/socd] [--etc /etc/socd] [--python /usr/bin/python3]
#                      [--unit-dir /etc/systemd/system] [--root DIR] [--no-systemd]
#   scripts/install.sh --uninstall [--purge] [same options]
#
# Install (idempotent; run it again to upgrade):
# * a virtualenv at PREFIX built with the system python3, with socd's wheel and its
#   dependencies (an existing venv is upgraded in place);
# * ETC/socd.yaml and ETC/socd.env only when absent: an operator's files are never
#   overwritten; the shipped versions always go to socd.yaml.dist / socd.env.dist;
# * ETC/rules.d/ for local rules (the shipped pack is loaded as `builtin`);
# * the units in UNIT_DIR (socd.service, the template socd@.service of the Kafka
#   scale-out roles, and the privileged firewall helper socd-blocker.service +
#   socd-blocker.socket; the last three enabled only by the operator), the
#   drop-in examples and all of docs/ in PREFIX/share/doc/socd, the user from
#   /usr/lib/sysusers.d/socd.conf (systemd-sysusers, else adduser);
# * socd on PATH (/usr/local/bin/socd -> PREFIX/bin/socd, unless another file is
#   there) and the socd(8) man page in /usr/local/share/man/man8, generated from the CLI;
# * `systemctl daemon-reload` only when systemd is running; nothing is started.
# --no-systemd skips the unit, the user and systemctl (a plain venv + config, e.g.
# for a container or a test). --root DIR installs below DIR (staging; implies that
# no user is created and systemctl is not called).
#
# Uninstall removes the venv, the units, the sysusers file, the PATH link and the man
# page; it keeps /etc/socd, /var/lib/socd (the alert store, spools, queues) and
# /var/log/socd unless --purge.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
prefix=/opt/socd
etc=/etc/socd
unit_dir=/etc/systemd/system
root=""
python=""
systemd=1
action=install
purge=0

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --etc) etc=$2; shift 2 ;;
    --unit-dir) unit_dir=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    --no-systemd) systemd=0; shift ;;
    --uninstall) action=uninstall; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

say() { echo "install: $*" >&2; }
systemd_running() { [ -z "$root" ] && [ -d /run/systemd/system ]; }
R="$root"

if [ "$action" = uninstall ]; then
    if [ "$systemd" = 1 ] && systemd_running; then
        systemctl disable --now socd.service socd-blocker.socket socd-blocker.service \
            >/dev/null 2>&1 || true
        systemctl stop 'socd@*.service' >/dev/null 2>&1 || true
    fi
    rm -f "$R$unit_dir/socd.service" "$R$unit_dir/multi-user.target.wants/socd.service"
    # The scale-out template (socd@intake, socd@worker...) and its enabled instances.
    rm -f "$R$unit_dir/socd@.service" "$R$unit_dir"/multi-user.target.wants/socd@*.service
    rm -f "$R$unit_dir/socd-blocker.service" "$R$unit_dir/socd-blocker.socket" \
        "$R$unit_dir/sockets.target.wants/socd-blocker.socket"
    rm -f "$R/usr/lib/sysusers.d/socd.conf"
    if [ "$(readlink "$R/usr/local/bin/socd" 2>/dev/null)" = "$prefix/bin/socd" ]; then
        rm -f "$R/usr/local/bin/socd" "$R/usr/local/share/man/man8/socd.8"
    fi
    rm -rf "$R$prefix"
    if [ "$purge" = 1 ]; then
        rm -rf "$R$etc" "$R/var/lib/socd" "$R/var/log/socd" "$R$unit_dir/socd.service.d"
        say "purged $etc, /var/lib/socd and /var/log/socd (the user socd stays:" \
            "deluser --system socd)"
    else
        say "kept $etc, /var/lib/socd (alerts) and /var/log/socd; --purge deletes them"
    fi
    if [ "$systemd" = 1 ] && systemd_running; then
        systemctl daemon-reload
    fi
    say "socd uninstalled from $prefix"
    exit 0
fi

# The interpreter: the system one. A venv links to its interpreter, and the unit's
# ProtectHome=yes hides /root and /home from the service (a pyenv or a ~/.local
# Python would not start).
if [ -z "$python" ]; then
    python=/usr/bin/python3
    [ -x "$python" ] || python=$(command -v python3)
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { say "socd needs Python >= 3.11 ($("$python" --version 2>&1))"; exit 1; }
real_python=$(readlink -f "$python")
case "$real_python" in
/root/*|/home/*|/run/user/*|/tmp/*|/var/tmp/*)
    if [ "$systemd" = 1 ]; then
        say "$real_python is hidden from the service (ProtectHome=/PrivateTmp=);" \
            "use a system interpreter (--python /usr/bin/python3) or --no-systemd"
        exit 1
    fi ;;
esac
"$python" -c 'import venv, ensurepip' 2>/dev/null \
    || { say "$python lacks venv/ensurepip: apt-get install python3-venv"; exit 1; }

# 1. The virtualenv (created once, upgraded in place afterwards).
venv="$R$prefix"
if [ ! -x "$venv/bin/python" ]; then
    say "creating the virtualenv $prefix with $python"
    "$python" -m venv "$venv"
fi

# 2. socd's wheel, built from a copy of the tree (the build never writes into it),
#    then installed with its dependencies.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
tar -C "$src" --exclude=./.venv --exclude=./dist --exclude=./build --exclude=.git \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude=.ruff_cache --exclude=.mypy_cache -cf - . | tar -C "$work/src" -xf -
pip=("$venv/bin/python" -m pip -q --disable-pip-version-check)
"${pip[@]}" wheel --no-deps -w "$work/wheels" "$work/src"
wheel=$(ls "$work"/wheels/socd-*.whl)
"${pip[@]}" install --force-reinstall --no-deps "$wheel"
"${pip[@]}" install "$wheel[geoip,pdf]"
# PDF reports (in the default reports.formats) need Pango: check-config refuses them
# without it, so say it now.
if ! "$venv/bin/python" -c 'import weasyprint' >/dev/null 2>&1; then
    say "PDF reports need: apt-get install libpango-1.0-0 libpangoft2-1.0-0" \
        "fonts-dejavu-core (or leave pdf out of reports.formats)"
fi

# 3. Configuration: never overwrite the operator's files.
install -d -m 0750 "$R$etc"
install -d -m 0755 "$R$etc/rules.d"
install -m 0640 "$src/deploy/systemd/socd.yaml" "$R$etc/socd.yaml.dist"
install -m 0640 "$src/deploy/systemd/socd.env" "$R$etc/socd.env.dist"
[ -e "$R$etc/rules.d/README" ] || install -m 0644 "$src/deploy/debian/rules.d-README" \
    "$R$etc/rules.d/README"
for name in socd.yaml socd.env; do
    if [ -e "$R$etc/$name" ]; then
        say "kept $etc/$name (the shipped version is $etc/$name.dist)"
    else
        install -m 0640 "$R$etc/$name.dist" "$R$etc/$name"
        if [ "$etc" != /etc/socd ] && [ "$name" = socd.yaml ]; then
            sed -i "s#/etc/socd/#$etc/#g" "$R$etc/$name"
        fi
        say "installed $etc/$name"
    fi
done

# 4. Documentation (all of docs/, its folders kept), drop-in examples, the man page,
#    socd on PATH.
doc="$venv/share/doc/socd"
install -d -m 0755 "$doc/examples/socd.service.d"
(cd "$src/docs" && find . -type f ! -name '.*' -print0) | while IFS= read -r -d '' f; do
    install -D -m 0644 "$src/docs/$f" "$doc/$f"
done
# The installers' marker: the socd command then defaults to ETC/socd.yaml, its
# environment file and the service user, and acts as that user on its state
# (socd/config/install.py).
install -d -m 0755 "$venv/share/socd"
printf 'SOCD_ETC=%s\nSOCD_SERVICE_USER=socd\n' "$etc" > "$venv/share/socd/install.env"
chmod 0644 "$venv/share/socd/install.env"
man8="$R/usr/local/share/man/man8"
install -d -m 0755 "$man8" "$R/usr/local/bin"
env -u SOCD_CONFIG PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" "$src/scripts/gen_man.py" \
    -o "$man8/socd.8"
chmod 0644 "$man8/socd.8"
link="$R/usr/local/bin/socd"
if [ -L "$link" ] || [ ! -e "$link" ]; then
    ln -sfn "$prefix/bin/socd" "$link"
else
    say "kept /usr/local/bin/socd (not a link); socd is $prefix/bin/socd"
fi
install -m 0644 "$src/deploy/prometheus/socd-alerts.yml" \
    "$src/deploy/grafana/socd-dashboard.json" "$doc/examples/"
install -m 0644 "$src/deploy/systemd/socd.yaml" "$doc/examples/"
install -m 0644 "$src"/deploy/systemd/socd.service.d/*.conf "$doc/examples/socd.service.d/"

if [ "$systemd" = 0 ]; then
    say "socd $("$venv/bin/socd" --version | cut -d' ' -f2) installed in $prefix" \
        "(no systemd unit); config in $etc"
    exit 0
fi

# 5. Units, user, ownership. socd-blocker.{service,socket}: the privileged firewall
#    helper for the blocker sink (docs/blocking.md); socd@.service: the Kafka scale-out
#    roles (docs/scaling.md); installed, never enabled here.
install -d -m 0755 "$R$unit_dir" "$R/usr/lib/sysusers.d"
for name in socd.service socd@.service socd-blocker.service socd-blocker.socket; do
    unit="$src/deploy/systemd/$name"
    if [ "$prefix" = /opt/socd ] && [ "$etc" = /etc/socd ]; then
        install -m 0644 "$unit" "$R$unit_dir/$name"
    else
        sed -e "s#/opt/socd/#$prefix/#g" -e "s#/etc/socd/#$etc/#g" "$unit" \
            > "$R$unit_dir/$name"
        chmod 0644 "$R$unit_dir/$name"
    fi
done
install -m 0644 "$src/deploy/systemd/socd.sysusers" "$R/usr/lib/sysusers.d/socd.conf"
if [ -z "$root" ]; then
    if ! getent passwd socd >/dev/null; then
        if command -v systemd-sysusers >/dev/null 2>&1; then
            systemd-sysusers /usr/lib/sysusers.d/socd.conf
        else
            adduser --system --group --home /var/lib/socd --no-create-home \
                --shell /usr/sbin/nologin socd
        fi
    fi
    chown root:socd "$etc" "$etc/rules.d" "$etc/socd.yaml" "$etc/socd.env" \
        "$etc/socd.yaml.dist" "$etc/socd.env.dist"
    install -d -o socd -g socd -m 0750 /var/lib/socd /var/log/socd
fi
if systemd_running; then
    systemctl daemon-reload
fi
say "socd $("$venv/bin/socd" --version | cut -d' ' -f2) installed in $prefix;" \
    "edit $etc/socd.yaml, then: systemctl enable --now socd"
