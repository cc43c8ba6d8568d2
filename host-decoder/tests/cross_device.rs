//! End to end across devices and references: two tracers (two "devices" with their own rings,
//! drains, ids and service names) continue one trace through the binary carrier; an interrupt
//! handler's span is consumed FollowsFrom by the main loop. Both streams go through the decoder
//! library and its exporters (Jaeger UI JSON, OTLP), which must show one trace, two services, and
//! the references where they belong.

mod support;

use microspan::propagation::{binary, jaeger, w3c, Extracted};
use microspan::{Baggage, Drain, Ring, Session, Tracer};
use microspan_decoder::assemble::Options;
use microspan_decoder::export::{to_otlp_request, Exporter, JaegerJsonFile};
use microspan_decoder::model::{Batch, RefKind};
use microspan_decoder::stream::StreamDecoder;
use support::decoding::{anchored, decode_in, span, Decoded};
use support::device::{drain_all, ManualClock};

/// Decodes one device's stream, fed whole, which must arrive clean: no bad frame, and no span
/// left incomplete.
fn decode(stream: &[u8]) -> Decoded {
    let d = decode_in(stream, anchored(), usize::MAX);
    assert_eq!(d.stats.crc_errors + d.stats.bad_frames, 0);
    assert_eq!(d.stats.spans.incomplete_spans, 0);
    d
}

#[test]
fn a_trace_crosses_two_devices_through_the_binary_carrier() {
    static CLOCK_A: ManualClock = ManualClock::new(10_000);
    static CLOCK_B: ManualClock = ManualClock::new(777);
    static RING_A: Ring<1024> = Ring::new();
    static RING_B: Ring<1024> = Ring::new();
    static NODE: Tracer = Tracer::new(
        &RING_A,
        &CLOCK_A,
        &Session::new("sensor-node")
            .device_id(0x0a0a_0a0a_0000_0001)
            .boot_id(0x11),
    );
    static GATEWAY: Tracer = Tracer::new(
        &RING_B,
        &CLOCK_B,
        &Session::new("gateway")
            .device_id(0x0b0b_0b0b_0000_0002)
            .boot_id(0x22),
    );
    let mut drain_a: Drain<'_, 256> = Drain::new(&NODE).unwrap();
    let mut drain_b: Drain<'_, 256> = Drain::new(&GATEWAY).unwrap();

    // Device A: a measurement, then a span that sends it with the context in a fixed-size field.
    let mut message = [0u8; 64];
    let mut root = NODE
        .span("measure-and-report")
        .with_baggage(Baggage::<2>::new())
        .start();
    root.set_baggage("site", "north-7");
    CLOCK_A.advance(500);
    let send = root.child("uart-send");
    let n = binary::inject(&send.context(), send.baggage(), &mut message).unwrap();
    assert!(n <= binary::max_len(2));
    let send_ctx = send.context();
    let trace = send_ctx.trace_id;

    // Device B: receive, extract, continue the trace; a child of its own.
    let ex: Extracted<2> = binary::extract(&message).unwrap();
    assert_eq!(ex.context, send_ctx);
    let handle = GATEWAY.span("handle-reading").extracted(ex).start();
    CLOCK_B.advance(100);
    {
        let store = handle.child("store");
        assert_eq!(store.baggage_item("site"), Some("north-7"));
        CLOCK_B.advance(300);
    }
    CLOCK_B.advance(50);
    drop(handle);
    CLOCK_A.advance(1_000);
    drop(send);
    drop(root);

    let stream_a = drain_all(&mut drain_a);
    let stream_b = drain_all(&mut drain_b);
    let batches: Vec<Batch> = decode(&stream_a)
        .batches
        .into_iter()
        .chain(decode(&stream_b).batches)
        .collect();

    // The model: one trace id everywhere, B's spans under A's sending span.
    let spans: Vec<_> = batches
        .iter()
        .flat_map(|b| {
            b.spans
                .iter()
                .map(move |s| (b.process.service_name.as_str(), s))
        })
        .collect();
    assert_eq!(spans.len(), 4);
    assert!(spans.iter().all(|(_, s)| s.trace_id == trace.0));
    let find = |name: &str| spans.iter().find(|(_, s)| s.operation == name).unwrap();
    let (svc, handle) = find("handle-reading");
    assert_eq!(*svc, "gateway");
    assert_eq!(handle.parent_span_id(), Some(send_ctx.span_id.0));
    let (_, store) = find("store");
    assert_eq!(store.parent_span_id(), Some(handle.span_id));
    assert!(store.baggage.contains(&("site".into(), "north-7".into())));
    let (svc, uart) = find("uart-send");
    assert_eq!(*svc, "sensor-node");
    assert_eq!(uart.span_id, send_ctx.span_id.0);

    // The Jaeger UI file: one trace, two processes, the parent reference across them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cross-device.json");
    let mut file = JaegerJsonFile::new(&path);
    for b in &batches {
        file.export(b).unwrap();
    }
    file.finish().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let traces = doc["data"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "one trace");
    let t = &traces[0];
    assert_eq!(t["traceID"], format!("{:032x}", trace.0));
    let processes = t["processes"].as_object().unwrap();
    let mut services: Vec<_> = processes
        .values()
        .map(|p| p["serviceName"].as_str().unwrap())
        .collect();
    services.sort();
    assert_eq!(services, ["gateway", "sensor-node"]);
    let json_spans = t["spans"].as_array().unwrap();
    let by_name = |n: &str| json_spans.iter().find(|s| s["operationName"] == n).unwrap();
    let h = by_name("handle-reading");
    assert_eq!(h["references"][0]["refType"], "CHILD_OF");
    assert_eq!(
        h["references"][0]["spanID"],
        format!("{:016x}", send_ctx.span_id.0)
    );
    assert_eq!(
        processes[h["processID"].as_str().unwrap()]["serviceName"],
        "gateway"
    );
    let u = by_name("uart-send");
    assert_eq!(
        processes[u["processID"].as_str().unwrap()]["serviceName"],
        "sensor-node"
    );
    // Baggage shows as Jaeger clients log it: once, on the span that set the item, not on the
    // spans that carry it on (here across the devices).
    let baggage_logs = |name: &str| {
        by_name(name)["logs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| {
                let f = l["fields"].as_array().unwrap();
                f.iter()
                    .any(|x| x["key"] == "event" && x["value"] == "baggage")
                    && f.iter().any(|x| x["key"] == "key" && x["value"] == "site")
                    && f.iter()
                        .any(|x| x["key"] == "value" && x["value"] == "north-7")
            })
            .count()
    };
    assert_eq!(baggage_logs("measure-and-report"), 1);
    for carried in ["uart-send", "handle-reading", "store"] {
        assert_eq!(baggage_logs(carried), 0, "{carried}");
    }
}

