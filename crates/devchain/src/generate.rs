//! Planetmint-shaped transactions and blocks for tests, the demo and benchmarks.
//!
//! Each generated transaction carries what the stream must say about it (its operation, its
//! `asset_id`, `asset_ids` and output keys), known from how it was built, so tests compare the
//! stream against the written data without running the stream's own rules.
//!
//! By default blocks hold version 3.0 CREATEs and TRANSFERs. [`ChainGenerator::with_all_operations`]
//! mixes in every kind Planetmint 2.5.3 commits, shaped as its storage code writes them
//! (`tests/fixtures/planetmint-2.5.3-all-ops`): version 2.0 CREATE/TRANSFER, COMPOSE, DECOMPOSE,
//! VALIDATOR_ELECTION, CHAIN_MIGRATION_ELECTION and VOTE (the last three go to `governance`).
//! The rows have Planetmint's shapes; the signatures are placeholders (the stream never
//! verifies them).

use planetmint_streams_ingest::memory::BlockRows;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rmpv::Value;
use sha3::{Digest, Sha3_256};

/// A transaction ready to be written, with the facts a test checks.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedTransaction {
    /// Transaction id (64 hex).
    pub id: String,
    /// `CREATE`, `TRANSFER`, ... (every kind with [`ChainGenerator::with_all_operations`]).
    pub operation: String,
    /// `"3.0"` or `"2.0"`.
    pub version: String,
    /// The asset the stream's `asset_id` must name.
    pub asset_id: String,
    /// What the stream's `asset_ids` must carry (ids, or a version 2.0 asset object).
    pub asset_ids: Vec<serde_json::Value>,
    /// Every public key of every output.
    pub output_keys: Vec<String>,
    /// Every `owners_before` key of every input.
    pub input_owners: Vec<String>,
    /// The `transactions` row.
    pub row: Value,
    /// The `outputs` rows.
    pub outputs: Vec<Value>,
}

/// A block ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedBlock {
    /// Height.
    pub height: u64,
    /// `app_hash` (the hash the stream reports).
    pub app_hash: String,
    /// Transactions in block order.
    pub transactions: Vec<GeneratedTransaction>,
    /// The `blocks` row.
    pub row: Value,
}

impl GeneratedBlock {
    /// The block's transaction ids in order.
    pub fn transaction_ids(&self) -> Vec<String> {
        self.transactions.iter().map(|tx| tx.id.clone()).collect()
    }

    /// The rows its commit leaves in Tarantool, for an in-memory source
    /// ([`MemorySource::commit_rows`](planetmint_streams_ingest::MemorySource::commit_rows)).
    pub fn rows(&self) -> BlockRows {
        BlockRows {
            block: self.row.clone(),
            transactions: self.transactions.iter().map(|tx| tx.row.clone()).collect(),
            outputs: self
                .transactions
                .iter()
                .flat_map(|tx| tx.outputs.iter().cloned())
                .collect(),
        }
    }
}

/// An input: its owners and the output it spends (`None` for a CREATE).
type InputSpec = (Vec<String>, Option<(String, u64)>);

#[derive(Debug, Clone)]
struct Unspent {
    transaction_id: String,
    output_index: u64,
    asset_id: String,
    owners: Vec<String>,
    amount: u64,
}

/// Makes a chain of blocks: CREATEs of new assets and TRANSFERs of outputs created earlier
/// (sometimes in the same block), some outputs owned by several keys.
pub struct ChainGenerator {
    rng: StdRng,
    next_height: u64,
    app_hash: String,
    wallets: Vec<String>,
    unspent: Vec<Unspent>,
    /// Optional fixed transaction-id prefix source: lets a benchmark encode data in ids.
    id_override: Option<Box<dyn FnMut() -> String + Send>>,
    /// Whether blocks mix in every operation kind, not only version 3.0 CREATE/TRANSFER.
    all_operations: bool,
    /// Outputs of validator elections, for votes to spend.
    ballots: Vec<Unspent>,
}

/// What the stream's `asset_ids` must carry, given the transaction's own id.
type ExpectedAssetIds = Box<dyn FnOnce(&str) -> Vec<serde_json::Value>>;

