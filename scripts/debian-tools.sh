# shellcheck shell=bash
# Installing the Debian packages the check scripts need (sourced, not run). The caller sets
# TOOL (the name its messages start with) and defines `die MESSAGE`, and calls
# `remove_policy_rc_d` from its EXIT trap, so an interrupted install leaves nothing behind.

run_as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "installing Debian packages needs root or sudo: $*"
    fi
}

apt_updated=no
apt_install() { # PACKAGE...
    if [[ $apt_updated == no ]]; then
        run_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        apt_updated=yes
    fi
    run_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

policy_installed=no
remove_policy_rc_d() {
    if [[ $policy_installed == yes ]]; then
        run_as_root rm -f /usr/sbin/policy-rc.d
        policy_installed=no
    fi
}

# Debian's `prometheus` package ships /usr/bin/promtool. Its post-install script would start a
# prometheus daemon; a policy-rc.d that refuses (exit 101, Debian's documented way) keeps it
# from starting, and is removed again afterwards. A daemon that starts anyway is stopped through
# the service manager, and only if none was running before.
install_promtool() {
    echo "$TOOL: promtool not found; installing Debian's prometheus package"
    local was_running=no
    if pgrep -x prometheus >/dev/null 2>&1; then
        was_running=yes
    fi
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# Written by %s for one install; removed after it.\nexit 101\n' "$TOOL" \
            | run_as_root tee /usr/sbin/policy-rc.d >/dev/null
        run_as_root chmod 755 /usr/sbin/policy-rc.d
        policy_installed=yes
    fi
    apt_install prometheus
    remove_policy_rc_d
    if [[ $was_running == no ]] && pgrep -x prometheus >/dev/null 2>&1; then
        echo "$TOOL: the package started a prometheus daemon; stopping it"
        if [[ -d /run/systemd/system ]]; then
            run_as_root systemctl stop prometheus || true
        else
            run_as_root service prometheus stop || true
        fi
    fi
    command -v promtool >/dev/null || die "installing the prometheus package gave no promtool"
}
