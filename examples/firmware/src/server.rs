//! The device's server: the handlers of its three commands, and the [`Device`] that runs
//! them on each frame.

use core::cell::Cell;

use zmqrpc_core::device::{on, CommandHandler, DeviceServer, DeviceStats, Failure};

use crate::commands::{Ping, ReadStats, SetLed};

/// The LEDs `SetLed` drives.
const LEDS: u8 = 8;

/// The handlers of `Ping`, `SetLed` and `ReadStats`; `ReadStats` answers with what `stats`
/// holds.
pub fn handlers(
    stats: &Cell<DeviceStats>,
) -> (
    impl CommandHandler,
    impl CommandHandler,
    impl CommandHandler + '_,
) {
    let ping = on(|Ping { n }| Ok::<_, Failure>(n));
    let mut leds = 0u8;
    let set_led = on(move |SetLed { led, on }| {
        if led >= LEDS {
            return Err(Failure("no such LED"));
        }
        let bit = 1 << led;
        leds = if on { leds | bit } else { leds & !bit };
        Ok(leds)
    });
    let read_stats = on(|ReadStats| Ok::<_, Failure>(stats.get()));
    (ping, set_led, read_stats)
}

/// Serves frames with the [`handlers`], keeping the counters `ReadStats` reads up to date.
pub struct Device<'a> {
    server: DeviceServer<'a, 3>,
    stats: &'a Cell<DeviceStats>,
    link_errors: u32,
}

impl<'a> Device<'a> {
    /// A device serving `handlers`, whose `ReadStats` reads `stats`.
    pub fn new(
        (ping, set_led, read_stats): &'a mut (
            impl CommandHandler,
            impl CommandHandler,
            impl CommandHandler,
        ),
        stats: &'a Cell<DeviceStats>,
    ) -> Self {
        let mut server = DeviceServer::new();
        for handler in [ping as &mut dyn CommandHandler, set_led, read_stats] {
            if server.register(handler).is_err() {
                unreachable!("three commands of distinct names fit a table of three");
            }
        }
        Device {
            server,
            stats,
            link_errors: 0,
        }
    }

    /// Serves `frame`; its answer, written into `out`, if one is due.
    pub fn answer<'o>(&mut self, frame: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
        // What `ReadStats` answers: the counters before this frame.
        self.stats.set(DeviceStats {
            link_errors: self.link_errors,
            ..self.server.stats()
        });
        self.server.dispatch(frame, out)
    }

    /// Counts a frame lost on the link.
    pub fn link_error(&mut self) {
        self.link_errors = self.link_errors.wrapping_add(1);
    }
}
