//! CURVE keys (RFC 26): Curve25519 key pairs, their Z85 text form and their files.
//!
//! A key is 32 bytes, written as 40 characters of Z85 (ZeroMQ's base 85). Two files per key
//! pair, as [`KeyPair::write_files`] writes them:
//! - `NAME.pub`, the public key, to hand out: one line of Z85 (`#` comments allowed);
//! - `NAME.key`, the pair, private (mode 600, refused when group or others may read it):
//!   `public <z85>` and `secret <z85>` lines.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{read_secret_file, UsersError};

/// A CURVE public key: what a server is pinned by, and what a server's allow-list holds of
/// each client.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

/// A CURVE secret key. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

/// A CURVE key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The public half, handed to peers.
    pub public: PublicKey,
    /// The secret half, kept.
    pub secret: SecretKey,
}

/// A key's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not 40 characters of Z85 (says how many characters there were).
    NotZ85 {
        /// The text's length, in characters.
        len: usize,
    },
    /// A key file: it could not be read, is open to others, or has no key where one belongs.
    File(UsersError),
    /// A key file lacks a line (`public` or `secret`), or has a line that is not a key.
    BadFile {
        /// The file.
        path: String,
        /// What is wrong, naming the line.
        what: String,
    },
    /// libzmq could not make or encode a key (no CURVE in the linked libzmq).
    Unavailable,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotZ85 { len } => write!(
                f,
                "a CURVE key is 40 characters of Z85; this text has {len} or is not Z85"
            ),
            KeyError::File(e) => e.fmt(f),
            KeyError::BadFile { path, what } => write!(f, "key file {path}: {what}"),
            KeyError::Unavailable => f.write_str("this libzmq cannot make CURVE keys"),
        }
    }
}

impl std::error::Error for KeyError {}

impl From<UsersError> for KeyError {
    fn from(e: UsersError) -> Self {
        KeyError::File(e)
    }
}

fn decode(text: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    let not_z85 = KeyError::NotZ85 {
        len: text.chars().count(),
    };
    // libzmq's decoder does not check the alphabet: a stray character decodes to some
    // other key without a word.
    const Z85: &[u8] =
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if text.len() != 40 || !text.bytes().all(|b| Z85.contains(&b)) {
        return Err(not_z85);
    }
    zmq::z85_decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or(not_z85)
}

fn encode(bytes: &[u8; 32]) -> String {
    // 32 bytes are a multiple of 4: Z85 encodes them without fail.
    zmq::z85_encode(bytes).unwrap_or_default()
}

impl PublicKey {
    /// The key of these 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> PublicKey {
        PublicKey(bytes)
    }

    /// The key from its 40 characters of Z85.
    pub fn from_z85(text: &str) -> Result<PublicKey, KeyError> {
        decode(text).map(PublicKey)
    }

    /// Its 40 characters of Z85.
    pub fn to_z85(&self) -> String {
        encode(&self.0)
    }

    /// Its 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a public key file: its first line that is not blank or a `#` comment.
    pub fn from_file(path: impl AsRef<Path>) -> Result<PublicKey, KeyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| UsersError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .unwrap_or_default();
        PublicKey::from_z85(line).map_err(|e| KeyError::BadFile {
            path: path.display().to_string(),
            what: e.to_string(),
        })
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_z85())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_z85())
    }
}

impl SecretKey {
    /// The key from its 40 characters of Z85.
    pub fn from_z85(text: &str) -> Result<SecretKey, KeyError> {
        decode(text).map(SecretKey)
    }

    /// Its 32 bytes, for a socket of your own (`set_curve_secretkey`). Keep them secret:
    /// never log or send them.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .field("secret", &self.secret)
            .finish()
    }
}

impl KeyPair {
    /// A new random key pair (libzmq's, from libsodium's random source).
    pub fn generate() -> Result<KeyPair, KeyError> {
        let pair = zmq::CurveKeyPair::new().map_err(|_| KeyError::Unavailable)?;
        Ok(KeyPair {
            public: PublicKey(pair.public_key),
            secret: SecretKey(pair.secret_key),
        })
    }

