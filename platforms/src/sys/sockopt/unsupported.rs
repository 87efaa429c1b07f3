//! Raw options on a platform without a backend: each answers that it is not available here.

use crate::sockopt::{OptValue, SockOpt};
use socket2::Socket;
use std::io;
use std::mem::ManuallyDrop;

pub fn get_option(_s: &Socket, opt: SockOpt) -> io::Result<OptValue> {
    Err(crate::not_implemented(format!("reading {opt} raw")))
}

pub fn set_option(_s: &Socket, opt: SockOpt, _value: i32) -> io::Result<()> {
    Err(crate::not_implemented(format!("setting {opt} raw")))
}

pub fn is_nonblocking(_s: &Socket) -> io::Result<bool> {
    Err(crate::not_implemented("reading the blocking mode"))
}

pub fn same_descriptor(_s: &Socket) -> io::Result<ManuallyDrop<Socket>> {
    Err(crate::not_implemented(
        "a second thread on the same descriptor",
    ))
}
