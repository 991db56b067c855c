#!/bin/sh
# An rsh/ssh stand-in for Open MPI (plm_rsh_agent) that "logs in" to a host
# that is a network namespace of this machine: tests/integration_multihost.sh.
#
# Open MPI calls it as ssh: `netns_rsh.sh [options] HOST WORD...`, where the
# words, joined with spaces, are a command line for the remote shell (quotes
# included: `orted -mca ess "env" ...`). HOST is looked up in the file named
# by NETNS_RSH_HOSTS, lines of `HOST NAMESPACE HOSTNAME`; the command runs in
# that network namespace under a UTS namespace of its own whose hostname is
# HOSTNAME, with an environment as bare as an ssh login's (PATH, HOME only),
# so that what mpirun does not forward (-x) is missing as it would be on a
# real remote host.
set -eu
while [ $# -gt 0 ]; do
  case $1 in
    -o|-l|-p|-i) shift 2 ;; # ssh options that take a value
    -*) shift ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "netns_rsh: usage: netns_rsh.sh HOST COMMAND..." >&2; exit 255; }
host=$1
shift
[ -r "${NETNS_RSH_HOSTS:-}" ] || { echo "netns_rsh: NETNS_RSH_HOSTS does not name a readable file" >&2; exit 255; }
line=$(awk -v h="$host" '$1 == h { print $2, $3; exit }' "$NETNS_RSH_HOSTS")
[ -n "$line" ] || { echo "netns_rsh: unknown host $host (not in $NETNS_RSH_HOSTS)" >&2; exit 255; }
set -- "${line%% *}" "${line#* }" "$*"
exec ip netns exec "$1" unshare --uts sh -c 'hostname "$1" && exec env -i PATH="$2" HOME="$3" sh -c "$4"' \
  netns_rsh "$2" "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin" "${HOME:-/}" "$3"
