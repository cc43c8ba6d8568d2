//! The same spans in other wire formats: a microspan stream captured from the bench firmware's
//! UART is decoded with the decoder, and the spans it yields are encoded as Jaeger Thrift (binary
//! and compact protocol, the decoder's `to_thrift_batch`), OTLP protobuf (`to_otlp_request` +
//! prost) and OTLP/JSON (the same request, opentelemetry-proto's serde mapping), all in one batch
//! (the most favourable case for those formats: the process/resource is sent once).

use microspan_decoder::assemble::Options;
use microspan_decoder::export::{to_otlp_request, to_thrift_batch};
use microspan_decoder::model::Batch;
use microspan_decoder::stream::StreamDecoder;
use prost::Message;
use thrift::protocol::{
    TBinaryOutputProtocol, TCompactOutputProtocol, TOutputProtocol, TSerializable,
};

/// Bytes of the same spans in each format.
#[derive(Clone, Debug, Default)]
pub struct Sizes {
    /// Spans decoded.
    pub spans: usize,
    /// microspan's stream (frames, COBS, CRC, session records included).
    pub microspan: usize,
    /// Jaeger Thrift, binary protocol (what the collector's `/api/traces` takes).
    pub thrift_binary: usize,
    /// Jaeger Thrift, compact protocol (what the agent's UDP port takes).
    pub thrift_compact: usize,
    /// OTLP protobuf (`ExportTraceServiceRequest`).
    pub otlp_proto: usize,
    /// OTLP/JSON.
    pub otlp_json: usize,
}

/// Decodes `stream` and measures the spans in every format.
pub fn sizes(stream: &[u8]) -> Result<Sizes, String> {
    let mut dec = StreamDecoder::new(Options {
        fixed_anchor_unix_nanos: Some(1_700_000_000_000_000_000),
        ..Options::default()
    });
    let mut batches = Vec::new();
    dec.feed(stream, &mut batches)
        .map_err(|e| format!("decoding the bench stream: {e}"))?;
    dec.finish(&mut batches);
    let Some(first) = batches.first() else {
        return Err("the bench stream decoded to no spans".into());
    };
    let batch = Batch {
        process: first.process.clone(),
        spans: batches
            .iter()
            .flat_map(|b| b.spans.iter().cloned())
            .collect(),
    };
    let thrift = to_thrift_batch(&batch);
    let mut binary = Vec::new();
    {
        let mut p = TBinaryOutputProtocol::new(&mut binary, true);
        thrift
            .write_to_out_protocol(&mut p)
            .map_err(|e| e.to_string())?;
        p.flush().map_err(|e| e.to_string())?;
    }
    let mut compact = Vec::new();
    {
        let mut p = TCompactOutputProtocol::new(&mut compact);
        thrift
            .write_to_out_protocol(&mut p)
            .map_err(|e| e.to_string())?;
        p.flush().map_err(|e| e.to_string())?;
    }
    let otlp = to_otlp_request(&batch);
    let json = serde_json::to_vec(&otlp).map_err(|e| e.to_string())?;
    Ok(Sizes {
        spans: batch.spans.len(),
        microspan: stream.len(),
        thrift_binary: binary.len(),
        thrift_compact: compact.len(),
        otlp_proto: otlp.encode_to_vec().len(),
        otlp_json: json.len(),
    })
}