    /// The pair's file text (`public` and `secret` lines).
    fn file_text(&self) -> String {
        format!(
            "# zmqrpc CURVE key pair: keep this file private (mode 600)\npublic {}\nsecret {}\n",
            self.public.to_z85(),
            encode(&self.secret.0)
        )
    }

    /// Reads a key pair file (see the [module docs](self)); refused if group or others may
    /// read it.
    pub fn from_file(path: impl AsRef<Path>) -> Result<KeyPair, KeyError> {
        let path = path.as_ref();
        let text = read_secret_file(path)?;
        let bad = |what: String| KeyError::BadFile {
            path: path.display().to_string(),
            what,
        };
        let (mut public, mut secret) = (None, None);
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key =
                |text: &str| decode(text).map_err(|e| bad(format!("line {}: {e}", index + 1)));
            match line.split_once(char::is_whitespace) {
                Some(("public", text)) => public = Some(PublicKey(key(text)?)),
                // The error says nothing of the text: it may be most of a secret.
                Some(("secret", text)) => secret = Some(SecretKey(key(text)?)),
                _ => {
                    return Err(bad(format!(
                        "line {} is not `public <key>` or `secret <key>`",
                        index + 1
                    )))
                }
            }
        }
        match (public, secret) {
            (Some(public), Some(secret)) => Ok(KeyPair { public, secret }),
            (None, _) => Err(bad("no `public` line".into())),
            (_, None) => Err(bad("no `secret` line".into())),
        }
    }

    /// Writes `NAME.key` (the pair, mode 600) and `NAME.pub` (the public key) beside each
    /// other, `base` being `dir/NAME`; refuses to overwrite either. Returns both paths.
    pub fn write_files(&self, base: impl AsRef<Path>) -> std::io::Result<(PathBuf, PathBuf)> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let base = base.as_ref();
        let with = |extension: &str| {
            let mut name = base.as_os_str().to_owned();
            name.push(extension);
            PathBuf::from(name)
        };
        let (secret_path, public_path) = (with(".key"), with(".pub"));
        let create = |path: &Path, mode: u32| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
        };
        // Both names are taken first, so a refusal leaves nothing half written.
        let mut secret_file = create(&secret_path, 0o600)?;
        let mut public_file = match create(&public_path, 0o644) {
            Ok(file) => file,
            Err(e) => {
                let _ = std::fs::remove_file(&secret_path);
                return Err(e);
            }
        };
        secret_file.write_all(self.file_text().as_bytes())?;
        secret_file.sync_all()?;
        writeln!(
            public_file,
            "# zmqrpc CURVE public key: give it to the peers that must know this one\n{}",
            self.public
        )?;
        public_file.sync_all()?;
        Ok((secret_path, public_path))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_z85_and_refuse_anything_else() {
        let pair = KeyPair::generate().unwrap();
        let text = pair.public.to_z85();
        assert_eq!(text.len(), 40);
        assert_eq!(PublicKey::from_z85(&text).unwrap(), pair.public);
        for bad in [
            "",
            "short",
            &text[..39],
            &format!("{text}x"),
            &"\"".repeat(40),
        ] {
            assert!(PublicKey::from_z85(bad).is_err(), "{bad:?}");
        }
        assert!(!format!("{pair:?}").contains(&encode(&pair.secret.0)));
    }

    #[test]
    fn key_files_round_trip_and_the_pair_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("zmqrpc-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("node");
        let pair = KeyPair::generate().unwrap();
        let (secret, public) = pair.write_files(&base).unwrap();
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(KeyPair::from_file(&secret).unwrap(), pair);
        assert_eq!(PublicKey::from_file(&public).unwrap(), pair.public);
        assert!(pair.write_files(&base).is_err(), "never overwrites");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            KeyPair::from_file(&secret),
            Err(KeyError::File(UsersError::Exposed { mode: 0o640, .. }))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