#[test]
fn follows_from_an_interrupt_handler_end_to_end() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("firmware").boot_id(5));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();

    // Two interrupts each produce a work item carrying their span's context.
    let mut queue = Vec::new();
    for _ in 0..2 {
        let isr = TRACER.root("EXTI0 handler");
        CLOCK.advance(20);
        queue.push(isr.context());
        drop(isr);
        CLOCK.advance(1_000);
    }
    // The main loop consumes them: ChildOf its loop span, FollowsFrom both producers.
    let main_loop = TRACER.root("main loop");
    let consume = TRACER
        .span("process work items")
        .child_of(&main_loop.context())
        .follows_from(&queue[0])
        .follows_from(&queue[1])
        .start();
    CLOCK.advance(300);
    drop(consume);
    // A consumer with only a FollowsFrom reference: its parent is the producer, FollowsFrom.
    let late = TRACER.span("deferred work").follows_from(&queue[0]).start();
    drop(late);
    drop(main_loop);

    let Decoded { spans, batches, .. } = decode(&drain_all(&mut drain));
    let find = |name: &str| span(&spans, name);
    let consume = find("process work items");
    let refs: Vec<_> = consume
        .references
        .iter()
        .map(|r| (r.kind, r.span_id))
        .collect();
    assert_eq!(
        refs,
        [
            (RefKind::ChildOf, find("main loop").span_id),
            (RefKind::FollowsFrom, queue[0].span_id.0),
            (RefKind::FollowsFrom, queue[1].span_id.0),
        ]
    );
    let late = find("deferred work");
    assert_eq!(late.references.len(), 1);
    assert_eq!(late.references[0].kind, RefKind::FollowsFrom);
    assert_eq!(
        late.trace_id, queue[0].trace_id.0,
        "joins the producer's trace"
    );

    // OTLP: the parent is the ChildOf; the FollowsFrom references are links.
    let reqs: Vec<_> = batches.iter().map(to_otlp_request).collect();
    let otlp: Vec<_> = reqs
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let c = otlp
        .iter()
        .find(|s| s.name == "process work items")
        .unwrap();
    assert_eq!(
        c.parent_span_id,
        find("main loop").span_id.to_be_bytes().to_vec()
    );
    assert_eq!(c.links.len(), 2);
    for (link, producer) in c.links.iter().zip(&queue) {
        assert_eq!(link.span_id, producer.span_id.0.to_be_bytes().to_vec());
        assert_eq!(link.trace_id, producer.trace_id.0.to_be_bytes().to_vec());
        let attr = &link.attributes[0];
        assert_eq!(attr.key, "opentracing.ref_type");
        assert!(format!("{:?}", attr.value).contains("follows_from"));
    }
    // A span whose only reference is FollowsFrom: that reference is its parent (OpenTelemetry's
    // OpenTracing compatibility: the first ChildOf, else the first reference; the Jaeger clients
    // alike), so OTLP backends do not show a second root, and it stays a link that keeps its
    // kind, which Jaeger reads back as one FOLLOWS_FROM reference.
    let l = otlp.iter().find(|s| s.name == "deferred work").unwrap();
    assert_eq!(l.parent_span_id, queue[0].span_id.0.to_be_bytes().to_vec());
    assert_eq!(l.links.len(), 1);
    assert_eq!(
        l.links[0].span_id,
        queue[0].span_id.0.to_be_bytes().to_vec()
    );
    assert!(format!("{:?}", l.links[0].attributes[0].value).contains("follows_from"));
    // Thrift: the parent span id, and the reference with its kind.
    let thrift: Vec<_> = batches
        .iter()
        .map(microspan_decoder::export::to_thrift_batch)
        .collect();
    let t = thrift
        .iter()
        .flat_map(|b| &b.spans)
        .find(|s| s.operation_name == "deferred work")
        .unwrap();
    assert_eq!(t.parent_span_id, queue[0].span_id.0 as i64);
    let refs = t.references.as_ref().unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(
        refs[0].ref_type,
        microspan_decoder::jaeger_thrift::SpanRefType::FOLLOWS_FROM
    );

    // Jaeger UI JSON: CHILD_OF first (the parent), then FOLLOWS_FROM.
    let mut file = JaegerJsonFile::new("unused.json");
    for b in &batches {
        file.export(b).unwrap();
    }
    let doc = file.to_json();
    let json_spans: Vec<_> = doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["spans"].as_array().unwrap().iter())
        .collect();
    let c = json_spans
        .iter()
        .find(|s| s["operationName"] == "process work items")
        .unwrap();
    let kinds: Vec<_> = c["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["refType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["CHILD_OF", "FOLLOWS_FROM", "FOLLOWS_FROM"]);
    let l = json_spans
        .iter()
        .find(|s| s["operationName"] == "deferred work")
        .unwrap();
    assert_eq!(l["references"][0]["refType"], "FOLLOWS_FROM");
}

