//! Micro-benchmarks of the wire layer: directive parse, template expansion, WebSocket decode of
//! a 1 MiB segment message. Results are recorded in `docs/benchmarks.md`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dashpush_proto::limits;
use dashpush_proto::ws::message::{Body, Received};
use dashpush_proto::ws::{Frame, Message, StreamId};
use dashpush_proto::{PushDirective, UrlTemplate};

fn directives(c: &mut Criterion) {
    let mut g = c.benchmark_group("directive_parse");
    let cases = [
        ("push_next", "urn:mpeg:dash:fdh:2016:push-next;4".to_owned()),
        (
            "fast_start",
            r#"urn:mpeg:dash:fdh:2016:push-fast-start;{"segments":2,"bandwidth":1500000,"types":["video","audio"]}"#
                .to_owned(),
        ),
        (
            "list_16",
            format!(
                "urn:mpeg:dash:fdh:2016:push-list;{}",
                (0..16).map(|i| format!("../video/seg-{i:05}.m4s")).collect::<Vec<_>>().join(", ")
            ),
        ),
        ("template", "urn:mpeg:dash:fdh:2016:push-template;seg-{%05d:10-40:2}.m4s".to_owned()),
    ];
    // Baseline: the cheapest possible "parse" of a header value, an integer.
    g.bench_function("baseline_u32_parse", |b| {
        b.iter(|| black_box("4").parse::<u32>())
    });
    for (name, value) in &cases {
        g.bench_function(*name, |b| b.iter(|| PushDirective::parse(black_box(value))));
    }
    g.finish();
}

fn templates(c: &mut Criterion) {
    let t = UrlTemplate::parse("video/seg-{%05d:1-100000}.m4s").unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("template_expand");
    g.throughput(Throughput::Elements(limits::MAX_TEMPLATE_EXPANSION as u64));
    g.bench_function("256_urls", |b| {
        b.iter(|| black_box(&t).expand().map(|u| u.len()).sum::<usize>())
    });
    // Baseline: the same 256 strings formatted by a hand-written loop.
    g.bench_function("baseline_format_loop", |b| {
        b.iter(|| {
            (1..=limits::MAX_TEMPLATE_EXPANSION)
                .map(|n| format!("video/seg-{:05}.m4s", black_box(n)).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn ws_decode(c: &mut Criterion) {
    let msg = Message {
        stream_id: StreamId::new(2).unwrap_or_else(|| unreachable!()),
        end: true,
        body: Body::SegmentReceived(Received {
            url: "/vod/video/seg-00006.m4s".into(),
            status: 200,
            content_type: "video/mp4".into(),
            content_length: Some(1 << 20),
            pushed: true,
            parent: StreamId::new(1),
            payload: Bytes::from(vec![0x5a; 1 << 20]),
            ..Default::default()
        }),
    };
    let wire = msg.encode().unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("ws_decode");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("segment_1mib", |b| {
        b.iter(|| {
            let frame = Frame::decode(black_box(wire.clone()), 2 << 20);
            frame.map(Message::from_frame)
        })
    });
    g.bench_function("segment_1mib_encode", |b| {
        b.iter(|| black_box(&msg).encode())
    });
    // Baseline: one copy of the 1 MiB message, what any decoder that copies would pay.
    g.bench_function("baseline_copy_1mib", |b| {
        b.iter(|| black_box(&wire).to_vec())
    });
    g.finish();
}

criterion_group!(benches, directives, templates, ws_decode);
criterion_main!(benches);
