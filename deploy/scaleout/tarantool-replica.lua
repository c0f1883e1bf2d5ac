-- A read-only Tarantool replica of Planetmint's Tarantool, for one planetmint-streams node.
-- Tarantool's own replication copies every space and row from the master; the stream node
-- reads here (with push: its trigger fires for replicated rows) and so puts no load on the
-- Tarantool Planetmint writes to. Start: `tarantool tarantool-replica.lua` with
-- MASTER=host:port (Planetmint's Tarantool) and LISTEN=127.0.0.1:3301 in the environment.
local master = os.getenv('MASTER') or '127.0.0.1:3303'
local listen = os.getenv('LISTEN') or '127.0.0.1:3301'
box.cfg{
    listen = listen,
    replication = { master },   -- as the user the master grants replication to (guest in Planetmint's setup)
    read_only = true,
    replication_connect_timeout = 30,
    work_dir = os.getenv('WORK_DIR') or '.',
    log = os.getenv('LOG') or 'tarantool-replica.log',
}
