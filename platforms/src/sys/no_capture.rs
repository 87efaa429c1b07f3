//! Packet capture for a backend that has none: the same methods as the Linux `Capture`, but `start`
//! fails with the backend's reason (`super::CAPTURE_UNAVAILABLE`), so no value of the type exists
//! and the other methods are never reached.

use crate::wire::{Frame, Packet, Segment};
use std::io;
use std::time::Instant;

/// Packet capture: not implemented on this platform.
pub struct Capture(());

impl Capture {
    pub fn start() -> io::Result<Capture> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            super::CAPTURE_UNAVAILABLE,
        ))
    }
    pub fn segments(&self) -> Vec<Segment> {
        Vec::new()
    }
    pub fn packets(&self) -> Vec<Packet> {
        Vec::new()
    }
    pub fn wait_for(&self, _deadline: Instant, _pred: impl Fn(&[Segment]) -> bool) -> bool {
        false
    }
    pub fn wait_for_packets(&self, _deadline: Instant, _pred: impl Fn(&[Packet]) -> bool) -> bool {
        false
    }
    pub fn stop(self) -> Vec<Segment> {
        Vec::new()
    }
    pub fn stop_with_frames(self) -> (Vec<Packet>, Vec<Frame>) {
        (Vec::new(), Vec::new())
    }
    pub fn dropped(&self) -> u32 {
        0
    }
}