/// The `event=baggage` logs of a span (key, value, and whether it says `override`).
fn baggage_logs(span: &microspan_decoder::model::Span) -> Vec<(String, String, bool)> {
    use microspan_decoder::model::Value;
    let text = |v: &Value| match v {
        Value::Str(s) => s.as_str().to_string(),
        other => format!("{other:?}"),
    };
    span.logs
        .iter()
        .filter(|l| {
            l.fields
                .iter()
                .any(|f| f.key == "event" && text(&f.value) == "baggage")
        })
        .map(|l| {
            let field = |k: &str| l.fields.iter().find(|f| f.key == k).map(|f| text(&f.value));
            (
                field("key").unwrap_or_default(),
                field("value").unwrap_or_default(),
                field("override").as_deref() == Some("true"),
            )
        })
        .collect()
}

#[test]
fn baggage_is_logged_where_it_is_set_as_jaeger_clients_do() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("bag").boot_id(9));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let upstream = upstream();

    let mut root = TRACER
        .span("root")
        .with_baggage(Baggage::<2>::new())
        .start();
    root.set_baggage("tenant", "acme");
    CLOCK.advance(10);
    let mut child = root.child("child");
    child.set_baggage("tenant", "globex"); // replaces an inherited item: `override`
    let grandchild = child.child("grandchild"); // carries it, sets nothing
    drop(grandchild);
    drop(child);
    // A span continuing an upstream context: the items the carrier brought are not logged (they
    // were logged upstream), an item the span sets is.
    let mut ex: Extracted<2> = Extracted::new(upstream);
    ex.baggage.set("region", "north");
    let mut remote = TRACER.span("remote").extracted(ex).start();
    remote.set_tag("step", 1u32);
    remote.set_baggage("attempt", "2");
    // A child of the continued span (recorded with the remote trace id named) sets an item
    // right away: logged like any.
    let mut retry = remote.child("retry");
    retry.set_baggage("attempt", "3");
    drop(retry);
    drop(remote);
    drop(root);

    let spans = decode(&drain_all(&mut drain)).spans;
    let find = |n: &str| span(&spans, n);
    assert_eq!(
        baggage_logs(find("root")),
        [("tenant".into(), "acme".into(), false)]
    );
    assert_eq!(
        baggage_logs(find("child")),
        [("tenant".into(), "globex".into(), true)]
    );
    assert!(baggage_logs(find("grandchild")).is_empty());
    assert!(find("grandchild")
        .baggage
        .contains(&("tenant".into(), "globex".into())));
    let remote = find("remote");
    assert_eq!(
        baggage_logs(remote),
        [("attempt".into(), "2".into(), false)]
    );
    assert!(remote.baggage.contains(&("region".into(), "north".into())));
    assert_eq!(
        baggage_logs(find("retry")),
        [("attempt".into(), "3".into(), true)]
    );
}

