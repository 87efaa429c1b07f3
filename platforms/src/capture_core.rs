//! The half of a packet capture that is the same on every backend: a reader thread pushes the
//! packets it parsed (and the frame behind each) into one shared list, and the caller reads that
//! list, waits on its TCP segments, and stops the reader. Only how packets are read and how the reader is told
//! to stop differ per OS (`sys/linux/capture.rs`: AF_PACKET and an eventfd; `sys/bpf.rs`: a BPF
//! device and a stop time), so this module knows nothing of either.

use crate::wire::{Frame, Packet, Segment};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

struct State {
    /// Every packet kept (TCP, UDP, ICMP errors), in arrival order.
    packets: Vec<Packet>,
    /// The TCP segments among them, in the same order: what the waits read, kept apart so
    /// that a wait sees the segments it always saw, however many datagrams came between.
    segments: Vec<Segment>,
    /// The frame behind each packet (same order), its headers as captured, for a pcap file.
    frames: Vec<Frame>,
    /// False once the reader thread has exited: nothing more will arrive.
    running: bool,
    /// Packets read but rejected in user space (a kernel filter should leave none).
    skipped: u64,
}

/// What the reader thread fills: the captured list and the condition it notifies.
pub(crate) struct Sink {
    state: Mutex<State>,
    /// Notified by the reader after every batch of new segments and when it exits.
    changed: Condvar,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Append `batch` (drained, so the reader can reuse it) and count `skipped` rejected packets,
    /// then wake the waiters; nothing happens when there is nothing to add.
    pub(crate) fn push(&self, batch: &mut Vec<(Packet, Frame)>, skipped: u64) {
        if batch.is_empty() && skipped == 0 {
            return;
        }
        let mut st = self.lock();
        for (packet, frame) in batch.drain(..) {
            if let Packet::Tcp(seg) = &packet {
                st.segments.push(seg.clone());
            }
            st.packets.push(packet);
            st.frames.push(frame);
        }
        st.skipped += skipped;
        drop(st);
        self.changed.notify_all();
    }

    /// The reader has exited: wake the waiters, who stop waiting for what cannot come.
    fn finish(&self) {
        self.lock().running = false;
        self.changed.notify_all();
    }
}

/// The shared list of a running capture and the reader thread that fills it.
pub(crate) struct CaptureCore {
    sink: Arc<Sink>,
    reader: Option<JoinHandle<()>>,
}

impl CaptureCore {
    /// Start the reader thread running `read`, which pushes into the [`Sink`] until it is told
    /// to stop (by the backend's own means) or fails; its return marks the capture finished.
    pub(crate) fn spawn(read: impl FnOnce(&Sink) + Send + 'static) -> io::Result<CaptureCore> {
        let sink = Arc::new(Sink {
            state: Mutex::new(State {
                packets: Vec::new(),
                segments: Vec::new(),
                frames: Vec::new(),
                running: true,
                skipped: 0,
            }),
            changed: Condvar::new(),
        });
        let reader = {
            let sink = sink.clone();
            std::thread::Builder::new()
                .name("sockconform-capture".into())
                .spawn(move || {
                    read(&sink);
                    sink.finish();
                })?
        };
        Ok(CaptureCore {
            sink,
            reader: Some(reader),
        })
    }

    /// A copy of the TCP segments captured so far, in arrival order.
    pub(crate) fn segments(&self) -> Vec<Segment> {
        self.sink.lock().segments.clone()
    }

    /// A copy of every packet captured so far, in arrival order.
    pub(crate) fn packets(&self) -> Vec<Packet> {
        self.sink.lock().packets.clone()
    }

    /// Wait until `pred` holds for the captured segments or `deadline` passes; returns whether it
    /// held. Woken by the reader on every new batch of segments (no polling). Returns false early
    /// if the reader has stopped (nothing more can arrive). `pred` runs under the capture's lock:
    /// it must not call back into the capture.
    pub(crate) fn wait_for(&self, deadline: Instant, pred: impl Fn(&[Segment]) -> bool) -> bool {
        self.wait_until(deadline, |st| pred(&st.segments))
    }

    /// As [`CaptureCore::wait_for`], on every packet captured.
    pub(crate) fn wait_for_packets(
        &self,
        deadline: Instant,
        pred: impl Fn(&[Packet]) -> bool,
    ) -> bool {
        self.wait_until(deadline, |st| pred(&st.packets))
    }