/// How a transaction is to be built.
struct Spec {
    operation: &'static str,
    version: &'static str,
    assets: Value,
    /// `None`: the transaction's own id.
    asset_id: Option<String>,
    asset_ids: ExpectedAssetIds,
    inputs: Vec<InputSpec>,
    outputs: Vec<(Vec<String>, u64)>,
    /// Elections and votes carry no metadata.
    metadata: bool,
    /// Whether its outputs may be spent by later TRANSFERs, COMPOSEs and DECOMPOSEs.
    spendable: bool,
}

/// `asset_ids` of a version 3.0 transaction: each entry's id, or the own id.
fn ids_or_own(ids: Vec<Option<String>>) -> ExpectedAssetIds {
    Box::new(move |own: &str| {
        ids.into_iter()
            .map(|id| serde_json::Value::from(id.unwrap_or_else(|| own.to_owned())))
            .collect()
    })
}

impl std::fmt::Debug for ChainGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainGenerator")
            .field("next_height", &self.next_height)
            .field("wallets", &self.wallets.len())
            .field("unspent", &self.unspent.len())
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn sha3_hex(data: &[u8]) -> String {
    hex(&Sha3_256::digest(data))
}

/// The id Planetmint would compute for the transaction of these rows (its id field empty): the
/// hash of the transaction as its API shows it, so generated chains pass the id check that
/// clients of `include=transaction` make. `None` if the rows do not form a transaction.
fn planetmint_id_of_rows(row: &[Value], outputs: &[Value]) -> Option<String> {
    let json = |v: &Value| rmpv::ext::from_value::<serde_json::Value>(v.clone()).ok();
    let row: Vec<serde_json::Value> = row.iter().map(json).collect::<Option<_>>()?;
    let outputs: Vec<Vec<serde_json::Value>> = outputs
        .iter()
        .map(|o| json(o).and_then(|o| serde_json::from_value(o).ok()))
        .collect::<Option<_>>()?;
    let outputs: Vec<&[serde_json::Value]> = outputs.iter().map(Vec::as_slice).collect();
    let transaction = planetmint_streams_model::api::api_transaction(&row, &outputs).ok()?;
    Some(planetmint_streams_model::api::planetmint_id(&transaction))
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
}

impl ChainGenerator {
    /// A generator whose first block is at `first_height`, seeded for repeatable data.
    /// `wallets` keys are drawn from (at least 2).
    pub fn new(seed: u64, first_height: u64, wallets: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let wallets = (0..wallets.max(2))
            .map(|_| {
                let key: [u8; 32] = rng.gen();
                bs58::encode(key).into_string()
            })
            .collect();
        Self {
            rng,
            next_height: first_height,
            app_hash: String::new(),
            wallets,
            unspent: Vec::new(),
            id_override: None,
            all_operations: false,
            ballots: Vec::new(),
        }
    }

    /// Blocks mix in every operation kind Planetmint commits (see the module doc).
    pub fn with_all_operations(mut self) -> Self {
        self.all_operations = true;
        self
    }

    /// Uses `ids` for the next transactions' ids instead of hashing their bodies (benchmarks
    /// encode the commit time in them).
    pub fn with_ids(mut self, ids: impl FnMut() -> String + Send + 'static) -> Self {
        self.id_override = Some(Box::new(ids));
        self
    }

    /// The wallet keys in use.
    pub fn wallets(&self) -> &[String] {
        &self.wallets
    }

    /// The height the next block gets.
    pub fn next_height(&self) -> u64 {
        self.next_height
    }

    /// Skips heights (Planetmint's heights need not be contiguous for a reader).
    pub fn skip_heights(&mut self, n: u64) {
        self.next_height += n;
    }

    fn random_b58(&mut self) -> String {
        let bytes: [u8; 32] = self.rng.gen();
        bs58::encode(bytes).into_string()
    }

    fn uuid_hex(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.gen();
        hex(&bytes)
    }

