//! The case's capture: started with the case's network, waited on by the waits, and turned into
//! the wire the snapshot records when the case ends.

use super::endpoints::Endpoints;
use super::RunConfig;
use crate::observe::{self, event::WireEvent, Wire};
use crate::script::{Case, Slot};
use platforms::wire::Frame;
use platforms::Capture;
use std::fmt::Display;

/// The capture of one case, or why there is none.
pub(super) struct Tap {
    capture: Option<Capture>,
    why_not: String,
}

/// What the capture held when the case ended.
pub(super) struct CapturedWire {
    /// What the snapshot records (or why it records no wire).
    pub(super) wire: Wire,
    /// Every captured packet with its time, for the JSON results.
    pub(super) raw: Vec<String>,
    /// The packets as captured, for `--pcap`; None when nothing was captured.
    pub(super) frames: Option<Vec<Frame>>,
}

impl Tap {
    pub(super) fn new(cfg: &RunConfig) -> Tap {
        Tap {
            capture: None,
            why_not: cfg.capture.clone().err().unwrap_or_default(),
        }
    }

    /// Keep the capture the case's network started, or why it did not start.
    pub(super) fn started<E: Display>(&mut self, capture: Option<Result<Capture, E>>) {
        match capture {
            Some(Ok(c)) => self.capture = Some(c),
            Some(Err(e)) => self.why_not = format!("capture failed to start: {e}"),
            None => {}
        }
    }

    pub(super) fn capture(&self) -> Option<&Capture> {
        self.capture.as_ref()
    }

    /// Stop the capture and turn its packets into the wire, named by the case's endpoints.
    pub(super) fn finish(&mut self, case: &Case, ends: &Endpoints) -> CapturedWire {
        let Some(c) = self.capture.take() else {
            return CapturedWire {
                wire: Wire::NotCaptured {
                    reason: self.why_not.clone(),
                },
                raw: Vec::new(),
                frames: None,
            };
        };
        // Read before stop: the case's traffic is over, so no drop can come after this.
        let dropped = c.dropped();
        let (packets, frames) = c.stop_with_frames();
        // On a loopback other cases share, keep this case's own packets: every connection and
        // datagram has a listener or the closed port of the case at one end, and an ICMP error
        // goes by the packet it quotes.
        let (packets, frames) = if platforms::CAPTURE_SHARES_LOOPBACK {
            platforms::wire::keep_ports(packets, frames, &ends.server_ports())
        } else {
            (packets, frames)
        };
        let labels = ends.labels();
        let vary = case.retransmissions_vary;
        let mut events = observe::wire_events(&packets, &labels, case.is_bulk(), vary);
        // The retransmission schedule is TCP's: read from the segments alone.
        let segs = platforms::wire::segments(packets.iter().cloned());
        if let (Some(port), None) = (ends.client_ports.get(&Slot::CONN), vary) {
            let schedule = observe::retransmission_schedule(&segs, *port);
            events.extend(schedule.map(WireEvent::Summary));
        }
        let wire = if dropped > 0 {
            // A partial wire is not an observation of the platform: neither compared nor
            // written, like a run without capture (the segments still go to the JSON).
            Wire::NotCaptured {
                reason: format!(
                    "incomplete: the kernel dropped {dropped} captured packet(s) (capture buffer full)"
                ),
            }
        } else {
            Wire::captured(events)
        };
        CapturedWire {
            wire,
            raw: observe::raw_wire(&packets, &labels),
            frames: Some(frames),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::observe;
    use platforms::Capture;
    use std::collections::BTreeMap;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    /// A datagram to a closed port, captured by the platform's capture in a private network
    /// stack and reduced as the runner reduces a case's wire: the datagram and the stack's
    /// port unreachable, named by the labels a case would give its ends.
    #[test]
    fn a_datagram_to_a_closed_port_shows_as_udp_and_its_port_unreachable() {
        let lines = std::thread::spawn(|| {
            if let Err(why) = platforms::isolate_thread() {
                eprintln!("skipped: {why}");
                return None;
            }
            let cap = Capture::start().expect("capture starts in an isolated stack");
            // A port just released is one nobody listens on.
            let closed = UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .unwrap();
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client.send_to(b"hello", closed).unwrap();
            let both = |p: &[platforms::wire::Packet]| p.len() >= 2;
            let soon = Instant::now() + Duration::from_secs(5);
            assert!(cap.wait_for_packets(soon, both), "{:?}", cap.packets());
            let (packets, _) = cap.stop_with_frames();
            let labels = BTreeMap::from([
                (client.local_addr().unwrap().port(), "client".to_string()),
                (closed.port(), "closed port".to_string()),
            ]);
            let events = observe::wire_events(&packets, &labels, false, None);
            Some(events.iter().map(ToString::to_string).collect::<Vec<_>>())
        })
        .join()
        .unwrap();
        let Some(lines) = lines else { return };
        assert_eq!(
            lines,
            [
                "client > closed port: udp 5",
                "server > client: ICMP port unreachable (about udp client > closed port)",
            ]
        );
    }
}
