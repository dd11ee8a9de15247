//! IPv4 options (RFC 791 §3.1): the bytes between the fixed header and the header length. The
//! switch forwards options untouched, but only after walking them, so that a malformed option
//! list (which the receiving kernel would reject, or misparse) never crosses it, and so that
//! the source-route options that Linux drops by default (`accept_source_route = 0`) can be
//! dropped here too.
//!
//! The walk follows RFC 791: End of Option List (0) ends the list, No Operation (1) is one
//! byte, every other option is `type, length, data` with `length` counting the type and length
//! bytes (so at least 2) and lying within the header. The options Linux parses
//! (`ip_options_compile`) must also meet their own minimum length and pointer.

use core::fmt;

/// Option types (the whole type octet: copied flag, class and number).
pub mod kind {
    /// End of Option List.
    pub const EOL: u8 = 0x00;
    /// No Operation (padding between options).
    pub const NOP: u8 = 0x01;
    /// Record Route.
    pub const RR: u8 = 0x07;
    /// Timestamp.
    pub const TIMESTAMP: u8 = 0x44;
    /// Loose Source and Record Route.
    pub const LSRR: u8 = 0x83;
    /// Strict Source and Record Route.
    pub const SSRR: u8 = 0x89;
    /// Router Alert (RFC 2113).
    pub const ROUTER_ALERT: u8 = 0x94;
}

/// Why an option list is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4OptionError {
    /// An option other than EOL/NOP whose length octet is missing (the list ends after its
    /// type octet).
    Truncated,
    /// A length below 2, or running past the end of the header.
    BadLength,
    /// A length or pointer below what the option type needs (RR/LSRR/SSRR: length ≥ 3 and
    /// pointer ≥ 4; Timestamp: length ≥ 4 and pointer ≥ 5; Router Alert: length 4).
    BadField,
}

impl fmt::Display for Ipv4OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ipv4OptionError::Truncated => "IPv4 option without its length octet",
            Ipv4OptionError::BadLength => "IPv4 option length below 2 or past the header",
            Ipv4OptionError::BadField => {
                "IPv4 option shorter than its type requires, or with a bad pointer"
            }
        })
    }
}

impl core::error::Error for Ipv4OptionError {}

/// One option: its type octet and its data (the bytes after type and length; empty for NOP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Option<'a> {
    /// The type octet.
    pub kind: u8,
    /// The data after the type and length octets.
    pub data: &'a [u8],
}

impl Ipv4Option<'_> {
    /// Whether this is a source-route option (LSRR or SSRR), which a host or router that
    /// does not accept source routing drops (RFC 1812 §5.2.4.1 lets routers refuse them).
    pub const fn is_source_route(&self) -> bool {
        matches!(self.kind, kind::LSRR | kind::SSRR)
    }
}

/// Walks an option list (pass [`Ipv4Packet::options`](crate::Ipv4Packet::options)), yielding
/// each option up to the end of the list or EOL. After the first error it yields nothing more.
#[derive(Debug, Clone)]
pub struct Ipv4Options<'a> {
    rest: &'a [u8],
}

impl<'a> Ipv4Options<'a> {
    /// A walk over `options`.
    pub const fn new(options: &'a [u8]) -> Self {
        Self { rest: options }
    }

    /// Walks the whole list: `Ok(true)` when it is well formed and holds a source-route
    /// option, `Ok(false)` when well formed without one, the first error otherwise.
    pub fn check(options: &'a [u8]) -> Result<bool, Ipv4OptionError> {
        let mut source_route = false;
        for option in Ipv4Options::new(options) {
            source_route |= option?.is_source_route();
        }
        Ok(source_route)
    }
}

impl<'a> Iterator for Ipv4Options<'a> {
    type Item = Result<Ipv4Option<'a>, Ipv4OptionError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        match kind {
            kind::EOL => {
                self.rest = &[];
                None
            }
            kind::NOP => {
                self.rest = after_kind;
                Some(Ok(Ipv4Option { kind, data: &[] }))
            }
            _ => {
                let result = option(kind, self.rest);
                self.rest = match result {
                    Ok(o) => &self.rest[o.data.len() + 2..],
                    Err(_) => &[],
                };
                Some(result)
            }
        }
    }
}

