-- Planetmint's Tarantool schema, for development and tests of planetmint-streams.
--
-- Written from the facts in docs/planetmint-tarantool.md (the spaces, formats and indexes that
-- Planetmint 2.5.3's `init()` creates, as a Tarantool reported them). Usage, after box.cfg{}:
--     dofile('planetmint-schema.lua')
-- Safe to run again. On Tarantool >= 2.10 it also creates the two multikey indexes on
-- inputs[*].fulfills that Planetmint uses for spend checks; Tarantool 2.6 rejects every CREATE
-- with them ("expected map" on the null `fulfills`), and a stream reader never uses them.

local function version_at_least(major, minor)
    local maj, min = string.match(box.info.version, '^(%d+)%.(%d+)')
    maj, min = tonumber(maj), tonumber(min)
    return maj > major or (maj == major and min >= minor)
end

box.once('planetmint-streams-dev-schema-v1', function()
    local function ledger_space(name)
        local s = box.schema.space.create(name, { if_not_exists = true })
        s:format({
            { name = 'id', type = 'string' },
            { name = 'operation', type = 'string' },
            { name = 'version', type = 'string' },
            { name = 'metadata', type = 'string', is_nullable = true },
            { name = 'assets', type = 'array' },
            { name = 'inputs', type = 'array' },
            { name = 'scripts', type = 'map', is_nullable = true },
        })
        s:create_index('id', { parts = { { field = 'id', type = 'string' } } })
        return s
    end

    local blocks = box.schema.space.create('blocks', { if_not_exists = true })
    blocks:format({
        { name = 'id', type = 'string' },
        { name = 'app_hash', type = 'string' },
        { name = 'height', type = 'unsigned' },
        { name = 'transaction_ids', type = 'array' },
    })
    blocks:create_index('id', { parts = { { field = 'id', type = 'string' } } })
    blocks:create_index('height', { parts = { { field = 'height', type = 'unsigned' } } })
    blocks:create_index('block_by_transaction_id', {
        parts = { { field = 'transaction_ids[*]', type = 'string' } },
    })

    local transactions = ledger_space('transactions')
    transactions:create_index('transactions_by_asset_id', {
        unique = false,
        parts = { { field = 'assets[*].id', type = 'string', is_nullable = true } },
    })
    transactions:create_index('transactions_by_asset_cid', {
        unique = false,
        parts = { { field = 'assets[*].data', type = 'string', is_nullable = true } },
    })
    transactions:create_index('transactions_by_metadata_cid', {
        unique = false,
        parts = { { field = 'metadata', type = 'string', is_nullable = true } },
    })
    transactions:create_index('transactions_by_id_and_operation', {
        parts = {
            { field = 'id', type = 'string' },
            { field = 'operation', type = 'string' },
            { field = 'assets[*].id', type = 'string', is_nullable = true },
        },
    })

    local governance = ledger_space('governance')
    governance:create_index('governance_by_asset_id', {
        unique = false,
        parts = { { field = 'assets[*].id', type = 'string', is_nullable = true } },
    })

    local function output_space(name, by_tx, by_tx_and_index)
        local s = box.schema.space.create(name, { if_not_exists = true })
        s:format({
            { name = 'id', type = 'string' },
            { name = 'amount', type = 'unsigned' },
            { name = 'public_keys', type = 'array' },
            { name = 'condition', type = 'map' },
            { name = 'output_index', type = 'number' },
            { name = 'transaction_id', type = 'string' },
        })
        s:create_index('id', { parts = { { field = 'id', type = 'string' } } })
        s:create_index(by_tx, { unique = false, parts = { { field = 'transaction_id', type = 'string' } } })
        if by_tx_and_index ~= nil then
            s:create_index(by_tx_and_index, {
                parts = {
                    { field = 'transaction_id', type = 'string' },
                    { field = 'output_index', type = 'unsigned' },
                },
            })
        end
        s:create_index('public_keys', { unique = false, parts = { { field = 'public_keys[*]', type = 'string' } } })
    end
    output_space('outputs', 'transaction_id', nil)
    output_space('utxos', 'utxos_by_transaction_id', 'utxo_by_transaction_id_and_output_index')

    local pre_commits = box.schema.space.create('pre_commits', { if_not_exists = true })
    pre_commits:format({
        { name = 'id', type = 'string' },
        { name = 'height', type = 'unsigned' },
        { name = 'transaction_ids', type = 'array' },
    })
    pre_commits:create_index('id', { parts = { { field = 'id', type = 'string' } } })
    pre_commits:create_index('height', { parts = { { field = 'height', type = 'unsigned' } } })

    if version_at_least(2, 10) then
        for _, name in ipairs({ 'transactions', 'governance' }) do
            local index = name == 'transactions' and 'spending_transaction_by_id_and_output_index'
                or 'spending_governance_by_id_and_output_index'
            box.space[name]:create_index(index, {
                parts = {
                    { field = 'inputs[*].fulfills["transaction_id"]', type = 'string', is_nullable = true },
                    { field = 'inputs[*].fulfills["output_index"]', type = 'unsigned', is_nullable = true },
                },
            })
        end
    end
end)

-- `abci_chains` (as Planetmint's init() creates it): which ABCI chain the node follows and from
-- which height. Its rows mark the empty block rows `init_chain` stores (genesis, and the
-- first height after a chain migration). A separate `once` so that data created before it
-- gets the space too.
box.once('planetmint-streams-dev-schema-abci-chains', function()
    local abci_chains = box.schema.space.create('abci_chains', { if_not_exists = true })
    abci_chains:format({
        { name = 'id', type = 'string' },
        { name = 'height', type = 'unsigned' },
        { name = 'is_synced', type = 'boolean' },
    })
    abci_chains:create_index('id', { if_not_exists = true, parts = { { field = 'id', type = 'string' } } })
    abci_chains:create_index('height', {
        if_not_exists = true,
        unique = false,
        parts = { { field = 'height', type = 'unsigned' } },
    })
end)
