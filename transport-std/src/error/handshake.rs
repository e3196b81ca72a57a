//! Why a security handshake failed, as the monitors of connecting sockets report it.

/// Why a peer's security handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// The server's ZAP handler refused the credentials (wrong user or password).
    Refused,
    /// The two ends disagree on the mechanism or protocol: typically one side requires
    /// username/password and the other offers none. Carries libzmq's protocol error code.
    Protocol(u32),
    /// Failed before any detail was known (for example the connection dropped mid-way).
    NoDetail,
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFailure::Refused => f.write_str("credentials refused"),
            HandshakeFailure::Protocol(code) => write!(
                f,
                "security handshake failed (protocol error {code:#x}: credentials missing or not expected?)"
            ),
            HandshakeFailure::NoDetail => f.write_str("security handshake failed"),
        }
    }
}
