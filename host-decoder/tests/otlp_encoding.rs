//! The OTLP exporter's direct protobuf encoding (`encode_otlp_request`) gives exactly the bytes of
//! prost encoding the mapped request (`to_otlp_request`), for every shape of span the model holds.

mod support;

use microspan_decoder::export::{encode_otlp_request, to_otlp_request};
use microspan_decoder::model::{
    smallvec, Batch, Log, Process, RefKind, Reference, SharedStr, Value,
};
use prost::Message;
use support::decoding::{anchored, decode_in};
use support::workload::{self, Workload};
use support::*;

fn assert_same_bytes(batch: &Batch) {
    let expected = to_otlp_request(batch).encode_to_vec();
    let actual = encode_otlp_request(batch);
    assert!(
        actual == expected,
        "direct encoding differs from prost's\n direct: {actual:02x?}\n  prost: {expected:02x?}\n batch: {batch:#?}"
    );
}

#[test]
fn reference_batch_encodes_as_prost_does() {
    assert_same_bytes(&reference_batch());
    assert_same_bytes(&numbered_batch(1, 50));
    // The span flags with a remote parent (0x301) and an unsampled span's (0x100).
    let mut batch = reference_batch();
    batch.spans[0].remote_parent = true;
    batch.spans[1].flags = 0;
    assert_same_bytes(&batch);
}

#[test]
fn an_empty_batch_encodes_as_prost_does() {
    let mut b = reference_batch();
    b.spans.clear();
    assert_same_bytes(&b);
}

#[test]
fn decoded_streams_encode_as_prost_does() {
    for w in [Workload::BARE, Workload::REFERENCE, Workload::FULL] {
        let rec = workload::record(64, w);
        let out = decode_in(&rec.bytes, anchored(), usize::MAX).batches;
        assert!(!out.is_empty());
        for b in &out {
            assert_same_bytes(b);
        }
    }
}

#[test]
fn edge_cases_encode_as_prost_does() {
    let long = "x".repeat(300);
    let huge = "y".repeat(20_000);
    let mut values = bare(1, "");
    values.tags = smallvec![
        kv("", s("empty key")),
        kv("empty value", s("")),
        kv("neg", Value::I64(-1)),
        kv("min", Value::I64(i64::MIN)),
        kv("zero", Value::I64(0)),
        kv("u.max.signed", Value::U64(i64::MAX as u64)),
        kv("u.over", Value::U64(i64::MAX as u64 + 1)),
        kv("f.zero", Value::F64(0.0)),
        kv("f.negzero", Value::F64(-0.0)),
        kv("f.inf", Value::F64(f64::INFINITY)),
        kv("f.neginf", Value::F64(f64::NEG_INFINITY)),
        kv("f.nan", Value::F64(f64::NAN)),
        kv("false", Value::Bool(false)),
        kv("long", s(&long)),
        kv("huge", s(&huge)),
        kv("error", Value::Bool(true)),
    ];
    values.start_unix_nanos = 0;
    values.duration_nanos = 0;
    values.flags = 2;

    let mut kinds = bare(2, "kinds");
    kinds.tags = smallvec![
        kv("span.kind", Value::Bool(true)),
        kv("span.kind", s("server")),
        kv("span.kind", s("bogus")),
        kv("span.kind", s("producer")),
        kv("error", Value::Bool(false)),
    ];
    kinds.references = smallvec![
        Reference {
            kind: RefKind::FollowsFrom,
            trace_id: SHORT_TRACE,
            span_id: 7,
        },
        Reference {
            kind: RefKind::ChildOf,
            trace_id: TRACE,
            span_id: 8,
        },
        Reference {
            kind: RefKind::ChildOf,
            trace_id: TRACE,
            span_id: 9,
        },
    ];
    kinds.start_unix_nanos = u64::MAX - 10;
    kinds.duration_nanos = 100;

    let mut logs = bare(3, &long);
    logs.logs = smallvec![
        Log {
            time_unix_nanos: 0,
            fields: smallvec![],
        },
        Log {
            time_unix_nanos: T0,
            fields: smallvec![kv("message", s("no event field"))],
        },
        Log {
            time_unix_nanos: T0 + 1,
            fields: smallvec![kv("event", Value::I64(7)), kv("event", s("second"))],
        },
        Log {
            time_unix_nanos: T0 + 2,
            fields: smallvec![kv("event", Value::F64(1.5))],
        },
        Log {
            time_unix_nanos: T0 + 3,
            fields: smallvec![kv("event", Value::Bool(false))],
        },
        Log {
            time_unix_nanos: T0 + 4,
            fields: smallvec![kv("event", s(""))],
        },
        Log {
            time_unix_nanos: T0 + 5,
            fields: smallvec![kv("event", Value::U64(u64::MAX)), kv("", Value::F64(-2.5))],
        },
    ];
    logs.baggage = vec![("k", "v"), ("empty", ""), ("", "no key")].into();
    logs.warnings = vec![
        String::new(),
        "a warning".into(),
        long.clone(),
        huge.clone(),
    ];
    logs.incomplete = true;
    logs.flags = 0;

    let mut orphan = bare(4, "orphan");
    orphan.references = smallvec![Reference {
        kind: RefKind::FollowsFrom,
        trace_id: TRACE,
        span_id: 1,
    }];
    orphan.incomplete = true;

    for process in [
        process(),
        Process {
            service_name: SharedStr::default(),
            tags: vec![
                kv("service.name", s("shadowed")),
                kv("n", Value::U64(3)),
                kv("", s("")),
            ],
        },
    ] {
        let batch = Batch {
            process: process.into(),
            spans: vec![values.clone(), kinds.clone(), logs.clone(), orphan.clone()],
        };
        assert_same_bytes(&batch);
        for span in &batch.spans {
            assert_same_bytes(&Batch {
                process: batch.process.clone(),
                spans: vec![span.clone()],
            });
        }
    }
}

