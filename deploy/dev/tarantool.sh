#!/usr/bin/env bash
# Starts a development Tarantool with Planetmint's schema (deploy/tarantool/planetmint-schema.lua)
# in the foreground. Usage: deploy/dev/tarantool.sh [PORT] [DATA_DIR]
#   PORT      IPROTO port on 127.0.0.1 (default 3303, Planetmint's)
#   DATA_DIR  where snapshots and WAL go (default .demo/tarantool); data survives restarts
# MEMTX_MEMORY (environment): Tarantool's memtx_memory in bytes (default 256 MiB).
# `guest` gets every privilege, as in Planetmint's deployments; this is for development only.
set -euo pipefail
port="${1:-3303}"
dir="${2:-.demo/tarantool}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
command -v tarantool >/dev/null || { echo "tarantool is not installed: apt-get install -y tarantool" >&2; exit 1; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
cp "$here/deploy/tarantool/planetmint-schema.lua" "$dir/planetmint-schema.lua"
cat > "$dir/init.lua" <<LUA
box.cfg{ listen = '127.0.0.1:${port}', work_dir = '${dir}', log = 'tarantool.log',
         memtx_memory = ${MEMTX_MEMORY:-268435456} }
box.once('grant-guest', function()
    box.schema.user.grant('guest', 'read,write,execute,create,drop,alter', 'universe', nil, { if_not_exists = true })
end)
dofile('planetmint-schema.lua')
require('log').info('planetmint-streams dev Tarantool ready on port ${port}')
-- Marker for scripts: the port opens before the schema is loaded.
local ready = io.open('ready', 'w') ready:write('ok') ready:close()
LUA
cd "$dir"
rm -f ready
exec tarantool init.lua
