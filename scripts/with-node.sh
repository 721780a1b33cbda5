#!/usr/bin/env bash
# Runs a command with another Node.js version first on PATH, e.g. to test on the next LTS beside the machine's Node.
# Usage: scripts/with-node.sh <major or version> -- <command...>      e.g. scripts/with-node.sh 24 -- npm test
# The binary is the official build as the npm registry ships it (package node-<os>-<arch>, bin/node), fetched with
# `npm pack` once and kept in .cache/node-<version>/ (gitignored); delete that folder to pick up a newer release.
# npm, npx and everything they start (vitest, tsx, worker threads) then run on that node; npm itself is the machine's.
set -euo pipefail

usage() { echo "usage: $0 <major|major.minor|major.minor.patch> -- <command...>" >&2; exit 2; }
[[ $# -ge 3 && "$1" =~ ^[0-9]+(\.[0-9]+){0,2}$ && "$2" == "--" ]] || usage
version=$1
shift 2

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) echo "with-node: no node-<os>-<arch> package for $(uname -s)" >&2; exit 1 ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "with-node: no node-${os}-<arch> package for $(uname -m)" >&2; exit 1 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/node-$version"

if [[ ! -x "$dest/bin/node" ]]; then
  mkdir -p "$root/.cache"
  work=$(mktemp -d "$root/.cache/.node-$version.XXXXXX")
  chmod 755 "$work"
  trap 'rm -rf "$work"' EXIT
  echo "with-node: fetching node-${os}-${arch}@${version} from the npm registry" >&2
  # --prefer-offline: a version already in npm's cache is used as is (CI machines without a registry still work).
  tarball=$(cd "$work" && npm pack --silent --prefer-offline "node-${os}-${arch}@${version}" | tail -1)
  tar -xzf "$work/$tarball" -C "$work" package/bin/node
  mkdir -p "$work/bin"
  mv "$work/package/bin/node" "$work/bin/node"
  rm -rf "$work/package" "${work:?}/$tarball"
  got=$("$work/bin/node" --version)
  [[ "$got" == "v$version" || "$got" == "v$version."* ]] || { echo "with-node: asked for $version, the package holds $got" >&2; exit 1; }
  # Renamed into place in one step, so a concurrent run never sees half a download.
  mv -T "$work" "$dest" 2>/dev/null || rm -rf "$work"
  trap - EXIT
fi

export PATH="$dest/bin:$PATH"
echo "with-node: $(node --version) ($dest/bin/node)" >&2
exec "$@"
