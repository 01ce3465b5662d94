//! Why we do not use the `snowflake_id` crate (1.0.1): it repeats ids and ignores its
//! datacenter bits. If these ever fail, the crate was fixed: revisit ADR 0002.

use std::collections::HashSet;

use snowflake_id::Snowflake;

#[test]
fn it_repeats_ids_when_the_per_millisecond_sequence_wraps() {
    let mut generator = Snowflake::new(1, 1);
    // Far more than 4096 ids per millisecond are asked for; on wrap-around its
    // `til_next_millis` returns the same millisecond and the sequence starts again at 0.
    // Ids are collected first and checked afterwards, so the loop is as fast as the crate.
    let mut ids = Vec::with_capacity(500_000);
    for _ in 0..500_000 {
        ids.push(generator.next());
    }
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    let duplicates = ids.len() - distinct.len();
    assert!(
        duplicates > 0,
        "no duplicates: the crate may have been fixed"
    );
}

#[test]
fn it_ignores_the_datacenter_id() {
    let mut generator = Snowflake::new(3, 31);
    let id = generator.next();
    let datacenter_bits = (id >> 17) & 0b11111;
    assert_eq!(datacenter_bits, 0, "datacenter 31 was not encoded");
}
