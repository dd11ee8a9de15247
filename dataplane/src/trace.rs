//! Built-in packet tracing, VPP style: when enabled, each stage records what it decided for
//! each packet, so a trace explains the real pipeline rather than a simulation of it. When
//! disabled (the forwarding default) a stage pays one predictable branch per packet.

use crate::batch::Next;
use std::borrow::Cow;

/// A stage of the pipeline, as named in traces and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// VXLAN decapsulation on the uplink.
    Tunnel,
    /// Header validation and metadata extraction.
    Parse,
    /// ARP, anti-spoofing, destination MAC.
    L2,
    /// Connection lookup.
    Conntrack,
    /// Service frontend → endpoint (DNAT).
    Service,
    /// Output decision: LPM, gateway echo, ICMP unreachable.
    Route,
    /// NetworkPolicy verdict.
    Policy,
    /// Connection commit.
    Commit,
    /// NAT, TTL, MTU, MACs.
    Rewrite,
}

impl Stage {
    /// The name traces and counters use.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Tunnel => "tunnel",
            Stage::Parse => "parse",
            Stage::L2 => "l2",
            Stage::Conntrack => "conntrack",
            Stage::Service => "service",
            Stage::Route => "route",
            Stage::Policy => "policy",
            Stage::Commit => "commit",
            Stage::Rewrite => "rewrite",
        }
    }
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// Packet index in its batch.
    pub packet: usize,
    /// Stage that decided.
    pub stage: Stage,
    /// The verdict after the stage.
    pub next: Next,
    /// Why, in words, with the objects behind the decision where there are some.
    pub note: Cow<'static, str>,
}

/// Trace recorder handed to every stage.
#[derive(Debug, Default)]
pub struct Trace {
    entries: Option<Vec<TraceEntry>>,
}

impl Trace {
    /// A recorder that records nothing.
    pub const fn off() -> Self {
        Self { entries: None }
    }

    /// A recorder that records every decision.
    pub fn on() -> Self {
        Self {
            entries: Some(Vec::new()),
        }
    }

    /// Records a decision, when tracing.
    #[inline]
    pub fn note(&mut self, packet: usize, stage: Stage, next: Next, note: &'static str) {
        if let Some(e) = &mut self.entries {
            e.push(TraceEntry {
                packet,
                stage,
                next,
                note: Cow::Borrowed(note),
            });
        }
    }

    /// Whether decisions are recorded: a stage builds a detailed note only then.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.entries.is_some()
    }

    /// Records a decision with a note built only when tracing (it may allocate: tracing is
    /// never on on the forwarding path).
    #[inline]
    pub fn note_with(
        &mut self,
        packet: usize,
        stage: Stage,
        next: Next,
        note: impl FnOnce() -> String,
    ) {
        if let Some(e) = &mut self.entries {
            e.push(TraceEntry {
                packet,
                stage,
                next,
                note: Cow::Owned(note()),
            });
        }
    }

    /// What was recorded.
    pub fn entries(&self) -> &[TraceEntry] {
        self.entries.as_deref().unwrap_or(&[])
    }
}