    fn wait_until(&self, deadline: Instant, pred: impl Fn(&State) -> bool) -> bool {
        let mut st = self.sink.lock();
        loop {
            if pred(&st) {
                return true;
            }
            let now = Instant::now();
            if !st.running || now >= deadline {
                return false;
            }
            st = self
                .sink
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Packets the reader rejected in user space so far.
    #[cfg(test)]
    pub(crate) fn skipped(&self) -> u64 {
        self.sink.lock().skipped
    }

    /// Tell the reader to stop with `ask` and wait for it to finish (what it reads before it
    /// sees the request still counts). Returns false, without calling `ask`, when it was already
    /// stopped: a backend reports its kernel's drops once, on the first stop.
    pub(crate) fn stop_reader(&mut self, ask: impl FnOnce()) -> bool {
        let Some(reader) = self.reader.take() else {
            return false;
        };
        ask();
        let _ = reader.join();
        true
    }

    /// Stop the reader as [`CaptureCore::stop_reader`] does; on that first stop, say on stderr
    /// how many packets the kernel dropped, as `dropped` counts them, because `full` was full.
    /// A drop makes the capture incomplete, which whoever reads it must be told.
    pub(crate) fn stop_and_report(
        &mut self,
        ask: impl FnOnce(),
        dropped: impl FnOnce() -> u32,
        full: &str,
    ) {
        if !self.stop_reader(ask) {
            return;
        }
        let dropped = dropped();
        if dropped > 0 {
            eprintln!(
                "sockconform capture: the kernel dropped {dropped} packet(s) ({full} full); \
                 the capture is incomplete"
            );
        }
    }

    /// Everything captured, with the frame behind each packet (the same order and count);
    /// the lists are left empty.
    pub(crate) fn take(&self) -> (Vec<Packet>, Vec<Frame>) {
        let mut st = self.sink.lock();
        st.segments.clear();
        (
            std::mem::take(&mut st.packets),
            std::mem::take(&mut st.frames),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn seg_frame(port: u16) -> (Packet, Frame) {
        let seg = Segment {
            at: Duration::ZERO,
            src: ([127, 0, 0, 1], port).into(),
            dst: ([127, 0, 0, 1], 80).into(),
            syn: true,
            ack: false,
            fin: false,
            rst: false,
            psh: false,
            seq: 0,
            ack_no: 0,
            window: 1,
            payload: 0,
        };
        let frame = Frame {
            at: Duration::ZERO,
            data: port.to_be_bytes().to_vec(),
            len: 2,
        };
        (Packet::Tcp(seg), frame)
    }

    /// A reader that pushes one segment per port it receives, and ends when the channel closes.
    fn fed_capture() -> (CaptureCore, mpsc::Sender<u16>) {
        let (tx, rx) = mpsc::channel::<u16>();
        let core = CaptureCore::spawn(move |sink| {
            for port in rx {
                sink.push(&mut vec![seg_frame(port)], 0);
            }
        })
        .unwrap();
        (core, tx)
    }

    #[test]
    fn capture_core_wakes_a_waiter_on_each_push_and_keeps_the_order() {
        let (core, tx) = fed_capture();
        let soon = || Instant::now() + Duration::from_secs(5);
        tx.send(1).unwrap();
        assert!(core.wait_for(soon(), |s| s.len() == 1));
        tx.send(2).unwrap();
        assert!(core.wait_for(soon(), |s| s.len() == 2));
        let ports: Vec<u16> = core.segments().iter().map(|s| s.src.port()).collect();
        assert_eq!(ports, [1, 2]);
    }

    #[test]
    fn capture_core_wait_ends_at_the_deadline_or_when_the_reader_exits() {
        let (mut core, tx) = fed_capture();
        let t = Instant::now();
        assert!(!core.wait_for(t + Duration::from_millis(50), |s| !s.is_empty()));
        assert!(t.elapsed() >= Duration::from_millis(50));
        tx.send(7).unwrap();
        // Closing the channel is this reader's stop request; what it was sent first still counts.
        assert!(core.stop_reader(|| drop(tx)));
        let t = Instant::now();
        assert!(!core.wait_for(t + Duration::from_secs(5), |s| s.len() > 1));
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "waited on a stopped reader"
        );
        assert!(!core.stop_reader(|| panic!("asked a stopped reader to stop")));
        let (segs, frames) = core.take();
        assert_eq!((segs.len(), frames[0].data.clone()), (1, vec![0, 7]));
        assert!(core.segments().is_empty());
    }

    #[test]
    fn capture_core_keeps_datagrams_among_the_packets_but_not_the_segments() {
        let datagram = Packet::Udp(crate::wire::Datagram {
            at: Duration::ZERO,
            src: ([127, 0, 0, 1], 5000).into(),
            dst: ([127, 0, 0, 1], 23000).into(),
            payload: 0,
        });
        let frame = seg_frame(1).1;
        let mut core = CaptureCore::spawn(move |sink| {
            sink.push(&mut vec![(datagram, frame), seg_frame(2)], 0);
        })
        .unwrap();
        assert!(core.stop_reader(|| ()));
        let soon = Instant::now() + Duration::from_secs(5);
        assert!(core.wait_for_packets(soon, |p| p.len() == 2));
        // The waits on segments see the one segment, as if the datagram had not come.
        assert!(core.wait_for(soon, |s| s.len() == 1 && s[0].src.port() == 2));
        let (packets, frames) = core.take();
        assert!(matches!(packets[0], Packet::Udp(_)));
        assert_eq!((packets.len(), frames.len()), (2, 2));
        assert!(core.segments().is_empty() && core.packets().is_empty());
    }

    #[test]
    fn capture_core_counts_skipped_packets_without_segments() {
        let mut core = CaptureCore::spawn(|sink| sink.push(&mut Vec::new(), 3)).unwrap();
        // This reader stops on its own; joining it makes its push visible.
        assert!(core.stop_reader(|| ()));
        assert_eq!(core.skipped(), 3);
        assert!(core.segments().is_empty());
    }
}