/// An item longer than the decoder's string limit is cut in the span's baggage and in its log,
/// which says `truncated` (the log's own keys and values are never cut); setting it again says
/// `override` as well.
#[test]
fn a_cut_baggage_item_is_logged_truncated() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("cut").boot_id(3));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let mut root = TRACER
        .span("root")
        .with_baggage(Baggage::<2>::new())
        .start();
    root.set_baggage("tenant", "acme-corp");
    CLOCK.advance(10);
    root.set_baggage("tenant", "globex-co");
    drop(root);

    let options = Options {
        limits: microspan_decoder::assemble::Limits {
            max_string_len: 4,
            ..Default::default()
        },
        ..anchored()
    };
    let batches = decode_in(&drain_all(&mut drain), options, usize::MAX).batches;
    let root = &batches[0].spans[0];
    let logs: Vec<Vec<(String, String)>> = root
        .logs
        .iter()
        .map(|l| {
            l.fields
                .iter()
                .map(|f| match &f.value {
                    microspan_decoder::model::Value::Str(s) => (f.key.to_string(), s.to_string()),
                    other => panic!("a string field, not {other:?}"),
                })
                .collect()
        })
        .collect();
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        logs,
        [
            vec![
                kv("event", "baggage"),
                kv("key", "tena"),
                kv("value", "acme"),
                kv("truncated", "true"),
            ],
            vec![
                kv("event", "baggage"),
                kv("key", "tena"),
                kv("value", "glob"),
                kv("override", "true"),
                kv("truncated", "true"),
            ],
        ]
        .map(|l| l.into_iter().collect::<Vec<_>>())
    );
    assert_eq!(root.baggage.iter().count(), 1);
    assert!(root.baggage.contains(&("tena".into(), "glob".into())));
}

/// An item set with `set_baggage` on a span continued from a carrier, right after its start
/// (before any tag or log), is logged once, there, `override` when it replaces a carried item;
/// the carried items join the span's baggage, unlogged, and reach its child.
#[test]
fn an_item_set_right_after_a_continued_start_is_logged_once() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("cont").boot_id(10));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();

    let mut ex: Extracted<3> = Extracted::new(upstream());
    assert!(ex.baggage.set("region", "north"));
    assert!(ex.baggage.set("tenant", "acme"));
    let mut handler = TRACER.span("handler").extracted(ex).start();
    handler.set_baggage("attempt", "1");
    handler.set_baggage("tenant", "globex"); // replaces a carried item: `override`
    CLOCK.advance(5);
    drop(handler.child("child"));
    drop(handler);

    let spans = decode(&drain_all(&mut drain)).spans;
    let find = |n: &str| span(&spans, n);
    let handler = find("handler");
    assert_eq!(
        baggage_logs(handler),
        [
            ("attempt".into(), "1".into(), false),
            ("tenant".into(), "globex".into(), true),
        ]
    );
    let all = [("region", "north"), ("tenant", "globex"), ("attempt", "1")];
    for span in [handler, find("child")] {
        for (k, v) in all {
            assert!(
                span.baggage.contains(&(k.into(), v.into())),
                "{} {:?}",
                span.operation,
                span.baggage
            );
        }
    }
    assert!(baggage_logs(find("child")).is_empty());
}

/// The `event=baggage` logs of each span in the exports (Jaeger UI JSON, Jaeger Thrift, OTLP
/// events), by operation name.
fn exported_baggage_logs(batches: &[Batch]) -> Vec<(String, usize, usize, usize)> {
    let mut file = JaegerJsonFile::new("unused.json");
    for b in batches {
        file.export(b).unwrap();
    }
    let doc = file.to_json();
    let json: Vec<(String, usize)> = doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["spans"].as_array().unwrap().iter())
        .map(|s| {
            let n = s["logs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| {
                    l["fields"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|f| f["key"] == "event" && f["value"] == "baggage")
                })
                .count();
            (s["operationName"].as_str().unwrap().to_string(), n)
        })
        .collect();
    let mut out = Vec::new();
    for b in batches {
        let thrift = microspan_decoder::export::to_thrift_batch(b);
        let otlp = to_otlp_request(b);
        let otlp_spans: Vec<_> = otlp
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        for span in &b.spans {
            let name = span.operation.as_str();
            let j = json.iter().find(|(n, _)| n == name).unwrap().1;
            let t = thrift
                .spans
                .iter()
                .find(|s| s.operation_name == name)
                .unwrap()
                .logs
                .iter()
                .flatten()
                .filter(|l| {
                    l.fields
                        .iter()
                        .any(|f| f.key == "event" && f.v_str.as_deref() == Some("baggage"))
                })
                .count();
            let o = otlp_spans
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .events
                .iter()
                .filter(|e| e.name == "baggage")
                .count();
            out.push((name.to_string(), j, t, o));
        }
    }
    out.sort();
    out
}

