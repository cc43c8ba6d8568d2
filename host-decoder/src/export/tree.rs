//! A span tree with a waterfall, for the terminal.
//!
//! ```text
//! trace 000000000000002a · in-process-service · 3 spans · 3.000 s
//!    3.000 s |██████████████████████████████| in-process-service
//!    3.000 s |██████████████████████████████| └─ Foo
//!    2.000 s |          ████████████████████|    └─ Bar
//!                                                      tags: error=true
//!                                                      log +2.000 s: event="error" message="something wrong"
//! ```
//!
//! A trace is printed when its root span (a span without references into its trace) arrives —
//! roots finish last — and whatever is still buffered at `finish`; spans that arrive for a trace
//! already printed are printed as its continuation. Children are ordered by start time, so the
//! output is deterministic. `error=true` and `[incomplete]` are highlighted when colours are on
//! (a terminal, and `NO_COLOR` unset); otherwise the text is plain.
//!
//! Every text the device sent (service and operation names, tag keys and values, log fields,
//! baggage, and the warnings that quote them) is printed through
//! [`printable`](crate::terminal::printable): a control character in it shows as an escape
//! (`\u{1b}`), never acts on the terminal, and a row stays one line.
//!
//! The tree is drawn to 32 levels below its top (`MAX_DRAWN_DEPTH`); deeper spans stay at that
//! indentation and say their depth (`└─ [depth 40] name`), so that a row's length does not grow
//! with the nesting (a trace of a thousand nested spans would otherwise print half a million
//! columns of `│  `). Rows are written as they are drawn, through a small buffer: however large
//! a trace, the text of it is never held whole.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};

use super::jaeger_json::trace_id_hex;
use super::{ExportError, ExportSummary, Exporter};
use crate::model::{Batch, Process, RefKind, Span, Value};
use crate::plural::count;
use crate::terminal::printable;

const BAR: usize = 30;
/// Width of the duration and waterfall columns before the tree.
const LEFT: usize = 10 + 2 + BAR + 2;
/// Spans buffered (waiting for their root) before the oldest trace is printed anyway.
const MAX_PENDING_SPANS: usize = 100_000;
/// Printed traces remembered, to mark late spans as a continuation.
const MAX_REMEMBERED: usize = 4_096;
/// Levels of the tree drawn with their own indentation; deeper spans are drawn at this one,
/// marked with their depth.
const MAX_DRAWN_DEPTH: usize = 32;
/// The buffer between a trace's rows and the output.
const WRITE_BUFFER: usize = 64 * 1024;

struct Pending {
    trace_id: u128,
    spans: Vec<(usize, Span)>,
}

/// Writes each finished trace as an indented tree with a waterfall bar per span.
///
/// Past 32 levels of nesting, rows stop indenting and say their depth instead
/// (`└─ [depth 40] name`): the output stays linear in the number of spans however deep a trace.
pub struct TreeWriter<W: Write + Send> {
    out: W,
    color: bool,
    name: String,
    processes: Vec<Process>,
    /// Traces waiting for their root, by arrival order (the oldest is printed first when the
    /// buffer is full), and where each trace stands in it: lookups stay constant-time however
    /// many traces a batch holds.
    pending: BTreeMap<u64, Pending>,
    pending_at: HashMap<u128, u64>,
    next_pending: u64,
    pending_spans: usize,
    printed: HashSet<u128>,
    printed_order: VecDeque<u128>,
    spans_in: u64,
    written: u64,
    finished: bool,
}

impl TreeWriter<io::Stdout> {
    /// A tree on standard output, coloured when it is a terminal and `NO_COLOR` is not set.
    pub fn stdout() -> Self {
        let color = io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Self::new(io::stdout(), color)
    }
}

impl<W: Write + Send> TreeWriter<W> {
    /// A tree written to `out`; `color` adds ANSI highlighting.
    pub fn new(out: W, color: bool) -> Self {
        Self {
            out,
            color,
            name: "tree".into(),
            processes: Vec::new(),
            pending: BTreeMap::new(),
            pending_at: HashMap::new(),
            next_pending: 0,
            pending_spans: 0,
            printed: HashSet::new(),
            printed_order: VecDeque::new(),
            spans_in: 0,
            written: 0,
            finished: false,
        }
    }

