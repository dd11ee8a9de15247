//! The one error type of this crate. Every message names the operation, the interface it was
//! about and what the kernel said, e.g.
//! `add address 10.0.0.1/24 on psw0: File exists (os error 17)`.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result of every operation in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which interface (if any) a request was about, as it is shown in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A link addressed by index. `name` is filled in when the failing call could still resolve
    /// it (it cannot when the link does not exist).
    Link { index: u32, name: Option<String> },
    /// A link addressed by name (creation, lookup by name).
    LinkName(String),
    /// A request about no single interface (a route, a dump of the main table).
    Nothing,
}

impl Subject {
    pub(crate) fn index(index: u32) -> Self {
        Subject::Link { index, name: None }
    }
}

impl fmt::Display for Subject {
    /// Renders as the `" on psw0"` part of a message, or nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Link {
                name: Some(name), ..
            } => write!(f, " on {name}"),
            Subject::Link { index, name: None } => write!(f, " on link index {index}"),
            Subject::LinkName(name) => write!(f, " on {name}"),
            Subject::Nothing => Ok(()),
        }
    }
}

/// Extra words after the errno: what the kernel's extended ACK said, and our hint on what to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// `NLMSGERR_ATTR_MSG` from the kernel's extended ACK, e.g. "Nexthop has invalid gateway".
    pub kernel_message: Option<String>,
    /// What usually causes this errno for this operation and what to do about it.
    pub hint: Option<&'static str>,
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(msg) = &self.kernel_message {
            write!(f, " (kernel: {msg})")?;
        }
        if let Some(hint) = self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong talking rtnetlink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The NETLINK_ROUTE socket could not be opened or bound.
    #[error("open rtnetlink socket: {source}")]
    Open {
        #[source]
        source: io::Error,
    },

    /// The kernel refused the request (an `NLMSG_ERROR` with a non-zero code), or the socket
    /// failed while sending it or reading the reply. `source` carries the errno.
    #[error("{op}{subject}: {source}{detail}")]
    Request {
        op: String,
        subject: Subject,
        #[source]
        source: io::Error,
        detail: Detail,
    },

    /// The kernel answered with something this crate cannot make sense of (undecodable
    /// message, missing attribute). Points at a bug here or a kernel we do not know.
    #[error("{op}{subject}: unexpected reply from the kernel: {problem}")]
    Protocol {
        op: String,
        subject: Subject,
        problem: String,
    },

    /// The caller asked for something no kernel accepts (a 16-byte interface name, a /33).
    /// Nothing was sent.
    #[error("{op}{subject}: {problem}")]
    InvalidArgument {
        op: String,
        subject: Subject,
        problem: String,
    },

    /// Entering a network namespace failed: opening its file, `setns`, or starting the thread
    /// that does it.
    #[error("{step} network namespace {}: {source}", path.display())]
    Netns {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The errno behind this error, if it came from the kernel or a system call.
    /// Lets callers treat, say, `EEXIST` on an add as "already there".
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Open { source }
            | Error::Request { source, .. }
            | Error::Netns { source, .. } => source.raw_os_error(),
            Error::Protocol { .. } | Error::InvalidArgument { .. } => None,
        }
    }

    /// Attach `hint` when the kernel answered with `errno`; used where an errno alone misleads
    /// (ESRCH "No such process" for a missing route, EBUSY for renaming an up link).
    pub(crate) fn hint_on(mut self, errno: i32, hint: &'static str) -> Self {
        if let Error::Request { source, detail, .. } = &mut self {
            if source.raw_os_error() == Some(errno) {
                detail.hint = Some(hint);
            }
        }
        self
    }

    /// The subject of this error, for filling in a link name after the fact.
    pub(crate) fn subject_mut(&mut self) -> Option<&mut Subject> {
        match self {
            Error::Request { subject, .. }
            | Error::Protocol { subject, .. }
            | Error::InvalidArgument { subject, .. } => Some(subject),
            Error::Open { .. } | Error::Netns { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_error_reads_as_operation_interface_errno() {
        let err = Error::Request {
            op: "add address 10.0.0.1/24".into(),
            subject: Subject::Link {
                index: 7,
                name: Some("psw0".into()),
            },
            source: io::Error::from_raw_os_error(libc::EEXIST),
            detail: Detail::default(),
        };
        assert_eq!(
            err.to_string(),
            "add address 10.0.0.1/24 on psw0: File exists (os error 17)"
        );
        assert_eq!(err.errno(), Some(libc::EEXIST));
    }

    #[test]
    fn unresolved_link_is_shown_by_index_with_kernel_message_and_hint() {
        let err = Error::Request {
            op: "rename to x".into(),
            subject: Subject::index(42),
            source: io::Error::from_raw_os_error(libc::EBUSY),
            detail: Detail {
                kernel_message: Some("busy".into()),
                hint: None,
            },
        }
        .hint_on(libc::EBUSY, "set the link down first");
        assert_eq!(
            err.to_string(),
            "rename to x on link index 42: Device or resource busy (os error 16) \
             (kernel: busy); set the link down first"
        );
    }

    #[test]
    fn hint_is_only_attached_for_its_errno() {
        let err = Error::Request {
            op: "delete route 10.0.0.0/8".into(),
            subject: Subject::Nothing,
            source: io::Error::from_raw_os_error(libc::EPERM),
            detail: Detail::default(),
        }
        .hint_on(libc::ESRCH, "no such route");
        assert_eq!(
            err.to_string(),
            "delete route 10.0.0.0/8: Operation not permitted (os error 1)"
        );
    }
}
