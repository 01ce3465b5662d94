//! Link identity: Snowflake-style ids and the short codes made from them.
//!
//! This module does no I/O. The worker-id lease that feeds [`IdGenerator`] lives in
//! `storage::worker_lease`; the generator only needs to be told which worker id it holds.

mod codec;
mod snowflake;

pub use codec::{CODE_LEN, CodeCodec, CodeKey};
pub use snowflake::{
    EPOCH_UNIX_MS, IdGenerator, MAX_WORKER_ID, WorkerId, compose_id, monotonic_ms, split_id,
};

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;

    /// Ids from several threads are unique, and so are their codes (the codec is a bijection,
    /// checked here end to end rather than assumed).
    #[test]
    fn ids_and_codes_from_several_threads_are_never_shared() {
        let generator = Arc::new(IdGenerator::with_worker(WorkerId::new(3).unwrap()));
        let codec = Arc::new(CodeCodec::new(&CodeKey::derive(b"unit-test key")));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (generator, codec) = (Arc::clone(&generator), Arc::clone(&codec));
                std::thread::spawn(move || {
                    (0..25_000)
                        .map(|_| {
                            let id = generator.next_id().unwrap();
                            (id, codec.encode(id))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let (mut ids, mut codes) = (HashSet::new(), HashSet::new());
        for thread in threads {
            for (id, code) in thread.join().unwrap() {
                assert!(ids.insert(id), "id {id} issued twice");
                assert!(codes.insert(code), "code {code:?} issued twice");
            }
        }
        assert_eq!((ids.len(), codes.len()), (100_000, 100_000));
    }
}
