//! The tests whose subject is Tarantool itself, each on a real Tarantool process on a free
//! loopback port: outages and kills ([`resilience`], [`delivery`], [`operations`]), the rows
//! Planetmint 2.5.3 wrote and both read modes ([`fidelity`], [`include`]), replicas and
//! scale-out ([`scaleout`]), and the node binary killed and restarted while it follows one
//! ([`subscribe`], [`delivery`]: only a Tarantool feeds the binary).

mod delivery;
mod fidelity;
mod include;
mod operations;
mod resilience;
mod scaleout;
mod subscribe;