/// A context that goes through a queue on the same device (injected into a binary, W3C or
/// Jaeger carrier, extracted, and continued: the new span's parent is the producer, a local
/// span) brings its baggage without logging it again: the items were logged once, where they
/// were set. The consumers and their children carry them, in the model and every export.
#[test]
fn a_context_through_a_queue_on_the_same_device_is_not_logged_again() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<4096> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("queue").boot_id(12));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();

    let mut producer = TRACER
        .span("produce")
        .with_baggage(Baggage::<2>::new())
        .start();
    producer.set_baggage("tenant", "acme");
    producer.set_baggage("order", "17");
    let ctx = producer.context();
    let mut message = [0u8; 128];
    binary::inject(&ctx, producer.baggage(), &mut message).unwrap();
    let mut w3c_headers: Vec<(String, String)> = Vec::new();
    let skipped = w3c::inject(&ctx, producer.baggage(), |n, v| {
        w3c_headers.push((n.to_string(), v.to_string()));
        Ok(())
    })
    .unwrap();
    assert_eq!(skipped, 0);
    let mut jaeger_headers: Vec<(String, String)> = Vec::new();
    let skipped = jaeger::inject(&ctx, producer.baggage(), |n, v| {
        jaeger_headers.push((n.to_string(), v.to_string()));
        Ok(())
    })
    .unwrap();
    assert_eq!(skipped, 0);
    CLOCK.advance(10);
    // The producer's records go out first: the consumers start in later frames (LOCAL_PARENT).
    let mut stream = drain_all(&mut drain);

    let extracted: [(&str, Extracted<2>); 3] = [
        ("consume-binary", binary::extract(&message).unwrap()),
        (
            "consume-w3c",
            w3c::extract_from_headers(w3c_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                .unwrap(),
        ),
        (
            "consume-jaeger",
            jaeger::extract_from_headers(
                jaeger_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            )
            .unwrap(),
        ),
    ];
    let mut store_ids = Vec::new();
    for (name, ex) in extracted {
        assert_eq!(ex.context, ctx, "{name}");
        let consumer = TRACER.span(name).extracted(ex).start();
        CLOCK.advance(3);
        let store = consumer.child("store");
        store_ids.push(store.context().span_id.0);
        CLOCK.advance(3);
        drop(store);
        drop(consumer);
        stream.extend(drain_all(&mut drain));
    }
    drop(producer);
    stream.extend(drain_all(&mut drain));

    let Decoded { spans, batches, .. } = decode(&stream);
    assert_eq!(spans.len(), 7);
    let produce = span(&spans, "produce");
    assert_eq!(
        baggage_logs(produce),
        [
            ("tenant".into(), "acme".into(), false),
            ("order".into(), "17".into(), false),
        ]
    );
    for span in &spans {
        assert!(
            span.baggage.contains(&("tenant".into(), "acme".into()))
                && span.baggage.contains(&("order".into(), "17".into())),
            "{} {:?}",
            span.operation,
            span.baggage
        );
        assert_eq!(span.trace_id, ctx.trace_id.0, "{}", span.operation);
        if span.operation.starts_with("consume-") {
            assert_eq!(span.parent_span_id(), Some(produce.span_id));
            assert!(span.warnings.is_empty(), "{:?}", span.warnings);
        }
        if span.operation != "produce" {
            assert!(baggage_logs(span).is_empty(), "{}", span.operation);
        }
    }
    assert!(spans
        .iter()
        .filter(|s| s.operation == "store")
        .all(|s| store_ids.contains(&s.span_id)));
    // Jaeger UI JSON, Thrift and OTLP: the two items are logged on the producer, nowhere else.
    let mut expected = vec![
        ("consume-binary".to_string(), 0, 0, 0),
        ("consume-jaeger".to_string(), 0, 0, 0),
        ("consume-w3c".to_string(), 0, 0, 0),
        ("produce".to_string(), 2, 2, 2),
    ];
    expected.extend(std::iter::repeat_n(("store".to_string(), 0, 0, 0), 3));
    assert_eq!(exported_baggage_logs(&batches), expected);
}

/// Baggage without a trace context (a `jaeger-baggage` header alone) starts a root that carries
/// the items, as the Jaeger Go client does: copied into the root's baggage, not logged.
#[test]
fn a_root_from_baggage_only_headers_carries_the_items_unlogged() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("adhoc").boot_id(13));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();

    let ex: Extracted<2> =
        jaeger::extract_from_headers([("jaeger-baggage", "session=s-1, user=bob")]).unwrap();
    assert!(!ex.context.is_valid());
    let mut root = TRACER.span("request").extracted(ex).start();
    root.set_baggage("user", "carol"); // set on the root: logged, `override`
    CLOCK.advance(4);
    drop(root.child("work"));
    drop(root);

    let Decoded { spans, batches, .. } = decode(&drain_all(&mut drain));
    let find = |n: &str| span(&spans, n);
    let root = find("request");
    assert_eq!(root.parent_span_id(), None);
    assert_eq!(baggage_logs(root), [("user".into(), "carol".into(), true)]);
    for span in [root, find("work")] {
        assert!(span.baggage.contains(&("session".into(), "s-1".into())));
        assert!(span.baggage.contains(&("user".into(), "carol".into())));
    }
    assert!(baggage_logs(find("work")).is_empty());
    assert_eq!(
        exported_baggage_logs(&batches),
        [
            ("request".to_string(), 1, 1, 1),
            ("work".to_string(), 0, 0, 0)
        ]
    );
}

