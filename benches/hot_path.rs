//! Micro-benchmarks of the pure pieces on the request paths (BRIEF targets: id generation
//! ≤ 50 ns; code encode + decode ≤ 100 ns). Run with `cargo bench --bench hot_path`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shortener::clicks::{ClickRecorder, is_bot};
use shortener::domain::{TargetUrl, UrlPolicy};
use shortener::ids::{CodeCodec, CodeKey, IdGenerator, WorkerId};

fn ids_and_codes(c: &mut Criterion) {
    let generator = IdGenerator::with_worker(WorkerId::new(1).unwrap());
    c.bench_function("id_generation", |b| {
        b.iter(|| black_box(generator.next_id()))
    });

    let codec = CodeCodec::new(&CodeKey::derive(b"benchmark key"));
    let id = generator.next_id().unwrap();
    c.bench_function("code_encode_decode", |b| {
        b.iter(|| {
            let code = codec.encode(black_box(id));
            black_box(codec.decode(&code))
        })
    });
}

fn request_pieces(c: &mut Criterion) {
    let policy = UrlPolicy {
        own_host: "sho.rt".into(),
        ..UrlPolicy::default()
    };
    c.bench_function("url_validation", |b| {
        b.iter(|| TargetUrl::parse(black_box("https://example.com/some/long/path?q=1"), &policy))
    });
    let agent = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
    c.bench_function("bot_detection", |b| b.iter(|| is_bot(black_box(agent))));
    let recorder = ClickRecorder::new();
    let mut link = 0i64;
    c.bench_function("click_record", |b| {
        b.iter(|| {
            link = (link + 1) % 10_000;
            recorder.record(black_box(link), false)
        })
    });
}

criterion_group!(benches, ids_and_codes, request_pieces);
criterion_main!(benches);