    fn fulfillment(&mut self) -> String {
        // Shape of a crypto-condition fulfillment (base64url); the stream never reads it.
        let bytes: [u8; 60] = {
            let mut b = [0u8; 60];
            self.rng.fill(&mut b[..]);
            b
        };
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        bytes
            .iter()
            .map(|b| alphabet[usize::from(b & 63)] as char)
            .collect()
    }

    fn condition(&self, owners: &[String]) -> Value {
        if owners.len() == 1 {
            map(vec![
                (
                    "uri",
                    Value::from("ni:///sha-256;placeholder?fpt=ed25519-sha-256&cost=131072"),
                ),
                (
                    "details",
                    map(vec![
                        ("type", Value::from("ed25519-sha-256")),
                        ("public_key", Value::from(owners[0].as_str())),
                    ]),
                ),
            ])
        } else {
            let subs = owners
                .iter()
                .map(|k| {
                    map(vec![
                        ("type", Value::from("ed25519-sha-256")),
                        ("public_key", Value::from(k.as_str())),
                    ])
                })
                .collect();
            map(vec![
                ("uri", Value::from("ni:///sha-256;placeholder?fpt=threshold-sha-256&cost=264192&subtypes=ed25519-sha-256")),
                (
                    "details",
                    map(vec![
                        ("type", Value::from("threshold-sha-256")),
                        ("threshold", Value::from(owners.len() as u64)),
                        ("subconditions", Value::Array(subs)),
                    ]),
                ),
            ])
        }
    }

    fn pick_owners(&mut self) -> Vec<String> {
        let first = self.wallets[self.rng.gen_range(0..self.wallets.len())].clone();
        if self.rng.gen_bool(0.2) {
            let mut second = self.wallets[self.rng.gen_range(0..self.wallets.len())].clone();
            if second == first {
                second = self.random_b58();
            }
            vec![first, second]
        } else {
            vec![first]
        }
    }

