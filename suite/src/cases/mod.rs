//! One file per family. A case function returns the intent and the script; the catalog
//! (`catalog.rs`) gives it its family and name, which are the function's own.

pub mod accept;
pub mod after_close;
pub mod bind;
pub mod close;
pub mod connect;
pub mod host_crash;
pub mod host_reboot;
pub mod host_shutdown;
pub mod ipv6;
pub mod limits;
pub mod linger;
pub mod listen;
pub mod middlebox;
pub mod options;
pub mod partition;
pub mod ports;
pub mod process_exit;
pub mod readiness;
pub mod shutdown;
pub mod time_wait;
pub mod timeouts;
pub mod udp;
pub mod unix;
pub mod unreachable;
