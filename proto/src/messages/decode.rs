//! Decoding a [`Request`] and its [`Op`]s as the bytes arrive, without buffering them.
//!
//! Both are tagged (`"request"`, `"op"`), and serde's derived decoder for a tagged (or
//! flattened) value cannot know where the tag is: it first copies the whole value into its
//! private `Content` tree, then decodes that. For the `apply` that carries a whole
//! configuration (10k Service ports with 100k endpoints: 14 MB of JSON) that copy was most of
//! podswitchd's time. Every client this crate serializes writes the tag first (`"version"`,
//! then `"request"`; `"op"` first in each op), so the decoders here read the tag and decode the
//! rest of the map straight into the typed variant.
//!
//! What must stay true: they accept what the derived decoders accepted, with the same values
//! and errors. A map whose tag comes later (another client, a hand-written request) is handed
//! to the derived decoder, [`BufferedRequest`] or [`BufferedOp`], with the keys already read
//! replayed in front of the rest. After the tag, the tag key again is a duplicate (as the
//! derived decoder says) and `"version"` is still the request's. One difference, in no client
//! and not in the protocol: buffered, the nested tags (`"role"`, `"mode"`, `"via"`) also took
//! a variant's number for its name, as serde's `Content` allows; streamed they take names only,
//! as serde_json reads them anywhere else. An error is now reported where it is in the input,
//! not at the end of the whole request. Tests: `decode/tests.rs` (both decoders give equal
//! values for every request and op in any key order, the same errors; mutated inputs).

use super::{ConntrackFilter, ServiceSpec, TracePacket, Transaction};
use super::{Ipv4Prefix, NodeSpec, Op, PolicySpec, PortSpec, Request, RequestBody, RouteSpec};
use serde::de::value::{
    BorrowedStrDeserializer, MapAccessDeserializer, SeqAccessDeserializer, StringDeserializer,
    U32Deserializer,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Unexpected, Visitor};
use serde::Deserialize;
use std::fmt;

/// The request as serde derives it: what [`Request`] decoded with before this module, and
/// what a request whose `"request"` is not its first field other than `"version"` still is.
#[derive(Deserialize)]
#[serde(expecting = "struct Request")]
struct BufferedRequest {
    version: u32,
    #[serde(flatten)]
    body: RequestBody,
}

impl From<BufferedRequest> for Request {
    fn from(r: BufferedRequest) -> Request {
        Request {
            version: r.version,
            body: r.body,
        }
    }
}

/// The op as serde derives it (see [`BufferedRequest`]): for an op whose `"op"` is not first.
#[derive(Deserialize)]
#[serde(remote = "Op", tag = "op", rename_all = "snake_case")]
enum BufferedOp {
    SetNode(NodeSpec),
    AddPort(PortSpec),
    DelPort { name: String },
    AddRoute(RouteSpec),
    DelRoute { prefix: Ipv4Prefix },
    SetService(ServiceSpec),
    DelService { name: String },
    SetPolicy(PolicySpec),
    DelPolicy { port: String },
}

/// `"request"` values, in [`RequestBody`]'s order (a variant's index is its number too, as
/// with the derived decoder).
const REQUESTS: &[&str] = &[
    "apply",
    "status",
    "ports",
    "routes",
    "neighbors",
    "counters",
    "services",
    "conntrack",
    "trace",
    "policies",
];

/// `"op"` values, in [`Op`]'s order.
const OPS: &[&str] = &[
    "set_node",
    "add_port",
    "del_port",
    "add_route",
    "del_route",
    "set_service",
    "del_service",
    "set_policy",
    "del_policy",
];

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // As the derived decoder of a struct with a flattened field: a map, never a sequence.
        d.deserialize_map(RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = Request;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Request, A::Error> {
        let mut version = None;
        loop {
            let Some(key) = map.next_key_seed(KeySeed)? else {
                return Err(de::Error::missing_field(if version.is_none() {
                    "version"
                } else {
                    "request"
                }));
            };
            match key.as_str() {
                "version" if version.is_some() => {
                    return Err(de::Error::duplicate_field("version"))
                }
                "version" => version = Some(map.next_value::<u32>()?),
                "request" => {
                    let tag = map.next_value_seed(Variant(REQUESTS))?;
                    let mut rest = Rest {
                        map,
                        tag: "request",
                        version: Some(&mut version),
                    };
                    let body = request_body(tag, &mut rest)?;
                    let version = version.ok_or_else(|| de::Error::missing_field("version"))?;
                    return Ok(Request { version, body });
                }
                _ => {
                    let replay = Replay {
                        version,
                        key: Some(key),
                        value: None,
                        map,
                    };
                    return BufferedRequest::deserialize(MapAccessDeserializer::new(replay))
                        .map(Request::from);
                }
            }
        }
    }
}

/// The body of request number `tag` from the rest of its map.
fn request_body<'de, A: MapAccess<'de>>(
    tag: usize,
    rest: &mut Rest<'_, A>,
) -> Result<RequestBody, A::Error> {
    Ok(match tag {
        0 => RequestBody::Apply(rest.decode::<Transaction>()?),
        7 => RequestBody::Conntrack(rest.decode::<ConntrackFilter>()?),
        8 => RequestBody::Trace(rest.decode::<TracePacket>()?),
        _ => {
            // A request without fields ignores any it is given, as the derived decoder does.
            while rest.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            match tag {
                1 => RequestBody::Status,
                2 => RequestBody::Ports,
                3 => RequestBody::Routes,
                4 => RequestBody::Neighbors,
                5 => RequestBody::Counters,
                6 => RequestBody::Services,
                _ => RequestBody::Policies,
            }
        }
    })
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // As the derived decoder of an internally tagged enum: a map, or a sequence whose first
        // element is the tag.
        d.deserialize_any(OpVisitor)
    }
}