/// An upstream service's context.
fn upstream() -> microspan::SpanContext {
    microspan::SpanContext {
        trace_id: microspan::TraceId::from_halves(0x1111, 0x2222),
        span_id: microspan::SpanId(0x3333),
        flags: microspan::Flags::SAMPLED,
    }
}

#[test]
fn a_child_of_reference_into_another_trace_is_not_the_parent() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("refs").boot_id(4));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let other = upstream();
    let root = TRACER.root("batch-job");
    root.add_reference(microspan::RefKind::ChildOf, &other);
    CLOCK.advance(5);
    drop(root);

    let batches = decode(&drain_all(&mut drain)).batches;
    // The device is the host Jaeger's clock-skew adjuster compares (`host.id` first).
    let tag = |k: &str| {
        batches[0]
            .process
            .tags
            .iter()
            .find(|t| t.key == k)
            .map(|t| t.value.clone())
    };
    assert!(tag("host.id").is_some());
    assert_eq!(tag("host.id"), tag("device.id"));
    let span = &batches[0].spans[0];
    assert_eq!(span.references.len(), 1);
    assert_eq!(
        span.parent_span_id(),
        None,
        "the reference is into another trace"
    );
    let otlp = to_otlp_request(&batches[0]);
    let o = &otlp.resource_spans[0].scope_spans[0].spans[0];
    assert!(o.parent_span_id.is_empty());
    assert_eq!(o.links.len(), 1, "kept as a link");
    assert_eq!(o.links[0].trace_id, other.trace_id.0.to_be_bytes());
    let thrift = microspan_decoder::export::to_thrift_batch(&batches[0]);
    assert_eq!(thrift.spans[0].parent_span_id, 0);
    let refs = thrift.spans[0].references.as_ref().unwrap();
    assert_eq!(refs[0].span_id, 0x3333);
}

#[test]
fn a_version_1_device_s_carried_items_are_still_not_logged() {
    // A version 1 device has no carried mark: the items a carrier brought follow the
    // START_REMOTE as plain BAGGAGE records. They were set (and logged) upstream, so the span
    // continuing the context must not log them, as before the mark existed.
    use microspan::wire::{Capacities, Hello};
    let hello = Hello {
        service: "old",
        device_id: 7,
        boot_id: 1,
        ticks_per_second: 1_000_000,
        now_ticks: 1000,
        epoch_frames: 64,
        capacities: Capacities {
            tags_per_span: 8,
            fields_per_log: 4,
            str_len: 32,
            baggage_value_len: 16,
            frame_max: 256,
            ring_words: 512,
        },
        firmware_version: "1",
        microspan_version: "0.1.0",
        wall_clock: None,
        time_shift: 0,
    };
    // Header: version 1, seq 0, base id 0, base time 1000; then HELLO.
    let mut raw = vec![1u8, 0, 0, 0, 0xe8, 0x07, 0xC0];
    raw.extend_from_slice(&postcard::to_allocvec(&hello).unwrap());
    // START_REMOTE: delta 20, flags 0, trace id, parent span id, name inline "h", dt 0.
    raw.extend_from_slice(&[0xC3, 20, 0]);
    raw.extend_from_slice(&0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736u128.to_le_bytes());
    raw.extend_from_slice(&0x00f0_67aa_0ba9_02b7u64.to_le_bytes());
    raw.extend_from_slice(&[0x03, b'h', 0]);
    // BAGGAGE on it (back 0): tenant=acme, both inline, as the carrier brought it.
    raw.extend_from_slice(&[0xC7, 0, 13]);
    raw.extend_from_slice(b"tenant");
    raw.extend_from_slice(&[9]);
    raw.extend_from_slice(b"acme");
    // A tag, then an item the span sets: that one is logged.
    raw.extend_from_slice(&[0xC5, 0, 1, 0x03, b'k']);
    raw.extend_from_slice(&[0xC7, 0, 7]);
    raw.extend_from_slice(b"own");
    raw.extend_from_slice(&[5]);
    raw.extend_from_slice(b"ab");
    // Short end of span 20 (v1), dt 5.
    raw.extend_from_slice(&[0x40, 5]);
    let crc = microspan::wire::CRC.checksum(&raw).to_le_bytes();
    raw.extend_from_slice(&crc);
    let mut wire = vec![0u8; raw.len() + raw.len() / 254 + 2];
    let n = cobs::encode(&raw, &mut wire);
    wire.truncate(n);
    wire.push(0);
    let spans = decode(&wire).spans;
    let span = span(&spans, "h");
    assert_eq!(span.baggage.len(), 2, "{:?}", span.baggage);
    assert_eq!(
        baggage_logs(span),
        [("own".to_string(), "ab".to_string(), false)],
        "only the item the span set is logged"
    );
}

