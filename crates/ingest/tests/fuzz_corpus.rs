//! Replays the fuzz corpora of Tarantool replies and tuples (fuzz/corpus/) through the
//! decoders, so regressions show up without a fuzzer. The seeds include real replies of the
//! Lua long-poll over the Planetmint 2.5.3 fixtures, which must decode to the right blocks.

use planetmint_streams_ingest::tarantool::relay::{read_frame_length, ServerVersion};
use planetmint_streams_ingest::tarantool::source::decode_blocks_reply;
use planetmint_streams_model::tuple::{BlockTuple, OutputTuple, TransactionTuple};

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/../../fuzz/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            (
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes,
            )
        })
        .collect()
}

#[test]
fn blocks_reply_corpus_decodes_or_fails_cleanly() {
    let mut decoded = 0;
    for (name, bytes) in corpus("blocks_reply") {
        if let Ok(batch) = decode_blocks_reply(bytes.clone().into()) {
            decoded += 1;
            if name == "fixture-heights-1-8" {
                assert_eq!(batch.head, 8);
                assert_eq!(
                    batch.blocks.iter().map(|b| b.height).collect::<Vec<_>>(),
                    (1..=8).collect::<Vec<_>>()
                );
                assert_eq!(
                    batch
                        .blocks
                        .iter()
                        .map(|b| b.transactions.len())
                        .sum::<usize>(),
                    36
                );
            }
        }
    }
    assert!(decoded >= 3, "the real replies decode");
}

#[test]
fn tuple_and_frame_corpora_decode_without_panics() {
    let tuples = corpus("tuples");
    assert!(tuples
        .iter()
        .any(|(n, b)| n == "block" && rmp_serde::from_slice::<BlockTuple>(b).is_ok()));
    assert!(tuples
        .iter()
        .any(|(n, b)| n == "transaction" && rmp_serde::from_slice::<TransactionTuple>(b).is_ok()));
    assert!(tuples
        .iter()
        .any(|(n, b)| n == "output" && rmp_serde::from_slice::<OutputTuple>(b).is_ok()));
    for (_, bytes) in corpus("iproto_frames") {
        if let Ok(Some((_, prefix))) = read_frame_length(&bytes) {
            assert!(prefix <= bytes.len());
        }
        let _ = ServerVersion::from_greeting(&bytes);
    }
}
