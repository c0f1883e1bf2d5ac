//! The demo chain: what `make demo` (`planetmint-streams-devchain --with-fixtures`) writes, the
//! same on every start and every machine, and the key and asset the README, docs/clients.md
//! and the explorer tell a newcomer to try in filters.
//!
//! After Planetmint 2.5.3's blocks (heights 0 to 10, `tests/fixtures/planetmint-2.5.3-all-ops`)
//! comes a generated chain from height 11: [`SEED`], [`WALLETS`] keys, every operation kind,
//! [`TRANSACTIONS_PER_BLOCK`] transactions a block.

use crate::generate::ChainGenerator;

/// Seed of the generated chain (`--seed`'s default).
pub const SEED: u64 = 1;
/// Wallet keys the generated transactions pay to.
pub const WALLETS: usize = 8;
/// Transactions a block (`--transactions`' default, and what `make demo` uses).
pub const TRANSACTIONS_PER_BLOCK: usize = 5;
/// Height of the first generated block when the fixtures come first.
pub const FIRST_GENERATED_HEIGHT: u64 = 11;

/// A key to try: the first wallet, an output's owner in most demo blocks.
pub const KEY: &str = "7ZBF7dJLnaUJRWFizhBzwF4itCi6re6rL5vVoYSgJstg";
/// A second wallet key (for examples that follow several keys).
pub const SECOND_KEY: &str = "EbTVzNbEzCbf9c3nzLCJ7Xkg6YhuHG2niMDb4KgbtjRq";
/// An asset to try: created at [`ASSET_HEIGHT`] and transferred again and again after it.
pub const ASSET: &str = "dc0918a9e6a5c4225de6037c3a69cdfdf02eb44da7377c0097386e80a218b059";
/// Where [`ASSET`] is created.
pub const ASSET_HEIGHT: u64 = 13;

/// The generator of the demo chain, at its first generated block (`first_height`: 11 after the
/// fixtures, 1 without them).
pub fn chain(first_height: u64) -> ChainGenerator {
    ChainGenerator::new(SEED, first_height, WALLETS).with_all_operations()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_key_and_asset_are_the_demo_chains() {
        let mut demo = chain(FIRST_GENERATED_HEIGHT);
        assert_eq!(demo.wallets()[0], KEY);
        assert_eq!(demo.wallets()[1], SECOND_KEY);
        let blocks: Vec<_> = (0..60)
            .map(|_| demo.block(TRANSACTIONS_PER_BLOCK))
            .collect();
        let events = |wanted: &dyn Fn(&crate::generate::GeneratedTransaction) -> bool| {
            blocks
                .iter()
                .filter(|b| b.transactions.iter().any(wanted))
                .map(|b| b.height)
                .collect::<Vec<_>>()
        };
        let created = blocks
            .iter()
            .flat_map(|b| b.transactions.iter().map(move |tx| (b.height, tx)))
            .find(|(_, tx)| tx.id == ASSET)
            .expect("the asset is created in the first minute");
        assert_eq!(
            (created.0, created.1.operation.as_str()),
            (ASSET_HEIGHT, "CREATE")
        );
        // Both show something within the demo's first minute, and keep doing so.
        assert!(events(&|tx| tx.asset_id == ASSET).len() >= 5);
        assert!(events(&|tx| tx.output_keys.iter().any(|k| k == KEY)).len() >= 30);
    }
}