/// Lengths are written after the bodies (one pass): spans, events and attributes whose lengths
/// cross the varint boundaries (127/128 and 16383/16384 bytes) in both directions, in one batch
/// (each span's length guessed from the previous one's) and alone.
#[test]
fn lengths_across_varint_boundaries_encode_as_prost_does() {
    let sizes = (90..=140).chain(16_330..=16_400);
    let mut spans = Vec::new();
    for (i, n) in sizes.enumerate() {
        let text = "z".repeat(n);
        let id = i as u64 * 4 + 1;
        // The operation name alone sets the span's length.
        spans.push(bare(id, &text));
        // A long tag value, a long log field and a long baggage value.
        let mut tagged = bare(id + 1, "t");
        tagged.tags = smallvec![kv("k", s(&text))];
        let mut logged = bare(id + 2, "l");
        logged.logs = smallvec![Log {
            time_unix_nanos: T0,
            fields: smallvec![kv("event", s(&text)), kv("m", s("x"))],
        }];
        logged.baggage = vec![("b", text.as_str())].into();
        let mut warned = bare(id + 3, "w");
        warned.warnings = vec![text.clone(), "w".into()];
        warned.incomplete = true;
        spans.extend([tagged, logged, warned]);
    }
    // Short and long spans in turn: every guess from the previous span is wrong.
    let mut mixed = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        mixed.push(bare(10_000 + i as u64, "short"));
        mixed.push(span.clone());
    }
    let process: std::sync::Arc<Process> = process().into();
    for spans in [spans.clone(), mixed] {
        assert_same_bytes(&Batch {
            process: process.clone(),
            spans,
        });
    }
    for span in spans {
        assert_same_bytes(&Batch {
            process: process.clone(),
            spans: vec![span],
        });
    }
}

/// The encoded resource is kept for the next batch of the same process: batches of different
/// processes in turn, and processes dropped and made again (perhaps at the same address), each
/// get their own.
#[test]
fn each_batch_gets_its_own_process() {
    let spans = reference_batch().spans;
    let named = |name: &str| -> std::sync::Arc<Process> {
        let mut p = process();
        p.service_name = name.into();
        p.into()
    };
    let (a, b) = (named("a"), named("b"));
    for p in [&a, &a, &b, &a, &b, &b] {
        assert_same_bytes(&Batch {
            process: p.clone(),
            spans: spans.clone(),
        });
    }
    for i in 0..20 {
        assert_same_bytes(&Batch {
            process: named(&format!("service-{i}")),
            spans: spans[..1].to_vec(),
        });
    }
}