/// A request that asked to be traced with `jaeger-debug-id` reaches Jaeger as the Jaeger clients
/// send it: a new root, debug (flags 3), tagged with the id, although the device's sampler
/// samples nothing; an id cut on the device says so in a warning.
#[test]
fn a_jaeger_debug_id_request_is_a_debug_root_tagged_with_the_id() {
    use microspan::Sampler;
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("dbg").boot_id(4))
        .with_sampler(Sampler::Const(false));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let long = "x".repeat(microspan::config::MAX_STR_LEN + 1);
    for id in ["some-correlation-id", long.as_str()] {
        let ex: Extracted<0> =
            jaeger::extract_from_headers([("jaeger-debug-id", id)].iter().copied()).unwrap();
        let root = TRACER.span("handle").extracted(ex).start();
        CLOCK.advance(10);
        drop(root.child("step"));
        drop(root);
    }
    let Decoded { spans, batches, .. } = decode(&drain_all(&mut drain));
    let roots: Vec<_> = spans.iter().filter(|s| s.operation == "handle").collect();
    assert_eq!(roots.len(), 2);
    assert_eq!(spans.len(), 4, "the children are sampled with their roots");
    for (root, id) in roots.iter().zip(["some-correlation-id", &long[..MAX_STR]]) {
        assert_eq!(root.flags, 3, "sampled and debug");
        assert!(root.references.is_empty(), "a new root");
        assert_eq!(
            root.tag("jaeger-debug-id"),
            Some(&microspan_decoder::model::Value::Str(id.into()))
        );
        assert!(!root.tags.iter().any(|t| t.key == "sampler.type"));
    }
    assert!(roots[0].warnings.is_empty());
    assert!(
        roots[1].warnings.iter().any(|w| w.contains("truncated")),
        "{:?}",
        roots[1].warnings
    );
    let thrift = microspan_decoder::export::to_thrift_batch(&batches[0]);
    assert!(thrift.spans.iter().all(|s| s.flags == 3));
}

const MAX_STR: usize = microspan::config::MAX_STR_LEN;

/// Deterministic ids need a device id and a boot id of their own: a stream that announces boot
/// id 0 or the default device id gets a note saying why its traces may mix with others in Jaeger.
#[test]
fn default_ids_get_a_note() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING_A: Ring<256> = Ring::new();
    static RING_B: Ring<256> = Ring::new();
    static DEFAULTS: Tracer = Tracer::new(&RING_A, &CLOCK, &Session::new("defaults"));
    static SET: Tracer = Tracer::new(
        &RING_B,
        &CLOCK,
        &Session::new("set").device_id(0x1234).boot_id(7),
    );
    let notes = |tracer: &'static Tracer| {
        let mut drain: Drain<'_, 256> = Drain::new(tracer).unwrap();
        drop(tracer.root("work"));
        let mut dec = StreamDecoder::new(Options::default());
        let mut out = Vec::new();
        dec.feed(&drain_all(&mut drain), &mut out).unwrap();
        dec.notes()
    };
    let n = notes(&DEFAULTS);
    assert_eq!(n.len(), 2, "{n:?}");
    assert!(n[0].contains("boot id 0") && n[0].contains("set_boot_id"));
    assert!(n[1].contains("default device id") && n[1].contains("Session::device_id"));
    assert!(notes(&SET).is_empty());
}

/// A link that takes nothing for longer than half the clock's wrap period (an RTT channel with no
/// probe, a USB port not open yet) while a frame waits: the spans recorded after it are still
/// dated right (the drain's tick extension follows the clock on stalled polls).
#[test]
fn spans_after_a_long_stalled_link_are_dated_right() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(
        &RING,
        &CLOCK,
        &Session::new("stall").device_id(0x5a11).boot_id(1),
    );
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let a = TRACER.root("before");
    CLOCK.advance(100);
    drop(a);
    // 40 minutes of a 1 MHz clock (2.4e9 ticks, more than 2^31), one poll a second, the link
    // taking nothing; the frame holding `before` waits all along.
    for _ in 0..2_400 {
        CLOCK.advance(1_000_000);
        assert_eq!(drain.drain_with(|_| 0), 0);
    }
    let b = TRACER.root("after");
    CLOCK.advance(100);
    drop(b);
    let spans = decode(&drain_all(&mut drain)).spans;
    let find = |n: &str| span(&spans, n);
    let gap = find("after").start_unix_nanos as i128 - find("before").start_unix_nanos as i128;
    assert_eq!(gap, 2_400_000_100_000, "40 min and 100 µs, in ns");
}

