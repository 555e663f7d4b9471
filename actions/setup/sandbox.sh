#!/usr/bin/env bash
# Make the sandbox of untrusted code (train.isolation, the model runner) work on this runner:
# bubblewrap installed, and allowed to make its user namespace. GitHub's and Azure's Ubuntu
# images do not ship bwrap, and Ubuntu 24.04 lets unprivileged user namespaces be made only by
# programs whose AppArmor profile allows it (actions/runner-images#10443: "bwrap: setting up
# uid map: Permission denied"); the profile below allows exactly that for /usr/bin/bwrap and
# changes nothing else. Never fails the job: where it cannot (no sudo, no apt, a container job
# whose seccomp refuses namespaces), mlops-ci says "not isolated: WHY" itself, and
# train.isolation: required refuses.
set -uo pipefail
works() { bwrap --unshare-user --unshare-pid --ro-bind / / --proc /proc --dev /dev true 2>/dev/null; }
say() { echo "mlops-ci sandbox: $*"; }
if command -v bwrap >/dev/null && works; then
  say "bubblewrap works here"
  exit 0
fi
if ! sudo -n true 2>/dev/null; then
  say "bubblewrap is missing or refused and there is no passwordless sudo: not set up"
  exit 0
fi
if ! command -v bwrap >/dev/null; then
  if command -v apt-get >/dev/null; then
    sudo -n apt-get install -y -qq bubblewrap >/dev/null 2>&1 ||
      { sudo -n apt-get update -qq >/dev/null 2>&1 && sudo -n apt-get install -y -qq bubblewrap >/dev/null 2>&1; } ||
      say "apt-get could not install bubblewrap"
  else
    say "no apt-get to install bubblewrap with"
  fi
fi
if command -v bwrap >/dev/null && ! works && [ -e /proc/sys/kernel/apparmor_restrict_unprivileged_userns ] &&
  command -v apparmor_parser >/dev/null; then
  bwrap_path=$(command -v bwrap)
  sudo -n tee /etc/apparmor.d/mlops-ci-bwrap >/dev/null <<PROFILE
abi <abi/4.0>,
include <tunables/global>
profile mlops-ci-bwrap ${bwrap_path} flags=(unconfined) {
  userns,
}
PROFILE
  sudo -n apparmor_parser -r /etc/apparmor.d/mlops-ci-bwrap 2>/dev/null || say "apparmor_parser refused the bwrap profile"
fi
if command -v bwrap >/dev/null && works; then
  say "bubblewrap set up and working"
else
  say "bubblewrap does not work here: untrusted code runs not isolated (train.isolation: auto)"
fi
exit 0
