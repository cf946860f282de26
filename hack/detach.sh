# Sourced first by the scripts that start daemons which outlive them (hack/cluster/up.sh,
# hack/node/up.sh, hack/flux/up.sh): the daemons must not inherit the caller's other open files
# (a lock held by `flock`, a CI runner's pipe), or those stay open as long as the daemons run.
# Closes every inherited descriptor above 2 but the one bash reads the calling script from.
for fd in /proc/$$/fd/*; do
  fd="${fd##*/}"
  if ((fd > 2)) && [[ "$(readlink "/proc/$$/fd/$fd" 2>/dev/null)" != *"${BASH_SOURCE[1]##*/}"* ]]; then
    eval "exec $fd>&-" 2>/dev/null || true
  fi
done