    /// The writer, e.g. to read back a `Vec<u8>` in tests.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn process_index(&mut self, process: &Process) -> usize {
        match self.processes.iter().position(|p| p == process) {
            Some(i) => i,
            None => {
                self.processes.push(process.clone());
                self.processes.len() - 1
            }
        }
    }

    /// Prints the oldest pending trace (if any).
    fn print_oldest(&mut self) -> io::Result<()> {
        match self.pending.keys().next().copied() {
            Some(at) => self.print_pending(at),
            None => Ok(()),
        }
    }

    fn print_pending(&mut self, at: u64) -> io::Result<()> {
        let Some(trace) = self.pending.remove(&at) else {
            return Ok(());
        };
        self.pending_at.remove(&trace.trace_id);
        self.pending_spans -= trace.spans.len();
        let continued = self.printed.contains(&trace.trace_id);
        let mut out = io::BufWriter::with_capacity(WRITE_BUFFER, &mut self.out);
        render_trace(&mut out, &trace, &self.processes, continued, self.color)?;
        out.flush()?;
        drop(out);
        self.written += trace.spans.len() as u64;
        if !continued {
            self.printed.insert(trace.trace_id);
            self.printed_order.push_back(trace.trace_id);
            if self.printed_order.len() > MAX_REMEMBERED {
                if let Some(old) = self.printed_order.pop_front() {
                    self.printed.remove(&old);
                }
            }
        }
        Ok(())
    }

    fn io_error(&self, source: io::Error) -> ExportError {
        if source.kind() == io::ErrorKind::BrokenPipe {
            return ExportError::OutputClosed;
        }
        ExportError::File {
            path: "<terminal>".into(),
            source,
        }
    }
}

impl<W: Write + Send> Exporter for TreeWriter<W> {
    fn name(&self) -> &str {
        &self.name
    }

    fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        if self.finished {
            return Err(ExportError::Finished {
                exporter: self.name.clone(),
            });
        }
        let p = self.process_index(&batch.process);
        let mut roots = Vec::new();
        for span in &batch.spans {
            self.spans_in += 1;
            let at = match self.pending_at.get(&span.trace_id) {
                Some(&at) => at,
                None => {
                    let at = self.next_pending;
                    self.next_pending += 1;
                    self.pending_at.insert(span.trace_id, at);
                    self.pending.insert(
                        at,
                        Pending {
                            trace_id: span.trace_id,
                            // Most traces of a batch are one span (ISR roots, incomplete spans
                            // flushed at the end): no room reserved beyond it.
                            spans: Vec::with_capacity(1),
                        },
                    );
                    at
                }
            };
            if let Some(t) = self.pending.get_mut(&at) {
                t.spans.push((p, span.clone()));
            }
            self.pending_spans += 1;
            let local_root = span.references.iter().all(|r| r.trace_id != span.trace_id);
            if local_root && !roots.contains(&span.trace_id) {
                roots.push(span.trace_id);
            }
        }
        for trace_id in roots {
            if let Some(&at) = self.pending_at.get(&trace_id) {
                self.print_pending(at).map_err(|e| self.io_error(e))?;
            }
        }
        while self.pending_spans > MAX_PENDING_SPANS && !self.pending.is_empty() {
            self.print_oldest().map_err(|e| self.io_error(e))?;
        }
        self.out.flush().map_err(|e| self.io_error(e))
    }

    fn finish(&mut self) -> Result<ExportSummary, ExportError> {
        if self.finished {
            return Err(ExportError::Finished {
                exporter: self.name.clone(),
            });
        }
        self.finished = true;
        while !self.pending.is_empty() {
            self.print_oldest().map_err(|e| self.io_error(e))?;
        }
        self.out.flush().map_err(|e| self.io_error(e))?;
        let mut summary = ExportSummary::new(&self.name);
        summary.spans_in = self.spans_in;
        summary.delivered = self.written;
        Ok(summary)
    }
}

/// A duration in human units.
pub(crate) fn human(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.2} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.3} s", ns as f64 / 1e9)
    }
}

