//! [`Receipt`]: what a call got back, its response or a store-and-forward hop's
//! acceptance, and how a call's result is made of an answer.

use serde::de::DeserializeOwned;

use crate::dialect::{empty_response, Interpretation};
use crate::CallError;

/// What a call got back: the server's response, or the acceptance of a store-and-forward
/// hop in between ([`RpcClient::submit`](crate::RpcClient::submit)).
///
/// A buffered proxy (and a proxy that publishes calls on) answers a call as soon as it
/// holds it and delivers it later, at least once; the response of the command, if it has
/// one, goes nowhere. [`RpcClient::call`](crate::RpcClient::call) returns an acceptance
/// as success only for a command whose response carries nothing (`()`, a unit struct);
/// for any other it is [`CallError::Accepted`], never a made-up value.
#[derive(Clone, Debug, PartialEq)]
pub enum Receipt<R> {
    /// The server answered: the command ran, and this is its response.
    Answered(R),
    /// A store-and-forward hop took the call on and will pass it on: the command has not
    /// run yet, and its response will not come back.
    Accepted {
        /// The endpoint that accepted it.
        endpoint: String,
    },
}

impl<R: DeserializeOwned> Receipt<R> {
    /// The response, as [`RpcClient::call`](crate::RpcClient::call) returns it: an
    /// acceptance is `Ok` only where the response carries nothing, else
    /// [`CallError::Accepted`].
    pub fn into_response(self) -> Result<R, CallError> {
        match self {
            Receipt::Answered(response) => Ok(response),
            Receipt::Accepted { endpoint } => {
                empty_response().ok_or(CallError::Accepted { endpoint })
            }
        }
    }
}

/// A call's receipt from what its answer means, naming `endpoint` in the errors.
pub(crate) fn receipt<R>(
    endpoint: &str,
    meaning: Interpretation<R>,
) -> Result<Receipt<R>, CallError> {
    match meaning {
        Interpretation::Answer(Ok(response)) => Ok(Receipt::Answered(response)),
        Interpretation::Answer(Err(error)) => Err(CallError::Remote {
            endpoint: endpoint.to_owned(),
            error: Box::new(error),
        }),
        Interpretation::Accepted => Ok(Receipt::Accepted {
            endpoint: endpoint.to_owned(),
        }),
        Interpretation::Stray => Err(CallError::StrayReply {
            endpoint: endpoint.to_owned(),
        }),
        Interpretation::Unreadable(error) => Err(CallError::Decode {
            endpoint: endpoint.to_owned(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Done;

    fn accepted<R: DeserializeOwned>() -> Result<R, CallError> {
        Receipt::Accepted {
            endpoint: "tcp://proxy:5555".to_owned(),
        }
        .into_response()
    }

    #[test]
    fn an_acceptance_is_a_success_only_where_the_response_carries_nothing() {
        assert_eq!(accepted::<()>(), Ok(()));
        assert_eq!(accepted::<Done>(), Ok(Done));
        let refused = CallError::Accepted {
            endpoint: "tcp://proxy:5555".to_owned(),
        };
        assert_eq!(accepted::<f32>(), Err(refused.clone()));
        assert_eq!(accepted::<Option<f32>>(), Err(refused.clone()));
        assert_eq!(accepted::<Vec<u8>>(), Err(refused));
    }
}
