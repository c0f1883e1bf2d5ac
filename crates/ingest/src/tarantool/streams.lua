-- planetmint-streams: server-side helpers, installed by the stream service through `eval`
-- on every new connection (a Tarantool restart forgets them). Running it again is safe: it
-- replaces the trigger it installed before and keeps the commit watermark.
--
-- Why this exists: to notice a committed block within a millisecond without polling, and to
-- read whole blocks (row, transactions, outputs) in one round trip. On Tarantool 2.6 other
-- fibers can see a row before its WAL write has committed, so readers only go up to a
-- watermark that `box.on_commit` advances.
local PROTOCOL = 3

local fiber = require('fiber')
local msgpack = require('msgpack')

local blocks = box.space.blocks
if blocks == nil then
    error('planetmint-streams: space "blocks" does not exist (is this Planetmint\'s Tarantool, and is its schema initialised?)')
end
local by_height = blocks.index.height
if by_height == nil then
    error('planetmint-streams: space "blocks" has no index "height"')
end
local transactions = box.space.transactions
if transactions == nil then
    error('planetmint-streams: space "transactions" does not exist')
end
local governance = box.space.governance
local outputs = box.space.outputs
local outputs_by_tx = outputs ~= nil and outputs.index.transaction_id or nil
-- Planetmint's `init_chain` stores an empty block row at genesis and after a chain migration,
-- at the height of an `abci_chains` row written before it, and publishes nothing for it.
local abci_chains = box.space.abci_chains
local chains_by_height = abci_chains ~= nil and abci_chains.index.height or nil

local M = rawget(_G, 'planetmint_streams')
if M == nil then
    M = {}
    rawset(_G, 'planetmint_streams', M)
end
M.protocol = PROTOCOL
M.cond = M.cond or fiber.cond()
-- When each recent block committed (Tarantool's clock), for the commit-to-send latency the
-- stream service reports: a ring of COMMIT_TIMES slots keyed by height, so it never grows.
local COMMIT_TIMES = 4096
M.commit_times = M.commit_times or {}

local function highest()
    local t = by_height:max()
    if t == nil then return 0 end
    return t[3]
end

-- Rows visible at install time are taken as committed: the watermark starts there.
if M.committed == nil then
    M.committed = highest()
end

-- Runs inside Planetmint's own write: it must never raise, or the write would fail.
local function on_block(old, new)
    if new == nil then return end
    local height = tonumber(new[3])
    if height == nil then return end
    pcall(box.on_commit, function()
        M.commit_times[height % COMMIT_TIMES] = {height, fiber.time()}
        if height > M.committed then
            M.committed = height
        end
        M.cond:broadcast()
    end)
end
blocks:on_replace(on_block, M.trigger)
M.trigger = on_block

-- The row of transaction `id` (box.NULL when stored nowhere) and whether it is in `governance`.
local function find_transaction(id)
    local t = transactions:get(id)
    if t ~= nil then return t, false end
    if governance ~= nil then
        t = governance:get(id)
        if t ~= nil then return t, true end
    end
    return box.NULL, false
end

-- When block `height` committed (seconds since the epoch), or box.NULL when not seen.
local function commit_time(height)
    local slot = M.commit_times[height % COMMIT_TIMES]
    if slot ~= nil and slot[1] == height then return slot[2] end
    return box.NULL
end

local function starts_chain(row, ids)
    if chains_by_height == nil or #ids > 0 then return false end
    return chains_by_height:count({row[3]}) > 0
end

-- Blocks with after < height <= min(upto, watermark) (upto < 0: no bound), at most
-- max_blocks of them and about max_txs transactions (always at least one block). When none is
-- committed yet, waits up to `wait` seconds for one. Returns a MessagePack string:
-- [watermark, [[block_row, [tx_row | nil, ...], [output_row, ...], [governance positions],
--               chain_start, commit time | nil], ...]]
-- Rows are passed on whole, whatever their length: the reader decides what it can use.
function M.blocks(after, upto, max_blocks, max_txs, wait)
    if wait > 0 and M.committed <= after then
        local deadline = fiber.clock() + wait
        while M.committed <= after do
            local left = deadline - fiber.clock()
            if left <= 0 then break end
            M.cond:wait(left)
        end
    end
    local limit = M.committed
    if upto >= 0 and upto < limit then
        limit = upto
    end
    local out = {}
    local txs_total = 0
    for _, row in by_height:pairs({after}, {iterator = 'GT'}) do
        if row[3] > limit or #out >= max_blocks then break end
        local ids = row[4]
        if type(ids) ~= 'table' then ids = {} end
        if #out > 0 and txs_total + #ids > max_txs then break end
        local txs = {}
        local outs = {}
        local in_governance = {}
        for i, id in ipairs(ids) do
            local t, gov = find_transaction(id)
            txs[i] = t
            if gov then in_governance[#in_governance + 1] = i - 1 end
            if outputs_by_tx ~= nil and type(id) == 'string' then
                for _, o in outputs_by_tx:pairs({id}) do
                    outs[#outs + 1] = o
                end
            end
        end
        out[#out + 1] = {row, txs, outs, in_governance, starts_chain(row, ids),
                         commit_time(row[3])}
        txs_total = txs_total + #ids
    end
    return msgpack.encode({M.committed, out})
end

-- [lowest stored height, watermark], or [] when there is no block row.
function M.bounds()
    local lowest = by_height:min()
    if lowest == nil then return {} end
    return {lowest[3], M.committed}
end

return PROTOCOL, box.info.version