/// Spans under another service's span, dated only by the host's clock (the device sent no wall
/// clock), get a note: in Jaeger they sit off their parents by the decoding delay and the clock
/// difference. A device that sends its wall clock gets none.
#[test]
fn remote_children_dated_by_the_host_get_a_note() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING_A: Ring<256> = Ring::new();
    static RING_B: Ring<256> = Ring::new();
    static NO_WALL: Tracer = Tracer::new(
        &RING_A,
        &CLOCK,
        &Session::new("no-wall").device_id(0x1234).boot_id(7),
    );
    static WALL: Tracer = Tracer::new(
        &RING_B,
        &CLOCK,
        &Session::new("wall").device_id(0x1234).boot_id(8),
    );
    let notes = |tracer: &'static Tracer, wall: bool| {
        let mut drain: Drain<'_, 256> = Drain::new(tracer).unwrap();
        if wall {
            drain.set_wall_clock(1_700_000_000_000_000_000);
        }
        let ex = backend_context();
        let handler = tracer.span("handle-command").extracted(ex).start();
        drop(handler.child("actuate"));
        drop(handler);
        drop(tracer.root("local-work"));
        let mut dec = StreamDecoder::new(Options::default());
        let mut out = Vec::new();
        dec.feed(&drain_all(&mut drain), &mut out).unwrap();
        dec.finish(&mut out);
        assert_eq!(dec.stats().spans.remote_parents, 1);
        dec.notes()
    };
    let n = notes(&NO_WALL, false);
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(
        n[0].starts_with("1 span continues traces of other services")
            && n[0].contains("Drain::set_wall_clock"),
        "{n:?}"
    );
    assert!(notes(&WALL, true).is_empty());
}

/// Two devices with the same boot id (the same reset count, or both left at 0) continue one
/// backend trace: their spans still get different ids, on the device (the context they inject)
/// and as decoded. Span ids mix the device id into the boot id (wire version 3).
#[test]
fn devices_with_the_same_boot_id_continuing_one_trace_make_different_span_ids() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING_A: Ring<256> = Ring::new();
    static RING_B: Ring<256> = Ring::new();
    static A: Tracer = Tracer::new(
        &RING_A,
        &CLOCK,
        &Session::new("fleet").device_id(0x1111).boot_id(7),
    );
    static B: Tracer = Tracer::new(
        &RING_B,
        &CLOCK,
        &Session::new("fleet").device_id(0x2222).boot_id(7),
    );
    let run = |tracer: &'static Tracer| {
        let mut drain: Drain<'_, 256> = Drain::new(tracer).unwrap();
        let ex = backend_context();
        let span = tracer.span("handle-command").extracted(ex).start();
        let injected = span.context().span_id;
        drop(span);
        let mut dec = StreamDecoder::new(Options::default());
        let mut out = Vec::new();
        dec.feed(&drain_all(&mut drain), &mut out).unwrap();
        dec.finish(&mut out);
        let spans: Vec<_> = out.iter().flat_map(|b| b.spans.iter()).collect();
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].span_id, injected.0,
            "the decoder names the injected id"
        );
        injected
    };
    let (a, b) = (run(&A), run(&B));
    assert_ne!(a, b, "two devices, one trace: the span ids must differ");
}

/// The context of a backend's command: a W3C `traceparent`, sampled, extracted.
fn backend_context() -> Extracted<2> {
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    w3c::extract(|h| (h == "traceparent").then_some(traceparent)).unwrap()
}

/// A span continuing an upstream service's context has a remote parent; a span this device
/// started in that trace, handed on with `child_of` (to a handler, a task), is a local parent,
/// and so is its own child's: only the first says "parent is remote" in OTLP (flag 0x200).
#[test]
fn only_a_span_continuing_another_process_has_a_remote_parent() {
    static CLOCK: ManualClock = ManualClock::new(0);
    static RING: Ring<1024> = Ring::new();
    static TRACER: Tracer = Tracer::new(&RING, &CLOCK, &Session::new("refs").boot_id(4));
    let mut drain: Drain<'_, 256> = Drain::new(&TRACER).unwrap();
    let server = TRACER.span("server").child_of(&upstream()).start();
    CLOCK.advance(10);
    let handed = TRACER.span("handed").child_of(&server.context()).start();
    let child = server.child("child");
    CLOCK.advance(10);
    drop((child, handed, server));
    let stream = drain_all(&mut drain);
    let d = decode(&stream);
    let remote = |name| span(&d.spans, name).remote_parent;
    assert_eq!(
        (remote("server"), remote("handed"), remote("child")),
        (true, false, false)
    );
    assert_eq!(d.stats.spans.remote_parents, 1);
    let request = to_otlp_request(&d.batches[0]);
    let spans = &request.resource_spans[0].scope_spans[0].spans;
    let flags = |name| spans.iter().find(|s| s.name == name).unwrap().flags;
    assert_eq!(
        (flags("server"), flags("handed"), flags("child")),
        (0x301, 0x101, 0x101)
    );
}