struct OpVisitor;

impl<'de> Visitor<'de> for OpVisitor {
    type Value = Op;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("internally tagged enum Op")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Op, A::Error> {
        BufferedOp::deserialize(SeqAccessDeserializer::new(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Op, A::Error> {
        let Some(key) = map.next_key_seed(KeySeed)? else {
            return Err(de::Error::missing_field("op"));
        };
        if key.as_str() != "op" {
            let replay = Replay {
                version: None,
                key: Some(key),
                value: None,
                map,
            };
            return BufferedOp::deserialize(MapAccessDeserializer::new(replay));
        }
        let tag = map.next_value_seed(Variant(OPS))?;
        let mut rest = Rest {
            map,
            tag: "op",
            version: None,
        };
        Ok(match tag {
            0 => Op::SetNode(rest.decode()?),
            1 => Op::AddPort(rest.decode()?),
            2 => Op::DelPort {
                name: rest.decode::<NameFields>()?.name,
            },
            3 => Op::AddRoute(rest.decode()?),
            4 => Op::DelRoute {
                prefix: rest.decode::<PrefixFields>()?.prefix,
            },
            5 => Op::SetService(rest.decode()?),
            6 => Op::DelService {
                name: rest.decode::<NameFields>()?.name,
            },
            7 => Op::SetPolicy(rest.decode()?),
            _ => Op::DelPolicy {
                port: rest.decode::<PortFields>()?.port,
            },
        })
    }
}

/// The fields of `del_port` and `del_service`.
#[derive(Deserialize)]
struct NameFields {
    name: String,
}

/// The fields of `del_route`.
#[derive(Deserialize)]
struct PrefixFields {
    prefix: Ipv4Prefix,
}

/// The fields of `del_policy`.
#[derive(Deserialize)]
struct PortFields {
    port: String,
}

/// A map key as read: borrowed from the input when it can be.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl<'de> Key<'de> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }

    /// Hands the key to `seed` as the input would have.
    fn give<S: DeserializeSeed<'de>, E: de::Error>(self, seed: S) -> Result<S::Value, E> {
        match self {
            Key::Borrowed(s) => seed.deserialize(BorrowedStrDeserializer::new(s)),
            Key::Owned(s) => seed.deserialize(StringDeserializer::new(s)),
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v))
    }
}

/// A tag's value: the index of the variant it names in the list, by name or, as the derived
/// decoder also takes it from a buffered value, by number.
struct Variant(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Variant {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        // `any` rather than `identifier`: a self-describing input hands a number to
        // `visit_u64`, as serde's `Content` did when it held the whole request.
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Variant {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("variant identifier")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        (self.0.iter().position(|name| *name == v)).ok_or_else(|| E::unknown_variant(v, self.0))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        match usize::try_from(v) {
            Ok(i) if i < self.0.len() => Ok(i),
            _ => Err(E::invalid_value(
                Unexpected::Unsigned(v),
                &format!("variant index 0 <= i < {}", self.0.len()).as_str(),
            )),
        }
    }
}

/// The rest of a tagged map, after its tag: every other key goes to the variant's decoder,
/// except the tag again (a duplicate, as the derived decoder says) and, in a request,
/// `"version"`, which is the request's own.
struct Rest<'v, A> {
    map: A,
    tag: &'static str,
    version: Option<&'v mut Option<u32>>,
}

impl<'de, A: MapAccess<'de>> Rest<'_, A> {
    /// The variant's fields, from the rest of the map.
    fn decode<T: Deserialize<'de>>(&mut self) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(self))
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Rest<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.map.next_key_seed(KeySeed)? else {
                return Ok(None);
            };
            if key.as_str() == self.tag {
                return Err(de::Error::duplicate_field(self.tag));
            }
            match &mut self.version {
                Some(version) if key.as_str() == "version" => {
                    if version.is_some() {
                        return Err(de::Error::duplicate_field("version"));
                    }
                    **version = Some(self.map.next_value()?);
                }
                _ => return key.give(seed).map(Some),
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A map whose first keys were read before it was clear that the derived decoder must have
/// it: a request's `"version"` (with the value read) and the key after it (value unread),
/// given again in front of the rest.
struct Replay<'de, A> {
    version: Option<u32>,
    key: Option<Key<'de>>,
    /// The value of the key just given, when it was read already.
    value: Option<u32>,
    map: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Replay<'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if let Some(version) = self.version.take() {
            self.value = Some(version);
            return seed
                .deserialize(BorrowedStrDeserializer::new("version"))
                .map(Some);
        }
        if let Some(key) = self.key.take() {
            return key.give(seed).map(Some);
        }
        self.map.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.value.take() {
            Some(version) => seed.deserialize(U32Deserializer::new(version)),
            None => self.map.next_value_seed(seed),
        }
    }
}

#[cfg(test)]
mod tests;
