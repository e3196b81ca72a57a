//! [`Gate`]: what a proxy or a bridge does with a request before it forwards it — refuses it
//! if no permission allows its caller, or answers it itself if it is a built-in command.
//! One screen for every proxy kind, the buffered proxy and the bridge.

use std::sync::Arc;

use zmqrpc_core::{Command, ErrorCode, Key};

use super::commands::{Describe, GetStats, Ping};
use super::report::NodeReport;
use crate::auth::Permissions;
use crate::dialect::{Dialect, Request};
use crate::messaging::receiver::{Incoming, Origin};

/// What [`Gate::screen`] made of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Screened {
    /// To be forwarded.
    Pass,
    /// Refused: its caller may not make it (a call's `Forbidden` answer is in `reply`).
    Forbidden,
    /// A built-in command, answered here (the answer is in `reply`).
    Answered,
}

/// A proxy's or bridge's screen on its input; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub(crate) struct Gate {
    permissions: Option<Arc<Permissions>>,
    /// The node whose built-ins are answered here; `None`: every call is forwarded.
    node: Option<NodeReport>,
}

impl Gate {
    /// A gate that refuses what `permissions` do not allow (none: nothing) and answers the
    /// built-ins from `node` (none: forwards them).
    pub(crate) fn new(permissions: Option<Arc<Permissions>>, node: Option<NodeReport>) -> Gate {
        Gate { permissions, node }
    }

    /// Screens `request`, read from `message`: refused, answered here, or to forward. A
    /// built-in is answered only as a call (on a REP or ROUTER input); as a notification
    /// it is forwarded like any other. `max` bounds an answer written here.
    pub(crate) fn screen<D: Dialect>(
        &self,
        dialect: &D,
        message: &Incoming<'_>,
        request: &Request<'_, D::Head>,
        reply: &mut Vec<u8>,
        max: usize,
    ) -> Screened {
        let builtin = builtin_name(request.key);
        if let Some(permissions) = &self.permissions {
            let action = message.origin.action();
            if let Err(why) = permissions.check(message.user_id, action, request.key, builtin) {
                dialect.encode_error(&request.head, ErrorCode::Forbidden, &why, reply);
                return Screened::Forbidden;
            }
        }
        match (&self.node, builtin, message.origin) {
            (Some(node), Some(_), Origin::Rep) => {
                answer(node, dialect, request, reply, max);
                Screened::Answered
            }
            _ => Screened::Pass,
        }
    }
}

/// The name of the built-in command of `key`, if it is one.
pub(crate) fn builtin_name(key: Key) -> Option<&'static str> {
    [Ping::KEY, GetStats::KEY, Describe::KEY]
        .into_iter()
        .zip(super::BUILTIN_NAMES)
        .find(|&(builtin, _)| builtin == key)
        .map(|(_, name)| name)
}

/// Answers the built-in `request` from `node` into `reply`.
fn answer<D: Dialect>(
    node: &NodeReport,
    dialect: &D,
    request: &Request<'_, D::Head>,
    reply: &mut Vec<u8>,
    max: usize,
) {
    let head = &request.head;
    let encoded = match request.key {
        Ping::KEY => decoded::<D, Ping>(dialect, request)
            .map(|_| dialect.encode_response(head, &node.pong(), reply, max)),
        GetStats::KEY => decoded::<D, GetStats>(dialect, request)
            .map(|_| dialect.encode_response(head, &node.stats(), reply, max)),
        _ => decoded::<D, Describe>(dialect, request)
            .map(|_| dialect.encode_response(head, &node.description(), reply, max)),
    };
    match encoded {
        Ok(Ok(())) => {}
        Ok(Err(too_large)) => {
            let why = format!("the answer does not fit: {too_large}");
            dialect.encode_error(head, ErrorCode::TooLarge, &why, reply);
        }
        Err(bad) => dialect.encode_error(head, bad.code, &bad.message, reply),
    }
}

/// Why a built-in's request did not decode.
struct Bad {
    code: ErrorCode,
    message: String,
}

fn decoded<D: Dialect, C: Command>(dialect: &D, request: &Request<'_, D::Head>) -> Result<C, Bad> {
    dialect.decode_command::<C>(request).map_err(|e| Bad {
        code: ErrorCode::BadFrame,
        message: format!("{}: {e}", C::NAME),
    })
}