    fn finish(
        &mut self,
        operation: &'static str,
        assets: Value,
        asset_id: Option<String>,
        inputs: Vec<InputSpec>,
        outputs: Vec<(Vec<String>, u64)>,
    ) -> GeneratedTransaction {
        let ids = match &assets {
            Value::Array(entries) => entries
                .iter()
                .map(|entry| {
                    entry.as_map().and_then(|fields| {
                        fields
                            .iter()
                            .find(|(k, _)| k.as_str() == Some("id"))
                            .and_then(|(_, v)| v.as_str().map(str::to_owned))
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        self.build(Spec {
            operation,
            version: "3.0",
            assets,
            asset_id,
            asset_ids: ids_or_own(ids),
            inputs,
            outputs,
            metadata: true,
            spendable: true,
        })
    }

    fn build(&mut self, spec: Spec) -> GeneratedTransaction {
        let Spec {
            operation,
            version,
            assets,
            asset_id,
            asset_ids,
            inputs,
            outputs,
            metadata,
            spendable,
        } = spec;
        let metadata = if metadata && self.rng.gen_bool(0.7) {
            Value::from(format!("Qm{}", self.random_b58()))
        } else {
            Value::Nil
        };
        let input_values: Vec<Value> = inputs
            .iter()
            .map(|(owners, fulfills)| {
                let fulfills = match fulfills {
                    Some((tx, index)) => map(vec![
                        ("transaction_id", Value::from(tx.as_str())),
                        ("output_index", Value::from(*index)),
                    ]),
                    None => Value::Nil,
                };
                let fulfillment = self.fulfillment();
                map(vec![
                    ("owners_before", strings(owners)),
                    ("fulfills", fulfills),
                    ("fulfillment", Value::from(fulfillment)),
                ])
            })
            .collect();
        // Output rows first, with the transaction's id left empty: the id is computed from them.
        let mut output_rows: Vec<Value> = outputs
            .iter()
            .enumerate()
            .map(|(index, (owners, amount))| {
                Value::Array(vec![
                    Value::from(self.uuid_hex()),
                    Value::from(*amount),
                    strings(owners),
                    self.condition(owners),
                    Value::from(index as u64),
                    Value::from(""),
                ])
            })
            .collect();
        let mut row = vec![
            Value::from(""),
            Value::from(operation),
            Value::from(version),
            metadata,
            assets,
            Value::Array(input_values),
            Value::Nil,
        ];
        let id = match self.id_override.as_mut() {
            Some(ids) => ids(),
            None => planetmint_id_of_rows(&row, &output_rows)
                .unwrap_or_else(|| sha3_hex(format!("{row:?}{output_rows:?}").as_bytes())),
        };
        row[0] = Value::from(id.as_str());
        for output in &mut output_rows {
            if let Value::Array(fields) = output {
                fields[5] = Value::from(id.as_str());
            }
        }
        let row = Value::Array(row);
        let asset_id = asset_id.unwrap_or_else(|| id.clone());
        let asset_ids = asset_ids(&id);
        let mut output_keys: Vec<String> = Vec::new();
        for (index, (owners, amount)) in outputs.iter().enumerate() {
            for key in owners {
                if !output_keys.contains(key) {
                    output_keys.push(key.clone());
                }
            }
            let unspent = Unspent {
                transaction_id: id.clone(),
                output_index: index as u64,
                asset_id: asset_id.clone(),
                owners: owners.clone(),
                amount: *amount,
            };
            if spendable {
                self.unspent.push(unspent);
            } else if operation == "VALIDATOR_ELECTION" {
                self.ballots.push(unspent);
            }
        }
        let mut input_owners: Vec<String> = Vec::new();
        for (owners, _) in &inputs {
            for key in owners {
                if !input_owners.contains(key) {
                    input_owners.push(key.clone());
                }
            }
        }
        GeneratedTransaction {
            id,
            operation: operation.to_owned(),
            version: version.to_owned(),
            asset_id,
            asset_ids,
            output_keys,
            input_owners,
            row,
            outputs: output_rows,
        }
    }

    /// A CREATE of a new asset, signed by one wallet, with 1 to 3 outputs.
    pub fn create(&mut self) -> GeneratedTransaction {
        let issuer = self.wallets[self.rng.gen_range(0..self.wallets.len())].clone();
        let data = format!("Qm{}", self.random_b58());
        let assets = Value::Array(vec![map(vec![("data", Value::from(data))])]);
        let n_outputs = self.rng.gen_range(1..=3);
        let outputs = (0..n_outputs)
            .map(|_| (self.pick_owners(), self.rng.gen_range(1..=100)))
            .collect();
        self.finish("CREATE", assets, None, vec![(vec![issuer], None)], outputs)
    }

    /// A TRANSFER of an unspent output (a CREATE when nothing is unspent).
    pub fn transfer(&mut self) -> GeneratedTransaction {
        if self.unspent.is_empty() {
            return self.create();
        }
        let spent = self
            .unspent
            .swap_remove(self.rng.gen_range(0..self.unspent.len()));
        let assets = Value::Array(vec![map(vec![(
            "id",
            Value::from(spent.asset_id.as_str()),
        )])]);
        let outputs = if spent.amount > 1 && self.rng.gen_bool(0.4) {
            let first = self.rng.gen_range(1..spent.amount);
            vec![
                (self.pick_owners(), first),
                (spent.owners.clone(), spent.amount - first),
            ]
        } else {
            vec![(self.pick_owners(), spent.amount)]
        };
        self.finish(
            "TRANSFER",
            assets,
            Some(spent.asset_id.clone()),
            vec![(
                spent.owners.clone(),
                Some((spent.transaction_id.clone(), spent.output_index)),
            )],
            outputs,
        )
    }

    /// The next block with `transactions` transactions (about half CREATE, half TRANSFER; every
    /// kind with [`ChainGenerator::with_all_operations`]).
    pub fn block(&mut self, transactions: usize) -> GeneratedBlock {
        let txs: Vec<GeneratedTransaction> = (0..transactions)
            .map(|_| {
                if self.all_operations {
                    self.any_operation()
                } else if self.rng.gen_bool(0.5) {
                    self.create()
                } else {
                    self.transfer()
                }
            })
            .collect();
        self.block_of(txs)
    }

    /// A transaction of a kind drawn among all Planetmint commits (CREATE and TRANSFER most).
    pub fn any_operation(&mut self) -> GeneratedTransaction {
        match self.rng.gen_range(0..100) {
            0..=29 => self.create(),
            30..=54 => self.transfer(),
            55..=63 => self.create_v2(),
            64..=71 => self.transfer_v2(),
            72..=79 => self.compose(),
            80..=85 => self.decompose(),
            86..=88 => self.validator_election(),
            89..=90 => self.chain_migration_election(),
            _ => self.vote(),
        }
    }

    fn cid(&mut self) -> String {
        format!("Qm{}", self.random_b58())
    }

    fn wallet(&mut self) -> String {
        self.wallets[self.rng.gen_range(0..self.wallets.len())].clone()
    }

    fn take_unspent(&mut self) -> Option<Unspent> {
        if self.unspent.is_empty() {
            return None;
        }
        Some(
            self.unspent
                .swap_remove(self.rng.gen_range(0..self.unspent.len())),
        )
    }

    /// A version 2.0 CREATE: Planetmint stores its single `asset` as `[{"data": CID}]`, and
    /// its stream shows that object in `asset_ids`.
    pub fn create_v2(&mut self) -> GeneratedTransaction {
        let issuer = self.wallet();
        let data = self.cid();
        let outputs = vec![(self.pick_owners(), self.rng.gen_range(1..=100))];
        let object = serde_json::json!({ "data": data });
        self.build(Spec {
            operation: "CREATE",
            version: "2.0",
            assets: Value::Array(vec![map(vec![("data", Value::from(data))])]),
            asset_id: None,
            asset_ids: Box::new(move |_| vec![object]),
            inputs: vec![(vec![issuer], None)],
            outputs,
            metadata: true,
            spendable: true,
        })
    }

    /// A version 2.0 TRANSFER: `assets` is `[{"id": asset}]`, shown as that object.
    pub fn transfer_v2(&mut self) -> GeneratedTransaction {
        let Some(spent) = self.take_unspent() else {
            return self.create_v2();
        };
        let object = serde_json::json!({ "id": spent.asset_id });
        let outputs = vec![(self.pick_owners(), spent.amount)];
        self.build(Spec {
            operation: "TRANSFER",
            version: "2.0",
            assets: Value::Array(vec![map(vec![(
                "id",
                Value::from(spent.asset_id.as_str()),
            )])]),
            asset_id: Some(spent.asset_id.clone()),
            asset_ids: Box::new(move |_| vec![object]),
            inputs: vec![(
                spent.owners.clone(),
                Some((spent.transaction_id.clone(), spent.output_index)),
            )],
            outputs,
            metadata: true,
            spendable: true,
        })
    }

    /// A COMPOSE of two unspent outputs into a new asset: `assets` is the new `{"data"}` entry,
    /// then the consumed `{"id"}`s; `asset_id` is its own id (it creates an asset).
    pub fn compose(&mut self) -> GeneratedTransaction {
        let (Some(a), Some(b)) = (self.take_unspent(), self.take_unspent()) else {
            return self.create();
        };
        let data = self.cid();
        let assets = Value::Array(vec![
            map(vec![("data", Value::from(data))]),
            map(vec![("id", Value::from(a.asset_id.as_str()))]),
            map(vec![("id", Value::from(b.asset_id.as_str()))]),
        ]);
        let ids = vec![None, Some(a.asset_id.clone()), Some(b.asset_id.clone())];
        let outputs = vec![(vec![self.wallet()], 1)];
        self.build(Spec {
            operation: "COMPOSE",
            version: "3.0",
            assets,
            asset_id: None,
            asset_ids: ids_or_own(ids),
            inputs: vec![
                (a.owners, Some((a.transaction_id, a.output_index))),
                (b.owners, Some((b.transaction_id, b.output_index))),
            ],
            outputs,
            metadata: true,
            spendable: true,
        })
    }

    /// A DECOMPOSE of an unspent output into two new assets: `assets` is the new `{"data"}`
    /// entries first, then the spent `{"id"}`; `asset_id` names the spent asset.
    pub fn decompose(&mut self) -> GeneratedTransaction {
        let Some(spent) = self.take_unspent() else {
            return self.create();
        };
        let (first, second) = (self.cid(), self.cid());
        let assets = Value::Array(vec![
            map(vec![("data", Value::from(first))]),
            map(vec![("data", Value::from(second))]),
            map(vec![("id", Value::from(spent.asset_id.as_str()))]),
        ]);
        let ids = vec![None, None, Some(spent.asset_id.clone())];
        let outputs = vec![(vec![self.wallet()], 1), (vec![self.wallet()], 1)];
        self.build(Spec {
            operation: "DECOMPOSE",
            version: "3.0",
            assets,
            asset_id: Some(spent.asset_id.clone()),
            asset_ids: ids_or_own(ids),
            inputs: vec![(
                spent.owners.clone(),
                Some((spent.transaction_id.clone(), spent.output_index)),
            )],
            outputs,
            metadata: true,
            spendable: false,
        })
    }

    fn election(&mut self, operation: &'static str, data: Value) -> GeneratedTransaction {
        let proposer = self.wallet();
        let voters: Vec<(Vec<String>, u64)> = (0..4).map(|_| (vec![self.wallet()], 10)).collect();
        self.build(Spec {
            operation,
            version: "3.0",
            assets: Value::Array(vec![map(vec![("data", data)])]),
            asset_id: None,
            asset_ids: ids_or_own(vec![None]),
            inputs: vec![(vec![proposer], None)],
            outputs: voters,
            metadata: false,
            spendable: false,
        })
    }

    /// A VALIDATOR_ELECTION (stored in `governance`): its asset data is a map, its outputs
    /// are the voters'.
    pub fn validator_election(&mut self) -> GeneratedTransaction {
        let key = self.random_b58();
        let node: [u8; 20] = self.rng.gen();
        let seed = self.uuid_hex();
        let data = map(vec![
            (
                "public_key",
                map(vec![
                    ("value", Value::from(key)),
                    ("type", Value::from("ed25519-base16")),
                ]),
            ),
            ("power", Value::from(10u64)),
            ("node_id", Value::from(hex(&node))),
            ("seed", Value::from(seed)),
        ]);
        self.election("VALIDATOR_ELECTION", data)
    }

    /// A CHAIN_MIGRATION_ELECTION (stored in `governance`): asset data `{"seed": uuid}`.
    pub fn chain_migration_election(&mut self) -> GeneratedTransaction {
        let seed = self.uuid_hex();
        self.election(
            "CHAIN_MIGRATION_ELECTION",
            map(vec![("seed", Value::from(seed))]),
        )
    }

    /// A VOTE (stored in `governance`) spending a validator election's output: `assets` is
    /// `[{"id": election}]`, its output goes to the election's key.
    pub fn vote(&mut self) -> GeneratedTransaction {
        if self.ballots.is_empty() {
            return self.validator_election();
        }
        let ballot = self
            .ballots
            .swap_remove(self.rng.gen_range(0..self.ballots.len()));
        let election_key = bs58::encode(
            (0..ballot.asset_id.len() / 2)
                .filter_map(|i| u8::from_str_radix(ballot.asset_id.get(2 * i..2 * i + 2)?, 16).ok())
                .collect::<Vec<u8>>(),
        )
        .into_string();
        self.build(Spec {
            operation: "VOTE",
            version: "3.0",
            assets: Value::Array(vec![map(vec![(
                "id",
                Value::from(ballot.asset_id.as_str()),
            )])]),
            asset_id: Some(ballot.asset_id.clone()),
            asset_ids: ids_or_own(vec![Some(ballot.asset_id.clone())]),
            inputs: vec![(
                ballot.owners.clone(),
                Some((ballot.transaction_id.clone(), ballot.output_index)),
            )],
            outputs: vec![(vec![election_key], ballot.amount)],
            metadata: false,
            spendable: false,
        })
    }

    /// Makes (and drops) blocks of `transactions` transactions until the next block's height is
    /// above `height`, so that a writer started again over a chain it wrote before continues
    /// it exactly as an uninterrupted run would: same keys, same unspent outputs, same next
    /// blocks. Returns the last block made, `None` when `height` is below the next height.
    pub fn catch_up(&mut self, height: u64, transactions: usize) -> Option<GeneratedBlock> {
        let mut last = None;
        while self.next_height <= height {
            last = Some(self.block(transactions));
        }
        last
    }

    /// The next block holding exactly `transactions`.
    pub fn block_of(&mut self, transactions: Vec<GeneratedTransaction>) -> GeneratedBlock {
        let height = self.next_height;
        self.next_height += 1;
        if !transactions.is_empty() {
            // Planetmint chains app_hash: sha3(previous app_hash + sha3(concatenated ids)).
            let ids: String = transactions.iter().map(|tx| tx.id.as_str()).collect();
            let inner = sha3_hex(ids.as_bytes());
            self.app_hash = sha3_hex(format!("{}{}", self.app_hash, inner).as_bytes());
        }
        let block_id = self.uuid_hex();
        let ids: Vec<String> = transactions.iter().map(|tx| tx.id.clone()).collect();
        let row = Value::Array(vec![
            Value::from(block_id),
            Value::from(self.app_hash.as_str()),
            Value::from(height),
            strings(&ids),
        ]);
        GeneratedBlock {
            height,
            app_hash: self.app_hash.clone(),
            transactions,
            row,
        }
    }
}

/// A block at `height` as the node holds it, made without Planetmint's rows: `count` CREATE
/// transactions whose ids are spread over the whole id space (so partitions and consumer
/// groups split them), each paying `key`. For tests and measurements that feed an in-memory
/// source directly ([`MemorySource::commit`](planetmint_streams_ingest::MemorySource::commit)).
pub fn synthetic_block(
    height: u64,
    count: u64,
    key: &str,
) -> planetmint_streams_model::CommittedBlock {
    use planetmint_streams_model::{AssetIdsEntry, CommittedBlock, CommittedTransaction};
    let transactions = (0..count)
        .map(|i| {
            let n = height * 1000 + i;
            let id = format!("{:016x}{:048x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15), n);
            CommittedTransaction {
                asset_id: id.clone(),
                asset_ids: vec![AssetIdsEntry::Id(id.clone())],
                id,
                operation: "CREATE".into(),
                output_public_keys: vec![key.to_owned()],
                input_owners: Vec::new(),
            }
        })
        .collect();
    CommittedBlock::synthetic(height, transactions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_chained_and_transfers_spend_earlier_assets() {
        let mut chain = ChainGenerator::new(7, 1, 5);
        let blocks: Vec<GeneratedBlock> = (0..20).map(|_| chain.block(6)).collect();
        assert_eq!(blocks.first().map(|b| b.height), Some(1));
        assert_eq!(blocks.last().map(|b| b.height), Some(20));
        let mut created = std::collections::HashSet::new();
        let mut transfers = 0;
        for block in &blocks {
            for tx in &block.transactions {
                assert_eq!(tx.id.len(), 64);
                match tx.operation.as_str() {
                    "CREATE" => {
                        assert_eq!(tx.asset_id, tx.id);
                        created.insert(tx.id.clone());
                    }
                    "TRANSFER" => {
                        transfers += 1;
                        assert!(created.contains(&tx.asset_id), "spends a known asset");
                    }
                    other => panic!("unexpected operation {other}"),
                }
                assert!(!tx.outputs.is_empty());
            }
        }
        assert!(transfers > 10);
        let hashes: std::collections::HashSet<_> =
            blocks.iter().map(|b| b.app_hash.clone()).collect();
        assert_eq!(
            hashes.len(),
            blocks.len(),
            "every non-empty block changes app_hash"
        );
        let empty = chain.block(0);
        assert_eq!(
            empty.app_hash, blocks[19].app_hash,
            "an empty block repeats app_hash"
        );
    }

    #[test]
    fn every_generated_transaction_has_the_id_planetmint_would_compute() {
        let mut chain = ChainGenerator::new(5, 1, 6).with_all_operations();
        let mut kinds = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for block in (0..30).map(|_| chain.block(8)) {
            for tx in &block.transactions {
                let Value::Array(row) = &tx.row else {
                    panic!("a row")
                };
                let mut blank = row.clone();
                blank[0] = Value::from("");
                let outputs: Vec<Value> = tx
                    .outputs
                    .iter()
                    .map(|o| match o {
                        Value::Array(f) => {
                            let mut f = f.clone();
                            f[5] = Value::from("");
                            Value::Array(f)
                        }
                        other => other.clone(),
                    })
                    .collect();
                assert_eq!(
                    planetmint_id_of_rows(&blank, &outputs).as_deref(),
                    Some(tx.id.as_str()),
                    "{} {}",
                    tx.operation,
                    tx.version
                );
                kinds.insert((tx.operation.clone(), tx.version.clone()));
                assert!(ids.insert(tx.id.clone()), "ids are unique");
            }
        }
        assert!(kinds.len() >= 7, "{kinds:?}");
    }

    #[test]
    fn all_operations_gives_every_kind_with_planetmints_asset_rules() {
        let mut chain = ChainGenerator::new(11, 1, 6).with_all_operations();
        let blocks: Vec<GeneratedBlock> = (0..40).map(|_| chain.block(8)).collect();
        let mut kinds = std::collections::BTreeSet::new();
        for tx in blocks.iter().flat_map(|b| &b.transactions) {
            kinds.insert((tx.operation.clone(), tx.version.clone()));
            let own = serde_json::Value::from(tx.id.as_str());
            match (tx.operation.as_str(), tx.version.as_str()) {
                ("CREATE", "2.0") => {
                    assert_eq!(tx.asset_id, tx.id);
                    assert!(tx.asset_ids[0]["data"].is_string());
                }
                ("TRANSFER", "2.0") => {
                    assert_eq!(tx.asset_ids, vec![serde_json::json!({"id": tx.asset_id})])
                }
                ("CREATE" | "COMPOSE" | "VALIDATOR_ELECTION" | "CHAIN_MIGRATION_ELECTION", _) => {
                    assert_eq!(tx.asset_id, tx.id);
                    assert_eq!(tx.asset_ids[0], own);
                }
                ("DECOMPOSE", _) => {
                    assert_ne!(tx.asset_id, tx.id);
                    assert_eq!(tx.asset_ids.last(), Some(&tx.asset_id.as_str().into()));
                }
                _ => assert_ne!(tx.asset_id, tx.id),
            }
        }
        for kind in [
            ("CREATE", "3.0"),
            ("CREATE", "2.0"),
            ("TRANSFER", "3.0"),
            ("TRANSFER", "2.0"),
            ("COMPOSE", "3.0"),
            ("DECOMPOSE", "3.0"),
            ("VALIDATOR_ELECTION", "3.0"),
            ("CHAIN_MIGRATION_ELECTION", "3.0"),
            ("VOTE", "3.0"),
        ] {
            assert!(
                kinds.contains(&(kind.0.to_owned(), kind.1.to_owned())),
                "{kind:?} generated"
            );
        }
    }

    #[test]
    fn a_generator_caught_up_continues_the_chain_an_uninterrupted_one_makes() {
        let mut straight = ChainGenerator::new(1, 11, 8).with_all_operations();
        let whole: Vec<GeneratedBlock> = (0..30).map(|_| straight.block(5)).collect();
        let mut restarted = ChainGenerator::new(1, 11, 8).with_all_operations();
        let last = restarted.catch_up(30, 5).expect("blocks made");
        assert_eq!(last, whole[19], "the block at height 30");
        assert_eq!(restarted.next_height(), 31);
        let rest: Vec<GeneratedBlock> = (0..10).map(|_| restarted.block(5)).collect();
        assert_eq!(rest, whole[20..]);
        assert_eq!(restarted.wallets(), straight.wallets());
        assert_eq!(ChainGenerator::new(1, 11, 8).catch_up(10, 5), None);
    }

    #[test]
    fn the_same_seed_gives_the_same_chain() {
        let a: Vec<_> = {
            let mut c = ChainGenerator::new(3, 1, 4);
            (0..3).map(|_| c.block(4)).collect()
        };
        let b: Vec<_> = {
            let mut c = ChainGenerator::new(3, 1, 4);
            (0..3).map(|_| c.block(4)).collect()
        };
        assert_eq!(a, b);
    }
}