/// A tag or log value as the tree shows it (strings quoted, their control characters escaped).
fn value(v: &Value) -> String {
    match v {
        Value::Str(s) => printable(&format!("{s:?}")).into_owned(),
        Value::Bool(b) => b.to_string(),
        Value::I64(i) => i.to_string(),
        Value::U64(u) => u.to_string(),
        Value::F64(f) => f.to_string(),
    }
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Writes the trace's rows to `out` as they are drawn.
fn render_trace(
    out: &mut impl Write,
    trace: &Pending,
    processes: &[Process],
    continued: bool,
    color: bool,
) -> io::Result<()> {
    let style = Style { color };
    let spans = &trace.spans;
    let start = spans
        .iter()
        .map(|(_, s)| s.start_unix_nanos)
        .min()
        .unwrap_or(0);
    let end = spans
        .iter()
        .map(|(_, s)| s.start_unix_nanos.saturating_add(s.duration_nanos))
        .max()
        .unwrap_or(start);
    let duration = end.saturating_sub(start);
    // At least 1 ns for the bars' scale; the header shows the trace's own length ("0 ns" as its
    // spans' rows do).
    let total = duration.max(1);

    // Tree: the parent is the first ChildOf reference found in the trace, else the first reference
    // of any kind found (a FollowsFrom); else the span is shown at the top. References into other
    // traces are not followed.
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    for (i, (_, s)) in spans.iter().enumerate() {
        by_id.entry(s.span_id).or_insert(i);
    }
    let parent_of = |s: &Span| -> Option<(usize, RefKind)> {
        let find = |kind: Option<RefKind>| {
            s.references
                .iter()
                .filter(|r| r.trace_id == s.trace_id && kind.is_none_or(|k| r.kind == k))
                .find_map(|r| by_id.get(&r.span_id).map(|&i| (i, r.kind)))
        };
        find(Some(RefKind::ChildOf)).or_else(|| find(None))
    };
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut tops = Vec::new();
    let mut via = vec![RefKind::ChildOf; spans.len()];
    let mut parent = vec![None; spans.len()];
    for (i, (_, s)) in spans.iter().enumerate() {
        match parent_of(s) {
            Some((p, kind)) if p != i => {
                children[p].push(i);
                via[i] = kind;
                parent[i] = Some(spans[p].1.span_id);
            }
            _ => tops.push(i),
        }
    }
    let order = |v: &mut Vec<usize>| {
        v.sort_by_key(|&i| (spans[i].1.start_unix_nanos, spans[i].1.span_id, i));
    };
    order(&mut tops);
    for c in &mut children {
        order(c);
    }

    let first_process = spans.first().map(|(p, _)| *p).unwrap_or(0);
    let service = processes
        .get(first_process)
        .map(|p| p.service_name.as_str())
        .unwrap_or("?");
    writeln!(
        out,
        "trace {} · {} · {} · {}{}",
        trace_id_hex(trace.trace_id),
        printable(service),
        count(spans.len() as u64, "span", "spans"),
        human(duration),
        if continued { " (continued)" } else { "" }
    )?;

    let mut visited = vec![false; spans.len()];
    // Depth-first, with an explicit stack: (span, prefix for its line, prefix for its children,
    // depth below its top). Prefixes stop growing at `MAX_DRAWN_DEPTH`.
    let mut roots_then_rest: Vec<usize> = tops.clone();
    let mut k = 0;
    while k <= roots_then_rest.len() {
        if k == roots_then_rest.len() {
            // Spans caught in a reference cycle are never reached from a top: show them too.
            if let Some(i) = (0..spans.len()).find(|&i| !visited[i]) {
                roots_then_rest.push(i);
            } else {
                break;
            }
        }
        let top = roots_then_rest[k];
        k += 1;
        if visited[top] {
            continue;
        }
        let mut stack = vec![(top, String::new(), String::new(), 0usize)];
        while let Some((i, line_prefix, child_prefix, depth)) = stack.pop() {
            let is_top = depth == 0;
            if visited[i] {
                continue;
            }
            visited[i] = true;
            let (p, span) = &spans[i];
            let mut name = format!("{line_prefix}{}", printable(&span.operation));
            if *p != first_process {
                if let Some(proc_) = processes.get(*p) {
                    let _ = write!(name, " ({})", printable(&proc_.service_name));
                }
            }
            if !is_top && via[i] == RefKind::FollowsFrom {
                name.push_str(" ↪ follows from");
            }
            if span.incomplete {
                name.push(' ');
                name.push_str(&style.paint("33", "[incomplete]"));
            }
            writeln!(
                out,
                "{:>10} |{}| {}",
                human(span.duration_nanos),
                bar(span, start, total),
                name
            )?;
            let detail_prefix = format!("{:LEFT$}{child_prefix}   ", "");
            details(
                out,
                span,
                if is_top { None } else { parent[i] },
                &detail_prefix,
                &style,
            )?;

            let kids = &children[i];
            for (n, &c) in kids.iter().enumerate().rev() {
                let last = n + 1 == kids.len();
                let branch = if last { "└─ " } else { "├─ " };
                let (line, next) = if depth < MAX_DRAWN_DEPTH {
                    let rule = if last { "   " } else { "│  " };
                    (
                        format!("{child_prefix}{branch}"),
                        format!("{child_prefix}{rule}"),
                    )
                } else {
                    // As deep as the tree is drawn: the child's row says how deep it is.
                    (
                        format!("{child_prefix}{branch}[depth {}] ", depth + 1),
                        child_prefix.clone(),
                    )
                };
                stack.push((c, line, next, depth + 1));
            }
        }
    }
    writeln!(out)
}

fn bar(span: &Span, start: u64, total: u64) -> String {
    let s = u128::from(span.start_unix_nanos.saturating_sub(start));
    let e = s + u128::from(span.duration_nanos);
    let w = BAR as u128;
    let total = u128::from(total);
    let from = ((s * w) / total).min(w - 1) as usize;
    let to = ((e * w).div_ceil(total)).clamp(from as u128 + 1, w) as usize;
    let mut b = String::with_capacity(BAR * 3);
    for c in 0..BAR {
        b.push(if (from..to).contains(&c) { '█' } else { ' ' });
    }
    b
}

/// Tags, baggage, logs (offset from the span's start), warnings, and the references other than
/// the one the tree shows.
fn details(
    out: &mut impl Write,
    span: &Span,
    shown_parent: Option<u64>,
    prefix: &str,
    style: &Style,
) -> io::Result<()> {
    if !span.tags.is_empty() {
        let tags: Vec<String> = span
            .tags
            .iter()
            .map(|t| {
                let text = format!("{}={}", printable(&t.key), value(&t.value));
                if t.key == "error" && t.value == Value::Bool(true) {
                    style.paint("1;31", &text)
                } else {
                    text
                }
            })
            .collect();
        writeln!(out, "{prefix}tags: {}", tags.join(" "))?;
    }
    if !span.baggage.is_empty() {
        let items: Vec<String> = span
            .baggage
            .iter()
            .map(|(k, v)| format!("{}={}", printable(k), printable(&format!("{v:?}"))))
            .collect();
        writeln!(out, "{prefix}baggage: {}", items.join(" "))?;
    }
    for log in &span.logs {
        let offset = if log.time_unix_nanos >= span.start_unix_nanos {
            format!("+{}", human(log.time_unix_nanos - span.start_unix_nanos))
        } else {
            format!("-{}", human(span.start_unix_nanos - log.time_unix_nanos))
        };
        let fields: Vec<String> = log
            .fields
            .iter()
            .map(|f| format!("{}={}", printable(&f.key), value(&f.value)))
            .collect();
        writeln!(out, "{prefix}log {offset}: {}", fields.join(" "))?;
    }
    for w in &span.warnings {
        writeln!(
            out,
            "{prefix}{}",
            style.paint("33", &format!("warning: {}", printable(w)))
        )?;
    }
    let mut parent_shown = false;
    for r in &span.references {
        if !parent_shown && Some(r.span_id) == shown_parent {
            parent_shown = true;
            continue;
        }
        let kind = match r.kind {
            RefKind::ChildOf => "child of",
            RefKind::FollowsFrom => "follows from",
        };
        writeln!(
            out,
            "{prefix}ref: {kind} {}/{:016x}",
            trace_id_hex(r.trace_id),
            r.span_id
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human(999), "999 ns");
        assert_eq!(human(1_500), "1.50 µs");
        assert_eq!(human(2_000_000), "2.00 ms");
        assert_eq!(human(3_000_000_000), "3.000 s");
    }
}