/// The option of type `kind` at the start of `list` (which starts with its type octet).
fn option(kind: u8, list: &[u8]) -> Result<Ipv4Option<'_>, Ipv4OptionError> {
    let &len = list.get(1).ok_or(Ipv4OptionError::Truncated)?;
    let len = usize::from(len);
    if len < 2 || len > list.len() {
        return Err(Ipv4OptionError::BadLength);
    }
    let data = &list[2..len];
    // Minimum lengths and pointers as Linux's ip_options_compile checks them; the pointer is
    // the first data octet and counts from the option's type octet, 1-based.
    let pointer = data.first().copied().map_or(0, usize::from);
    let well_formed = match kind {
        kind::RR | kind::LSRR | kind::SSRR => len >= 3 && pointer >= 4,
        kind::TIMESTAMP => len >= 4 && pointer >= 5,
        kind::ROUTER_ALERT => len == 4,
        _ => true,
    };
    if !well_formed {
        return Err(Ipv4OptionError::BadField);
    }
    Ok(Ipv4Option { kind, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn walk(options: &[u8]) -> Vec<Result<(u8, usize), Ipv4OptionError>> {
        Ipv4Options::new(options)
            .map(|o| o.map(|o| (o.kind, o.data.len())))
            .collect()
    }

    #[test]
    fn nop_router_alert_and_eol_padding_walk_cleanly() {
        let opts = [0x01, 0x94, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(walk(&opts), [Ok((0x01, 0)), Ok((0x94, 2))]);
        assert_eq!(Ipv4Options::check(&opts), Ok(false));
        assert_eq!(Ipv4Options::check(&[]), Ok(false));
    }

    #[test]
    fn bytes_after_eol_are_padding_and_not_read() {
        // EOL, then what would be a malformed option: ignored, as RFC 791 says.
        assert_eq!(Ipv4Options::check(&[0x00, 0x44, 0x00, 0x00]), Ok(false));
    }

    #[test]
    fn option_length_zero_or_one_is_malformed() {
        assert_eq!(
            Ipv4Options::check(&[0x88, 0x00, 0x00, 0x00]),
            Err(Ipv4OptionError::BadLength)
        );
        assert_eq!(
            Ipv4Options::check(&[0x88, 0x01, 0x00, 0x00]),
            Err(Ipv4OptionError::BadLength)
        );
    }

    #[test]
    fn option_length_past_the_header_is_malformed() {
        assert_eq!(
            Ipv4Options::check(&[0x88, 0xff, 0x00, 0x00]),
            Err(Ipv4OptionError::BadLength)
        );
        assert_eq!(
            Ipv4Options::check(&[0x01, 0x01, 0x88, 0x03]),
            Err(Ipv4OptionError::BadLength)
        );
    }

    #[test]
    fn option_without_its_length_octet_is_truncated() {
        assert_eq!(
            Ipv4Options::check(&[0x01, 0x01, 0x01, 0x94]),
            Err(Ipv4OptionError::Truncated)
        );
    }

    #[test]
    fn length_two_is_fine_for_an_unknown_option_but_not_for_known_ones() {
        assert_eq!(Ipv4Options::check(&[0x88, 0x02, 0x00, 0x00]), Ok(false));
        for kind in [kind::RR, kind::LSRR, kind::SSRR, kind::TIMESTAMP] {
            assert_eq!(
                Ipv4Options::check(&[kind, 0x02, 0x00, 0x00]),
                Err(Ipv4OptionError::BadField),
                "type {kind:#x}"
            );
        }
        assert_eq!(
            Ipv4Options::check(&[0x94, 0x02, 0x00, 0x00]),
            Err(Ipv4OptionError::BadField)
        );
    }

    #[test]
    fn record_route_pointer_below_four_is_malformed() {
        let rr = [0x07, 0x07, 0x03, 0, 0, 0, 0, 0x00];
        assert_eq!(Ipv4Options::check(&rr), Err(Ipv4OptionError::BadField));
        let rr = [0x07, 0x07, 0x04, 0, 0, 0, 0, 0x00];
        assert_eq!(Ipv4Options::check(&rr), Ok(false));
    }

    #[test]
    fn loose_and_strict_source_routes_are_reported() {
        let lsrr = [0x83, 0x07, 0x04, 10, 0, 0, 1, 0x00];
        assert_eq!(Ipv4Options::check(&lsrr), Ok(true));
        let ssrr = [0x01, 0x89, 0x07, 0x04, 10, 0, 0, 1];
        assert_eq!(Ipv4Options::check(&ssrr), Ok(true));
        assert!(Ipv4Option {
            kind: kind::SSRR,
            data: &[]
        }
        .is_source_route());
    }

    #[test]
    fn the_walk_stops_after_the_first_error() {
        assert_eq!(
            walk(&[0x01, 0x88, 0x00, 0x01]),
            [Ok((0x01, 0)), Err(Ipv4OptionError::BadLength)]
        );
    }
}
