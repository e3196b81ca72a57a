//! The [`Command`] trait: a typed request and the type of its answer.

use serde::{de::DeserializeOwned, Serialize};

use crate::Key;

/// A command a client sends and a server's service answers.
///
/// A command is plain data that serde can carry; its [`NAME`](Command::NAME) is its identity
/// on the wire (hashed into a [`Key`]), and [`Response`](Command::Response) is what the
/// service returns. Both ends share the type, so a field can never be lost to a typo in a
/// hand-written state dictionary.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use zmqrpc_core::{Command, Key};
///
/// #[derive(Serialize, Deserialize)]
/// struct ReadTemperature { sensor: u8 }
///
/// impl Command for ReadTemperature {
///     const NAME: &'static str = "sensor.read_temperature";
///     type Response = f32;
/// }
///
/// assert_eq!(ReadTemperature::KEY, Key::of("sensor.read_temperature"));
/// ```
pub trait Command: Serialize + DeserializeOwned {
    /// The command's unique name. Two commands of one server must not share it (nor its key).
    const NAME: &'static str;
    /// The wire key: FNV-1a 64 of [`NAME`](Command::NAME). Do not override.
    const KEY: Key = Key::of(Self::NAME);
    /// What the service answers.
    type Response: Serialize + DeserializeOwned;
}
