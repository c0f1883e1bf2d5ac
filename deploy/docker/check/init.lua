-- The stand-in Tarantool of `make image-check` (tarantool.Containerfile): Planetmint's port,
-- `guest` allowed everything as in Planetmint's deployments, then the development schema.
box.cfg{ listen = '0.0.0.0:3303', work_dir = '/var/lib/tarantool' }
box.once('grant-guest', function()
    box.schema.user.grant('guest', 'read,write,execute,create,drop,alter', 'universe', nil, { if_not_exists = true })
end)
dofile('/opt/check/planetmint-schema.lua')
require('log').info('planetmint-streams check Tarantool ready on port 3303')
